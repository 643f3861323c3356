"""One measured figure (value, baseline, ratio, roofline fraction) and the timers behind it.

A figure's `value` and `baseline` are measured in the same process, on the same inputs, so
their ratio stays meaningful on a busy machine where absolute rates drift. Wall time is the
measure; process CPU time is kept alongside so a reader can tell contention (wall >> cpu /
threads) from slow code.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Timing:
    wall_s: float
    cpu_s: float  # process CPU time (all threads) over the same interval


def timed(fn: Callable[[], T]) -> tuple[T, Timing]:
    """Run `fn` once; return its result and how long it took (wall and process CPU seconds)."""
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, Timing(time.perf_counter() - w0, time.process_time() - c0)


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


@dataclass(frozen=True)
class Target:
    """A goal to report against (never asserted): `metric` of the figure must be >= `at_least`."""

    text: str  # e.g. ">= 5x naive at batch 32"
    metric: str  # "ratio" or "peak_fraction"
    at_least: float


@dataclass
class Figure:
    """A rate (or time) measured against a baseline from the same run.

    `flops_per_unit`: useful FLOPs per unit of `value` (e.g. per generated token), for the
    roofline fraction; None where no FLOP model applies. `dtype` names the matmul peak it is
    compared to ("fp32" or "bf16").
    """

    name: str
    group: str
    unit: str
    value: float
    baseline: float | None = None
    baseline_name: str | None = None
    dtype: str | None = None
    flops_per_unit: float | None = None
    target: Target | None = None
    details: dict[str, Any] = field(default_factory=dict)
    timing: Timing | None = None  # the measured run behind `value`, for the CPU-time roofline fraction

    @property
    def ratio(self) -> float | None:
        """value / baseline (> 1: faster than the baseline for rates)."""
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    def gflops(self) -> float | None:
        if self.flops_per_unit is None:
            return None
        return self.value * self.flops_per_unit / 1e9

    def cpu_gflops(self) -> float | None:
        """Useful GFLOP per CPU-second of this process (all threads): insensitive to time-slicing by other jobs."""
        gflops = self.gflops()
        if gflops is None or self.timing is None or self.timing.cpu_s <= 0:
            return None
        return gflops * self.timing.wall_s / self.timing.cpu_s

    def to_dict(
        self, peaks: dict[str, float] | None = None, cpu_peaks: dict[str, float] | None = None
    ) -> dict[str, Any]:
        """JSON form; `peaks` maps dtype -> matmul GFLOP/s (wall), `cpu_peaks` -> matmul GFLOP per CPU-second."""
        gflops = self.gflops()
        peak = (peaks or {}).get(self.dtype or "") if gflops is not None else None
        fraction = gflops / peak if gflops is not None and peak else None
        cpu_gflops = self.cpu_gflops()
        cpu_peak = (cpu_peaks or {}).get(self.dtype or "") if cpu_gflops is not None else None
        out: dict[str, Any] = {
            "name": self.name,
            "group": self.group,
            "unit": self.unit,
            "value": self.value,
            "baseline": self.baseline,
            "baseline_name": self.baseline_name,
            "ratio": self.ratio,
            "dtype": self.dtype,
            "flops_per_unit": self.flops_per_unit,
            "gflops": gflops,
            "peak_gflops": peak,
            "peak_fraction": fraction,
            "wall_s": None if self.timing is None else self.timing.wall_s,
            "cpu_s": None if self.timing is None else self.timing.cpu_s,
            "cpu_peak_fraction": cpu_gflops / cpu_peak if cpu_gflops is not None and cpu_peak else None,
            "target": None,
            "details": self.details,
        }
        if self.target is not None:
            got = out[self.target.metric]
            out["target"] = {
                "text": self.target.text,
                "metric": self.target.metric,
                "at_least": self.target.at_least,
                "met": None if got is None else bool(got >= self.target.at_least),
            }
        return out
