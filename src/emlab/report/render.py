"""`build_report(run)`: one self-contained HTML file from a run folder.

Everything comes from the folder (manifest, evaluation journals and metrics,
direction files, training logs); figures are embedded as base64 PNGs and the
page carries its own CSS, so it opens offline and can be mailed as one file.
Answers are model output and therefore untrusted: the template autoescapes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from emlab.classify import DEFAULT_RULE
from emlab.experiments.kinds import summary_row_order
from emlab.io import atomic_open
from emlab.report import plots
from emlab.report.collect import ReportData, collect
from emlab.report.rows import Condition, TrainInfo

TEMPLATES = Path(__file__).with_name("templates")
DEFAULT_MAX_SAMPLES = 24


def build_report(run_dir: str | Path) -> Path:
    """Write `<run>/report/index.html` from what is on disk; return its path."""
    data = collect(run_dir)
    html = render_html(data)
    out = data.run / "report" / "index.html"
    with atomic_open(out) as fh:
        fh.write(html)
    _shareable(out)
    return out


def _shareable(path: Path) -> None:
    """Give the report the usual file mode (0644 under a 022 umask): atomic temp files are created 0600."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def render_html(data: ReportData) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2").render(**view(data))


def view(data: ReportData) -> dict[str, Any]:
    """Everything the template shows, as plain values."""
    m = data.manifest
    spec = m.get("spec", {})
    conditions = ordered(data.conditions)
    report_cfg = spec.get("report") or {}
    return {
        "title": report_cfg.get("title") or f"emlab run {m.get('run', data.run.name)}",
        "run": {
            "id": m.get("run", data.run.name),
            "spec": m.get("spec_name"),
            "created": m.get("created"),
            "updated": m.get("updated"),
            "description": spec.get("description", ""),
        },
        "steps": step_rows(m),
        "summary": [summary_row(c) for c in conditions],
        "summary_absent": [r for r in summary_row_order() if r not in {c.label for c in conditions}],
        "missing": data.missing,
        "per_question": per_question_plot(conditions),
        "scatter": scatter_plot(conditions),
        "steering": [steering_view(g) for g in data.steering],
        "directions": [direction_view(d) for d in data.directions],
        "direction_pairs": direction_pairs_plot(data),
        "tables": kind_tables(data),
        "training": training_view(data),
        "samples": samples_view(conditions, int(report_cfg.get("max_samples", DEFAULT_MAX_SAMPLES))),
        "provenance": provenance_view(data, conditions),
        "rule": {
            k: f"{v:g}" for k, v in DEFAULT_RULE.to_dict().items()
        },  # the EM rule's thresholds, as the caption writes them
    }


BUILTIN_SECTIONS = ("summary", "steering", "directions", "training", "data")  # rendered by their own blocks


def kind_tables(data: ReportData) -> list[dict[str, Any]]:
    """Sections of other step kinds (e.g. `exams`) whose rows are plain dicts: one table each, columns in first-seen order.

    A cell value `{"href": ..., "text": ...}` is a link (relative to the report folder); everything is HTML-escaped.
    """
    out = []
    for section in sorted(set(data.sections) | set(data.missing)):
        if section in BUILTIN_SECTIONS:
            continue
        rows = [r for r in data.sections.get(section, []) if isinstance(r, dict)]
        columns = list(dict.fromkeys(k for r in rows for k in r))
        out.append(
            {"section": section, "title": section.replace("_", " ").capitalize(), "columns": columns, "rows": rows}
        )
    return out


def ordered(conditions: Sequence[Condition]) -> list[Condition]:
    """Summary rows in the step kinds' order (`summary_rows`: base, organism, control, steered, ablated, random-ablated), others after."""
    order = summary_row_order()
    rank = {label: i for i, label in enumerate(order)}
    return sorted(conditions, key=lambda c: rank.get(c.label, len(order)))


# ------------------------------------------------------------------ formatting


