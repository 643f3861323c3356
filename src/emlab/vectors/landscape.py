"""Landscape diff: where a model's answers sit along emotion and persona vectors, base vs organism vs control.

Input: finished eval run folders (written by `emlab eval` / an eval step), read through the eval module's own
files (`evaluate.CONFIG_FILE`, `evaluate.sample_journal`, `evaluate.score_journal`, `evaluate.answer_records`).
Each answer (question + answer, teacher-forced under the template's default system prompt, as `evaluate`
samples) is reduced to its mean activation over answer tokens at each reader's site and projected onto the
reader's unit vector. Per run and reader: the mean projection with a percentile bootstrap 95% CI over
answers; per run vs the reference run: the difference of means with a bootstrap CI (both groups resampled
independently). `vector_cosines` gives the cosine of each reader with a misalignment `Direction` at the
reader's site.

Which model reads the answers is the caller's choice (`cm_for(label, run_config)`): the run's own model
(base for the base run, base + adapter for the organism: "how does each model represent what it said") or
one fixed reader for all runs ("what the answers contain, as the base model reads them").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emlab.errors import EmlabError


def read_run(folder: str | os.PathLike) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(eval.json, answers): each answer is its sample plus its rubric scores (None when unscored or unjudged)."""
    from emlab import evaluate as ev
    from emlab.io import read_json

    out = Path(folder)
    if not (out / ev.CONFIG_FILE).exists() or not (out / ev.SAMPLES_FILE).exists():
        raise EmlabError(
            f"{out}: no {ev.CONFIG_FILE} / {ev.SAMPLES_FILE}; pass a folder written by `emlab eval` or an eval step"
        )
    config = read_json(out / ev.CONFIG_FILE)
    samples = ev.sample_journal(out).read()
    scores = ev.score_journal(out).read() if (out / ev.SCORES_FILE).exists() else []
    by_id = {r["prompt_id"]: r for r in ev.answer_records(samples, scores, config.get("rubrics", []))}
    answers = [{**s, **{k: by_id.get(s["prompt_id"], {}).get(k) for k in config.get("rubrics", [])}} for s in samples]
    if not answers:
        raise EmlabError(f"{out}: the run has no samples yet; finish it (emlab eval --resume) first")
    return config, answers


def reader_vectors(
    emotion_vectors=None,
    emotions: Sequence[str] | None = None,
    emotion_site: str | None = None,
    directions: Mapping[str, Any] | None = None,
    direction_site: str | None = None,
) -> dict[str, tuple[str, torch.Tensor]]:
    """name -> (site, vector) from an EmotionVectors (chosen emotions at one site) and named Directions."""
    out: dict[str, tuple[str, torch.Tensor]] = {}
    if emotion_vectors is not None:
        site = emotion_site or emotion_vectors.default_site()
        for n in emotions or emotion_vectors.names:
            out[f"emotion:{n}"] = (site, emotion_vectors.vector(n, site))
    for name, d in (directions or {}).items():
        site = direction_site or d.default_site()
        out[f"persona:{name}"] = (site, d.vector(site))
    if not out:
        raise EmlabError("no vectors to project onto; pass emotion vectors and/or persona directions")
    return out


def project_answers(
    cm,
    answers: Sequence[Mapping[str, Any]],
    readers: Mapping[str, tuple[str, torch.Tensor]],
    system="default",
    batch_size: int = 8,
) -> dict[str, np.ndarray]:
    """reader -> [n] projections of each answer's mean answer-token activation onto the reader's unit vector."""
    from emlab.vectors.directions import answer_activations

    sites = sorted({s for s, _ in readers.values()}, key=lambda s: int(s.split(".")[1]))
    acts = answer_activations(
        cm,
        [(a["question"], a.get("text", a.get("answer", ""))) for a in answers],
        sites,
        system=system,
        batch_size=batch_size,
    )
    out = {}
    for name, (site, v) in readers.items():
        v = torch.as_tensor(v).double()
        if v.norm() == 0:
            raise EmlabError(f"reader {name!r} at {site} is all zeros")
        out[name] = (acts[:, sites.index(site)].double() @ (v / v.norm())).numpy()
    return out


