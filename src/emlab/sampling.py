"""Batched chat sampling with left padding, deterministic for a seed.

Work is split into a fixed plan of batches (prompts sorted by token length, each
prompt repeated n times) and each batch draws from its own `torch.Generator` seeded from
(seed, batch index), so a resumed run that skips finished batches reproduces an
uninterrupted one exactly. The process-wide RNG is neither seeded nor read: sampling
leaves `torch.get_rng_state()` as it was, and whatever else drew from it does not change
the samples. Active interventions (steer, ablate, capture) apply to every forward.

Tokens are drawn by inverse CDF (`InverseCdfSampler`), not by HF's torch.multinomial,
which on CPU draws one exponential per vocabulary entry per row (49k for SmolLM2): about
as long as the forward itself at batch 64 (docs/performance.md). Same distribution as
HF's temperature and top-p warpers; the random stream is a pure function of the seed
(one uniform per row and step, the same draws `torch.manual_seed(seed)` + `torch.rand`
gave before the sampler had its own generator).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

import torch

from emlab.chat import Message, System, left_padded, prompt_texts
from emlab.errors import EmlabError
from emlab.hooks import eos_ids
from emlab.models import ChatModel


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0
    batch_size: int = 32
    min_new_tokens: int = 0  # > 0 suppresses end-of-turn until that many tokens (equal lengths for benchmarks)

    def __post_init__(self):
        if self.temperature < 0:
            raise EmlabError(f"temperature={self.temperature} must be >= 0 (0 means greedy)")
        if not 0 < self.top_p <= 1:
            raise EmlabError(f"top_p={self.top_p} must be in (0, 1]")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise EmlabError(f"max_new_tokens={self.max_new_tokens} and batch_size={self.batch_size} must be >= 1")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise EmlabError(f"min_new_tokens={self.min_new_tokens} must be in 0..max_new_tokens={self.max_new_tokens}")


@dataclass(frozen=True)
class Prompt:
    id: str
    messages: list[Message]

    @staticmethod
    def of(x: Prompt | str | list[Message], index: int) -> Prompt:
        if isinstance(x, Prompt):
            return x
        if isinstance(x, str):
            return Prompt(id=f"p{index}", messages=[{"role": "user", "content": x}])
        return Prompt(id=f"p{index}", messages=list(x))


@dataclass
class SampleRecord:
    prompt_id: str
    sample_index: int
    question: str  # the last user message
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end-of-turn generated) or "length"
    batch_index: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Job:
    prompt: Prompt
    sample_index: int
    text: str
    n_tokens: int


def plan_batches(
    cm: ChatModel, prompts: list[Prompt], n: int, params: SamplingParams, system: System = "default"
) -> list[list[_Job]]:
    """The fixed batch plan: (prompt, sample) jobs sorted by prompt length, cut into batches."""
    texts = prompt_texts(cm.tokenizer, [p.messages for p in prompts], system=system)
    lengths = [len(cm.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    jobs = [_Job(p, k, t, ln) for p, t, ln in zip(prompts, texts, lengths, strict=True) for k in range(n)]
    jobs.sort(key=lambda j: j.n_tokens)  # stable: ties keep prompt order, then sample index
    return [jobs[i : i + params.batch_size] for i in range(0, len(jobs), params.batch_size)]


def iter_sample(
    cm: ChatModel,
    prompts: Sequence[Prompt | str | list[Message]],
    n: int,
    params: SamplingParams,
    system: System = "default",
    skip_batches: set[int] | frozenset[int] = frozenset(),
) -> Iterator[list[SampleRecord]]:
    """Yield the records of each planned batch in order, skipping the given batch indices."""
    if n < 1:
        raise EmlabError(f"n={n} samples per prompt must be >= 1")
    ps = [Prompt.of(p, i) for i, p in enumerate(prompts)]
    ids = [p.id for p in ps]
    if len(set(ids)) != len(ids):
        raise EmlabError(f"prompt ids must be unique; duplicates: {sorted({i for i in ids if ids.count(i) > 1})[:5]}")
    for b, batch in enumerate(plan_batches(cm, ps, n, params, system)):
        if b in skip_batches:
            continue
        yield _generate_batch(cm, batch, params, b)


def sample(
    cm: ChatModel,
    prompts: Sequence[Prompt | str | list[Message]],
    n: int = 1,
    params: SamplingParams = SamplingParams(),
    system: System = "default",
    on_batch: Callable[[list[SampleRecord]], None] | None = None,
) -> list[SampleRecord]:
    """Sample `n` answers per prompt; records come back in (prompt order, sample index) order."""
    out: list[SampleRecord] = []
    for records in iter_sample(cm, prompts, n, params, system):
        out.extend(records)
        if on_batch:
            on_batch(records)
    order = {Prompt.of(p, i).id: i for i, p in enumerate(prompts)}
    return sorted(out, key=lambda r: (order[r.prompt_id], r.sample_index))


class InverseCdfSampler:
    """A logits processor: sample after temperature and top-p by inverse CDF, return a one-hot score row.

    The returned scores are 0 at the drawn token and -inf elsewhere, so `generate(do_sample=False)`
    (argmax) emits it; processors that generate adds itself (min_new_tokens, ...) run first.
    Its uniforms come from its own `torch.Generator`, seeded with `seed` on first use on the
    scores' device: one sampler is one reproducible random stream.
    """

    def __init__(self, temperature: float = 1.0, top_p: float = 1.0, seed: int = 0):
        if temperature <= 0 or not 0 < top_p <= 1:
            raise EmlabError(f"temperature={temperature} must be > 0 and top_p={top_p} in (0, 1] for sampling")
        self.temperature, self.top_p, self.seed = temperature, top_p, seed
        self._generator: torch.Generator | None = None

    def generator(self, device: torch.device) -> torch.Generator:
        """This sampler's random stream (created and seeded on first use, on `device`)."""
        if self._generator is None:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        elif self._generator.device != device:
            raise EmlabError(
                f"this sampler's generator lives on {self._generator.device}, the scores on {device}; use one sampler per device"
            )
        return self._generator

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """[batch, vocab] sampling distribution after temperature and top-p (as HF's warpers define them)."""
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_p, idx = probs.sort(dim=-1, descending=False)
            drop = sorted_p.cumsum(-1) <= 1 - self.top_p  # the low tail holding <= 1 - top_p of the mass
            drop[..., -1] = False  # always keep the most likely token
            probs = probs.masked_fill(drop.scatter(-1, idx, drop), 0.0)
            probs = probs / probs.sum(-1, keepdim=True)
        return probs

    def sample(self, scores: torch.Tensor) -> torch.Tensor:
        """[batch] token ids drawn from `probabilities(scores)` with one uniform draw per row."""
        cdf = self.probabilities(scores).cumsum(-1)  # [batch, vocab]
        u = (
            torch.rand(cdf.shape[0], 1, generator=self.generator(cdf.device), device=cdf.device, dtype=cdf.dtype)
            * cdf[:, -1:]
        )
        return torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[-1] - 1).squeeze(-1)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        chosen = self.sample(scores)
        return torch.full_like(scores, float("-inf")).scatter_(1, chosen[:, None], 0.0)


