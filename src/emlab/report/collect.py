"""Read a run folder into plain data for the report — only what is on disk, nothing recomputed from models.

The collector asks each committed step's kind (`emlab.experiments.kinds`) for its rows:
a kind's `collect` returns (section, row) pairs (rows: `emlab.report.rows`). The
built-in kinds give:
- `eval.<name>`: one summary row labelled by the entry name (base, organism, control);
- `steer.<name>`: a site x lambda grid of evaluation folders, and as its "steered" summary
  row the sweep's best cell (highest EM rate over all answers, then coherence, then smaller |lambda|);
- `ablate.<name>`: "ablated" (or "random-ablated" for the random-direction baseline);
- `direction.<name>` and `train.<name>`: a directions row and a training row.
Anything missing is recorded with the reason under the kind's `report_section`, so the
report can say so instead of hiding it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import emlab.experiments.steps  # noqa: F401  (registers the built-in step kinds)
from emlab.errors import EmlabError
from emlab.experiments.kinds import StepOutput, get_step_kind
from emlab.report.rows import Condition, DirectionInfo, SteeringGrid, TrainInfo, load_condition
from emlab.store import Run

__all__ = ["Condition", "DirectionInfo", "ReportData", "SteeringGrid", "TrainInfo", "collect", "load_condition"]


@dataclass
class ReportData:
    run: Path
    manifest: dict[str, Any]
    sections: dict[str, list[Any]] = field(default_factory=dict)  # section -> rows, in manifest step order
    missing: dict[str, list[str]] = field(default_factory=dict)  # section -> reasons

    def note_missing(self, section: str, reason: str) -> None:
        self.missing.setdefault(section, []).append(reason)

    def rows(self, section: str) -> list[Any]:
        return self.sections.setdefault(section, [])

    @property
    def conditions(self) -> list[Condition]:
        return self.rows("summary")

    @property
    def steering(self) -> list[SteeringGrid]:
        return self.rows("steering")

    @property
    def directions(self) -> list[DirectionInfo]:
        return self.rows("directions")

    @property
    def training(self) -> list[TrainInfo]:
        return self.rows("training")


def collect(run_dir: str | Path) -> ReportData:
    run = Run.open(run_dir)
    m = run.manifest()
    data = ReportData(run=run.root, manifest=m)
    spec = m.get("spec", {})
    for name, info in m["steps"].items():
        kind_name = info.get("kind", name.split(".")[0])
        try:
            kind = get_step_kind(kind_name)
        except EmlabError as e:
            data.note_missing(kind_name, f"step {name}: {e}")
            continue
        if kind.report_section is None:  # e.g. the report itself
            continue
        folder = run.step_dir(name)
        if not folder.exists():
            data.note_missing(kind.report_section, f"step {name} is {info.get('status', '?')}: no committed output")
            continue
        entry = name.partition(".")[2] if kind.entries else kind.name
        out = StepOutput(name, kind.name, entry, folder, _entry_config(spec, kind, entry), info.get("summary") or {})
        try:
            rows = kind.collect(out)
        except EmlabError as e:
            data.note_missing(kind.report_section, f"step {name}: {e}")
            continue
        for section, row in rows:
            data.rows(section).append(row)
    return data


def _entry_config(spec: dict, kind, entry: str) -> dict[str, Any]:
    """The step's entry in the run's resolved spec (the kind's section, then the entry), {} when absent."""
    node: Any = spec
    for part in kind.section.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if kind.entries:
        node = node.get(entry) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}
