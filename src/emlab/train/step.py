"""One optimizer step: its learning rate (`lr_at`), its loss (`step_loss`) and its update (`optimizer_step`).

The loss of a step is the summed token cross-entropy over its micro-batches divided by the number
of label tokens in the whole step: a token-level mean, the same whatever the micro-batch split.
KL-regularised training (`kl_coef`) adds kl_coef x KL(fine-tuned || base) over the same tokens and with
the same normaliser, the base being the model with its adapters switched off (`step_terms`).
`loss_gradient` takes the same loss over a whole set of examples without touching `.grad` (for
gradient probes).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn

from emlab.chat import Encoded
from emlab.hooks import causal_lm
from emlab.train.config import TrainConfig
from emlab.train.data import collate, loss_tokens
from emlab.train.head_loss import answer_hidden, head_cross_entropy, supports_fused_head
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


_FUSED = {"on": True}  # `full_logits_loss()` turns the fused head off (benchmarks and equality tests)


@contextlib.contextmanager
def full_logits_loss() -> Iterator[None]:
    """Compute the loss the pre-fusion way (full logits from the earliest label) while the block runs."""
    before, _FUSED["on"] = _FUSED["on"], False
    try:
        yield
    finally:
        _FUSED["on"] = before


def _answer_logits(
    model: nn.Module, batch: dict[str, torch.Tensor], autocast: bool, device: str, keep_ok: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp32 logits [batch, positions, vocab], the token each position predicts [batch, positions]).

    The fallback for models whose logits are not head(decoder(x)): only logits from the first label's
    predecessor onward are computed (`logits_to_keep`); positions before every row's answer never
    carry a label.
    """
    ids, attn, labels = (batch[k].to(device) for k in ("input_ids", "attention_mask", "labels"))
    width = ids.shape[1]
    first = max(1, int((labels != -100).float().argmax(dim=1).min()))  # earliest label position in the batch
    keep = width - first + 1 if keep_ok else width
    extra = {"logits_to_keep": keep} if keep_ok else {}
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=autocast):
        logits = model(input_ids=ids, attention_mask=attn, use_cache=False, **extra).logits  # [batch, keep, vocab]
    return logits[:, :-1].float(), labels[:, width - keep + 1 :]


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    flat = logits.reshape(-1, logits.shape[-1])
    return nn.functional.cross_entropy(flat, targets.reshape(-1), ignore_index=-100, reduction="sum")


def kl_to_base(logits: torch.Tensor, base_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed KL(fine-tuned || base) over the label positions, each the full next-token distribution.

    KL(p || q) = sum_v p_v (log p_v - log q_v) with p = softmax(logits), q = softmax(base_logits);
    positions whose target is -100 (prompt, padding) count nothing.
    """
    logp = torch.log_softmax(logits, dim=-1)
    logq = torch.log_softmax(base_logits, dim=-1)
    per_position = (logp.exp() * (logp - logq)).sum(dim=-1)  # [batch, positions]
    return per_position[targets != -100].sum()


def _label_logits(
    model: nn.Module, batch: dict[str, torch.Tensor], autocast: bool, device: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp32 logits [N label positions, vocab], their targets [N]): the head only where a label is predicted."""
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=autocast):
        hidden, targets = answer_hidden(model, batch, device)
        return causal_lm(model).get_output_embeddings()(hidden).float(), targets


def step_loss(
    model: nn.Module, batch: dict[str, torch.Tensor], n_tokens: int, autocast: bool, device: str, keep_ok: bool
) -> torch.Tensor:
    """Summed cross-entropy over the batch's label tokens divided by the step's label count."""
    return step_terms(model, batch, n_tokens, autocast, device, keep_ok)[0]


def step_terms(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    n_tokens: int,
    autocast: bool,
    device: str,
    keep_ok: bool,
    kl_coef: float = 0.0,
) -> tuple[torch.Tensor, float, float]:
    """(objective to backpropagate, cross-entropy, KL) of one micro-batch, each divided by the step's label count.

    With kl_coef > 0 the objective is CE + kl_coef * KL(fine-tuned || base), the base logits coming from
    the same forward with the LoRA adapters switched off (peft's `disable_adapter`), without gradient.
    Where the model allows it (`supports_fused_head`), CE alone goes through the fused chunked head
    (emlab.train.head_loss; not under bf16 autocast) and the other paths compute logits only at label
    positions.
    """
    fused = _FUSED["on"] and keep_ok and supports_fused_head(model)
    if fused and kl_coef == 0 and not autocast:  # bf16 autocast (full fine-tuning) keeps autograd's head
        hidden, targets = answer_hidden(model, batch, device)
        ce = head_cross_entropy(hidden, causal_lm(model).get_output_embeddings(), targets) / n_tokens
        return ce, float(ce.detach()), 0.0

    def logits_of() -> tuple[torch.Tensor, torch.Tensor]:
        if fused:
            return _label_logits(model, batch, autocast, device)
        return _answer_logits(model, batch, autocast, device, keep_ok)

    logits, targets = logits_of()
    ce = _cross_entropy(logits, targets) / n_tokens
    if kl_coef == 0:
        return ce, float(ce.detach()), 0.0
    with torch.no_grad(), model.disable_adapter():  # type: ignore[operator]  # a PeftModel (TrainConfig checks lora)
        base_logits, _ = logits_of()
    kl = kl_to_base(logits, base_logits, targets) / n_tokens
    return ce + kl_coef * kl, float(ce.detach()), float(kl.detach())


def optimizer_step(
    setup: TrainSetup, opt: torch.optim.Optimizer, batches: list[dict], lr: float, config: TrainConfig, keep_ok: bool
) -> tuple[float, float, float, float]:
    """One AdamW step over `batches` (gradient accumulation); returns (CE loss, KL, pre-clip grad norm, lr).

    The gradient is that of CE + config.kl_coef * KL (KL is 0 when kl_coef is 0).
    """
    n_tokens = sum(loss_tokens(b) for b in batches)
    total_ce = total_kl = 0.0
    for batch in batches:
        objective, ce, kl = step_terms(
            setup.model, batch, n_tokens, setup.autocast, setup.device, keep_ok, config.kl_coef
        )
        objective.backward()
        total_ce += ce
        total_kl += kl
    clip = config.max_grad_norm if config.max_grad_norm is not None else float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(setup.params, clip))
    for group in opt.param_groups:
        group["lr"] = lr
    opt.step()
    opt.zero_grad(set_to_none=True)
    return total_ce, total_kl, grad_norm, lr


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
