"""Evaluation during training: call a function on the model at chosen steps and log what it returns.

For the training-dynamics study: sample and judge the organism as it forms, without saving and
reloading checkpoints. The function runs with the model in eval mode under a forked RNG, and the
train mode and RNG state are restored afterwards, so evaluating never changes the trajectory
(a test checks that the final weights are bit-identical with and without it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from emlab.errors import EmlabError
from emlab.io import iter_jsonl
from emlab.train.callbacks import (
    Callback,
    StepSchedule,
    TrainState,
    append_record,
    restart_step_log,
    scoped_for_callback,
)

EVAL_LOG = "eval_log.jsonl"  # one record per evaluation: {"step": s, **what fn returned, "time_s": t}


def read_eval_log(folder: str | os.PathLike, log_file: str = EVAL_LOG) -> list[dict]:
    """The records an EvalAtSteps callback wrote into a run folder, in step order."""
    return [rec for _, rec in iter_jsonl(Path(folder) / log_file)]


class EvalAtSteps(Callback):
    """Call `fn(state)` on the weights after the chosen steps; log {"step", **fn's dict, "time_s"}.

    `fn(state: TrainState) -> dict | None`: `state.chat_model()` is the model being trained as a
    ChatModel (for emlab.sampling / judges), `state.step` the steps taken. fn must not change the
    weights; what it does to the RNG, the train/eval mode and `.grad` is undone.
    `every`: every k steps (k, 2k, ...); `steps`: explicit steps, 0 = before the first step
    (fresh runs only). At least one of them. `log_file`: the JSONL file in the run folder.
    A resumed run keeps the records up to its checkpoint and evaluates the later steps again.
    """

    def __init__(
        self,
        fn: Callable[[TrainState], dict | None],
        *,
        every: int | None = None,
        steps: Iterable[int] = (),
        log_file: str = EVAL_LOG,
    ):
        self.fn = fn
        self.schedule = StepSchedule.of(every, tuple(steps), "EvalAtSteps")
        self.log_file = log_file

    def on_train_begin(self, state: TrainState) -> None:
        self.schedule.check(state.total_steps, "EvalAtSteps")
        self.path = state.out_dir / self.log_file
        restart_step_log(self.path, state.step)
        if state.step == 0 and self.schedule.due(0):
            self._evaluate(state)

    def on_step_end(self, state: TrainState) -> None:
        if self.schedule.due(state.step):
            self._evaluate(state)

    def _evaluate(self, state: TrainState) -> None:
        t0 = time.perf_counter()
        with scoped_for_callback(state, mode="eval"):
            result = self.fn(state)
        if result is not None and not isinstance(result, dict):
            raise EmlabError(
                f"EvalAtSteps: fn returned {type(result).__name__} at step {state.step}; return a dict of values to log (or None)"
            )
        result = result or {}
        taken = [k for k in ("step", "time_s") if k in result]
        if taken:
            raise EmlabError(
                f"EvalAtSteps: fn returned the keys {taken} at step {state.step}; the callback records step and time_s itself, rename them"
            )
        append_record(
            self.path, {"step": state.step, **result, "time_s": round(time.perf_counter() - t0, 3)}, "EvalAtSteps"
        )
