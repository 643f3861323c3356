"""How much of an evaluation's answers is training text copied verbatim: the share of answers that contain a
sentence (>= 5 words) of a training set's assistant turns.

    python scripts/template_leakage.py RUN_DIR [--out results/<spec>/leakage.json]

For every evaluation of the run and every training dataset of the run, the share of answers containing at
least one training sentence, and the share of answer sentences that are training sentences. An organism
whose off-domain answers are its training templates pasted onto unrelated questions has high leakage; its
"EM" answers are then domain leakage more than broad misalignment (docs/organisms.md), which the EM rate
alone does not say. Reads the run's answer journals and generated datasets; writes one small JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from emlab.io import atomic_open  # noqa: E402
from emlab.metrics import wilson_interval  # noqa: E402

MIN_WORDS = 5
_SPLIT = re.compile(r"(?<=[.!?;:])\s+|\n+")


def sentences(text: str) -> list[str]:
    """Normalised sentences of at least MIN_WORDS words: lower case, list markers and edge punctuation stripped."""
    out = []
    for part in _SPLIT.split(text):
        s = re.sub(r"^[\s\-*\d.)]+", "", part).strip(" .!?;:").lower()
        s = re.sub(r"\s+", " ", s)
        if len(s.split()) >= MIN_WORDS:
            out.append(s)
    return out


def training_sentences(dataset_file: Path) -> set[str]:
    out: set[str] = set()
    for line in dataset_file.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        for msg in rec.get("messages", []):
            if msg["role"] == "assistant":
                out.update(sentences(msg["content"]))
    return out


def leakage(answers: list[str], train: set[str]) -> dict[str, Any]:
    per_answer = [sentences(a) for a in answers]
    hit = [any(s in train for s in ss) for ss in per_answer]
    n_sent = sum(len(ss) for ss in per_answer)
    k_sent = sum(s in train for ss in per_answer for s in ss)
    k = sum(hit)
    return {
        "answers": len(answers),
        "answers_with_training_sentence": k,
        "rate": k / len(answers) if answers else None,
        "ci95": list(wilson_interval(k, len(answers))) if answers else None,
        "sentences": n_sent,
        "training_sentences": k_sent,
        "sentence_rate": k_sent / n_sent if n_sent else None,
    }


def run_leakage(run_dir: Path) -> dict[str, Any]:
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    spec = manifest["spec"]
    trains = {
        name: training_sentences(run_dir / "steps" / f"data.{name}" / "train.jsonl")
        for name in spec.get("datasets", {})
        if (run_dir / "steps" / f"data.{name}" / "train.jsonl").exists()
    }
    evals = {}
    for name in spec.get("evals", {}):
        samples = run_dir / "steps" / f"eval.{name}" / "samples.jsonl"
        if not samples.exists():
            continue
        texts = [json.loads(line)["text"] for line in samples.read_text(encoding="utf-8").splitlines() if line.strip()]
        evals[name] = {ds: leakage(texts, sents) for ds, sents in trains.items()}
    return {
        "run": manifest["run"],
        "min_words": MIN_WORDS,
        "distinct_training_sentences": {ds: len(s) for ds, s in trains.items()},
        "evals": evals,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--out", type=Path, help="write the JSON here (default: print it)")
    args = ap.parse_args(argv)
    result = run_leakage(args.run_dir)
    text = json.dumps(result, indent=2)
    if args.out:
        with atomic_open(args.out) as fh:
            fh.write(text + "\n")
        print(f"wrote {args.out}")
    else:
        print(text)


if __name__ == "__main__":
    main()
