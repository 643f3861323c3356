"""Geometry of emotion vectors: PCA, correlation of the top components with valence / arousal norms, a circumplex plot.

`pca(X)` centres the rows of X [E, d] (emotion vectors are already centred, so this changes nothing for them)
and returns scores [E, k], unit components [k, d] and explained-variance ratios.
`correlate(x, y)` gives Pearson r and Spearman rho, each with a percentile bootstrap 95% interval
(resampling emotions with replacement) and a two-sided permutation p-value.
`circumplex(ev, site)` orients each PC so that PC1 correlates positively with valence and PC2 with arousal
(a PC's sign is arbitrary; the orientation is fixed once on all emotions, and the bootstrap reuses it) and
reports r of PCs 1..5 with both ratings, so an arousal axis that lands on PC3 is visible rather than hidden.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emlab.errors import EmlabError


def pca(x: torch.Tensor, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Rows of x [n, d] -> (scores [n, k], components [k, d] with unit rows, explained-variance ratios [k])."""
    if x.ndim != 2 or x.shape[0] < 2:
        raise EmlabError(f"PCA needs a [n >= 2, d] matrix, got {tuple(x.shape)}")
    xc = x.double() - x.double().mean(0, keepdim=True)
    _, s, vh = torch.linalg.svd(xc, full_matrices=False)
    k = min(k or vh.shape[0], vh.shape[0])
    ratio = (s**2) / (s**2).sum()
    return (xc @ vh[:k].T).float(), vh[:k].float(), [float(r) for r in ratio[:k]]


def _rank(a: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), as Spearman's rho needs."""
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a), dtype=float)
    ranks[order] = np.arange(len(a), dtype=float)
    for v in np.unique(a):
        m = a == v
        if m.sum() > 1:
            ranks[m] = ranks[m].mean()
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, float) - np.mean(x), np.asarray(y, float) - np.mean(y)
    den = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else float("nan")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    return pearson(_rank(np.asarray(x, float)), _rank(np.asarray(y, float)))


