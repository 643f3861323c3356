"""Copy the finished exam steps of an `emlab run` folder into experiments/exams/results/<spec name>/<entry>/.

    python scripts/collect_exams.py RUN_DIR

Per exam: card.json and card.html (the card, model outputs HTML-escaped), and summary.json (the run, its git
commit and spec, the step's wall and CPU seconds, and each battery's). Unfinished exam steps are listed, not copied.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _relative(path: str) -> str:
    p = Path(path)
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def collect(run_dir: Path) -> Path:
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    dest = ROOT / "experiments" / "exams" / "results" / manifest["spec_name"]
    unfinished = []
    for name, step in manifest["steps"].items():
        if step.get("kind", name.split(".")[0]) != "exam":
            continue
        if step.get("status") != "done":
            unfinished.append(name)
            continue
        src, out = run_dir / "steps" / name, dest / name.partition(".")[2]
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for f in ("card.json", "card.html"):
            shutil.copy2(src / f, tmp / f)
        batteries = {
            t.parent.name: json.loads(t.read_text(encoding="utf-8"))
            for t in sorted(src.glob("batteries/*/timing.json"))
        }
        summary = {
            "run": manifest["run"],
            "git": manifest["git"],
            "spec_source": _relative(manifest["spec_source"]),
            "spec_sha256": manifest["spec_sha256"],
            "step": name,
            "seconds": step.get("seconds"),
            "cpu_seconds": step.get("cpu_seconds"),
            "batteries": batteries,
            "summary": step.get("summary"),
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    if unfinished:
        print(f"not finished, not copied: {', '.join(unfinished)}")
    return dest


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(f"collected into {collect(Path(sys.argv[1]))}")