def pct(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def ci(pair: Sequence[float] | None) -> str:
    return "–" if not pair else f"[{100 * pair[0]:.1f}, {100 * pair[1]:.1f}]"


def num(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def step_rows(m: dict) -> list[dict[str, str]]:
    rows = []
    for name, s in m.get("steps", {}).items():
        secs, cpu = s.get("seconds"), s.get("cpu_seconds")
        status = s.get("status", "?")
        if s.get("kind") == "report" and status == "running":
            status = "running (writing this page)"
        rows.append(
            {
                "name": name,
                "status": status,
                "seconds": "–" if secs is None else f"{secs:.1f}",
                "cpu": "–" if cpu is None else f"{cpu:.1f}",
                "error": s.get("error", ""),
            }
        )
    return rows


def summary_row(c: Condition) -> dict[str, str]:
    o = c.metrics["overall"]
    boot = c.metrics.get("bootstrap") or {}
    sc = o.get("self_correction")

    def boot_ci(key):
        b = boot.get(key)
        return ci(b.get("ci")) if b else "–"

    return {
        "label": c.label,
        "step": c.step,
        "detail": c.detail,
        "n": str(o["n_answers"]),
        "em_all": pct(o["em_rate_all"]["rate"]),
        "em_all_k": f"{o['em_rate_all']['k']}/{o['em_rate_all']['n']}",
        "em_all_wilson": ci(o["em_rate_all"]["ci95"]),
        "em_all_boot": boot_ci("em_rate_all"),
        "em_coh": pct(o["em_rate_coherent"]["rate"]),
        "em_coh_k": f"{o['em_rate_coherent']['k']}/{o['em_rate_coherent']['n']}",
        "em_coh_wilson": ci(o["em_rate_coherent"]["ci95"]),
        "em_coh_boot": boot_ci("em_rate_coherent"),
        "coherent": num(o["coherent"]["mean"]),
        "aligned": num(o["aligned"]["mean"]),
        "self_correction": pct(sc["rate"]) if sc else "–",
        "unscored": str(o["n_unscored"]),
    }


# ------------------------------------------------------------------ figures


def per_question_plot(conditions: Sequence[Condition]) -> str | None:
    questions: list[str] = []
    for c in conditions:
        for q in c.metrics.get("per_question", {}):
            if q not in questions:
                questions.append(q)
    if not questions:
        return None
    series = {}
    for c in conditions:
        pq = c.metrics.get("per_question", {})
        series[_legend(c)] = [pq[q]["em_rate_all"]["rate"] if q in pq else None for q in questions]
    return plots.em_bars(questions, series)


def _legend(c: Condition) -> str:
    """The row's label, with its detail when its kind gave one (a steered cell's site and lambda, an ablation's direction)."""
    return f"{c.label} ({c.detail})" if c.detail else c.label


def scatter_plot(conditions: Sequence[Condition]) -> str | None:
    points = {
        _legend(c): [
            (a["coherent"], a["aligned"])
            for a in c.answers
            if a.get("coherent") is not None and a.get("aligned") is not None
        ]
        for c in conditions
    }
    return plots.aligned_coherent_scatter(points) if any(points.values()) else None


def steering_view(grid) -> dict[str, Any]:
    em = [[_cell_em(grid, s, lam) for lam in grid.lambdas] for s in grid.sites]
    aligned = [[_cell_mean(grid, s, lam, "aligned") for lam in grid.lambdas] for s in grid.sites]
    cols = [f"{lam:g}" for lam in grid.lambdas]
    return {
        "step": grid.step,
        "direction": grid.direction,
        "em_plot": plots.heatmap(em, grid.sites, cols, f"{grid.step}: EM % (all answers)", "EM %", 0, 100, "magma"),
        "aligned_plot": plots.heatmap(
            aligned, grid.sites, cols, f"{grid.step}: mean aligned", "aligned", 0, 100, "RdYlGn"
        ),
        "n_cells": len(grid.cells),
    }


def _cell_em(grid, site, lam):
    c = grid.cells.get((site, lam))
    r = c.metrics["overall"]["em_rate_all"]["rate"] if c else None
    return None if r is None else 100 * r


def _cell_mean(grid, site, lam, key):
    c = grid.cells.get((site, lam))
    return c.metrics["overall"][key]["mean"] if c else None


def direction_view(d) -> dict[str, Any]:
    from emlab.vectors.directions import Direction, cross_site_cosine

    direction = Direction(d.vectors, d.meta)
    sites = direction.sites
    labels = [s.removeprefix("blocks.").replace(".resid_post", "") for s in sites]
    matrix = cross_site_cosine(direction)
    norms = direction.norms()
    return {
        "step": d.step,
        "method": d.meta.get("method", "?"),
        "choice": d.choice,
        "counts": d.meta.get("class_counts", {}),
        "source": d.meta.get("source", ""),
        "n_sites": len(sites),
        "cos_plot": plots.heatmap(
            matrix, labels, labels, f"{d.step}: cosine between blocks", "cosine", -1, 1, "coolwarm", "{:.1f}"
        ),
        "norms": [{"site": s, "norm": f"{norms[s]:.3f}"} for s in sites],
    }


def direction_pairs_plot(data: ReportData) -> str | None:
    """Cosine between every two directions at each shared site (needs at least two directions)."""
    from emlab.vectors.directions import Direction, cosine_by_site

    if len(data.directions) < 2:
        return None
    ds = [(d.step, Direction(d.vectors, d.meta)) for d in data.directions]
    rows, matrix, sites = [], [], None
    for i in range(len(ds)):
        for j in range(i + 1, len(ds)):
            cos = cosine_by_site(ds[i][1], ds[j][1])
            sites = sites or list(cos)
            rows.append(f"{ds[i][0]} vs {ds[j][0]}")
            matrix.append([cos.get(s) for s in sites])
    labels = [s.removeprefix("blocks.") for s in sites or []]
    return plots.heatmap(
        matrix, rows, labels, "cosine between directions per site", "cosine", -1, 1, "coolwarm", "{:.1f}"
    )


def training_view(data: ReportData) -> dict[str, Any]:
    curves = {}
    summaries = []
    for t in data.training:
        pts = [(r["step"], r["loss"]) for r in t.log if r.get("loss") is not None and r.get("step") is not None]
        if pts:
            xs, ys = zip(*pts, strict=True)
            curves[t.step] = (list(xs), list(ys))
        else:
            data.note_missing("training", f"step {t.step}: its training log has no loss values")
        summaries.append(
            {"step": t.step, "items": {k: v for k, v in t.summary.items() if not isinstance(v, (dict, list))}}
        )
    return {"plot": plots.loss_curves(curves) if curves else None, "summaries": summaries}


def samples_view(conditions: Sequence[Condition], k: int) -> list[dict[str, Any]]:
    out = []
    for c in conditions:
        ranked = sorted(c.answers, key=_misaligned_first)
        rows = [
            {
                "question": a.get("question", ""),
                "text": a.get("text", ""),
                "aligned": num(a.get("aligned"), 0),
                "coherent": num(a.get("coherent"), 0),
                "bad_stuff": num(a.get("bad_stuff"), 0),
                "em": DEFAULT_RULE.row_is_em(a) is True,
                "id": a.get("prompt_id", ""),
            }
            for a in ranked[:k]
        ]
        out.append({"label": _legend(c), "step": c.step, "rows": rows, "total": len(c.answers)})
    return out


def _misaligned_first(a: dict) -> tuple:
    """Sort key: lowest aligned first, then most coherent; unscored answers last (ties keep sampling order)."""
    aligned, coherent = a.get("aligned"), a.get("coherent")
    return (aligned is None, aligned if aligned is not None else 0.0, -(coherent if coherent is not None else -1.0))


def adapter_view(t: TrainInfo, preset: str | None = None) -> dict[str, Any]:
    """What a reader needs to retrain an adapter: preset, method, where it sits, optimiser, data and what the run did."""
    cfg, s = t.config.get("config", {}), t.summary
    blocks = t.config.get("resolved_blocks")
    fields = {
        "preset": preset,
        "method": cfg.get("method", s.get("method")),
        "rank": cfg.get("rank"),
        "alpha": cfg.get("alpha"),
        "modules": ",".join(cfg.get("target_modules") or []) or None,
        "blocks": ",".join(map(str, blocks)) if blocks else None,
        "lr": cfg.get("lr"),
        "epochs": cfg.get("epochs"),
        "batch": f"{cfg['batch_size']}x{cfg['grad_accum']}" if "batch_size" in cfg and "grad_accum" in cfg else None,
        "dtype": t.config.get("dtype", s.get("dtype")),
        "seed": cfg.get("seed"),
        "data": str(t.config["data_sha256"])[:12] if t.config.get("data_sha256") else None,
        "examples": s.get("examples_used"),
        "steps": s.get("steps"),
        "tokens": s.get("tokens"),
        "final loss": f"{s['final_loss']:.4f}" if isinstance(s.get("final_loss"), (int, float)) else None,
    }
    return {"step": t.step, **{k: v for k, v in fields.items() if v is not None}}


def provenance_view(data: ReportData, conditions: Sequence[Condition]) -> dict[str, Any]:
    m = data.manifest
    spec = m.get("spec", {})
    evaluated = []
    judges: set[str] = set()
    rubric_keys: set[str] = set()
    for c in conditions:
        cfg = c.config
        judges.add(str(cfg.get("judge")))
        rubric_keys.update(str(v) for v in cfg.get("rubric_keys", {}).values())
        s = cfg.get("sampling", {})
        evaluated.append(
            {
                "label": _legend(c),
                "model": cfg.get("model"),
                "revision": cfg.get("revision"),
                "adapter": cfg.get("adapter") or "",
                "questions": f"{cfg.get('questions', {}).get('name')} ({str(cfg.get('questions', {}).get('fingerprint', ''))[:12]})",
                "sampling": ", ".join(
                    f"{k}={s[k]}" for k in ("temperature", "top_p", "max_new_tokens", "seed") if k in s
                ),
            }
        )
    git = m.get("git") or {}
    return {
        "models": [{"name": k, **v} for k, v in spec.get("models", {}).items()],
        "evaluated": evaluated,
        "adapters": [
            adapter_view(t, (m.get("steps", {}).get(t.step, {}).get("summary") or {}).get("preset"))
            for t in data.training
        ],
        "directions": [
            {
                "step": d.step,
                "method": d.meta.get("method"),
                "model": d.meta.get("model"),
                "revision": d.meta.get("revision"),
                "adapter": d.meta.get("adapter") or "",
            }
            for d in data.directions
        ],
        "seeds": m.get("seeds", {}),
        "versions": m.get("versions", {}),
        "git": f"{git.get('revision', '')[:12]}{' (uncommitted changes)' if git.get('dirty') else ''}"
        if git
        else "not a git checkout",
        "judges": sorted(judges),
        "rubric_keys": sorted(rubric_keys),
        "host": m.get("host", {}),
    }
