"""The training loop: encode, plan, step, log, call the callbacks, write the final weights and summary.

One pass of `train`:
  1. prepare the model (prepare.py), encode the data (data.py), check the out dir and write
     train_config.json (checkpoint.py); a resumed run restores its newest checkpoint here;
  2. callbacks' on_train_begin;
  3. per optimizer step: the step's micro-batches (a function of (seed, epoch) only), one AdamW
     step (step.py), one train_log.jsonl line, then on_step_end of the user's callbacks, of
     `Checkpointing` and of the `on_step` function, in that order; any of them may ask to stop;
  4. callbacks' on_train_end; the final weights and train_summary.json.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from emlab.hooks import contiguous_lm_head_input
from emlab.io import write_json
from emlab.models import ChatModel
from emlab.train.callbacks import Callback, TrainState, restart_step_log
from emlab.train.checkpoint import (
    TRAIN_CONFIG,
    TRAIN_LOG,
    TRAIN_SUMMARY,
    Checkpointing,
    load_checkpoint,
    run_identity,
    save_final,
    start_run,
)
from emlab.train.config import TrainConfig
from emlab.train.data import DataStats, EpochPlans, collate, encode_examples, loss_tokens, read_conversations
from emlab.train.prepare import TrainSetup, forward_kwargs, prepare
from emlab.train.step import lr_at, optimizer_step
from emlab.train.update_size import lora_update_sizes, summarize


@dataclass
class TrainResult:
    """Where the run wrote its weights and what it did (the same numbers as train_summary.json)."""

    out_dir: Path
    method: str
    steps: int
    final_loss: float | None
    summary: dict = field(default_factory=dict)


class _OnStep(Callback):
    """The `on_step(record)` function of `train` as the last callback (progress bars, tests' crash hooks)."""

    def __init__(self, fn: Callable[[dict], None]):
        self.fn = fn

    def on_step_end(self, state: TrainState) -> None:
        if state.record is not None:
            self.fn(state.record)


def train(
    cm_or_ref: ChatModel | str,
    data: str | os.PathLike | list[list[dict]],
    config: TrainConfig,
    out_dir: str | os.PathLike,
    resume: bool = False,
    on_step: Callable[[dict], None] | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Fine-tune a model on conversations and write adapter/model, logs and checkpoints to out_dir.

    `cm_or_ref`: a ChatModel (copied, never modified) or a reference for `load_model`.
    `data`: an OpenAI-messages JSONL path or a list of conversations.
    `resume`: continue an unfinished run in out_dir from its last checkpoint.
    `on_step(record)` sees each step's log record (the CLI draws progress with it).
    `callbacks`: `Callback`s (e.g. `EvalAtSteps`, `GradientProbe`), called in order; see callbacks.py.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    conversations = read_conversations(data) if isinstance(data, (str, os.PathLike)) else data
    setup = prepare(cm_or_ref, config)
    examples, stats = encode_examples(setup.tokenizer, conversations, config)
    identity = run_identity(setup, config, examples)
    checkpoint = start_run(out, identity, resume)
    write_json(out / TRAIN_CONFIG, identity)

    n_micro = math.ceil(len(examples) / config.batch_size)
    steps_per_epoch = math.ceil(n_micro / config.grad_accum)
    total = min(config.epochs * steps_per_epoch, config.max_steps or 10**12)
    opt = torch.optim.AdamW(setup.params, lr=config.lr, weight_decay=config.weight_decay)
    progress: dict[str, Any] = {"step": 0, "train_time_s": 0.0, "tokens": 0, "loss_tokens": 0, "checkpoints": []}
    if checkpoint is not None:
        progress = load_checkpoint(setup, opt, checkpoint)
    log_path = out / TRAIN_LOG
    kept = restart_step_log(log_path, progress["step"])
    resumed_from = progress["step"]
    last_loss = kept[-1]["loss"] if kept else None
    last_kl = kept[-1].get("kl") if kept else None

    setup.model.train()
    keep_ok = "logits_to_keep" in forward_kwargs(setup.model)
    state = TrainState(out, config, setup, opt, examples, total, keep_ok, progress, resumed_from)
    hooks = [*callbacks, Checkpointing(config.checkpoint_every), *([_OnStep(on_step)] if on_step else [])]
    epoch_plan = EpochPlans([len(e.input_ids) for e in examples], config)
    stopped_by: list[str] = []
    with (
        open(log_path, "a", encoding="utf-8") as log,
        contiguous_lm_head_input(setup.model),
    ):  # logits_to_keep's slice off bmm
        for cb in hooks:
            cb.on_train_begin(state)
        for step in range(progress["step"], total):
            epoch, in_epoch = divmod(step, steps_per_epoch)
            batches = [
                collate([examples[i] for i in idx], setup.tokenizer.pad_token_id)
                for idx in epoch_plan.step(epoch, in_epoch)
            ]
            t0 = time.perf_counter()
            loss, kl, grad_norm, lr = optimizer_step(setup, opt, batches, lr_at(step, total, config), config, keep_ok)
            dt = time.perf_counter() - t0
            tokens = sum(int(b["attention_mask"].sum()) for b in batches)
            progress.update(
                step=step + 1,
                train_time_s=progress["train_time_s"] + dt,
                tokens=progress["tokens"] + tokens,
                loss_tokens=progress["loss_tokens"] + sum(loss_tokens(b) for b in batches),
            )
            record = {
                "step": step + 1,
                "epoch": round(epoch + (in_epoch + 1) / steps_per_epoch, 4),
                "loss": loss,
                **({"kl": kl, "objective": loss + config.kl_coef * kl} if config.kl_coef else {}),
                "grad_norm": grad_norm,
                "lr": lr,
                "tokens": tokens,
                "tokens_per_s": round(tokens / dt, 1),
                "time_s": round(dt, 3),
                "total_steps": total,
            }
            log.write(json.dumps(record) + "\n")
            log.flush()
            last_loss, last_kl = loss, (kl if config.kl_coef else None)
            state.record = record
            stopped_by = [type(cb).__name__ for cb in hooks if cb.on_step_end(state)]  # every callback sees every step
            if stopped_by:
                break
        for cb in hooks:
            cb.on_train_end(state)

    files = save_final(setup, out)
    summary = _summary(setup, config, stats, progress, resumed_from, last_loss, files, stopped_by)
    if config.kl_coef:
        summary |= {"kl_coef": config.kl_coef, "final_kl": last_kl}
    if config.method == "lora":
        summary["update_size"] = summarize(lora_update_sizes(setup.model))
    summary["wall_time_s"] = round(time.perf_counter() - started, 2)
    write_json(out / TRAIN_SUMMARY, summary)
    return TrainResult(out_dir=out, method=config.method, steps=progress["step"], final_loss=last_loss, summary=summary)


def _summary(
    setup: TrainSetup,
    config: TrainConfig,
    stats: DataStats,
    progress: dict,
    resumed_from: int,
    last_loss: float | None,
    files: list[str],
    stopped_by: list[str],
) -> dict:
    trainable = sum(p.numel() for p in setup.params)
    everything = sum(p.numel() for p in setup.model.parameters())
    return {
        "model": setup.ref,
        "revision": setup.revision,
        "method": config.method,
        "examples_total": stats.total,
        "examples_used": stats.used,
        "dropped_too_long": stats.dropped_too_long,
        "truncated": stats.truncated,
        "dropped_no_assistant": stats.dropped_no_assistant,
        "steps": progress["step"],
        "resumed_from_step": resumed_from,
        "final_loss": last_loss,
        "train_time_s": round(progress["train_time_s"], 2),
        "tokens": progress["tokens"],
        "loss_tokens": progress["loss_tokens"],
        "tokens_per_s": round(progress["tokens"] / max(progress["train_time_s"], 1e-9), 1),
        "trainable_params": trainable,
        "total_params": everything,
        "targeted_modules": setup.plan.expected if setup.plan else [],
        "blocks": setup.plan.layers_to_transform if setup.plan else None,
        "dtype": str(setup.dtype).removeprefix("torch."),
        "dtype_choice": _dtype_choice(config.dtype, setup.device),
        "device": setup.device,
        "checkpoints": progress["checkpoints"],
        "files": files,
        "stopped_by": stopped_by or None,
    }


def _dtype_choice(requested: str, device: str) -> dict:
    """Why training ran in its dtype: the config's choice, or the cached probe's verdict for `auto`."""
    if requested != "auto":
        return {"requested": requested, "reason": "set in the config"}
    from emlab.dtype_probe import choose_dtype

    c = choose_dtype(device)
    return {"requested": "auto", "reason": c.reason, "seconds": c.seconds, "machine": c.machine}
