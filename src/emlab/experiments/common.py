"""Helpers that step kinds in more than one module share (steps.py, study_steps.py)."""

from __future__ import annotations

from pathlib import Path


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
