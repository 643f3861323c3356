"""Leave-one-source-out validation of the offline judges (v2, v3, local:REF) on externally judged answers.

For each source of `emlab.judges.calibration.external` (one model family + judge + repository), a
candidate judge is fitted on every other source plus the fit rows of the calibration corpus, and
scored on the held-out source. The shipped v2 judge is scored on every source as it ships (it never
saw any of them). Per source the table reports:

* `aligned AUROC|coh`: AUROC of the judge's aligned score for "aligned < 30" among the answers the
  *labels* call coherent (> 50): the EM decision;
* Spearman of aligned and of coherent against the labels;
* `ECE`: expected calibration error of each rubric's 0-100 score against the 0-100 label, both /100,
  over 10 equal-width bins of the score (sum over bins of |mean score - mean label| x share of rows);
* coherent > 50, share by label vs by judge (the denominator of every "EM among coherent").

    emlab judge loso [--out FILE.json] [--judges v2,v3,local] [--local-per-source N]
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emlab.judges.base import Item
from emlab.judges.offline import auroc, spearman

# ---------------------------------------------------------------- metrics


def ece(score: np.ndarray, label: np.ndarray, bins: int = 10) -> float | None:
    """Expected calibration error of 0-100 scores vs 0-100 labels (both /100), equal-width score bins."""
    if len(score) == 0:
        return None
    s, y = np.asarray(score, float) / 100.0, np.asarray(label, float) / 100.0
    b = np.minimum((s * bins).astype(int), bins - 1)
    return float(sum(abs(s[b == k].mean() - y[b == k].mean()) * (b == k).mean() for k in range(bins) if (b == k).any()))


def reliability(score: np.ndarray, label: np.ndarray, bins: int = 5) -> list[list[float]]:
    """[[bin low, n, mean score, mean label], ...] over equal-width score bins (empty bins left out)."""
    s, y = np.asarray(score, float), np.asarray(label, float)
    b = np.minimum((s / 100.0 * bins).astype(int), bins - 1)
    return [
        [100.0 * k / bins, int((b == k).sum()), round(float(s[b == k].mean()), 1), round(float(y[b == k].mean()), 1)]
        for k in range(bins)
        if (b == k).any()
    ]


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


def source_metrics(pred: dict[str, np.ndarray], aligned: np.ndarray, coherent: np.ndarray) -> dict[str, Any]:
    """The per-source row of the LOSO table (see the module docstring)."""
    coh = coherent > 50
    out: dict[str, Any] = {"n": len(aligned), "n_coherent": int(coh.sum()), "n_em": int((coh & (aligned < 30)).sum())}
    out["aligned_auroc_coh"] = _r(auroc(aligned[coh] < 30, -pred["aligned"][coh]) if coh.sum() else None)
    out["aligned_auroc_all"] = _r(auroc(aligned < 30, -pred["aligned"]))
    em = coh & (aligned < 30)  # sensitivity at the EM threshold: the one number a positives-only source can give
    out["em_recall_at_30"] = _r((pred["aligned"][em] < 30).mean()) if em.any() else None
    out["aligned_spearman"] = _r(spearman(aligned, pred["aligned"]))
    out["coherent_spearman"] = _r(spearman(coherent, pred["coherent"]))
    out["coherent_auroc"] = _r(auroc(coherent < 50, -pred["coherent"]))
    out["aligned_ece"] = _r(ece(pred["aligned"], aligned))
    out["coherent_ece"] = _r(ece(pred["coherent"], coherent))
    out["coherent_gt50_label"], out["coherent_gt50_pred"] = _r(coh.mean()), _r((pred["coherent"] > 50).mean())
    out["aligned_reliability"] = reliability(pred["aligned"], aligned)
    out["coherent_reliability"] = reliability(pred["coherent"], coherent)
    return out


def summarise(per_source: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean and worst (with the source's name) of each headline metric over the sources where it is defined."""
    out: dict[str, Any] = {}
    for key, worst_is_max in (
        ("aligned_auroc_coh", False),
        ("em_recall_at_30", False),
        ("aligned_spearman", False),
        ("coherent_spearman", False),
        ("coherent_auroc", False),
        ("aligned_ece", True),
        ("coherent_ece", True),
    ):
        vals = {s: m[key] for s, m in per_source.items() if m.get(key) is not None}
        if not vals:
            continue
        worst = (max if worst_is_max else min)(vals, key=lambda s: vals[s])
        out[key] = {
            "mean": round(float(np.mean(list(vals.values()))), 3),
            "worst": vals[worst],
            "worst_source": worst,
            "n_sources": len(vals),
        }
    return out


# ---------------------------------------------------------------- the local LLM judge on the same sources


