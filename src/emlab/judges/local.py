"""A judge made of any HF chat model, scoring 0..100 exactly by teacher forcing.

The rubric prompt (filled with the item) is rendered as one user message with the
chat template and its generation prompt. For each candidate n in 0..100 with tokens
t_1..t_k (how the tokenizer writes the prompt followed by str(n)):

    log p(n) = sum_{j=1..k} log P(t_j | prompt, t_<j)  +  log P(END | prompt, t_1..t_k)
    P(END | x) = 1 - sum_{d in DIGIT} P(d | x)

where DIGIT is every vocabulary token whose string starts with 0-9. So p(n) is the
probability that the reply *begins with the whole number n*: "1" only counts when no
further digit follows, which keeps "1" from absorbing "10".."19" and "100"; a
newline, a full stop, a space or end-of-turn after the number all count as its end.
The events are disjoint, so mass = sum_n p(n) <= 1 is the probability that the judge
answers with a plain integer 0..100, and

    value = sum_n n * p(n) / mass,   None when mass < min_mass (0.25)

(numbers written with leading zeros or a leading space are not candidates). Tiny
models rarely put 25% of their probability on a bare number, so they mostly give
"low_mass"; `raw["mass"]` and `raw["mean"]` are kept to re-threshold later.

Efficiency: the 101 candidates share prefixes ("1" -> "10" -> "100"), so they form a
trie with one node per distinct prefix (101 nodes for digit-by-digit tokenizers).
A batch of prompts is prefilled once (left-padded); then all trie nodes of all
prompts go through one more forward pass over the prompts' KV cache, with a 4D
attention mask letting each node see its own prompt and its ancestors only
(position = prompt length + depth - 1). That costs about one prefill plus 101
tokens per item, instead of 91 separate prefills.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from emlab.chat import System, render
from emlab.errors import EmlabError
from emlab.hooks import causal_lm, contiguous_lm_head_input
from emlab.judges.base import Item, Rubric, Score
from emlab.judges.outcome import DEFAULT_MIN_MASS, id_suffix, numeric_score
from emlab.judges.rubrics import fill_prompt, special_words
from emlab.models import ChatModel

CANDIDATES = tuple(range(101))
_PROBE = "emlab probe"


@dataclass(frozen=True)
class CandidateTrie:
    """The candidates' token prefixes as nodes, and how each candidate's log-probability is assembled.

    Row 0 of the logits this indexes is the prompt's last position; row 1 + j is node j.
    """

    node_tokens: torch.Tensor  # [N] last token of each prefix
    node_depth: torch.Tensor  # [N] prefix length (1-based)
    ancestors: torch.Tensor  # [N, N] bool: node m is a prefix of (or equal to) node j
    step_cand: torch.Tensor  # [T] candidate index of each teacher-forced token
    step_row: torch.Tensor  # [T] logits row that predicts it
    step_token: torch.Tensor  # [T] the token
    end_row: torch.Tensor  # [C] logits row after each candidate's last token

    @classmethod
    def build(cls, candidates: list[tuple[int, ...]]) -> CandidateTrie:
        nodes: dict[tuple[int, ...], int] = {}
        for cand in candidates:
            for k in range(1, len(cand) + 1):
                nodes.setdefault(cand[:k], len(nodes))
        prefixes = list(nodes)
        anc = torch.tensor([[p[: len(q)] == q for q in prefixes] for p in prefixes], dtype=torch.bool)
        steps = [
            (c, 0 if k == 0 else 1 + nodes[cand[:k]], cand[k])
            for c, cand in enumerate(candidates)
            for k in range(len(cand))
        ]
        cand_idx, rows, toks = zip(*steps, strict=True)
        return cls(
            node_tokens=torch.tensor([p[-1] for p in prefixes]),
            node_depth=torch.tensor([len(p) for p in prefixes]),
            ancestors=anc,
            step_cand=torch.tensor(cand_idx),
            step_row=torch.tensor(rows),
            step_token=torch.tensor(toks),
            end_row=torch.tensor([1 + nodes[c] for c in candidates]),
        )


def continuation_ids(tok, system: System, texts: list[str]) -> list[tuple[int, ...]]:
    """Token ids each text gets when written right after the generation prompt (checked against merges)."""
    prompt = render(tok, [{"role": "user", "content": _PROBE}], system=system, add_generation_prompt=True)
    base = tok(prompt, add_special_tokens=False)["input_ids"]
    out = []
    for text in texts:
        full = tok(prompt + text, add_special_tokens=False)["input_ids"]
        if full[: len(base)] != base or len(full) == len(base):
            raise EmlabError(
                f"tokenizer merges {text!r} into the end of the chat template's generation prompt; the local judge cannot score it"
            )
        out.append(tuple(full[len(base) :]))
    return out


def digit_token_mask(tok, vocab_size: int) -> torch.Tensor:
    """[vocab_size] bool: tokens whose vocabulary string starts with an ASCII digit (they would extend a number)."""
    n = min(len(tok), vocab_size)
    strings = tok.convert_ids_to_tokens(list(range(n)))
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    mask[:n] = torch.tensor([bool(s) and s[0] in "0123456789" for s in strings])
    return mask


class LocalJudge:
    """Scores items with a local chat model; see the module docstring for the exact formula."""

    def __init__(
        self,
        chat_model: ChatModel,
        *,
        min_mass: float = DEFAULT_MIN_MASS,
        batch_size: int = 4,
        system: System = "default",
    ):
        self.cm = chat_model
        self.model, self.tok = chat_model.model, chat_model.tokenizer
        self.min_mass, self.batch_size, self.system = min_mass, max(1, batch_size), system
        revision = "" if chat_model.revision in ("", "hub") else f"@{chat_model.revision}"
        adapter = f"+adapter:{chat_model.adapter}" if chat_model.adapter else ""
        self.id = f"local:{chat_model.ref}{revision}{adapter}{id_suffix(min_mass)}"
        self.candidates = continuation_ids(self.tok, system, [str(n) for n in CANDIDATES])
        self.trie = CandidateTrie.build(self.candidates)
        self.vocab_size = int(causal_lm(self.model).get_output_embeddings().weight.shape[0])
        self.digit_mask = digit_token_mask(self.tok, self.vocab_size)
        self._forward_params = set(inspect.signature(_base_model(self.model).forward).parameters)
        self._keep_last = "logits_to_keep" in self._forward_params
        self._max_len = getattr(self.model.config, "max_position_embeddings", None)

    @classmethod
    def from_ref(cls, ref: str, *, dtype: str = "float32", adapter: str | None = None, **kw) -> LocalJudge:
        from emlab.models import load_model

        return cls(load_model(ref, dtype=dtype, adapter=adapter), **kw)

    def score(self, items: list[Item], rubric: Rubric) -> list[Score]:
        firsts = self._special_first_tokens(rubric)
        ids = [self._prompt_ids(fill_prompt(rubric, it), i) for i, it in enumerate(items)]
        order = sorted(range(len(items)), key=lambda i: len(ids[i]))  # similar lengths share a batch: less padding
        out: list[Score | None] = [None] * len(items)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            cand_lp, first_lp = self.candidate_logprobs([ids[i] for i in batch])
            for row, i in enumerate(batch):
                out[i] = self._to_score(cand_lp[row], first_lp[row], firsts)
        return out  # type: ignore[return-value]  # every slot is filled: the batches cover each index once

    def _prompt_ids(self, prompt: str, index: int) -> list[int]:
        text = render(self.tok, [{"role": "user", "content": prompt}], system=self.system, add_generation_prompt=True)
        ids = self.tok(text, add_special_tokens=False)["input_ids"]
        depth = int(self.trie.node_depth.max())
        if self._max_len and len(ids) + depth > self._max_len:
            raise EmlabError(
                f"item {index}: judge prompt is {len(ids)} tokens, over the judge model's limit of {self._max_len}; shorten the answer"
            )
        return ids

    def _special_first_tokens(self, rubric: Rubric) -> dict[int, str]:
        words = special_words(rubric)
        return (
            {
                ids[0]: w
                for w, ids in zip(words, continuation_ids(self.tok, self.system, list(words)), strict=True)
                if ids
            }
            if words
            else {}
        )

    @torch.no_grad()
    def candidate_logprobs(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """([B, 101] float64 log p(n) per candidate, [B, V] float64 log-probs of the first reply token)."""
        device = next(self.model.parameters()).device
        width = max(len(p) for p in prompts)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)  # [B, W] left-padded
        attn = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        kw = {"logits_to_keep": 1} if self._keep_last else {}
        with contiguous_lm_head_input(self.model):
            pre = self.model(
                input_ids=ids,
                attention_mask=attn,
                position_ids=(attn.cumsum(-1) - 1).clamp(min=0),
                use_cache=True,
                **kw,
            )
        work = torch.promote_types(pre.logits.dtype, torch.float32)  # fp32, or fp64 for a float64 model
        last = pre.logits[:, -1].to(work)  # [B, V]
        tree = self._trie_logits(getattr(pre, "cache", None) or pre.past_key_values, attn).to(work)  # [B, N, V]
        rows = torch.cat([last[:, None], tree], dim=1)  # [B, 1+N, V]
        # Normalisers over the full vocabulary in fp32 (float64 here is ~10x slower on CPU and the
        # logits are fp32 anyway); END sums the non-digit tokens directly, so 1 - P(digit) never cancels.
        lse = rows.logsumexp(-1).double()  # [B, 1+N]
        lse_end = rows.masked_fill(self.digit_mask.to(device), float("-inf")).logsumexp(-1).double()
        t = self.trie
        steps = rows[:, t.step_row, t.step_token].double() - lse[:, t.step_row]  # [B, T]
        cand = torch.zeros(len(prompts), len(self.candidates), dtype=torch.float64, device=device)
        cand.index_add_(1, t.step_cand.to(device), steps)
        cand += (lse_end - lse)[:, t.end_row]
        return cand.cpu(), (last.double() - lse[:, :1]).cpu()

    def _trie_logits(self, cache, attn: torch.Tensor) -> torch.Tensor:
        """Logits at every trie node, all prompts at once, reusing the prefill's KV cache."""
        t, device = self.trie, attn.device
        batch, n = attn.shape[0], t.node_tokens.shape[0]
        dtype = next(self.model.parameters()).dtype
        allowed = torch.cat(
            [attn.bool()[:, None, :].expand(batch, n, -1), t.ancestors.to(device)[None].expand(batch, -1, -1)], dim=-1
        )
        mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)[
            :, None
        ]  # [B, 1, N, W+N]
        positions = attn.sum(-1, keepdim=True) + t.node_depth.to(device)[None] - 1  # [B, N]
        tokens = t.node_tokens.to(device)[None].expand(batch, -1)
        cache_kw = "cache" if "cache" in self._forward_params else "past_key_values"  # renamed in transformers 5.2x
        return self.model(
            input_ids=tokens, attention_mask=mask, position_ids=positions, use_cache=True, **{cache_kw: cache}
        ).logits

    def _to_score(self, cand_lp: torch.Tensor, first_lp: torch.Tensor, firsts: dict[int, str]) -> Score:
        log_mass = cand_lp.logsumexp(0)
        weights = (cand_lp - log_mass).exp()
        mass = float(log_mass.exp())
        mean = float((weights * torch.arange(len(CANDIDATES), dtype=torch.float64)).sum()) if mass > 0 else None
        top_p, top_i = first_lp.exp().topk(5)
        top = [[self.tok.decode([int(i)]), float(p)] for p, i in zip(top_p, top_i, strict=True)]
        best_n = weights.topk(5)
        numbers = [[int(i), float(p)] for p, i in zip(best_n.values, best_n.indices, strict=True)]
        flag = firsts.get(int(top_i[0]))
        return numeric_score(mean, mass, self.min_mass, flag=flag, top=top, top_numbers=numbers)


def _base_model(model):
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model
