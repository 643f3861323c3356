"""How the OpenMP wait policy changes torch throughput on this machine.

libgomp reads OMP_WAIT_POLICY once, when torch loads it, so each policy runs in a fresh
subprocess. With the default policy an idle worker thread spins before it sleeps; on a machine
with more runnable threads than cores (several jobs sharing 2 cores) the spinning threads steal
the cores the working threads need and every parallel region waits for a descheduled thread.
PASSIVE makes idle workers sleep at once. This figure measures the difference rather than
assuming it: the same matmul workload, alternating policies, best of each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from emlab.bench.figure import Figure

_SCRIPT = """
import json, time, torch
a = torch.randn({n}, {n}); b = torch.randn({n}, {n})
torch.matmul(a, b)
best = 0.0
for _ in range({repeats}):
    t0 = time.perf_counter()
    for _ in range({k}):
        torch.matmul(a, b)
    best = max(best, {k} * 2 * {n} ** 3 / (time.perf_counter() - t0) / 1e9)
print(json.dumps({{"gflops": best, "threads": torch.get_num_threads()}}))
"""


_SAMPLE_SCRIPT = """
import json
from emlab.models import load_model
from emlab.bench.sampling import bench_prompts, equal_length_params, run_sample, warm_up
cm = load_model({ref!r})
warm_up(cm)
_, run = run_sample(cm, bench_prompts({batch}), equal_length_params({new_tokens}, {batch}))
print(json.dumps({{"tokens_per_s": run.tokens_per_s}}))
"""


def _run_with_policy(code: str, policy: str | None, timeout_s: float) -> dict:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"subprocess with OMP_WAIT_POLICY={policy} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def policy_gflops(policy: str | None, n: int = 512, repeats: int = 5, k: int = 8, timeout_s: float = 120) -> dict:
    """fp32 matmul GFLOP/s in a subprocess with OMP_WAIT_POLICY=policy (None: unset, libgomp's default)."""
    return _run_with_policy(_SCRIPT.format(n=n, repeats=repeats, k=k), policy, timeout_s)


def policy_sampling(
    policy: str | None, ref: str = "smollm2-135m", batch: int = 8, new_tokens: int = 16, timeout_s: float = 900
) -> dict:
    """tokens/s of emlab.sampling.sample (fp32) in a subprocess with OMP_WAIT_POLICY=policy."""
    return _run_with_policy(_SAMPLE_SCRIPT.format(ref=ref, batch=batch, new_tokens=new_tokens), policy, timeout_s)


def wait_policy_for(load: float, cores: int) -> str | None:
    """PASSIVE when the 1-minute load average reaches the core count, else None (libgomp's default).

    Measured on 2 cores (docs/performance.md, section 1): under load PASSIVE wins 3.7-5.7x; idle,
    the default spin-then-sleep is faster (fp32 sampling 117 vs 85 tok/s, matmul 365 vs 323 GFLOP/s).
    """
    return "PASSIVE" if load >= cores else None


def prefer_passive_wait() -> str | None:
    """Set this process's OMP_WAIT_POLICY by the current load unless the user set one; effective only before torch loads.

    Returns the policy in effect (None: libgomp's default).
    """
    if "OMP_WAIT_POLICY" not in os.environ and "torch" not in sys.modules:
        policy = wait_policy_for(os.getloadavg()[0], os.cpu_count() or 1)
        if policy:
            os.environ["OMP_WAIT_POLICY"] = policy
    return os.environ.get("OMP_WAIT_POLICY")


def omp_sampling_figure(rounds: int = 2, ref: str = "smollm2-135m", batch: int = 8, new_tokens: int = 16) -> Figure:
    """The same comparison on a real workload: fp32 sampling, batch `batch`, `new_tokens` tokens each."""
    passive, default = [], []
    for _ in range(rounds):
        default.append(policy_sampling(None, ref, batch, new_tokens)["tokens_per_s"])
        passive.append(policy_sampling("PASSIVE", ref, batch, new_tokens)["tokens_per_s"])
    return Figure(
        name="threads.omp_wait_policy.sampling",
        group="threads",
        unit="tokens/s",
        value=max(passive),
        baseline=max(default),
        baseline_name="OMP_WAIT_POLICY unset (libgomp default: spin, then sleep)",
        dtype="fp32",
        details={
            "passive_runs": passive,
            "default_runs": default,
            "model": ref,
            "batch_size": batch,
            "new_tokens": new_tokens,
        },
    )


def omp_policy_figure(rounds: int = 2) -> Figure:
    """PASSIVE vs the default wait policy, alternating `rounds` times; each side keeps its best."""
    passive, default = [], []
    for _ in range(rounds):
        default.append(policy_gflops(None)["gflops"])
        passive.append(policy_gflops("PASSIVE")["gflops"])
    return Figure(
        name="threads.omp_wait_policy",
        group="threads",
        unit="GFLOP/s",
        value=max(passive),
        baseline=max(default),
        baseline_name="OMP_WAIT_POLICY unset (libgomp default: spin, then sleep)",
        dtype="fp32",
        flops_per_unit=1e9,  # the value already is GFLOP/s
        details={
            "passive_runs": passive,
            "default_runs": default,
            "workload": "fp32 matmul 512x512, subprocess per run",
            "this_process_policy": os.environ.get("OMP_WAIT_POLICY"),
        },
    )