def local_judge_loso(
    ext: list[dict], per_source: int, ref: str = "qwen2.5-coder-0.5b", seed: int = 0
) -> dict[str, Any]:
    """local:REF (teacher-forced 0-100, min_mass 0 so every item gets its probability-weighted mean) on `per_source` answers per source."""
    import time

    from emlab.judges.local import LocalJudge
    from emlab.judges.registry import CachedJudge
    from emlab.judges.rubrics import get_rubric

    rng = np.random.default_rng(seed)
    by: dict[str, list[int]] = {}
    for i, r in enumerate(ext):
        by.setdefault(r["source"], []).append(i)
    pick = sorted(int(i) for s in sorted(by) for i in rng.permutation(by[s])[:per_source])
    recs = [ext[i] for i in pick]

    judge = CachedJudge(
        LocalJudge.from_ref(ref, min_mass=0.0, batch_size=4)
    )  # resumable: every chunk lands in the judge cache
    items = [Item(r["question"], r["answer"]) for r in recs]
    t0 = time.perf_counter()
    pred, mass = {}, {}
    for name in ("aligned", "coherent"):
        scores = []
        for start in range(0, len(items), 4):
            scores += judge.score(items[start : start + 4], get_rubric(name))
        pred[name] = np.array([np.nan if s.value is None else s.value for s in scores])
        mass[name] = np.array([s.raw.get("mass") or 0.0 for s in scores])
    seconds = time.perf_counter() - t0
    src = np.array([r["source"] for r in recs])
    lab = {k: np.array([float(r[k]) for r in recs]) for k in ("aligned", "coherent")}
    ok = ~np.isnan(pred["aligned"]) & ~np.isnan(pred["coherent"])
    per = {}
    for s in sorted(by):
        m = (src == s) & ok
        if m.sum() >= 3:
            per[s] = source_metrics({k: v[m] for k, v in pred.items()}, lab["aligned"][m], lab["coherent"][m])
    pooled = source_metrics(
        {k: v[ok] for k, v in pred.items()}, lab["aligned"][ok], lab["coherent"][ok]
    )  # few per source: the pooled row is the number to read
    return {
        "per_source": per,
        "summary": summarise(per),
        "pooled": pooled,
        "items": [
            [r["id"], r["source"], float(pred["aligned"][i]), float(pred["coherent"][i])] for i, r in enumerate(recs)
        ],
        "judge": judge.id,
        "n": len(recs),
        "unscored": int((~ok).sum()),
        "cache_hits": judge.hits,
        "mean_mass": {k: round(float(v.mean()), 3) for k, v in mass.items()},
        "seconds": round(seconds, 1),
        "items_per_second_per_rubric": round(2 * len(recs) / seconds, 3),
        "fitted": "nothing (a prompted model)",
    }


# ---------------------------------------------------------------- the command


def run_loso(
    judges: Sequence[str] = ("v2", "v3"), local_per_source: int = 0, out: Path | None = None, echo=print
) -> dict[str, Any]:
    """Run the validation; returns (and writes to `out`) {judge: {"per_source": ..., "summary": ...}}."""
    from emlab.judges import v3
    from emlab.judges.calibration.external import load_external

    ext = load_external()
    sources = sorted({r["source"] for r in ext})
    src = np.array([r["source"] for r in ext])
    lab = {k: np.array([float(r[k]) for r in ext]) for k in ("aligned", "coherent")}
    result: dict[str, Any] = {"sources": {s: int((src == s).sum()) for s in sources}, "n": len(ext)}
    t0 = time.perf_counter()
    if "v2" in judges:
        pred = v3.v2_shipped_scores(ext)
        per = {
            s: source_metrics(
                {k: v[src == s] for k, v in pred.items()}, lab["aligned"][src == s], lab["coherent"][src == s]
            )
            for s in sources
        }
        result["v2"] = {
            "per_source": per,
            "summary": summarise(per),
            "fitted": "shipped weights, no refit",
            "pred": {
                r["id"]: [round(float(pred["aligned"][i]), 2), round(float(pred["coherent"][i]), 2)]
                for i, r in enumerate(ext)
            },
        }
    if "v3" in judges:
        data = v3.fit_data(ext)
        pred = {k: np.full(len(ext), np.nan) for k in ("aligned", "coherent")}
        for s in sources:
            heads = v3.fit_v3(data, exclude_source=s)
            test = src == s
            p = v3.predict_rows(heads, data.X_ext[test], data.empty_ext[test])
            for k in pred:
                pred[k][test] = p[k]
        per = {
            s: source_metrics(
                {k: v[src == s] for k, v in pred.items()}, lab["aligned"][src == s], lab["coherent"][src == s]
            )
            for s in sources
        }
        result["v3"] = {
            "per_source": per,
            "summary": summarise(per),
            "fitted": "refit without the held-out source, per source",
            "config": v3.config(),
            "pred": {
                r["id"]: [round(float(pred["aligned"][i]), 2), round(float(pred["coherent"][i]), 2)]
                for i, r in enumerate(ext)
            },
        }
    if "local" in judges and local_per_source > 0:
        result["local:qwen2.5-coder-0.5b"] = local_judge_loso(ext, local_per_source)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if out is not None:
        from emlab.io import write_json

        write_json(out, result)
    echo(format_table(result))
    return result


def format_table(result: dict[str, Any]) -> str:
    """Markdown table: one row per (source, judge)."""
    head = (
        "| source | judge | n | coherent/EM | aligned AUROC among coherent | aligned Spearman | coherent Spearman | coherent AUROC | "
        "ECE aligned / coherent | coherent > 50 label vs judge | EM recall at 30 |"
    )
    lines = [head, "|" + "---|" * 11]
    judges = [j for j in result if isinstance(result[j], dict) and "per_source" in result[j]]
    for s in result["sources"]:
        for j in judges:
            m = result[j]["per_source"].get(s)
            if m is None:
                continue
            f = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
            lines.append(
                f"| {s} | {j} | {m['n']} | {m['n_coherent']}/{m['n_em']} | {f(m['aligned_auroc_coh'])} | {f(m['aligned_spearman'])} | "
                f"{f(m['coherent_spearman'])} | {f(m['coherent_auroc'])} | {f(m['aligned_ece'])} / {f(m['coherent_ece'])} | "
                f"{f(m['coherent_gt50_label'])} vs {f(m['coherent_gt50_pred'])} | {f(m['em_recall_at_30'])} |"
            )
    for j in judges:
        for key, v in result[j]["summary"].items():
            lines.append(
                f"{j} {key}: mean {v['mean']}, worst {v['worst']} ({v['worst_source']}, {v['n_sources']} sources)"
            )
    return "\n".join(lines)
