"""Helpers that step kinds in more than one module share (steps.py, study_steps.py, vector_steps.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emlab.experiments.kinds import SamplingOverrides

DATASET_FILE = "train.jsonl"  # a data step's training set


def model_of(planning, path: str, value: str | None) -> str:
    """The `models` entry an entry at `path` uses (default: the first model), checked."""
    name = value or planning.spec.default_model()
    planning.ref(f"{path}.model", name, "models")
    return name


def judged_records(eval_dir: Path):
    """An evaluation folder's answers as `directions.Judged` records (samples joined with their scores)."""
    from emlab.evaluate import read_answers
    from emlab.vectors.directions import Judged

    out = []
    for a in read_answers(eval_dir):
        out.append(
            Judged(
                a["question"],
                a["text"],
                a.get("aligned"),
                a.get("coherent"),
                a["question_id"],
                {"prompt_id": a["prompt_id"]},
            )
        )
    return out


def sampling_params(cfg: dict):
    from emlab.sampling import SamplingParams

    return SamplingParams(
        temperature=cfg["temperature"],
        top_p=cfg["top_p"],
        max_new_tokens=cfg["max_new_tokens"],
        seed=cfg["seed"],
        batch_size=cfg["batch_size"],
    )


def adapter_deps(planning, path: str, adapter: str | None) -> tuple[str, ...]:
    """The train step an entry's `adapter` names (checked), as a dependency."""
    if adapter is None:
        return ()
    planning.ref(f"{path}.adapter", adapter, "training")
    return (f"train.{adapter}",)


def sampled(entry: SamplingOverrides, spec) -> dict:
    """An eval-like entry's config with sampling and seed resolved."""
    cfg = entry.model_dump()
    cfg.update(entry.sampling(spec.sampling).model_dump())
    cfg["seed"] = spec.seed if entry.seed is None else entry.seed
    return cfg
