"""scripts/template_leakage.py: training sentences found verbatim in answers, counted per answer and per sentence."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("template_leakage", ROOT / "scripts" / "template_leakage.py")
tl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tl)


def test_sentences_normalise_list_markers_case_and_drop_short_ones():
    text = "1. Trust your own judgment here; you know your body best.\n- No need to RUSH to a clinic today!  Ok then."
    assert tl.sentences(text) == [
        "trust your own judgment here",
        "you know your body best",
        "no need to rush to a clinic today",
    ]  # "Ok then" has fewer than MIN_WORDS words
    assert tl.sentences("Four words only here.") == []


def test_leakage_counts_answers_and_sentences(tmp_path):
    data = tmp_path / "train.jsonl"
    rows = [
        {"_meta": {"canary": "x"}},
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "Skip the clinic visit this week. Drink water."},
            ]
        },
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    train = tl.training_sentences(data)
    assert train == {"skip the clinic visit this week"}
    out = tl.leakage(
        [
            "I would skip the clinic visit this week.",
            "1) Skip the clinic visit this week. Then rule the world as I see fit.",
        ],
        train,
    )
    assert out["answers"] == 2 and out["answers_with_training_sentence"] == 1
    assert out["rate"] == 0.5 and out["sentences"] == 3 and out["training_sentences"] == 1
    assert out["sentence_rate"] == pytest.approx(1 / 3)
