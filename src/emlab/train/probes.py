"""Gradient probes: does the narrow training loss pull against a reference loss? (a "gradient conflict" study)

At chosen steps, on the current weights, the gradient g_n of the narrow loss (the training set,
or another set) and the gradient g_r of a reference loss (e.g. good answers to the same
questions) are taken over the trainable parameters, flattened in one vector each, and

    cosine = <g_n, g_r> / (|g_n| |g_r|)

is logged with both norms and losses. Each loss is the token-level mean cross-entropy over its
whole set (as in training: assistant tokens only), computed in micro-batches of the config's
batch_size with the model in eval mode (no dropout), so a probe is deterministic. The gradients
come from torch.autograd.grad (no `.grad` is touched) under a forked RNG: probing never changes
the training trajectory (a test checks bit-identical final weights).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

import torch

from emlab.chat import Encoded
from emlab.io import iter_jsonl
from emlab.train.callbacks import (
    Callback,
    StepSchedule,
    TrainState,
    append_record,
    restart_step_log,
    scoped_for_callback,
)
from emlab.train.data import encode_examples, read_conversations
from emlab.train.step import loss_gradient

GRAD_PROBE_LOG = "grad_probes.jsonl"  # one record per probe: step, cosine, dot, norms, losses, examples, tokens


def read_grad_probes(folder: str | os.PathLike, log_file: str = GRAD_PROBE_LOG) -> list[dict]:
    """The records a GradientProbe callback wrote into a run folder, in step order."""
    return [rec for _, rec in iter_jsonl(Path(folder) / log_file)]


Conversations = str | os.PathLike | list[list[dict]]


class GradientProbe(Callback):
    """Log the cosine and norms of the narrow-loss and reference-loss gradients at chosen steps.

    `reference`: conversations (a list, or an OpenAI-messages JSONL path) for the reference loss.
    `narrow`: conversations for the narrow loss; None = the run's training examples.
    Both are encoded like the training data (chat template, system prompt, max_length/truncation
    of the run's config). `max_examples`: use only the first N of each set (time bound).
    `every` / `steps`: as EvalAtSteps (0 = the weights before the first step; fresh runs only).
    Record: {"step", "cosine", "dot", "narrow_norm", "reference_norm", "narrow_loss",
    "reference_loss", "narrow_examples", "reference_examples", "narrow_tokens", "reference_tokens",
    "params", "time_s"}.
    """

    def __init__(
        self,
        reference: Conversations,
        *,
        every: int | None = None,
        steps: Iterable[int] = (),
        narrow: Conversations | None = None,
        max_examples: int | None = None,
        log_file: str = GRAD_PROBE_LOG,
    ):
        self.reference, self.narrow = reference, narrow
        self.schedule = StepSchedule.of(every, tuple(steps), "GradientProbe")
        self.max_examples, self.log_file = max_examples, log_file

    def on_train_begin(self, state: TrainState) -> None:
        self.schedule.check(state.total_steps, "GradientProbe")
        self.sets = {
            "narrow": state.examples if self.narrow is None else self._encode(state, self.narrow),
            "reference": self._encode(state, self.reference),
        }
        self.sets = {k: v[: self.max_examples] for k, v in self.sets.items()}
        self.path = state.out_dir / self.log_file
        restart_step_log(self.path, state.step)
        if state.step == 0 and self.schedule.due(0):
            self._probe(state)

    def on_step_end(self, state: TrainState) -> None:
        if self.schedule.due(state.step):
            self._probe(state)

    @staticmethod
    def _encode(state: TrainState, data: Conversations) -> list[Encoded]:
        conversations = read_conversations(data) if isinstance(data, (str, os.PathLike)) else data
        return encode_examples(state.tokenizer, conversations, state.config)[0]

    def _probe(self, state: TrainState) -> None:
        t0 = time.perf_counter()
        record: dict = {"step": state.step}
        grads = {}
        with scoped_for_callback(state, mode="eval"):
            for name, examples in self.sets.items():
                loss, grads[name], n_tokens = loss_gradient(
                    state.setup, examples, state.config.batch_size, state.keep_ok
                )
                record |= {f"{name}_loss": loss, f"{name}_examples": len(examples), f"{name}_tokens": n_tokens}
        record |= gradient_cosine(grads["narrow"], grads["reference"])
        record |= {"params": int(grads["narrow"].numel()), "time_s": round(time.perf_counter() - t0, 3)}
        append_record(self.path, record, "GradientProbe")


def gradient_cosine(narrow: torch.Tensor, reference: torch.Tensor) -> dict[str, float | None]:
    """cosine, dot and both norms of two flat gradients, computed in float64 (cosine None when a norm is 0)."""
    a, b = narrow.double(), reference.double()
    dot, na, nb = float(a @ b), float(a.norm()), float(b.norm())
    return {
        "cosine": dot / (na * nb) if na > 0 and nb > 0 else None,
        "dot": dot,
        "narrow_norm": na,
        "reference_norm": nb,
    }
