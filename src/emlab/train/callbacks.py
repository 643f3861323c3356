"""The loop's callback protocol: what a callback sees (`TrainState`) and when it is called (`Callback`).

The loop (loop.py) calls, in the order the callbacks were given:
  on_train_begin(state)  once, after a resumed run's checkpoint is restored (state.step is the
                         step training continues from: 0 for a fresh run);
  on_step_end(state)     after every optimizer step and its train_log.jsonl line; returning True
                         asks the loop to stop after this step (every callback still sees it);
  on_train_end(state)    after the last step (or a stop), before the final weights and
                         train_summary.json are written. Not called when training raises.

A callback may read anything in the state, but must leave the weights, the optimizer state, the
parameters' `.grad` (None between steps) and the RNG as it found them: the data order depends
only on (seed, epoch), but dropout draws from the global torch RNG, so a callback that consumes
it would change the training trajectory. `scoped_for_callback` restores all but the weights.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from emlab.chat import Encoded
from emlab.errors import EmlabError
from emlab.io import iter_jsonl, write_jsonl
from emlab.models import ChatModel
from emlab.train.config import TrainConfig
from emlab.train.prepare import TrainSetup


@dataclass
class TrainState:
    """The run as callbacks see it, after `step` optimizer steps."""

    out_dir: Path
    config: TrainConfig
    setup: TrainSetup  # the model being trained, tokenizer, device, dtype, trainable params
    optimizer: torch.optim.Optimizer
    examples: list[Encoded]  # the encoded training set, in dataset order
    total_steps: int  # the schedule's length (a stop requested by a callback ends earlier)
    keep_ok: bool  # the model's forward takes logits_to_keep (step_loss computes only the answer logits)
    progress: dict  # step, train_time_s, tokens, loss_tokens, checkpoints: what a checkpoint stores
    resumed_from: int = 0  # the step a resumed run continued from (0: a fresh run)
    record: dict | None = None  # the last step's train_log.jsonl record (None before the first step)

    @property
    def step(self) -> int:
        """Optimizer steps taken so far (the weights are those after this many steps)."""
        return self.progress["step"]

    @property
    def model(self) -> torch.nn.Module:
        return self.setup.model

    @property
    def tokenizer(self):
        return self.setup.tokenizer

    def chat_model(self) -> ChatModel:
        """The model being trained as a ChatModel (for emlab.sampling, judges); not a copy."""
        where = f"{self.out_dir}@step-{self.step:05d}"
        return ChatModel(
            model=self.model,
            tokenizer=self.tokenizer,
            ref=self.setup.ref,
            revision=self.setup.revision,
            adapter=where,
            info={"training_step": self.step},
        )


class Callback:
    """Base class with no-op hooks; override the ones you need (see the module docstring)."""

    def on_train_begin(self, state: TrainState) -> None:
        pass

    def on_step_end(self, state: TrainState) -> bool | None:
        """Return True to stop training after this step."""
        return None

    def on_train_end(self, state: TrainState) -> None:
        pass


@dataclass(frozen=True)
class StepSchedule:
    """Which steps a callback acts at: every `every` steps and/or the listed `steps` (0 = before training)."""

    every: int | None = None
    steps: tuple[int, ...] = ()

    @classmethod
    def of(cls, every: int | None, steps, owner: str) -> StepSchedule:
        if every is None and not steps:
            raise EmlabError(
                f"{owner}: every=None and steps={steps!r} select no step; set every (e.g. every=5) or steps (e.g. steps=[0, 10, 20])"
            )
        if every is not None and every < 1:
            raise EmlabError(f"{owner}: every={every} must be >= 1 (or None with steps=[...])")
        chosen = tuple(sorted({int(s) for s in steps or ()}))
        if chosen and chosen[0] < 0:
            raise EmlabError(f"{owner}: steps={list(chosen)} must be >= 0 (0 = the weights before the first step)")
        return cls(every, chosen)

    def due(self, step: int) -> bool:
        return step in self.steps or (self.every is not None and step > 0 and step % self.every == 0)

    def check(self, total_steps: int, owner: str) -> None:
        late = [s for s in self.steps if s > total_steps]
        if late:
            raise EmlabError(
                f"{owner}: steps {late} are beyond this run's total_steps={total_steps}; drop them or train longer (epochs / max_steps)"
            )


@contextlib.contextmanager
def scoped_for_callback(state: TrainState, mode: str = "eval") -> Iterator[None]:
    """Run a block with the model in `mode` under a forked RNG; restore the mode and drop any `.grad` on exit."""
    model = state.model
    was_training = model.training
    devices = [torch.cuda.current_device()] if state.setup.device == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        model.train(mode == "train")
        try:
            yield
        finally:
            model.train(was_training)
            for p in state.setup.params:
                p.grad = None


def restart_step_log(path: Path, step: int) -> list[dict]:
    """Start a per-step JSONL log for a run continuing after `step` steps.

    A resumed run (step > 0) keeps the records of steps <= step (they were written before the
    checkpoint it resumes from) and drops later ones, which it will write again; a run starting
    at step 0 starts an empty log. Returns the kept records.
    """
    kept = [r for _, r in iter_jsonl(path) if r["step"] <= step] if step > 0 and path.exists() else []
    write_jsonl(path, kept)
    return kept


def append_record(path: Path, record: dict, owner: str) -> None:
    """Append one JSON line to a per-step log (flushed, so a crash loses at most the line being written)."""
    try:
        line = json.dumps(record)
    except (TypeError, ValueError) as e:
        raise EmlabError(
            f"{owner}: record for step {record.get('step')} is not JSON ({e}); return numbers, strings, lists or dicts"
        ) from None
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
