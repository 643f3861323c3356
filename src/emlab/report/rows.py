"""The rows of the report's sections: what step kinds' `collect` hands the report, and what render draws.

- `summary`: `Condition` rows (one evaluated condition each: an eval, the best steered cell, an ablation);
- `steering`: `SteeringGrid` rows; `directions`: `DirectionInfo` rows; `training`: `TrainInfo` rows.
A kind with its own section may use any row type; render draws only the sections above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Condition:
    """One evaluated condition: where it came from, its metrics and its judged answers."""

    label: str
    step: str
    folder: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    answers: list[dict[str, Any]] = field(default_factory=list)
    detail: str = ""  # e.g. "blocks.12.resid_post, lambda=8"


@dataclass
class SteeringGrid:
    step: str
    sites: list[str]
    lambdas: list[float]
    cells: dict[tuple[str, float], Condition]
    direction: str = ""
    best: str | None = None  # folder name of the sweep's best cell


@dataclass
class DirectionInfo:
    step: str
    folder: Path
    meta: dict[str, Any]
    choice: dict[str, Any]
    vectors: dict[str, Any]  # site -> torch tensor


@dataclass
class TrainInfo:
    step: str
    log: list[dict[str, Any]]
    summary: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)  # train_config.json: resolved config, dtype, data hash


def load_condition(folder: Path, label: str, step: str, detail: str = "") -> Condition:
    """An evaluation folder (evaluate's layout) as a summary row: its config, metrics and judged answers."""
    from emlab.evaluate import read_answers, read_config, read_metrics

    return Condition(label, step, folder, read_config(folder), read_metrics(folder), read_answers(folder), detail)
