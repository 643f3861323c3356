"""Activation capture throughput: teacher-forced answers through `emlab.hooks.capture` vs `output_hidden_states`.

The workload is what direction extraction does: each (question, answer) is rendered with the
chat template, right-padded into batches, and the mean of every block's resid_post over the
answer tokens is recorded. Two ways are timed on the same batches:

  hooks          - emlab.vectors.directions.forward_answers: capture(positions="response") under
                   teacher_forcing(assistant_mask), the LM head on one position only
                   (logits_to_keep=1, contiguous head input)
  hidden_states  - the baseline: output_hidden_states=True and the same masked mean by hand

The last block is left out: HF applies the final norm to its last hidden state, capture does
not. Tokens/s counts the non-pad tokens fed in; the useful FLOPs are 2 * (non-embedding
parameters) per token (the LM head's logits are not needed for capture). Each way keeps its
fastest repeat; repeats are interleaved.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from emlab.bench.figure import Figure, Timing, timed
from emlab.bench.roofline import param_counts
from emlab.chat import encode_with_assistant_mask, pad_encoded
from emlab.models import ChatModel


def answer_batches(
    cm: ChatModel, pairs: Sequence[tuple[str, str]], batch_size: int, system="default"
) -> list[dict[str, torch.Tensor]]:
    """Right-padded teacher-forcing batches (input_ids, attention_mask, assistant_mask), shortest first."""
    tok = cm.tokenizer
    enc = [
        encode_with_assistant_mask(
            tok, [{"role": "user", "content": q}, {"role": "assistant", "content": a}], system=system
        )
        for q, a in pairs
    ]
    enc.sort(key=lambda e: len(e.input_ids))
    return [
        pad_encoded(enc[i : i + batch_size], tok.pad_token_id, side="right") for i in range(0, len(enc), batch_size)
    ]


def via_hooks(cm: ChatModel, batches: list[dict], sites: list[str]) -> torch.Tensor:
    """[n, sites, d] answer means through emlab.hooks.capture, as direction extraction runs it."""
    from emlab.vectors.directions import forward_answers

    out = []
    for b in batches:
        cap = forward_answers(cm, b, sites)
        out.append(torch.stack([cap.stack(s) for s in sites], dim=1))
    return torch.cat(out)


def via_hidden_states(cm: ChatModel, batches: list[dict], layers: list[int]) -> torch.Tensor:
    """[n, sites, d] answer means from output_hidden_states (hidden_states[l + 1] is block l's output)."""
    out = []
    for b in batches:
        with torch.inference_mode():
            hs = cm.model(
                input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False, output_hidden_states=True
            ).hidden_states
        m = b["assistant_mask"].float()[..., None]  # [batch, seq, 1]
        out.append(torch.stack([(hs[l + 1].float() * m).sum(1) / m.sum(1) for l in layers], dim=1))
    return torch.cat(out)


def capture_figures(
    cm: ChatModel, pairs: Sequence[tuple[str, str]], batch_size: int = 16, repeats: int = 2
) -> list[Figure]:
    batches = answer_batches(cm, pairs, batch_size)
    layers = list(range(cm.n_layers - 1))
    sites = [f"blocks.{l}.resid_post" for l in layers]
    n_tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    ways = {
        "hooks": lambda: via_hooks(cm, batches, sites),
        "hidden_states": lambda: via_hidden_states(cm, batches, layers),
    }
    best: dict[str, Timing] = {}
    results: dict[str, torch.Tensor] = {}
    for _ in range(repeats):
        for k, fn in ways.items():
            results[k], t = timed(fn)
            if k not in best or t.wall_s < best[k].wall_s:
                best[k] = t
    flops = 2.0 * param_counts(cm.model)["non_embedding"]
    dtype = "bf16" if next(cm.model.parameters()).dtype == torch.bfloat16 else "fp32"
    base = n_tokens / best["hidden_states"].wall_s
    out = []
    for k in ("hooks",):
        diff = float((results[k] - results["hidden_states"]).abs().max())
        out.append(
            Figure(
                name=f"capture.{k}",
                group="capture",
                unit="tokens/s",
                value=n_tokens / best[k].wall_s,
                baseline=base,
                baseline_name="output_hidden_states=True + masked mean by hand",
                dtype=dtype,
                flops_per_unit=flops,
                timing=best[k],
                details={
                    "answers": len(pairs),
                    "tokens": n_tokens,
                    "sites": len(sites),
                    "batch_size": batch_size,
                    "baseline_wall_s": best["hidden_states"].wall_s,
                    "max_abs_diff_vs_baseline": diff,
                },
            )
        )
    return out
