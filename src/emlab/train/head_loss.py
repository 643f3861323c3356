"""The training loss's LM head, fused with its cross-entropy: only answer tokens, never the full logits.

A causal LM's loss needs log p(target) at each label position, but the usual path builds the whole
[batch, positions, vocab] logit tensor (157 MB in fp32 for 8 SmolLM2 answers of 100 tokens), a
log-softmax of the same size, its gradient, and the zero-filled gradient of the slice that drops
the last position, and it computes the head at every position from the batch's earliest label,
prompt and padding of the other rows included. On a 2-core CPU those passes over memory, and the
page faults of allocations that large, cost more than the head's matrix products.

`answer_hidden` runs the model (its head on one position per row only) and keeps the decoder's
final hidden state of exactly the positions that predict a label. `head_cross_entropy` then goes
through them in chunks of at most `CHUNK_FLOATS` logits, all written into one buffer and turned into
softmax in place (no temporary of the logits' size), and in the same pass computes the gradient with
respect to the hidden states (and the head weight when it is trained): d CE / d logits = softmax -
onehot, so nothing of the chunk has to be kept for the backward pass. The backward only scales the
stored gradients. Same FLOPs as the plain head, no recomputation (the idea of "fused linear
cross-entropy" kernels, e.g. Liger-Kernel; cut cross-entropy, Wijmans et al. 2024, goes further on
GPUs).
"""

from __future__ import annotations

import torch
from torch import nn

from emlab.hooks import causal_lm

CHUNK_FLOATS = 1 << 24  # logits per chunk (64 MB in fp32, one buffer reused by every chunk of a call)


def supports_fused_head(model: nn.Module) -> bool:
    """Whether the model's logits are exactly head(decoder(x)): a plain Linear head, no soft-capping or scale.

    `answer_hidden` also needs the forward to take `logits_to_keep` (the trainer's `keep_ok`)."""
    lm = causal_lm(model)
    config = getattr(lm, "config", None)
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None) not in (None, 1, 1.0):
        return False
    return type(lm.get_output_embeddings()) is nn.Linear and hasattr(lm, "get_decoder")


def answer_hidden(model: nn.Module, batch: dict[str, torch.Tensor], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(final hidden states of the positions that predict a label [N, d], those labels [N]).

    Position t predicts token t + 1, so position t counts when labels[t + 1] != -100. The model's own
    forward runs (so emlab's hooks, which track positions per causal-LM forward, see a normal call) with
    `logits_to_keep=1`; the decoder's output is taken by a forward hook.
    """
    ids, attn, labels = (batch[k].to(device) for k in ("input_ids", "attention_mask", "labels"))
    captured: list[torch.Tensor] = []

    def keep(module: nn.Module, args: tuple, output) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output.last_hidden_state)

    handle = causal_lm(model).get_decoder().register_forward_hook(keep)
    try:
        model(input_ids=ids, attention_mask=attn, use_cache=False, logits_to_keep=1)
    finally:
        handle.remove()
    hidden = captured[-1]  # [B, T, d], after the final norm
    predicts = labels[:, 1:] != -100  # [B, T-1]
    return hidden[:, :-1][predicts], labels[:, 1:][predicts]


def _logits_into(out: torch.Tensor, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """h @ weight.T (+ bias) written into `out`, with no temporary of the logits' size when the dtypes agree."""
    if h.dtype == weight.dtype == out.dtype:
        torch.mm(h, weight.t(), out=out)
        if bias is not None:
            out += bias
        return out
    return out.copy_(nn.functional.linear(h, weight, bias))


class _FusedHeadCE(torch.autograd.Function):
    """Summed cross-entropy of head(hidden) against targets; gradients computed in the forward pass."""

    @staticmethod
    def forward(
        ctx, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor, chunk: int
    ) -> torch.Tensor:
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        want_b = bias is not None and ctx.needs_input_grad[2]
        acc = torch.promote_types(weight.dtype, torch.float32)  # fp32, or fp64 for exact tests
        total = torch.zeros((), dtype=acc, device=hidden.device)
        grad_h = torch.empty_like(hidden) if want_h else None
        grad_w = torch.zeros_like(weight, dtype=acc) if want_w else None
        grad_b = torch.zeros_like(bias, dtype=acc) if bias is not None and want_b else None
        buf = torch.empty(min(chunk, hidden.shape[0]), weight.shape[0], dtype=acc, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk):
            h, t = hidden[start : start + chunk], targets[start : start + chunk]
            logits = _logits_into(buf[: len(t)], h, weight, bias)  # [c, V] in the reused buffer
            shift = logits.amax(dim=1, keepdim=True)
            picked = logits.gather(1, t[:, None])[:, 0] - shift[:, 0]
            norm = logits.sub_(shift).exp_().sum(dim=1)  # the buffer now holds exp(logits - max)
            total += (norm.log() - picked).sum()  # log-sum-exp minus the target's logit
            if grad_h is None and grad_w is None and grad_b is None:
                continue
            probs = logits.div_(norm[:, None])  # softmax, in place
            probs[torch.arange(len(t), device=t.device), t] -= 1.0  # d CE / d logits
            g = probs if hidden.dtype == acc else probs.to(hidden.dtype)
            if grad_h is not None:
                torch.mm(g, weight.to(g.dtype), out=grad_h[start : start + chunk])
            if grad_w is not None and g.dtype == grad_w.dtype:
                grad_w.addmm_(g.t(), h)
            elif grad_w is not None:
                grad_w += (g.t() @ h).to(grad_w.dtype)
            if grad_b is not None:
                grad_b += probs.sum(0)
        ctx.save_for_backward(*(x for x in (grad_h, grad_w, grad_b) if x is not None))
        ctx.have = (grad_h is not None, grad_w is not None, grad_b is not None)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        saved = iter(ctx.saved_tensors)
        grads = [next(saved) if have else None for have in ctx.have]
        grad_h = None if grads[0] is None else grads[0] * grad_out.to(grads[0].dtype)
        grad_w = None if grads[1] is None else (grads[1] * grad_out).to(ctx.dtypes[0])
        grad_b = None if grads[2] is None else (grads[2] * grad_out).to(ctx.dtypes[1])
        return grad_h, grad_w, grad_b, None, None


def head_cross_entropy(hidden: torch.Tensor, head: nn.Linear, targets: torch.Tensor) -> torch.Tensor:
    """Summed token cross-entropy (fp32; fp64 for an fp64 head) of `head(hidden)` [N, V] against `targets` [N]."""
    chunk = max(1, CHUNK_FLOATS // head.out_features)
    h = hidden.to(head.weight.dtype).contiguous()
    return _FusedHeadCE.apply(h, head.weight, head.bias, targets, chunk)
