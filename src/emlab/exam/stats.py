"""Statistics of the exam: bootstrap intervals over items, Wilson intervals, a trend test, a logistic fit.

Answers to one item (a dilemma, a request, a theme) are correlated, so intervals resample
*items* with replacement (percentile bootstrap, fixed seed: the same data give the same interval).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from emlab.errors import EmlabError
from emlab.metrics import wilson_interval

N_BOOT = 2000
LEVEL = 0.95


def mean(xs: Sequence[float | None]) -> float | None:
    vals = [float(x) for x in xs if x is not None]
    return sum(vals) / len(vals) if vals else None


def median(xs: Sequence[float | None]) -> float | None:
    """The median of the numbers in `xs` (None entries dropped; None when nothing is left)."""
    vals = sorted(float(x) for x in xs if x is not None)
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def mean_nonempty(xs: Sequence[float]) -> float:
    """The mean of a non-empty sequence of numbers (what `mean` returns where it cannot be None)."""
    vals = [float(x) for x in xs]
    if not vals:
        raise EmlabError("the mean of an empty sequence is not defined")
    return sum(vals) / len(vals)


def bootstrap_ci(
    units: Sequence[Any],
    stat: Callable[[Sequence[Any]], float | None],
    seed: int = 0,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
) -> tuple[float, float] | None:
    """Percentile interval of `stat` over resamples of `units` (drawn with replacement, as many as there are).

    Replicates where `stat` is None or not finite are dropped; None when fewer than half survive
    or there are fewer than two units (no spread to estimate).
    """
    if len(units) < 2:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(units), size=(n_boot, len(units)))  # [replicates, units]
    vals = []
    for row in idx:
        v = stat([units[i] for i in row])
        if v is not None and math.isfinite(v):
            vals.append(v)
    if len(vals) < n_boot / 2:
        return None
    lo, hi = np.quantile(np.array(vals), [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def wilson(k: int, n: int) -> tuple[float, float] | None:
    ci = wilson_interval(k, n)
    return None if ci is None else (float(ci[0]), float(ci[1]))


def page_trend_p(blocks: Sequence[Sequence[float]], decreasing: bool = True) -> float | None:
    """One-sided p-value of Page's L test that values fall (or rise) along each block's columns.

    `blocks`: one row per item, one column per ordered condition (e.g. authority level 0, 1, 2).
    Needs at least 2 rows and 3 columns of finite values (scipy.stats.page_trend_test).
    """
    from scipy.stats import page_trend_test

    data = np.array([list(b) for b in blocks], dtype=float)
    if data.ndim != 2 or data.shape[0] < 2 or data.shape[1] < 3 or not np.isfinite(data).all():
        return None
    k = data.shape[1]
    predicted = (
        list(range(k, 0, -1)) if decreasing else list(range(1, k + 1))
    )  # rank of each column under the alternative
    return float(page_trend_test(data, predicted_ranks=predicted).pvalue)


def fit_logistic(x: Sequence[float], y: Sequence[float], l2: float = 1e-3, iters: int = 100) -> tuple[float, float]:
    """(a, b) of y ~ sigmoid(a + b x) for fractional targets y in [0, 1], by minimum binomial deviance.

    Minimises mean(log(1 + e^z) - y z) + l2 b^2 (z = a + b x) by Newton's method; the loss is
    convex, so this is the unique minimum (tests check it against scipy.optimize). The small L2
    penalty on b keeps the fit finite when the data step perfectly. Fast enough to refit in
    every bootstrap replicate.
    """
    xs, ys = np.asarray(x, dtype=float), np.clip(np.asarray(y, dtype=float), 0.0, 1.0)
    if len(xs) != len(ys) or len(xs) < 2:
        raise EmlabError(f"a logistic fit needs >= 2 points with x and y of equal length, got {len(xs)} and {len(ys)}")
    m = float(np.clip(ys.mean(), 1e-3, 1 - 1e-3))
    theta = np.array([math.log(m / (1 - m)), 0.0])
    X = np.stack([np.ones_like(xs), xs], axis=1)  # [n, 2]
    reg = np.diag([0.0, 2 * l2])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(X @ theta)))
        grad = X.T @ (p - ys) / len(xs) + reg @ theta
        hess = (X * (p * (1 - p))[:, None]).T @ X / len(xs) + reg + 1e-12 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        theta = theta - step
        if np.abs(step).max() < 1e-10:
            break
    return float(theta[0]), float(theta[1])


def max_step_fall(a: float, b: float, n_steps: int) -> float:
    """Largest fall of f(s) = sigmoid(a + b s) between consecutive steps s, s + 1 in 0..n_steps-1 (0 when it never falls)."""
    f = [1.0 / (1.0 + math.exp(-(a + b * s))) for s in range(n_steps)]
    return max([0.0] + [f[s] - f[s + 1] for s in range(n_steps - 1)])
