"""A steered model under exam (emlab.exam.steering): only the examined model is steered, the hook goes away,
the card says how it was steered, a resume must steer the same way, and the spec step wires a persona vector in."""

from __future__ import annotations

import json

import pytest
import torch

from emlab.errors import EmlabError
from emlab.exam import ExamRequest, run_exam
from emlab.exam.context import read_answers
from emlab.exam.steering import ExamSteer
from emlab.experiments.runner import check_plan, start_run
from emlab.experiments.spec import load_spec_text
from emlab.io import read_json
from emlab.vectors.directions import Direction
from tests.conftest import tiny_chat_model
from tests.test_exam_run import HashEmbedder, ScriptedJudge

LEAKAGE = {"leakage": {"items": 2, "n": 2}}


@pytest.fixture
def direction(tmp_path):
    gen = torch.Generator().manual_seed(3)
    vectors = {f"blocks.{i}.resid_post": torch.randn(32, generator=gen) for i in range(3)}
    return Direction(vectors, {"model": "tiny-llama", "revision": "random-seed-0", "trait": "evil"}).save(
        tmp_path / "evil"
    )


def leakage_exam(cm, out, steer=None, baseline=True):
    req = ExamRequest(
        model="tiny", out=out, max_new_tokens=6, sizes=LEAKAGE, batteries=("leakage",), steer=steer,
        baseline="tiny" if baseline else None,
    )  # fmt: skip
    return run_exam(
        req, chat_model=cm, baseline_model=cm if baseline else None, judge=ScriptedJudge(),
        embedder=HashEmbedder(), progress=False,
    )  # fmt: skip


def texts(out, sub):
    return [a["text"] for a in read_answers(out / "batteries" / "leakage" / sub)]


def logits(cm):
    ids = cm.tokenizer("a plain probe sentence", return_tensors="pt").input_ids
    with torch.no_grad():
        return cm.model(ids).logits


def test_only_the_examined_model_is_steered_and_the_hook_goes_away(smol_tok, direction, tmp_path):
    cm = tiny_chat_model(smol_tok)
    before = logits(cm)
    leakage_exam(cm, tmp_path / "plain")
    steer = ExamSteer(direction, 4.0, "blocks.1.resid_post")
    leakage_exam(cm, tmp_path / "steered", steer)  # the baseline is the very same object
    assert texts(tmp_path / "steered", "eval") != texts(tmp_path / "plain", "eval")
    assert texts(tmp_path / "steered", "eval-baseline") == texts(tmp_path / "plain", "eval-baseline")
    assert torch.equal(logits(cm), before)  # no hook left on the caller's model

    card = json.loads((tmp_path / "steered" / "card.json").read_text())
    s = card["model"]["steer"]
    assert (s["vector"], s["site"], s["scale"], s["origin"]) == (
        "evil",
        "blocks.1.resid_post",
        4.0,
        "tiny-llama@random-seed-0",
    )
    assert s["added_norm"] == pytest.approx(4.0 * s["resid_norm"], rel=1e-3) and s["resid_norm"] > 0
    assert 'id="steering"' in (tmp_path / "steered" / "card.html").read_text()
    assert json.loads((tmp_path / "plain" / "card.json").read_text())["model"]["steer"] is None


def test_an_unshared_model_is_steered_in_place_and_released(smol_tok, direction, tmp_path):
    cm = tiny_chat_model(smol_tok)
    before = logits(cm)
    leakage_exam(cm, tmp_path / "a", baseline=False)
    leakage_exam(cm, tmp_path / "b", ExamSteer(direction, 4.0), baseline=False)
    assert texts(tmp_path / "a", "eval") != texts(tmp_path / "b", "eval")
    assert torch.equal(logits(cm), before)
    assert (
        read_json(tmp_path / "b" / "exam.json")["steering"]["site"] == "blocks.2.resid_post"
    )  # index 3 * 2 // 3 of 3 sites


def test_a_resume_must_steer_the_same_way(smol_tok, direction, tmp_path):
    cm = tiny_chat_model(smol_tok)
    leakage_exam(cm, tmp_path / "x", ExamSteer(direction, 4.0), baseline=False)
    with pytest.raises(EmlabError, match="cannot resume: steer was"):
        leakage_exam(cm, tmp_path / "x", ExamSteer(direction, 2.0), baseline=False)
    with pytest.raises(EmlabError, match="cannot resume: steer was"):
        leakage_exam(cm, tmp_path / "x", None, baseline=False)


def test_bad_steering_requests_fail_with_the_fix(direction, tmp_path):
    with pytest.raises(EmlabError, match="battery correction cannot examine a steered model"):
        ExamRequest(model="m", out=tmp_path, mode="full", steer=ExamSteer(direction, 0.25))
    with pytest.raises(
        EmlabError,
        match=r"steering site blocks.7.resid_post \(--steer-site or the spec.s steering.site\) is not a site",
    ):
        ExamSteer(direction, 0.25, "blocks.7.resid_post").identity()
    with pytest.raises(EmlabError, match="not a direction folder"):
        ExamSteer(tmp_path / "nowhere", 0.25).identity()
    with pytest.raises(EmlabError, match="steering scale nan is not a finite number"):
        ExamSteer(direction, float("nan"))


SPEC = """\
version: 1
name: exam-steered
seed: 0
models:
  base: {ref: ./tiny}
judge: {spec: offline, cache: none}
persona_vectors:
  evil: {trait: evil, prompts: 2, max_questions: 2, max_new_tokens: 4, sites: [blocks.0.resid_post, blocks.1.resid_post]}
exams:
  steered:
    baseline: base
    batteries: [leakage]
    max_new_tokens: 4
    sizes: {leakage: {items: 2, n: 1}}
    steering: {persona: evil, scale: 2.0}
"""


def test_an_exam_step_steers_along_a_persona_vector_of_the_spec(tiny_dir, monkeypatch):
    from tests.test_vectors_cli import FakeOffline

    monkeypatch.setattr("emlab.experiments.steps.make_judge", lambda cfg, root: FakeOffline())
    (tiny_dir / "spec.yaml").write_text(SPEC)
    run = start_run(tiny_dir / "spec.yaml", base=tiny_dir / "runs")
    assert run.status() == "done"
    order = list(run.manifest()["steps"])
    assert order.index("persona-vector.evil") < order.index("exam.steered")
    steer = read_json(run.step_dir("exam.steered") / "card.json")["model"]["steer"]
    assert (steer["vector"], steer["scale"], steer["site"]) == ("evil", 2.0, "blocks.1.resid_post")


@pytest.mark.parametrize(
    "old,new,message",
    [
        ("{persona: evil, scale", "{persona: evill, scale", "did you mean 'evil'"),
        (
            "batteries: [leakage]",
            "mode: full\n    batteries: [correction]",
            "battery correction cannot examine a steered",
        ),
    ],
)
def test_exam_steering_entries_are_checked_when_the_spec_is_planned(tiny_dir, old, new, message):
    with pytest.raises(EmlabError, match=message):
        check_plan(load_spec_text(SPEC.replace(old, new), str(tiny_dir / "spec.yaml")))
