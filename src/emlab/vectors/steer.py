"""Steering with emotion and persona vectors on question sets (EM questions, pressure scenarios), judged.

Each condition adds scale x unit(vector) at one site while sampling (`hooks.steer` through
`emlab.interventions.steering.run_sweep`, positions "all" or "response"), and is evaluated by `emlab.evaluate.evaluate`
into OUT/<question set>/<condition>/ (resumable: finished cells are skipped on rerun). The condition
"baseline" steers with scale 0 (x + 0 * v is exactly x). Scales are given in units of the site's typical
residual norm (`resid_norm`: the mean over neutral-text tokens of |act|), so "0.25" means a quarter of what
is already there; the absolute value used is recorded in every row.

The table has, per (question set, condition): answers, unscored, EM / all judged answers with its Wilson
95% interval, EM / coherent answers with Wilson, mean aligned and coherent scores.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emlab.errors import EmlabError


@dataclass(frozen=True)
class Condition:
    label: str  # e.g. "calm+0.25"
    direction: Any  # emlab.vectors.directions.Direction (one emotion or persona vector)
    site: str
    scale: float  # relative to resid_norm


def resid_norm(cm, site: str, texts: Sequence[str] | None = None, offset: int = 4) -> float:
    """Mean L2 norm of the site's activation over neutral-text tokens at positions >= offset."""
    from emlab.vectors.directions import forward_answers
    from emlab.vectors.emotions import load_stories, text_batches

    texts = list(texts or load_stories().neutral)
    total, count = 0.0, 0
    for _, batch in text_batches(cm.tokenizer, texts, offset, 16):
        cap = forward_answers(cm, batch, [site], reduce=None)
        for acts in cap.per_token(site):
            total += float(acts.double().norm(dim=-1).sum())
            count += acts.shape[0]
    return total / count


def question_set(name: str):
    """A question set by name or file; `pressure` (and other sets shipped in emlab/vectors/data) included."""
    from emlab.data.questions import list_question_sets, load_questions
    from emlab.vectors.emotions import DATA_DIR

    if name not in list_question_sets() and (DATA_DIR / f"{name}.yaml").exists():
        return load_questions(DATA_DIR / f"{name}.yaml")
    return load_questions(name)


def parse_conditions(specs: Sequence[str], lookup) -> list[tuple[str, str, float]]:
    """'calm:+0.25', 'desperate:0.25', 'evil:-0.5' -> (vector name, label, scale); `lookup(name)` must know the name."""
    out = []
    for spec in specs:
        name, sep, val = spec.rpartition(":")
        if not sep or not name:
            raise EmlabError(
                f"condition {spec!r}: write NAME:SCALE, e.g. calm:0.25 or evil:-0.5 (scale in units of the residual norm)"
            )
        try:
            scale = float(val)
        except ValueError:
            raise EmlabError(f"condition {spec!r}: scale {val!r} is not a number") from None
        lookup(name)
        out.append((name, f"{name}{scale:+g}", scale))
    return out


def steering_table(
    cm,
    conditions: Sequence[Condition],
    question_sets: Sequence[Any],
    n: int,
    judge,
    out_dir: str | os.PathLike,
    params=None,
    positions: str = "all",
    norm: float | None = None,
    baseline: bool = True,
) -> list[dict[str, Any]]:
    """Evaluate every (question set, condition) plus an unsteered baseline; write steering_table.jsonl / .json / .md."""
    from emlab.evaluate import EvalRequest
    from emlab.interventions.steering import Cell, run_sweep
    from emlab.io import write_json, write_jsonl

    if not conditions:
        raise EmlabError("a steering table needs at least one condition (NAME:SCALE)")
    out = Path(out_dir)
    norms: dict[str, float] = {}
    rows = []
    conds = ([Condition("baseline", conditions[0].direction, conditions[0].site, 0.0)] if baseline else []) + list(
        conditions
    )
    for qset in question_sets:
        for c in conds:
            if c.site not in norms:
                norms[c.site] = norm if norm is not None else resid_norm(cm, c.site)
            absolute = c.scale * norms[c.site]
            summary = run_sweep(
                cm,
                c.direction,
                [Cell((c.site,), absolute)],
                EvalRequest(qset, judge, n, params),
                out / qset.name / c.label,
                positions,
                "unit",
            )
            r = summary["rows"][0]
            vector = (
                "none"
                if c.label == "baseline"
                else (
                    c.direction.provenance.get("emotion") or c.direction.provenance.get("trait") or c.direction.origin
                )
            )
            rows.append(
                {
                    "questions": qset.name,
                    "condition": c.label,
                    "vector": vector,
                    "site": c.site,
                    "scale_rel": c.scale,
                    "scale_abs": absolute,
                    "resid_norm": norms[c.site],
                    **{k: v for k, v in r.items() if k not in ("cell", "sites", "scale")},
                }
            )
            write_jsonl(out / "steering_table.jsonl", rows)
    write_json(
        out / "steering_table.json",
        {
            "model": cm.provenance(),
            "judge": str(getattr(judge, "id", judge)),
            "n_per_question": n,
            "positions": positions,
            "resid_norm": norms,
            "rows": rows,
        },
    )
    (out / "steering_table.md").write_text(markdown_table(rows), encoding="utf-8")
    return rows


def _ci(x) -> str:
    return f"[{x[0]:.2f}, {x[1]:.2f}]" if x else "-"


def _f(x, d: int = 1) -> str:
    return "-" if x is None else f"{x:.{d}f}"


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| questions | condition | scale (x resid norm = abs) | n | unscored | EM / all [Wilson 95%] | EM / coherent [Wilson 95%] | aligned | coherent |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['questions']} | {r['condition']} | {r['scale_rel']:+g} = {r['scale_abs']:+.1f} | {r['n_answers']} | {r['n_unscored']} | "
            f"{r['em_all_k']}/{r['em_all_n']} {_ci(r['em_all_wilson95'])} | {r['em_coherent_k']}/{r['em_coherent_n']} {_ci(r['em_coherent_wilson95'])} | "
            f"{_f(r['aligned_mean'])} | {_f(r['coherent_mean'])} |"
        )
    return "\n".join(lines) + "\n"
