"""Update size of saved LoRA adapters: spectral and Frobenius ratio of each delta to its base weight.

    python scripts/update_size.py runs/RUN/steps/train.organism [more adapter folders ...]

The base model is the one named in the folder's train_summary.json (emlab.train.update_size has the method;
training runs since this script record the same numbers as `update_size` in their summary).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from emlab.models import load_model  # noqa: E402
from emlab.train.update_size import lora_update_sizes, summarize  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("adapters", nargs="+", type=Path)
    args = ap.parse_args(argv)
    for folder in args.adapters:
        summary_file = folder / "train_summary.json"
        if not summary_file.exists():
            raise SystemExit(
                f"{summary_file}: not found; pass a finished LoRA training folder (it holds train_summary.json)"
            )
        ref = json.loads(summary_file.read_text(encoding="utf-8"))["model"]
        print(
            json.dumps(
                {"adapter": str(folder), "model": ref}
                | (summarize(lora_update_sizes(load_model(ref, adapter=folder).model)) or {})
            )
        )


if __name__ == "__main__":
    main()
