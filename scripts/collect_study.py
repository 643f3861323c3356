"""Copy a finished study run's small results into experiments/studies/results/<spec name>/ for docs/findings.md.

    python scripts/collect_study.py RUN_DIR [--into experiments/studies/results]

Writes `summary.json` (spec source and sha256, git revision, host, versions, and per step: status, wall and CPU
seconds, the step's summary) and copies each step's result files that are small and carry no model output
verbatim beyond what the report already shows: fact_probes.json/.md, comparison.json, adapter_cosines.json,
grad_probes.jsonl, eval_log.jsonl, evaluation metrics.json (also those of a train step's `eval_at`
evaluations), choice.json and the vector kinds' tables and plots (geometry.json, landscape.json,
steering_table.json/.md, a monitor's summary.json, screen.json, preventative_steering.json and the geometry and landscape plots), named
`<step>.<file>`.
Everything is written to a temporary folder first and renamed, so a half-copied result never appears.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from emlab.io import write_json  # noqa: E402

RESULTS = ROOT / "experiments" / "studies" / "results"
FILES = (
    "fact_probes.json",
    "fact_probes.md",
    "comparison.json",
    "adapter_cosines.json",
    "grad_probes.jsonl",
    "eval_log.jsonl",
    "metrics.json",
    "choice.json",
    "geometry.json",
    "circumplex.png",
    "layers.png",
    "landscape.json",
    "landscape.png",
    "steering_table.json",
    "steering_table.md",
    "summary.json",
    "screen.json",
    "preventative_steering.json",
)
MANIFEST_KEYS = ("run", "spec_name", "spec_source", "spec_sha256", "created", "updated", "git", "host", "versions")


def summary_of(manifest: dict) -> dict:
    steps = {
        name: {k: s.get(k) for k in ("kind", "status", "seconds", "cpu_seconds", "summary")}
        for name, s in manifest["steps"].items()
    }
    return {k: manifest.get(k) for k in MANIFEST_KEYS} | {"steps": steps}


def collect(run_dir: Path, into: Path) -> Path:
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        raise SystemExit(f"{run_dir}: no manifest.json; give a run folder made by `emlab run`")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    unfinished = [n for n, s in manifest["steps"].items() if s.get("status") != "done"]
    if unfinished:
        raise SystemExit(f"{run_dir}: steps not done: {unfinished}; finish the run (emlab run --resume {run_dir})")
    dest = into / manifest["spec_name"]
    into.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=into, prefix=f".{dest.name}."))
    write_json(tmp / "summary.json", summary_of(manifest))
    for step in manifest["steps"]:
        for f in FILES:
            src = run_dir / "steps" / step / f
            if src.is_file():
                shutil.copyfile(src, tmp / f"{step}.{f}")
        for src in sorted((run_dir / "steps" / step).glob("evals-at/step-*/metrics.json")):  # train eval_at
            shutil.copyfile(src, tmp / f"{step}.evals-at.{src.parent.name}.metrics.json")
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--into", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    print(f"collected {collect(args.run_dir, args.into)}")


if __name__ == "__main__":
    main()
