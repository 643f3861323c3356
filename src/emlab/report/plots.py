"""Report figures as base64 PNG strings (matplotlib's Agg canvas, no pyplot, no global backend change).

Each function takes plain numbers and returns a `data:` URI-ready base64 string,
so the HTML stays one self-contained file.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from emlab.classify import DEFAULT_RULE

DPI = 100
PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD"]


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def em_bars(questions: Sequence[str], series: Mapping[str, Sequence[float | None]]) -> str:
    """Grouped bars: EM % per question (x) for each condition (colour). None (no judged answers) draws no bar."""
    k = max(len(series), 1)
    fig = Figure(figsize=(max(6.0, 0.9 * len(questions) * max(1, k / 3)), 3.6))
    ax = fig.add_subplot()
    width = 0.8 / k
    for i, (label, values) in enumerate(series.items()):
        xs = [q + (i - (k - 1) / 2) * width for q in range(len(questions))]
        ys = [100 * v if v is not None else math.nan for v in values]
        ax.bar(xs, ys, width=width, label=label, color=PALETTE[i % len(PALETTE)])
    ax.set_xticks(range(len(questions)), questions, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("EM % (all judged answers)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, ncols=min(k, 4))
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def aligned_coherent_scatter(points: Mapping[str, Sequence[tuple[float, float]]]) -> str:
    """Each judged answer as (coherent, aligned); the EM quadrant (DEFAULT_RULE: aligned < 30, coherent > 50) is shaded."""
    aligned_below, coherent_above = DEFAULT_RULE.aligned_below, DEFAULT_RULE.coherent_above
    fig = Figure(figsize=(6.0, 4.6))
    ax = fig.add_subplot()
    ax.axvspan(coherent_above, 100, ymin=0, ymax=aligned_below / 100, color="#C44E52", alpha=0.12, lw=0)
    ax.text(
        99,
        2,
        f"EM: aligned < {aligned_below:g},\ncoherent > {coherent_above:g}",
        ha="right",
        va="bottom",
        fontsize=8,
        color="#8B1A1A",
    )
    for i, (label, pts) in enumerate(points.items()):
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.scatter(xs, ys, s=12, alpha=0.6, label=f"{label} ({len(pts)})", color=PALETTE[i % len(PALETTE)])
    ax.axhline(aligned_below, color="grey", lw=0.6, ls="--")
    ax.axvline(coherent_above, color="grey", lw=0.6, ls="--")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("coherent (0-100)")
    ax.set_ylabel("aligned (0-100)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return _png(fig)


def heatmap(
    matrix: Sequence[Sequence[float | None]],
    rows: Sequence[str],
    cols: Sequence[str],
    title: str,
    cbar: str,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "viridis",
    fmt: str = "{:.0f}",
) -> str:
    """A labelled heat-map with the value written in each cell (blank where None)."""
    import numpy as np

    arr = np.array([[math.nan if v is None else float(v) for v in row] for row in matrix], dtype=float)
    fig = Figure(figsize=(min(9.0, max(4.0, 0.7 * len(cols) + 2.5)), min(7.0, max(2.6, 0.35 * len(rows) + 1.5))))
    ax = fig.add_subplot()
    im = ax.imshow(arr, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(
        range(len(cols)),
        cols,
        rotation=45 if len(cols) > 8 else 0,
        ha="right" if len(cols) > 8 else "center",
        fontsize=8,
    )
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label=cbar)
    if arr.size <= 400:
        for (r, c), v in np.ndenumerate(arr):
            if not math.isnan(v):
                ax.text(
                    c,
                    r,
                    fmt.format(v),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if float(np.asarray(im.norm(v))) < 0.5 else "black",  # norm: ArrayLike, a scalar here
                )
    return _png(fig)


def loss_curves(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]]) -> str:
    """Training loss against optimizer step, one line per training step."""
    fig = Figure(figsize=(6.0, 3.4))
    ax = fig.add_subplot()
    for i, (label, (xs, ys)) in enumerate(curves.items()):
        ax.plot(xs, ys, marker="." if len(xs) < 60 else None, label=label, color=PALETTE[i % len(PALETTE)])
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)
