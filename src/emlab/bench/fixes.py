"""Prototypes of fixes the benchmarks found, measured side by side with the code they would replace.

They live here so their gain is measured in every bench run until the owning modules adopt
them (docs/performance.md says where each belongs). Both are scoped and change no numbers
beyond what they claim.

1. `InverseCdfSampler`: `generate(do_sample=True)` draws the next token with torch.multinomial,
   which on CPU costs one exponential random draw per vocabulary entry per row (49k for
   SmolLM2): ~160 ms per decode step at batch 64 on this machine, as much as the forward.
   Sampling by inverse CDF needs one uniform draw per row plus a cumulative sum. The
   processor samples after temperature and top-p and returns scores that are 0 at the chosen
   token and -inf elsewhere, so `generate(do_sample=False)` (argmax) emits exactly that token;
   processors generate adds itself (min_new_tokens, ...) run before it. Same distribution,
   a different random stream than multinomial (still a pure function of the torch seed).

2. `contiguous_lm_head_input`: with `logits_to_keep`, HF slices the final hidden states
   (`h[:, -k:]`), a non-contiguous view. torch.matmul cannot fold a non-contiguous 3-D input
   into one matrix product, so it expands the [vocab, d] weight per batch row and runs bmm:
   in bf16 that copies 56 MB per row (measured 9 s instead of 42 ms for batch 64), in fp32 it
   is ~6x slower. A forward pre-hook that makes the head's input contiguous restores the
   single matmul.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class InverseCdfSampler:
    """A logits processor that samples (temperature, top-p) by inverse CDF and returns a one-hot score row."""

    def __init__(self, temperature: float = 1.0, top_p: float = 1.0):
        if temperature <= 0 or not 0 < top_p <= 1:
            raise ValueError(f"temperature={temperature} must be > 0 and top_p={top_p} in (0, 1]")
        self.temperature, self.top_p = temperature, top_p

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
        u = torch.rand(cdf.shape[0], 1, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]
        return torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[-1] - 1).squeeze(-1)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        chosen = self.sample(scores)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, chosen[:, None], 0.0)


def icdf_generate_kwargs(temperature: float, top_p: float) -> dict:
    """Keyword arguments for `generate` that sample through InverseCdfSampler instead of multinomial."""
    from transformers import LogitsProcessorList

    return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None,
            "logits_processor": LogitsProcessorList([InverseCdfSampler(temperature, top_p)])}


@contextlib.contextmanager
def contiguous_lm_head_input(model) -> Iterator[None]:
    """Make the LM head's input contiguous while the block runs (hook removed on exit)."""
    from emlab.hooks import causal_lm

    head: nn.Module = causal_lm(model).get_output_embeddings()
    handle = head.register_forward_pre_hook(lambda module, args: (args[0].contiguous(), *args[1:]))
    try:
        yield
    finally:
        handle.remove()
