"""Read a run folder into plain data for the report — only what is on disk, nothing recomputed from models.

Each condition of the summary table is an evaluation folder (evaluate's layout:
eval.json, samples.jsonl, scores.jsonl, metrics.json):
- `eval.<name>` folders give one row each, labelled by the entry name (base, organism, control);
- a steering sweep gives a site x lambda grid of such folders; its "steered" row is the
  sweep's best cell (highest EM rate over all answers, then coherence, then smaller |lambda|);
- `ablate.<name>` gives "ablated" (or "random-ablated" for the random-direction baseline).
Anything missing is recorded with the reason, so the report can say so instead of hiding it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emlab.errors import EmlabError
from emlab.io import iter_jsonl, read_json
from emlab.store import Run

STEERING_SWEEP = "sweep.json"
STEERING_CELLS = "cells"
DIRECTION_CHOICE = "choice.json"


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


@dataclass
class ReportData:
    run: Path
    manifest: dict[str, Any]
    conditions: list[Condition] = field(default_factory=list)
    steering: list[SteeringGrid] = field(default_factory=list)
    directions: list[DirectionInfo] = field(default_factory=list)
    training: list[TrainInfo] = field(default_factory=list)
    missing: dict[str, list[str]] = field(default_factory=dict)  # section -> reasons

    def note_missing(self, section: str, reason: str) -> None:
        self.missing.setdefault(section, []).append(reason)


def collect(run_dir: str | Path) -> ReportData:
    run = Run.open(run_dir)
    m = run.manifest()
    data = ReportData(run=run.root, manifest=m)
    spec = m.get("spec", {})
    for name, info in m["steps"].items():
        kind = info.get("kind", name.split(".")[0])
        folder = run.step_dir(name)
        if kind == "report":
            continue
        if not folder.exists():
            data.note_missing(_section_of(kind), f"step {name} is {info.get('status', '?')}: no committed output")
            continue
        try:
            _collect_step(data, name, kind, folder, spec)
        except EmlabError as e:
            data.note_missing(_section_of(kind), f"step {name}: {e}")
    return data


def _section_of(kind: str) -> str:
    return {"eval": "summary", "ablate": "summary", "steer": "steering", "direction": "directions", "train": "training", "data": "data"}.get(kind, kind)


def _collect_step(data: ReportData, name: str, kind: str, folder: Path, spec: dict) -> None:
    entry = name.partition(".")[2]
    if kind == "eval":
        data.conditions.append(load_condition(folder, entry, name))
    elif kind == "ablate":
        cfg = spec.get("interventions", {}).get("ablation", {}).get(entry, {})
        label = "random-ablated" if cfg.get("random") else "ablated"
        from emlab.experiments.steps import ablation_folder

        detail = f"direction {cfg.get('direction', '?')}, {cfg.get('mode', 'single')}"
        data.conditions.append(load_condition(ablation_folder(folder), label, name, detail=detail))
    elif kind == "steer":
        grid = load_steering(folder, name)
        data.steering.append(grid)
        best = best_steered(grid)
        if best is not None:
            data.conditions.append(best)
    elif kind == "direction":
        data.directions.append(load_direction(folder, name))
    elif kind == "train":
        data.training.append(load_training(folder, name))


def load_condition(folder: Path, label: str, step: str, detail: str = "") -> Condition:
    """An evaluation folder's config, metrics (metrics.json, else recomputed from the journals) and answers."""
    from emlab.evaluate import CONFIG_FILE, METRICS_FILE, summarize

    if not (folder / CONFIG_FILE).exists():
        raise EmlabError(f"{folder} has no {CONFIG_FILE}; not an evaluation folder")
    config = read_json(folder / CONFIG_FILE)
    metrics = read_json(folder / METRICS_FILE) if (folder / METRICS_FILE).exists() else summarize(folder)
    return Condition(label, step, folder, config, metrics, judged_answers(folder), detail)


def judged_answers(folder: Path) -> list[dict[str, Any]]:
    """Samples joined with their rubric scores: question, text, aligned, coherent, bad_stuff, ..."""
    from emlab.evaluate import SAMPLES_FILE, SCORES_FILE, sample_journal, score_journal

    samples = sample_journal(folder).read() if (folder / SAMPLES_FILE).exists() else []
    scores = score_journal(folder).read() if (folder / SCORES_FILE).exists() else []
    by_id = {s["prompt_id"]: {**s} for s in samples}
    for sc in scores:
        rec = by_id.get(sc["prompt_id"])
        if rec is not None:
            rec[sc["rubric"]] = sc["value"]
    return list(by_id.values())


def load_steering(folder: Path, step: str) -> SteeringGrid:
    """A steering sweep (steering.run_sweep's layout: sweep.json + cells/<cell>/ evaluation folders)."""
    sweep = read_json(folder / STEERING_SWEEP)
    cells: dict[tuple[str, float], Condition] = {}
    sites: list[str] = []
    lambdas: list[float] = []
    for row in sweep["rows"]:
        site, lam = str(row["sites"]), float(row["scale"])
        sites += [site] if site not in sites else []
        lambdas += [lam] if lam not in lambdas else []
        cells[(site, lam)] = load_condition(folder / STEERING_CELLS / row["cell"], "steered", step, detail=f"{site}, lambda={lam:g}")
    best = (sweep.get("best") or {}).get("cell")
    return SteeringGrid(step, sites, sorted(lambdas), cells, str((sweep.get("direction") or {}).get("origin", "")), best)


def best_steered(grid: SteeringGrid) -> Condition | None:
    """The sweep's own pick (steering.best_cell: highest EM over all answers, then coherence, then smaller |lambda|)."""
    for cond in grid.cells.values():
        if grid.best is not None and cond.folder.name == grid.best:
            return cond
    return None


def load_direction(folder: Path, step: str) -> DirectionInfo:
    from emlab.directions import META_FILE, Direction

    d = Direction.load(folder)
    choice = read_json(folder / DIRECTION_CHOICE) if (folder / DIRECTION_CHOICE).exists() else {}
    return DirectionInfo(step, folder, read_json(folder / META_FILE), choice, d.vectors)


def load_training(folder: Path, step: str) -> TrainInfo:
    from emlab.experiments.steps import TRAIN_CONFIG, TRAIN_LOG, TRAIN_SUMMARY

    log_path, summary_path, config_path = folder / TRAIN_LOG, folder / TRAIN_SUMMARY, folder / TRAIN_CONFIG
    log = [rec for _, rec in iter_jsonl(log_path)] if log_path.exists() else []
    summary = read_json(summary_path) if summary_path.exists() else {}
    config = read_json(config_path) if config_path.exists() else {}
    return TrainInfo(step, log, summary, config)
