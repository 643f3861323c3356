"""The sampler's RNG policy: its own torch.Generator per batch, the global RNG untouched, the same draws as before."""

from __future__ import annotations

import torch

from emlab.sampling import InverseCdfSampler, Prompt, SamplingParams, _batch_seed, plan_batches, sample
from tests.conftest import tiny_chat_model

PROMPTS = [
    Prompt(f"p{i}", [{"role": "user", "content": t}])
    for i, t in enumerate(
        ["hi", "What is the capital of France?", "Tell me a story about a dragon and a knight", "ok", "Why?"]
    )
]


class _GlobalRngSampler(InverseCdfSampler):
    """The sampler as it was before it had a generator: uniforms from the process-wide RNG."""

    def sample(self, scores: torch.Tensor) -> torch.Tensor:
        cdf = self.probabilities(scores).cumsum(-1)
        u = torch.rand(cdf.shape[0], 1, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]
        return torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[-1] - 1).squeeze(-1)


def _old_path(cm, prompts, n, params):
    """Token ids per (prompt id, sample index) by the old recipe: torch.manual_seed(batch seed), then generate."""
    from transformers import LogitsProcessorList

    from emlab.chat import left_padded

    out = {}
    for b, batch in enumerate(plan_batches(cm, prompts, n, params)):
        enc = left_padded(cm.tokenizer, [j.text for j in batch])
        kwargs = dict(
            max_new_tokens=params.max_new_tokens,
            do_sample=False,
            pad_token_id=cm.tokenizer.pad_token_id,
            temperature=None,
            top_p=None,
            top_k=None,
            logits_processor=LogitsProcessorList([_GlobalRngSampler(params.temperature, params.top_p)]),
        )
        torch.manual_seed(_batch_seed(params.seed, b))
        with torch.inference_mode():
            ids = cm.model.generate(**enc, **kwargs)[:, enc["input_ids"].shape[1] :]
        for job, row in zip(batch, ids.tolist(), strict=True):
            out[(job.prompt.id, job.sample_index)] = cm.tokenizer.decode(_until_eos(row, cm), skip_special_tokens=True)
    return out


def _until_eos(row, cm):
    from emlab.hooks import eos_ids

    eos = eos_ids(cm.model)
    stop = next((i for i, t in enumerate(row) if t in eos), None)
    return row if stop is None else row[:stop]


def test_samples_equal_the_global_rng_recipe_they_replace(smol_tok):
    cm = tiny_chat_model(smol_tok, layers=2, hidden=32)
    for params in (
        SamplingParams(temperature=1.0, max_new_tokens=8, seed=3, batch_size=4),
        SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=6, seed=11, batch_size=3),
    ):
        new = {(r.prompt_id, r.sample_index): r.text for r in sample(cm, PROMPTS, n=2, params=params)}
        assert new == _old_path(cm, PROMPTS, 2, params)
        assert len(set(new.values())) > 3  # really sampled, not a constant


def test_sampling_neither_reads_nor_moves_the_global_rng(smol_tok):
    cm = tiny_chat_model(smol_tok, layers=2, hidden=32)
    params = SamplingParams(temperature=1.0, max_new_tokens=6, seed=5, batch_size=4)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = sample(cm, PROMPTS, n=2, params=params)
    assert torch.equal(torch.get_rng_state(), state)  # not seeded, not drawn from
    torch.manual_seed(999)
    torch.rand(1000)
    assert sample(cm, PROMPTS, n=2, params=params) == a  # whatever the global RNG holds


def test_one_sampler_is_one_seeded_stream_with_recorded_draws():
    scores = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 4  # [3 rows, 4 tokens]
    s = InverseCdfSampler(seed=7)
    draws = [s.sample(scores).tolist() for _ in range(4)]
    again = InverseCdfSampler(seed=7)
    assert [again.sample(scores).tolist() for _ in range(4)] == draws
    torch.manual_seed(7)  # the recipe it replaces: the same uniforms from the global RNG seeded alike
    old = _GlobalRngSampler()
    assert [old.sample(scores).tolist() for _ in range(4)] == draws
    assert draws == [
        [2, 1, 3],
        [3, 1, 2],
        [1, 2, 1],
        [3, 3, 2],
    ]  # recorded from the old sampler (torch.manual_seed(7), CPU)