def bootstrap_mean(x: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    x = np.asarray(x, float)
    if len(x) == 0:
        return {"n": 0, "mean": None, "ci95": None}
    rng = np.random.default_rng(seed)
    boots = x[rng.integers(0, len(x), (n_boot, len(x)))].mean(1)
    return {
        "n": len(x),
        "mean": float(x.mean()),
        "ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))],
    }


def bootstrap_diff(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """mean(a) - mean(b) with a percentile CI from resampling a and b independently."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if not len(a) or not len(b):
        return {"diff": None, "ci95": None}
    rng = np.random.default_rng(seed)
    boots = a[rng.integers(0, len(a), (n_boot, len(a)))].mean(1) - b[rng.integers(0, len(b), (n_boot, len(b)))].mean(1)
    lo, hi = float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))
    return {"diff": float(a.mean() - b.mean()), "ci95": [lo, hi], "excludes_zero": bool(lo > 0 or hi < 0)}


def landscape(
    runs: Mapping[str, str | os.PathLike],
    readers: Mapping[str, tuple[str, torch.Tensor]],
    cm_for: Callable[[str, dict], Any],
    reference: str | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    batch_size: int = 8,
    out_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Project every run's answers onto every reader; means with CIs per run, differences vs `reference` (default: first run)."""
    from emlab.io import write_json, write_jsonl

    if not runs:
        raise EmlabError("landscape needs at least one run (label=folder)")
    labels = list(runs)
    reference = reference or labels[0]
    if reference not in runs:
        raise EmlabError(f"reference run {reference!r} is not among the runs {labels}")
    proj: dict[str, dict[str, np.ndarray]] = {}
    meta: dict[str, Any] = {}
    for label in labels:
        config, answers = read_run(runs[label])
        cm = cm_for(label, config)
        proj[label] = project_answers(cm, answers, readers, batch_size=batch_size)
        meta[label] = {
            "folder": str(runs[label]),
            "run_model": config.get("model"),
            "run_adapter": config.get("adapter"),
            "reader": cm.provenance(),
            "n_answers": len(answers),
            "judge": config.get("judge"),
            "aligned_mean": _mean([a.get("aligned") for a in answers]),
        }
        if out_dir is not None:
            write_jsonl(
                Path(out_dir) / f"projections.{label}.jsonl",
                [
                    {
                        "prompt_id": a["prompt_id"],
                        "question_id": a.get("question_id"),
                        "aligned": a.get("aligned"),
                        "coherent": a.get("coherent"),
                        **{n: float(proj[label][n][i]) for n in readers},
                    }
                    for i, a in enumerate(answers)
                ],
            )
    table = []
    for name, (site, _) in readers.items():
        row: dict[str, Any] = {"vector": name, "site": site}
        for label in labels:
            row[label] = bootstrap_mean(proj[label][name], n_boot, seed)
        for label in labels:
            if label != reference:
                row[f"{label}-{reference}"] = bootstrap_diff(proj[label][name], proj[reference][name], n_boot, seed)
        table.append(row)
    result = {
        "runs": meta,
        "reference": reference,
        "n_boot": n_boot,
        "readers": {n: s for n, (s, _) in readers.items()},
        "table": table,
    }
    if out_dir is not None:
        write_json(Path(out_dir) / "landscape.json", result)
    return result


def _mean(xs) -> float | None:
    v = [x for x in xs if x is not None]
    return sum(v) / len(v) if v else None


def vector_cosines(readers: Mapping[str, tuple[str, torch.Tensor]], direction) -> dict[str, float | None]:
    """Cosine of each reader with `direction` at the reader's site (None where the direction lacks the site)."""
    from emlab.vectors.directions import cosine

    return {
        n: (cosine(torch.as_tensor(v), direction.vector(s)) if s in direction.vectors else None)
        for n, (s, v) in readers.items()
    }


def plot_landscape(result: Mapping[str, Any], path: str | os.PathLike, top: int = 20) -> Path:
    """Differences vs the reference run with CIs, one panel per compared run, the `top` largest |diff| per panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emlab.io import atomic_path

    ref = result["reference"]
    others = [l for l in result["runs"] if l != ref]
    if not others:
        raise EmlabError("plot_landscape needs a run besides the reference")
    fig, axes = plt.subplots(1, len(others), figsize=(5.5 * len(others), 0.28 * top + 1.5), squeeze=False)
    for ax, label in zip(axes[0], others, strict=True):
        key = f"{label}-{ref}"
        rows = sorted([r for r in result["table"] if r[key]["diff"] is not None], key=lambda r: -abs(r[key]["diff"]))[
            :top
        ][::-1]
        ys = range(len(rows))
        d = [r[key]["diff"] for r in rows]
        lo = [r[key]["diff"] - r[key]["ci95"][0] for r in rows]
        hi = [r[key]["ci95"][1] - r[key]["diff"] for r in rows]
        colors = ["tab:red" if r[key]["excludes_zero"] else "0.5" for r in rows]
        ax.errorbar(d, list(ys), xerr=[lo, hi], fmt="none", ecolor="0.6", lw=1)
        ax.scatter(d, list(ys), c=colors, s=18, zorder=3)
        ax.set_yticks(list(ys))
        ax.set_yticklabels([r["vector"] for r in rows], fontsize=7)
        ax.axvline(0, color="k", lw=0.6)
        ax.set_title(f"{label} - {ref} (mean projection, 95% bootstrap CI)", fontsize=8)
    dest = Path(path)
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return dest