def correlate(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    n_boot: int = 2000,
    n_perm: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Pearson and Spearman with bootstrap 95% CIs (over items) and permutation p-values (two-sided)."""
    xa, ya = np.asarray(x, float), np.asarray(y, float)
    if xa.shape != ya.shape or xa.ndim != 1 or len(xa) < 4:
        raise EmlabError(f"correlate needs two equal-length 1-D series of >= 4 items, got {xa.shape} and {ya.shape}")
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"n": len(xa)}
    for name, fn in (("pearson", pearson), ("spearman", spearman)):
        r = fn(xa, ya)
        boots = []
        for _ in range(n_boot):
            idx = rng.integers(0, len(xa), len(xa))
            b = fn(xa[idx], ya[idx])
            if math.isfinite(b):
                boots.append(b)
        perm = sum(abs(fn(xa, rng.permutation(ya))) >= abs(r) - 1e-12 for _ in range(n_perm))
        out[name] = {
            "r": r,
            "ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))] if boots else None,
            "p_perm": (perm + 1) / (n_perm + 1),
        }
    return out


def circumplex(ev, site: str | None = None, n_pcs: int = 5, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """PCA of the emotion vectors at `site` and its relation to the valence / arousal norms."""
    site = site or ev.default_site()
    scores, _comps, ratio = pca(ev.matrix(site), n_pcs)
    val, aro = ev.ratings("valence").numpy(), ev.ratings("arousal").numpy()
    dom = np.array([np.nan if e.dominance is None else e.dominance for e in ev.emotions])
    s = scores.double().numpy()
    signs = np.ones(s.shape[1])
    if s.shape[1] >= 1 and pearson(s[:, 0], val) < 0:
        signs[0] = -1
    if s.shape[1] >= 2 and pearson(s[:, 1], aro) < 0:
        signs[1] = -1
    s = s * signs
    table = [
        {
            "pc": i + 1,
            "explained": ratio[i],
            "r_valence": pearson(s[:, i], val),
            "r_arousal": pearson(s[:, i], aro),
            "r_dominance": pearson(s[:, i], dom) if np.isfinite(dom).all() else None,
        }
        for i in range(s.shape[1])
    ]
    res = {
        "site": site,
        "n_emotions": len(ev.names),
        "explained": ratio,
        "pc_table": table,
        "pc1_valence": correlate(s[:, 0], val, n_boot, n_boot, seed),
        "pc2_arousal": correlate(s[:, 1], aro, n_boot, n_boot, seed) if s.shape[1] > 1 else None,
        "pc1_arousal": pearson(s[:, 0], aro),
        "pc2_valence": pearson(s[:, 1], val) if s.shape[1] > 1 else None,
        "valence_arousal_r": pearson(val, aro),
        "orientation": "PC1 sign set so r(PC1, valence) >= 0, PC2 so r(PC2, arousal) >= 0",
        "points": [
            {
                "emotion": n,
                "pc1": float(s[i, 0]),
                "pc2": float(s[i, 1]) if s.shape[1] > 1 else 0.0,
                "valence": float(val[i]),
                "arousal": float(aro[i]),
            }
            for i, n in enumerate(ev.names)
        ],
    }
    return res


def layer_profile(ev, n_boot: int = 0) -> list[dict[str, Any]]:
    """r(PC1, valence) and r(PC2, arousal) at every site (no orientation search beyond the per-site sign fix)."""
    rows = []
    for site in ev.sites:
        if float(ev.matrix(site).norm()) == 0:
            continue
        c = circumplex(ev, site, n_pcs=5, n_boot=max(n_boot, 1), seed=0)
        best_aro = max(c["pc_table"], key=lambda r: abs(r["r_arousal"]))
        best_val = max(c["pc_table"], key=lambda r: abs(r["r_valence"]))
        rows.append(
            {
                "site": site,
                "pc1_valence": c["pc1_valence"]["pearson"]["r"],
                "pc2_arousal": c["pc2_arousal"]["pearson"]["r"] if c["pc2_arousal"] else None,
                "explained_pc1": c["explained"][0],
                "explained_pc2": c["explained"][1] if len(c["explained"]) > 1 else None,
                "best_arousal_pc": best_aro["pc"],
                "best_arousal_r": best_aro["r_arousal"],
                "best_valence_pc": best_val["pc"],
                "best_valence_r": best_val["r_valence"],
            }
        )
    return rows


def plot_circumplex(result: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """PC1 x PC2 of the emotion vectors (labelled, coloured by valence) next to the norms' valence x arousal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emlab.io import atomic_path

    pts = result["points"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 6))
    val = [p["valence"] for p in pts]
    for ax, (xk, yk, xl, yl) in zip(
        axes,
        (("pc1", "pc2", "PC1", "PC2"), ("valence", "arousal", "valence (Warriner 2013)", "arousal (Warriner 2013)")),
        strict=True,
    ):
        sc = ax.scatter(
            [p[xk] for p in pts],
            [p[yk] for p in pts],
            c=val,
            cmap="coolwarm_r",
            vmin=1,
            vmax=9,
            s=28,
            edgecolors="k",
            linewidths=0.3,
        )
        for p in pts:
            ax.annotate(p["emotion"], (p[xk], p[yk]), fontsize=7, xytext=(3, 2), textcoords="offset points")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.axhline(0 if xk == "pc1" else 5, color="0.8", lw=0.6, zorder=0)
        ax.axvline(0 if xk == "pc1" else 5, color="0.8", lw=0.6, zorder=0)
    a, b = result["pc1_valence"], result["pc2_arousal"]
    axes[0].set_title(
        f"emotion vectors at {result['site']}\nPC1~valence r={a['pearson']['r']:.2f} [{a['pearson']['ci95'][0]:.2f}, {a['pearson']['ci95'][1]:.2f}]"
        + (
            f"; PC2~arousal r={b['pearson']['r']:.2f} [{b['pearson']['ci95'][0]:.2f}, {b['pearson']['ci95'][1]:.2f}]"
            if b
            else ""
        ),
        fontsize=9,
    )
    axes[1].set_title("norms: valence x arousal", fontsize=9)
    fig.colorbar(sc, ax=axes, label="valence", shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    dest = Path(path)
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return dest


def plot_layer_profile(rows: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emlab.io import atomic_path
    from emlab.sites import parse_site

    xs = [parse_site(r["site"]).layer for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(xs, [r["pc1_valence"] for r in rows], "o-", label="r(PC1, valence)")
    ax.plot(xs, [r["pc2_arousal"] for r in rows], "s-", label="r(PC2, arousal)")
    ax.plot(xs, [abs(r["best_arousal_r"]) for r in rows], ":", label="max |r(PCk, arousal)|, k<=5")
    ax.plot(xs, [abs(r["best_valence_r"]) for r in rows], "--", label="max |r(PCk, valence)|, k<=5")
    ax.set_xlabel("block (resid_post)")
    ax.set_ylabel("Pearson r")
    ax.set_ylim(-1, 1)
    ax.axhline(0, color="0.8", lw=0.6)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    dest = Path(path)
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return dest
