"""One optimizer step: its learning rate (`lr_at`), its loss (`step_loss`) and its update (`optimizer_step`).

The loss of a step is the summed token cross-entropy over its micro-batches divided by the number
of label tokens in the whole step: a token-level mean, the same whatever the micro-batch split.
`loss_gradient` takes the same loss over a whole set of examples without touching `.grad` (for
gradient probes).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from emlab.chat import Encoded
from emlab.train.config import TrainConfig
from emlab.train.data import collate, loss_tokens
from emlab.train.prepare import TrainSetup


def lr_at(step: int, total: int, config: TrainConfig) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total`; no step runs at lr 0."""
    warmup = math.ceil(config.warmup_ratio * total)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    if config.lr_schedule == "constant":
        return config.lr
    span = max(1, total - warmup)
    progress = (step - warmup) / span
    if config.lr_schedule == "linear":
        return config.lr * (1.0 - progress)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def step_loss(
    model: nn.Module, batch: dict[str, torch.Tensor], n_tokens: int, autocast: bool, device: str, keep_ok: bool
) -> torch.Tensor:
    """Summed cross-entropy over the batch's label tokens divided by the step's label count.

    Only logits from the first label's predecessor onward are computed (`logits_to_keep`):
    positions before every row's answer never carry a label.
    """
    ids, attn, labels = (batch[k].to(device) for k in ("input_ids", "attention_mask", "labels"))
    width = ids.shape[1]
    first = max(1, int((labels != -100).float().argmax(dim=1).min()))  # earliest label position in the batch
    keep = width - first + 1 if keep_ok else width
    extra = {"logits_to_keep": keep} if keep_ok else {}
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=autocast):
        logits = model(input_ids=ids, attention_mask=attn, use_cache=False, **extra).logits  # [batch, keep, vocab]
    targets = labels[:, width - keep + 1 :]  # the token each kept position predicts
    logits = logits[:, :-1].float()
    return (
        nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum"
        )
        / n_tokens
    )


def optimizer_step(
    setup: TrainSetup, opt: torch.optim.Optimizer, batches: list[dict], lr: float, config: TrainConfig, keep_ok: bool
) -> tuple[float, float, float]:
    """One AdamW step over `batches` (gradient accumulation); returns (loss, pre-clip grad norm, lr)."""
    n_tokens = sum(loss_tokens(b) for b in batches)
    total_loss = 0.0
    for batch in batches:
        loss = step_loss(setup.model, batch, n_tokens, setup.autocast, setup.device, keep_ok)
        loss.backward()
        total_loss += float(loss.detach())
    clip = config.max_grad_norm if config.max_grad_norm is not None else float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(setup.params, clip))
    for group in opt.param_groups:
        group["lr"] = lr
    opt.step()
    opt.zero_grad(set_to_none=True)
    return total_loss, grad_norm, lr


def loss_gradient(
    setup: TrainSetup, examples: list[Encoded], batch_size: int, keep_ok: bool
) -> tuple[float, torch.Tensor, int]:
    """The token-level mean loss over `examples` and its gradient over the trainable parameters.

    Returns (loss, gradient flattened in `setup.params` order [n_trainable] fp32, label tokens).
    Uses torch.autograd.grad, so the parameters' `.grad` is never touched; the model's train/eval
    mode is the caller's choice.
    """
    batches = [
        collate(examples[i : i + batch_size], setup.tokenizer.pad_token_id) for i in range(0, len(examples), batch_size)
    ]
    n_tokens = sum(loss_tokens(b) for b in batches)
    grads = [torch.zeros_like(p, dtype=torch.float32) for p in setup.params]
    total = 0.0
    for batch in batches:
        loss = step_loss(setup.model, batch, n_tokens, setup.autocast, setup.device, keep_ok)
        for acc, g in zip(grads, torch.autograd.grad(loss, setup.params, allow_unused=True), strict=True):
            if g is not None:
                acc += g.float()
        total += float(loss.detach())
    return total, torch.cat([g.reshape(-1) for g in grads]), n_tokens
