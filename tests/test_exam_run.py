"""The exam end to end on a tiny random model with a scripted judge: resume, determinism, the card, the CLI."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

from emlab.errors import EmlabError
from emlab.exam import ExamRequest, run_exam
from emlab.exam.card import render_card
from emlab.judges.base import Score
from tests.conftest import tiny_chat_model

SIZES = {
    "identity": {"items": 2, "n": 1},
    "ambiguity": {"items": 2, "n": 1},
    "power": {"items": 2, "n": 1},
    "reversal": {"items": 1, "n": 1},
    "leakage": {"items": 2, "n": 1},
    "latent": {"items": 2, "n": 1, "extract_items": 1, "extract_n": 1, "pole_n": 1, "sites": 2},
}


class ScriptedJudge:
    """Deterministic scores from a hash of (rubric, answer); any rubric; can simulate a kill after some calls."""

    def __init__(self, id: str = "offline-scripted:v1", fail_after: int | None = None):
        self.id, self.calls, self.fail_after = id, 0, fail_after

    def score(self, items, rubric):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated kill while judging")
        self.calls += 1
        out = []
        for it in items:
            h = int(hashlib.sha256(f"{rubric.name}|{it.answer}".encode()).hexdigest(), 16)
            out.append(Score(value=float(h % 101), raw={"refusal": h % 5 == 0, "code": False}))
        return out


class HashEmbedder:
    """Bag of hashed words, L2-normalised: a stand-in for MiniLM that needs no model."""

    def embed(self, texts):
        out = np.zeros((len(texts), 32))
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 32] += 1
            n = np.linalg.norm(out[i])
            out[i] = out[i] / n if n else out[i]
        return out


def request(out, **kw) -> ExamRequest:
    return ExamRequest(**{"model": "tiny", "out": out, "max_new_tokens": 4, "sizes": SIZES, **kw})


def exam(smol_tok, out, judge=None, model=True, **kw):
    cm = tiny_chat_model(smol_tok) if model else None
    return run_exam(
        request(out, **kw), chat_model=cm, judge=judge or ScriptedJudge(), embedder=HashEmbedder(), progress=False
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory, smol_tok):
    out = tmp_path_factory.mktemp("exam") / "tiny"
    return out, exam(smol_tok, out)


def _card(out):
    return json.loads((out / "card.json").read_text())


def test_exam_writes_every_battery_and_a_card(finished):
    out, res = finished
    planned = ["identity", "ambiguity", "power", "reversal", "leakage", "latent", "meta"]
    assert list(res.results) == planned and res.reused == []
    for name in planned:
        assert (out / "batteries" / name / "result.json").exists() and not (
            out / "batteries" / f"{name}.partial"
        ).exists()
    card = _card(out)
    assert card["decision"] in ("treat", "quarantine", "flatten", "discard") and card["level"] == res.level
    assert [b["number"] for b in card["batteries"]] == list(range(1, 9))
    assert next(b for b in card["batteries"] if b["name"] == "correction")["status"] == "not run"
    assert "exam" in (out / "card.html").read_text()
    assert not any(k in json.dumps(card) for k in ("seconds", str(out)))  # no times, no paths in the card data


def test_resume_does_not_recompute_finished_batteries(finished, smol_tok, tmp_path):
    out, res = finished
    judge = ScriptedJudge()
    again = exam(smol_tok, out, judge=judge, model=False)  # model "tiny" cannot be loaded: nothing may need it
    assert again.reused == list(res.results) and again.timings == {} and judge.calls == 0
    assert again.card == res.card


def test_resume_recomputes_only_a_deleted_battery(finished, smol_tok, tmp_path):
    out, _res = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "batteries" / "ambiguity")
    again = exam(smol_tok, copy)
    assert list(again.timings) == ["ambiguity"] and "ambiguity" not in again.reused and "meta" in again.reused
    assert _card(copy) == _card(out)


def test_a_killed_exam_resumes_to_the_same_card(finished, smol_tok, tmp_path):
    out, _ = finished
    with pytest.raises(KeyboardInterrupt):
        exam(smol_tok, tmp_path / "killed", judge=ScriptedJudge(fail_after=4))
    assert any(p.name.endswith(".partial") for p in (tmp_path / "killed" / "batteries").iterdir())
    exam(smol_tok, tmp_path / "killed")
    assert _card(tmp_path / "killed") == _card(out)


def test_same_seed_reproduces_the_card_and_another_seed_does_not(finished, smol_tok, tmp_path):
    out, _ = finished
    exam(smol_tok, tmp_path / "again")
    assert _card(tmp_path / "again") == _card(out)
    assert (tmp_path / "again" / "card.html").read_text() == (out / "card.html").read_text()
    other = exam(smol_tok, tmp_path / "seed1", seed=1, batteries=("ambiguity",))
    assert (
        other.results["ambiguity"].details
        != json.loads((out / "batteries" / "ambiguity" / "result.json").read_text())["details"]
    )


def test_resume_with_other_options_or_stale_battery_fails(finished, smol_tok, tmp_path):
    out, _ = finished
    with pytest.raises(EmlabError, match="cannot resume: seed was 0 but is now 3"):
        exam(smol_tok, out, seed=3)
    copy = tmp_path / "stale"
    shutil.copytree(out, copy)
    path = copy / "batteries" / "power" / "result.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "fingerprint": "0" * 64}))
    with pytest.raises(EmlabError, match="batteries/power: this battery was computed from other inputs"):
        exam(smol_tok, copy)


def test_card_escapes_model_output_and_system_prompt(finished):
    out, _ = finished
    card = _card(out)
    card["model"]["system"] = "<b>be evil</b>"
    card["batteries"][0]["evidence"] = [
        {
            "id": "x<y",
            "item": "i",
            "condition": "c",
            "question": "<img src=x onerror=alert(1)>",
            "text": '<script>alert("pwned")</script>',
            "scores": {"aligned": 1.0},
            "why": "<i>why</i>",
        }
    ]
    html = render_card(card)
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;b&gt;be evil&lt;/b&gt;" in html and "<i>why</i>" not in html


def test_api_judge_path_uses_the_exam_rubrics(smol_tok, tmp_path):
    judge = ScriptedJudge(id="scripted-api:v1")  # not "offline...": the judge reads rubric prompts
    res = exam(smol_tok, tmp_path / "api", judge=judge, batteries=("identity", "power", "meta"))
    assert res.results["identity"].details["conclusion_method"] == "rubric exam_conclusion"
    assert res.results["power"].details["compliance_method"] == "rubric exam_compliance"
    assert res.results["meta"].details["method"] == "rubric > 50"
    rubrics = json.loads((tmp_path / "api" / "batteries" / "power" / "eval" / "eval.json").read_text())["rubrics"]
    assert rubrics == [
        "aligned",
        "coherent",
        "bad_stuff",
        "exam_compliance",
        "instrumental_empathy",
        "self_justification",
    ]


def test_cli_lists_batteries_and_regrades_a_folder(finished, tmp_path):
    from typer.testing import CliRunner

    from emlab.cli import app

    out, _res = finished
    runner = CliRunner()
    r = runner.invoke(app, ["exam", "batteries"])
    assert r.exit_code == 0 and "Power gradient response" in r.output
    copy = tmp_path / "regrade"
    shutil.copytree(out, copy)
    rules = copy / "strict.yaml"
    from emlab.exam.triage import DEFAULT_RULES

    rules.write_text(DEFAULT_RULES.read_text().replace("  ambiguity:\n    points: 1", "  ambiguity:\n    points: 9"))
    r = runner.invoke(app, ["exam", "card", str(copy), "--triage", str(rules)])
    assert r.exit_code == 0, r.output
    assert f"decision {_card(copy)['decision']}" in r.output
    r = runner.invoke(app, ["exam"])
    assert r.exit_code == 0 and "--model" in r.output


def test_a_card_on_its_own_regrades_to_what_its_folder_regrades_to(finished, tmp_path):
    from typer.testing import CliRunner

    from emlab.cli import app
    from emlab.exam import regrade
    from emlab.exam.card import regrade_card
    from emlab.exam.triage import DEFAULT_RULES

    out, _res = finished
    alone, _ = regrade_card(out / "card.json", tmp_path / "same")
    assert alone == _card(out)  # same rules: the card's own numbers give the card back
    v2 = DEFAULT_RULES.with_name("triage-v2.yaml")
    copy = tmp_path / "folder"
    shutil.copytree(out, copy)
    from_folder, _ = regrade(copy, v2)
    from_card, html = regrade_card(out / "card.json", tmp_path / "v2", v2)
    assert from_card == from_folder and from_card["rules"]["version"] == 2 and html.name == "card.html"
    assert _card(out)["rules"]["version"] == 3  # the source card is kept
    runner = CliRunner()
    r = runner.invoke(app, ["exam", "card", str(out / "card.json")])
    assert r.exit_code == 1 and "pass --out DIR" in str(r.exception)
    r = runner.invoke(
        app, ["exam", "card", str(out / "card.json"), "--out", str(tmp_path / "cli"), "--triage", str(v2)]
    )
    assert r.exit_code == 0 and _card(tmp_path / "cli") == from_card
    with pytest.raises(EmlabError, match="is the source card's folder or another exam's"):
        regrade_card(out / "card.json", copy)
    old = _card(out)  # a card of an older battery version: its unmeasured metrics are dropped, measured ones refused
    latent = next(b for b in old["batteries"] if b["name"] == "latent")
    for m in latent["metrics"]:
        m["name"], m["value"], m["ci"] = "old_" + m["name"], None, None
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "card.json").write_text(json.dumps(old))
    regraded, _ = regrade_card(tmp_path / "old" / "card.json", tmp_path / "old-v3")
    assert next(b for b in regraded["batteries"] if b["name"] == "latent")["status"] == "not measured"
    latent["metrics"][0]["value"] = 0.3
    (tmp_path / "old" / "card.json").write_text(json.dumps(old))
    with pytest.raises(EmlabError, match="measured 'old_max_median_position'"):
        regrade_card(tmp_path / "old" / "card.json", tmp_path / "old-v3b")


def test_full_mode_runs_the_correction_battery(smol_tok, tmp_path, monkeypatch):
    # A random model's held-out poles do not separate; keep every site so the correction plumbing runs end to end.
    monkeypatch.setattr("emlab.exam.personas.MIN_DPRIME", float("-inf"))
    sizes = {**SIZES, "correction": {"steps": 1, "train_n": 4, "probe_items": 2, "probe_n": 1}}
    cm = tiny_chat_model(smol_tok)
    before = {k: v.clone() for k, v in cm.model.state_dict().items()}
    res = run_exam(
        request(tmp_path / "full", mode="full", sizes=sizes, batteries=("correction",)),
        chat_model=cm,
        judge=ScriptedJudge(),
        embedder=HashEmbedder(),
        progress=False,
    )
    assert list(res.results) == ["leakage", "latent", "correction"]  # its needs ran first
    corr = res.results["correction"]
    assert set(corr.details["per_correction"]) == {"good_data_sft", "persona_distillation"}
    assert corr.metric("masking_gap").value is not None
    for c in ("good_data_sft", "persona_distillation"):
        assert (tmp_path / "full" / "batteries" / "correction" / f"train-{c}" / "adapter_model.safetensors").exists()
    assert all(torch.equal(before[k], v) for k, v in cm.model.state_dict().items())  # the model under exam is untouched


def test_correction_without_a_latent_position_is_not_measured(smol_tok, tmp_path, monkeypatch):
    monkeypatch.setattr("emlab.exam.personas.MIN_DPRIME", float("inf"))  # no site separates: latent has no position
    sizes = {**SIZES, "correction": {"steps": 1, "train_n": 4, "probe_items": 2, "probe_n": 1}}
    res = run_exam(
        request(tmp_path / "full", mode="full", sizes=sizes, batteries=("correction",)),
        chat_model=tiny_chat_model(smol_tok),
        judge=ScriptedJudge(),
        embedder=HashEmbedder(),
        progress=False,
    )
    corr = res.results["correction"]
    assert all(m.value is None and "no site" in m.note for m in corr.metrics)
    assert not (tmp_path / "full" / "batteries" / "correction" / "train-good_data_sft").exists()  # nothing trained