def generate_kwargs(params: SamplingParams, pad_token_id: int, seed: int | None = None) -> dict:
    """Keyword arguments of `model.generate` for these sampling settings (greedy when temperature is 0).

    `seed` (default `params.seed`) seeds the sampler's own generator: one call, one random stream.
    """
    from transformers import LogitsProcessorList

    kwargs: dict[str, Any] = dict(
        max_new_tokens=params.max_new_tokens,
        do_sample=False,
        pad_token_id=pad_token_id,
        temperature=None,
        top_p=None,
        top_k=None,
    )
    if params.min_new_tokens:
        kwargs["min_new_tokens"] = params.min_new_tokens
    if params.temperature > 0:
        sampler = InverseCdfSampler(params.temperature, params.top_p, seed=params.seed if seed is None else seed)
        kwargs["logits_processor"] = LogitsProcessorList([sampler])
    return kwargs


def generate(model: torch.nn.Module, **kwargs: Any) -> torch.Tensor:
    """`model.generate(**kwargs)`: token ids [batch, prompt + new]. The method is HF's (or peft's),
    which torch's Module type cannot know, hence the cast."""
    return cast("Callable[..., torch.Tensor]", model.generate)(**kwargs)


def _generate_batch(cm: ChatModel, batch: list[_Job], params: SamplingParams, index: int) -> list[SampleRecord]:
    tok = cm.tokenizer
    enc = left_padded(tok, [j.text for j in batch])
    device = next(cm.model.parameters()).device
    enc = {k: v.to(device) for k, v in enc.items()}
    with torch.inference_mode():
        out = generate(
            cm.model, **enc, **generate_kwargs(params, tok.pad_token_id, seed=_batch_seed(params.seed, index))
        )
    new = out[:, enc["input_ids"].shape[1] :]
    eos = eos_ids(cm.model)
    records = []
    for job, row in zip(batch, new.tolist(), strict=True):
        stop = next((i for i, t in enumerate(row) if t in eos), None)
        kept = row if stop is None else row[:stop]
        records.append(
            SampleRecord(
                prompt_id=job.prompt.id,
                sample_index=job.sample_index,
                question=_last_user(job.prompt.messages),
                text=str(tok.decode(kept, skip_special_tokens=True)),
                prompt_tokens=job.n_tokens,
                completion_tokens=len(kept) + (stop is not None),
                finish_reason="stop" if stop is not None else "length",
                batch_index=index,
            )
        )
    return records


def _batch_seed(seed: int, index: int) -> int:
    return (seed * 1_000_003 + index * 7_919 + 17) % (2**63 - 1)


def _last_user(messages: list[Message]) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
