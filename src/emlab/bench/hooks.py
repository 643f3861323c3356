"""Overhead of active interventions during sampling: steer, ablate and capture vs no hook.

The same sampling workload (equal-length outputs) runs under each condition; repeats are
interleaved and the condition order rotates each round. A hook's cost is extra work, so the
figure compares tokens per CPU-second of this process (median per condition): on a machine
shared with other jobs, wall-clock rates drift with the load by more than the 5 % being
measured, CPU time does not (with OMP_WAIT_POLICY=PASSIVE idle threads burn none). Wall-clock
rates are kept in `details`.

Conditions (the shapes the experiments use):
  steer   - one vector added at the middle block's resid_post, every position
  ablate  - one unit direction projected out of every residual writer (embeddings + each
            attention and MLP output: 2 * layers + 1 hooks)
  capture - mean of every block's resid_post over response tokens
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from emlab.bench.figure import Figure, Target, median
from emlab.bench.sampling import bench_prompts, equal_length_params, run_sample
from emlab.hooks import ablate, capture, steer
from emlab.models import ChatModel
from emlab.sites import all_sites


def conditions(cm: ChatModel) -> dict[str, Callable[[], contextlib.AbstractContextManager]]:
    """Context-manager factories for each condition, with fixed random directions."""
    n, d = cm.n_layers, cm.d_model
    gen = torch.Generator().manual_seed(0)
    vec = torch.randn(d, generator=gen)
    unit = vec / vec.norm()
    mid = f"blocks.{n // 2}.resid_post"
    return {
        "none": contextlib.nullcontext,
        "steer": lambda: steer(cm.model, {mid: 4.0 * unit}),
        "ablate": lambda: ablate(cm.model, unit),
        "capture": lambda: capture(cm.model, all_sites(cm.model), positions="response", reduce="mean"),
    }


def hook_overhead_figures(cm: ChatModel, batch: int = 8, new_tokens: int = 16, repeats: int = 3) -> list[Figure]:
    """One figure per hooked condition: median tokens/s with the hook vs without."""
    conds = conditions(cm)
    names = list(conds)
    prompts = bench_prompts(batch)
    params = equal_length_params(new_tokens, batch)
    rates: dict[str, list[float]] = {k: [] for k in names}
    cpu_rates: dict[str, list[float]] = {k: [] for k in names}
    run_sample(cm, prompts[:2], equal_length_params(4, 2))  # warm-up
    for r in range(repeats):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            with conds[k]():
                _, run = run_sample(cm, prompts, params)
            rates[k].append(run.tokens_per_s)
            cpu_rates[k].append(run.generated / max(run.cpu_s, 1e-9))
    base = median(cpu_rates["none"])
    dtype = "bf16" if next(cm.model.parameters()).dtype == torch.bfloat16 else "fp32"
    out = []
    for k in names[1:]:
        value = median(cpu_rates[k])
        out.append(
            Figure(
                name=f"hooks.{k}",
                group="hooks",
                unit="tokens/cpu-s",
                value=value,
                baseline=base,
                baseline_name="same sampling, no hook",
                dtype=dtype,
                target=Target("<=5% overhead", "ratio", 1 / 1.05),
                details={
                    "overhead_pct": 100.0 * (base / value - 1.0),
                    "cpu_runs": cpu_rates[k],
                    "baseline_cpu_runs": cpu_rates["none"],
                    "wall_tokens_per_s": median(rates[k]),
                    "baseline_wall_tokens_per_s": median(rates["none"]),
                    "wall_runs": rates[k],
                    "baseline_wall_runs": rates["none"],
                    "batch_size": batch,
                    "new_tokens": new_tokens,
                    "repeats": repeats,
                },
            )
        )
    return out
