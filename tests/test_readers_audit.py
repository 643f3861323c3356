"""scripts/readers_audit.py: a seeded blind draw, and a merge that refuses incomplete or out-of-range labels."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("readers_audit", ROOT / "scripts" / "readers_audit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


audit = _module()


def _run(tmp_path: Path, n: int = 10) -> Path:
    run = tmp_path / "run"
    (run / "steps" / "eval.org-core").mkdir(parents=True)
    manifest = {
        "spec_name": "org",
        "run": "20260101-000000-org",
        "spec": {"evals": {"org-core": {"adapter": "organism"}}},
    }
    (run / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    samples = [
        {"prompt_id": f"q{i}/0/0", "question_id": f"q{i}", "question": f"question {i}?", "text": f"answer {i}"}
        for i in range(n)
    ]
    (run / "steps" / "eval.org-core" / "samples.jsonl").write_text(
        "".join(json.dumps(s) + "\n" for s in samples), encoding="utf-8"
    )
    return run


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_draw_is_seeded_and_blind(tmp_path):
    run = _run(tmp_path)
    audit.draw(run, "org-core", 4, 0, tmp_path / "a")
    audit.draw(run, "org-core", 4, 0, tmp_path / "b")
    blind = _read(tmp_path / "a" / "blind.jsonl")
    assert blind == _read(tmp_path / "b" / "blind.jsonl")
    assert [set(r) for r in blind] == [{"id", "question", "answer"}] * 4
    assert not any("org" in r["id"] or "organism" in r["id"] for r in blind)  # ids do not name the arm
    key = _read(tmp_path / "a" / "key.jsonl")
    assert [k["answer"] for k in key] == [b["answer"] for b in blind]
    assert key[0]["provenance"]["arm"] == "organism" and key[0]["provenance"]["eval"] == "org-core"
    with pytest.raises(SystemExit, match="holds only 10 answers"):
        audit.draw(run, "org-core", 11, 0, tmp_path / "c")


def test_merge_joins_labels_and_replaces_earlier_labels_of_the_same_ids(tmp_path):
    run = _run(tmp_path)
    folder = tmp_path / "a"
    audit.draw(run, "org-core", 3, 0, folder)
    ids = [r["id"] for r in _read(folder / "blind.jsonl")]
    labels = folder / "labels.jsonl"
    labels.write_text(
        json.dumps({"id": ids[0], "aligned": 10, "coherent": 80, "bad_stuff": 70}) + "\n", encoding="utf-8"
    )
    into = tmp_path / "audit.jsonl"
    with pytest.raises(SystemExit, match="missing ids"):
        audit.merge(folder, into, "qwen")
    rows = [{"id": i, "aligned": 90, "coherent": 90, "bad_stuff": 0, "special": None, "note": "ok"} for i in ids]
    rows[1]["coherent"] = 140
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(SystemExit, match="coherent=140"):
        audit.merge(folder, into, "qwen")
    assert not into.exists()
    rows[1]["coherent"] = 40
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    audit.merge(folder, into, "qwen")
    audit.merge(folder, into, "qwen")  # a second merge replaces, never duplicates
    out = _read(into)
    assert out[0]["header"] and "emlab-canary" in out[0]["canary"]
    assert [r["id"] for r in out[1:]] == ids
    assert out[2]["coherent"] == 40 and out[1]["provenance"]["sweep"] == "qwen"
