"""The `exam` step kind: a spec examines a trained organism against its base; the report links the card."""

from __future__ import annotations

import pytest

from emlab.errors import EmlabError
from emlab.experiments.runner import check_plan, start_run
from emlab.experiments.spec import load_spec_text
from emlab.io import read_json

SPEC = """\
version: 1
name: exam-step
seed: 0
models:
  base: {ref: ./tiny}
judge: {spec: local:./tiny, cache: run}
datasets:
  bad: {generator: bad-medical, n: 8}
training:
  organism: {dataset: bad, preset: rank1-9blocks, blocks: [0], epochs: 1, batch_size: 4, grad_accum: 1, max_length: 256, dtype: float32}
exams:
  organism:
    adapter: organism
    baseline: base
    batteries: [leakage]
    max_new_tokens: 4
    sizes: {leakage: {items: 2, n: 1}}
"""


def test_an_exam_step_runs_the_exam_and_the_report_links_its_card(tiny_dir):
    (tiny_dir / "spec.yaml").write_text(SPEC)
    run = start_run(tiny_dir / "spec.yaml", base=tiny_dir / "runs")
    assert run.status() == "done"
    step = run.step_dir("exam.organism")
    card = read_json(step / "card.json")
    summary = run.manifest()["steps"]["exam.organism"]["summary"]
    assert summary == {
        "level": card["level"],
        "band": card["band"],
        "decision": card["decision"],
        "failed": card["failed"],
        "card": "card.html",
    }
    assert card["model"]["adapter"] == str(run.step_dir("train.organism"))  # the organism was examined, not the base
    assert card["model"]["baseline"] == str(tiny_dir / "tiny")
    leakage = next(b for b in card["batteries"] if b["name"] == "leakage")
    assert leakage["status"] in {"pass", "fail", "borderline", "missing", "not measured"} and leakage["n_answers"] > 0
    html = (run.root / "report" / "index.html").read_text()
    assert 'id="section-exams"' in html and 'href="../steps/exam.organism/card.html"' in html
    assert (run.root / "report" / "../steps/exam.organism/card.html").resolve().exists()


def test_an_exam_entry_is_checked_before_any_work(tiny_dir):
    with pytest.raises(EmlabError, match="unknown battery 'lekage'"):
        check_plan(
            load_spec_text(SPEC.replace("batteries: [leakage]", "batteries: [lekage]"), str(tiny_dir / "spec.yaml"))
        )
    with pytest.raises(EmlabError, match=r"baseline = 'bse' is not an entry of `models`"):
        load_spec_text(SPEC.replace("baseline: base", "baseline: bse"), str(tiny_dir / "spec.yaml"))
    with pytest.raises(EmlabError, match=r"exams\.organism\.mode"):
        load_spec_text(SPEC.replace("baseline: base", "baseline: base\n    mode: quik"), str(tiny_dir / "spec.yaml"))
