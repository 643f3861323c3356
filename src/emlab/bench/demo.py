"""`emlab demo` wall time split by step, read from a demo run's manifest.

`--quick` reads the newest finished-or-not demo run under the runs folder; `--full` first runs
`emlab demo --quick` in a subprocess (into a temporary runs folder) and reads that one. Step
seconds are what the run store recorded for each step; these are times, with no baseline.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emlab.bench.figure import Figure
from emlab.errors import EmlabError

DEMO_SPECS = ("demo", "demo-quick")


def latest_demo_run(runs_dir: str | Path | None = None) -> Path | None:
    """The newest run folder whose spec is a demo spec, or None."""
    from emlab.store import list_runs

    rows = [r for r in list_runs(runs_dir) if r["spec"] in DEMO_SPECS]
    return Path(rows[-1]["path"]) if rows else None


def step_figures(run_root: Path, wall_s: float | None = None) -> list[Figure]:
    """One figure per step (seconds as recorded), plus the total."""
    from emlab.store import Run

    m = Run(run_root).manifest()
    spec = m.get("spec_name", "?")
    out = []
    total = 0.0
    for name, step in m["steps"].items():
        secs = step.get("seconds")
        if secs is None:
            continue
        total += secs
        out.append(
            Figure(
                name=f"demo.step.{name}",
                group="demo",
                unit="s",
                value=float(secs),
                details={"run": m.get("run"), "spec": spec, "status": step.get("status"), "kind": step.get("kind")},
            )
        )
    details = {
        "run": m.get("run"),
        "spec": spec,
        "steps_timed": len(out),
        "steps": len(m["steps"]),
        "created": m.get("created"),
    }
    if wall_s is not None:
        details["process_wall_s"] = wall_s
    out.append(Figure(name="demo.total", group="demo", unit="s", value=total, details=details))
    return out


def run_demo_quick(timeout_s: float = 3600) -> tuple[Path, float]:
    """Run `emlab demo --quick` into a temporary runs folder; return (run folder, wall seconds)."""
    tmp = Path(tempfile.mkdtemp(prefix="emlab-bench-demo-"))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "emlab.cli", "demo", "--quick", "--runs-dir", str(tmp)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    wall = time.perf_counter() - t0
    run = latest_demo_run(tmp)
    if proc.returncode != 0 or run is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise EmlabError(f"`emlab demo --quick` failed (exit {proc.returncode}): {tail[0]}")
    return run, wall


def demo_figures(runs_dir: str | Path | None = None, run_quick: bool = False) -> list[Figure]:
    if run_quick:
        run, wall = run_demo_quick()
        return step_figures(run, wall)
    latest = latest_demo_run(runs_dir)
    if latest is None:
        raise EmlabError(
            "no demo run found under the runs folder; run `emlab demo --quick` first, or `emlab bench --full` (which runs it)"
        )
    return step_figures(latest)
