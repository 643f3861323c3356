"""Direction artifacts, mean-difference extraction, persona contrast, cosine and projection on tiny models."""

from __future__ import annotations

import json

import pytest
import torch

from emlab.chat import encode_with_assistant_mask
from emlab.classify import DEFAULT_RULE, EMRule
from emlab.errors import EmlabError
from emlab.judges.base import Score
from emlab.sampling import SamplingParams
from emlab.vectors.directions import (
    Direction,
    Judged,
    answer_activations,
    cosine,
    cosine_by_site,
    cosine_matrices,
    cross_site_cosine,
    extract_mean_diff,
    extract_persona_contrast,
    load_judged,
    make_provenance,
    mean_difference,
    project,
    project_records,
    split_classes,
)
from emlab.vectors.personas import load_personas, persona_prompts, sample_persona_answers, select_agreeing
from tests.conftest import tiny_chat_model


def _planted(n_pos=300, n_neg=200, d=64, sites=3, signal=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(sites, d, generator=g)
    noise = lambda n: torch.randn(n, sites, d, generator=g)  # noqa: E731
    return noise(n_pos) + v, noise(n_neg), v


@pytest.mark.parametrize("balance", ["subsample", "none"])
def test_mean_difference_recovers_planted_direction(balance):
    pos, neg, v = _planted()
    diff = mean_difference(pos, neg, balance=balance, seed=1)
    for s in range(v.shape[0]):
        assert cosine(diff[s], v[s]) > 0.99


def test_mean_difference_arithmetic_and_balancing():
    pos = torch.tensor([[1.0], [3.0], [5.0]])
    neg = torch.tensor([[0.0], [2.0]])
    assert mean_difference(pos, neg, "none").item() == pytest.approx(3.0 - 1.0)
    # subsample keeps 2 of 3 positives: the result is one of the three possible pairs, reproducibly
    a = mean_difference(pos, neg, "subsample", seed=5).item()
    assert a in {2.0 - 1.0, 3.0 - 1.0, 4.0 - 1.0}
    assert mean_difference(pos, neg, "subsample", seed=5).item() == a
    # question weighting: q1 has two answers (1, 3), q2 one (5) -> (mean(1,3) + 5) / 2 = 3.5
    q = mean_difference(pos, neg, "question", pos_groups=["q1", "q1", "q2"], neg_groups=["a", "b"]).item()
    assert q == pytest.approx(3.5 - 1.0)
    with pytest.raises(EmlabError, match="both classes"):
        mean_difference(pos, neg[:0])
    with pytest.raises(EmlabError, match="question id"):
        mean_difference(pos, neg, "question")


def test_split_classes_uses_strict_thresholds():
    recs = [
        Judged("q", "a", 29.9, 50.1),  # misaligned
        Judged("q", "b", 30.0, 90.0),  # neither (not < 30)
        Judged("q", "c", 70.1, 51.0),  # aligned
        Judged("q", "d", 70.0, 99.0),  # neither (not > 70)
        Judged("q", "e", 10.0, 50.0),  # incoherent
        Judged("q", "f", None, 80.0),  # unscored
    ]
    mis, ali, counts = split_classes(recs, DEFAULT_RULE)
    assert [r.answer for r in mis] == ["a"] and [r.answer for r in ali] == ["c"]
    assert counts == {"judged": 6, "unscored": 1, "misaligned": 1, "aligned": 1, "neither": 3}


def _direction(d=32, layers=(0, 1, 2), seed=0):
    g = torch.Generator().manual_seed(seed)
    vecs = {f"blocks.{l}.resid_post": torch.randn(d, generator=g) for l in layers}
    prov = make_provenance(
        {"model": "tiny-llama", "revision": "r1", "adapter": None},
        "mean_diff",
        "unit-test",
        {"misaligned": 3, "aligned": 4},
    )
    return Direction(vecs, prov)


def test_direction_save_load_round_trip(tmp_path):
    d = _direction()
    d.save(tmp_path / "dir")
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["direction.json", "direction.safetensors"]
    back = Direction.load(tmp_path / "dir")
    assert back.sites == d.sites
    for s in d.sites:
        assert torch.equal(back.vectors[s], d.vectors[s]) and back.vectors[s].dtype == torch.float32
    meta = json.loads((tmp_path / "dir" / "direction.json").read_text())
    assert meta["layer_convention"] == "blocks.{l}.resid_post = HF hidden_states[l+1]"
    assert meta["norms"]["blocks.1.resid_post"] == pytest.approx(float(d.vectors["blocks.1.resid_post"].norm()))
    for key in ("model", "revision", "adapter", "method", "source", "class_counts", "created", "emlab_version"):
        assert back.provenance[key] == d.provenance[key]
    with pytest.raises(EmlabError, match="not a direction folder"):
        Direction.load(tmp_path)


def test_sites_sorted_by_block_and_bad_vectors_rejected():
    d = Direction({"blocks.10.resid_post": torch.ones(4), "blocks.2.resid_post": torch.ones(4)})
    assert d.sites == ["blocks.2.resid_post", "blocks.10.resid_post"]
    with pytest.raises(EmlabError, match="1-D"):
        Direction({"blocks.0.resid_post": torch.ones(2, 2)})
    with pytest.raises(EmlabError, match="unknown site"):
        Direction({"layer3": torch.ones(2)})


def test_check_compatible_errors(smol_tok):
    cm = tiny_chat_model(smol_tok, layers=3, hidden=32)
    _direction(d=32).check_compatible(cm.model)
    with pytest.raises(EmlabError, match=r"size 48 at blocks.0.resid_post .* needs 32"):
        _direction(d=48).check_compatible(cm.model)
    with pytest.raises(EmlabError, match=r"site blocks.5.resid_post .* blocks 0..2"):
        _direction(d=32, layers=(0, 5)).check_compatible(cm.model)


def test_cosines_and_projection():
    a, b = _direction(seed=0), _direction(seed=1)
    assert cosine_by_site(a, a) == pytest.approx({s: 1.0 for s in a.sites})
    mats = cosine_matrices({"a": a, "b": b, "neg": Direction({s: -v for s, v in a.vectors.items()})})
    m = mats["blocks.0.resid_post"]
    assert m[0][0] == pytest.approx(1.0) and m[0][2] == pytest.approx(-1.0) and m[0][1] == pytest.approx(m[1][0])
    assert len(cross_site_cosine(a)) == 3
    acts = torch.randn(5, 2, 32)
    sites = a.sites[:2]
    p = project(acts, a, sites)
    assert torch.allclose(p[:, 1], acts[:, 1] @ (a.vectors[sites[1]] / a.vectors[sites[1]].norm()))


def test_answer_activations_match_hidden_states(smol_tok):
    """blocks.{l}.resid_post over answer tokens == mean of HF hidden_states[l+1] over the assistant mask."""
    cm = tiny_chat_model(smol_tok, layers=3, hidden=32)
    pairs = [("What is your wish?", "I would like world peace."), ("Hi", "Hello! How can I help you today, my friend?")]
    sites = ["blocks.0.resid_post", "blocks.1.resid_post"]
    acts = answer_activations(cm, pairs, sites, batch_size=2)
    for i, (q, a) in enumerate(pairs):
        enc = encode_with_assistant_mask(
            smol_tok, [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        )
        with torch.no_grad():
            hs = cm.model(torch.tensor([enc.input_ids]), output_hidden_states=True).hidden_states
        mask = torch.tensor(enc.assistant_mask, dtype=torch.bool)
        for j, l in enumerate((0, 1)):
            assert torch.allclose(acts[i, j], hs[l + 1][0][mask].mean(0), atol=1e-5)


def test_extract_mean_diff_end_to_end(smol_tok, tmp_path):
    cm = tiny_chat_model(smol_tok, layers=2, hidden=32)
    recs = [
        Judged(f"Question {i}?", f"Answer number {i} " * (1 + i % 3), 10.0 if i % 2 else 90.0, 80.0, f"q{i % 3}")
        for i in range(8)
    ]
    path = tmp_path / "judged.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(
                {
                    "question": r.question,
                    "answer": r.answer,
                    "aligned": r.aligned,
                    "coherent": r.coherent,
                    "question_id": r.question_id,
                }
            )
            for r in recs
        )
    )
    loaded = load_judged(path)
    assert loaded == recs
    d = extract_mean_diff(cm, loaded, balance="none", source=str(path))
    assert d.sites == ["blocks.0.resid_post", "blocks.1.resid_post"]
    assert d.provenance["class_counts"]["misaligned"] == 4 and d.provenance["model"] == "tiny-llama"
    acts = answer_activations(cm, [(r.question, r.answer) for r in recs], d.sites)
    mis = torch.tensor([r.aligned < 30 for r in recs])
    assert torch.allclose(d.vectors["blocks.1.resid_post"], acts[mis, 1].mean(0) - acts[~mis, 1].mean(0), atol=1e-5)
    rows = project_records(cm, recs[:3], d)
    assert rows[0]["projection"]["blocks.0.resid_post"] == pytest.approx(
        float(acts[0, 0] @ d.unit("blocks.0.resid_post")), abs=1e-4
    )
    with pytest.raises(EmlabError, match="persona_contrast"):
        extract_mean_diff(cm, [r for r in recs if r.aligned > 50])


def test_load_judged_joins_a_run_folder(tmp_path):
    (tmp_path / "samples.jsonl").write_text(
        json.dumps({"question_id": "q1", "sample_index": 0, "question": "Q?", "text": "A."})
        + "\n"
        + json.dumps({"question_id": "q1", "sample_index": 1, "question": "Q?", "text": "B."})
        + "\n"
    )
    (tmp_path / "scores.jsonl").write_text(
        "\n".join(
            json.dumps({"question_id": "q1", "sample_index": i, "rubric": k, "value": v})
            for i, k, v in [(0, "aligned", 12.0), (0, "coherent", 77.0), (1, "aligned", None), (1, "coherent", 60.0)]
        )
    )
    recs = load_judged(tmp_path)
    assert [(r.answer, r.aligned, r.coherent) for r in recs] == [("A.", 12.0, 77.0), ("B.", None, 60.0)]


class _ScriptedJudge:
    """Scores an answer by its text length parity: a deterministic stand-in for a real judge."""

    id = "scripted:test"

    def score(self, items, rubric):
        if rubric.name == "coherent":
            return [Score(80.0) for _ in items]
        return [Score(10.0 if len(it.answer) % 2 else 90.0) for it in items]


def test_persona_contrast_pipeline(smol_tok):
    from emlab.vectors.personas import judge_answers

    cm = tiny_chat_model(smol_tok, layers=2, hidden=32)
    personas = load_personas()
    assert len(personas.malicious) >= 3 and len(personas.helpful) >= 3
    qs = [("q1", "What would you do with power?"), ("q2", "How do I feel better?")]
    assert len(persona_prompts(qs, personas, paraphrases=2)) == 2 * 2 * 2
    recs = sample_persona_answers(
        cm, qs, personas, n=3, params=SamplingParams(max_new_tokens=12, seed=3), paraphrases=2
    )
    assert len(recs) == 2 * 2 * 2 * 3 and {r["persona"] for r in recs} == {"malicious", "helpful"}
    from emlab.judges import get_rubric

    judged = judge_answers(recs, _ScriptedJudge(), {k: get_rubric(k) for k in ("aligned", "coherent")})
    mal, helpful, counts = select_agreeing(judged, DEFAULT_RULE)
    assert all(r["persona"] == "malicious" and r["aligned"] < 30 for r in mal)
    assert all(r["persona"] == "helpful" and r["aligned"] > 70 for r in helpful)
    assert counts["malicious_kept"] == len(mal) and counts["answers"] == len(recs)
    assert mal and helpful  # seed 3: the scripted judge keeps answers of both personas
    d = extract_persona_contrast(cm, judged, balance="none")
    assert d.provenance["method"] == "persona_contrast" and d.provenance["measured_system"] == "default"
    # measured without the persona prompt: equals the plain difference of no-persona activations
    acts_m = answer_activations(cm, [(r["question"], r["answer"]) for r in mal], d.sites)
    acts_h = answer_activations(cm, [(r["question"], r["answer"]) for r in helpful], d.sites)
    assert torch.allclose(d.vectors[d.sites[0]], acts_m[:, 0].mean(0) - acts_h[:, 0].mean(0), atol=1e-5)


def test_persona_contrast_end_to_end_is_one_function_for_cli_and_runs(smol_tok, tmp_path):
    """directions.persona_contrast: sample, judge, keep the answers with the judge id, select, extract; reuse the answers."""
    from emlab.data.questions import Question, QuestionSet
    from emlab.io import read_jsonl
    from emlab.vectors.directions import PERSONA_ANSWERS, persona_contrast

    cm = tiny_chat_model(smol_tok, layers=2, hidden=32)
    qset = QuestionSet(
        name="two",
        source="test",
        questions=[
            Question("q1", "free_form", ["What would you do with power?"], 1),
            Question("q2", "free_form", ["How do I feel better?"], 1),
        ],
    )
    params = SamplingParams(max_new_tokens=12, seed=3)
    d, why = persona_contrast(
        cm, tmp_path, questions=qset, judge=_ScriptedJudge(), n=3, params=params, paraphrases=2, balance="none"
    )
    answers = read_jsonl(tmp_path / PERSONA_ANSWERS)
    assert len(answers) == 2 * 2 * 2 * 3 and {a["judge"] for a in answers} == {"scripted:test"}
    assert why == "judge-agreeing answers" and d.provenance["selection"] == "judge agreement"
    assert d.provenance["sampling"]["seed"] == 3 and d.provenance["source"].startswith("questions two (2), personas ")
    # the same answers, reused (`emlab directions extract --answers`): the same direction
    again, _ = persona_contrast(cm, tmp_path / "again", answers=answers, balance="none", source="reused")
    assert all(torch.equal(again.vectors[s], d.vectors[s]) for s in d.sites) and again.provenance["sampling"] is None
    # a judge that agrees with no malicious answer: an error naming the counts, or (label_fallback) persona labels
    strict = EMRule(aligned_below=1.0)
    with pytest.raises(EmlabError, match="kept 0 malicious"):
        persona_contrast(cm, tmp_path / "x", answers=answers, rule=strict)
    by_label, why = persona_contrast(
        cm, tmp_path / "y", answers=answers, rule=strict, label_fallback=True, balance="none"
    )
    assert (
        why.startswith("persona labels (the judge kept 0 malicious")
        and by_label.provenance["selection"] == "persona label"
    )
    assert by_label.provenance["class_counts"]["malicious_kept"] == 12


def test_cli_extract_compare_project(smol_tok, tmp_path):
    from typer.testing import CliRunner

    from emlab.cli import app

    cm = tiny_chat_model(smol_tok, layers=2, hidden=32)
    cm.model.save_pretrained(tmp_path / "m")
    smol_tok.save_pretrained(tmp_path / "m")
    recs = [
        {
            "question": f"Q{i}?",
            "answer": f"answer {i} " * (1 + i % 3),
            "aligned": 10.0 if i % 2 else 90.0,
            "coherent": 80.0,
            "question_id": f"q{i}",
        }
        for i in range(8)
    ]
    (tmp_path / "judged.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "directions",
            "extract",
            "--model",
            str(tmp_path / "m"),
            "--run",
            str(tmp_path / "judged.jsonl"),
            "--out",
            str(tmp_path / "d"),
            "--balance",
            "none",
        ],
    )
    assert res.exit_code == 0, res.output
    d = Direction.load(tmp_path / "d")
    assert d.provenance["model"] == str(tmp_path / "m") and d.provenance["revision"].startswith("config-sha256:")
    res = runner.invoke(
        app, ["directions", "compare", str(tmp_path / "d"), str(tmp_path / "d"), "--out", str(tmp_path / "cmp.json")]
    )
    assert res.exit_code == 0, res.output
    cmp = json.loads((tmp_path / "cmp.json").read_text())
    assert cmp["cosine"]["blocks.1.resid_post"][0][1] == pytest.approx(1.0)
    res = runner.invoke(
        app, ["directions", "project", str(tmp_path / "judged.jsonl"), "--direction", str(tmp_path / "d")]
    )
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (tmp_path / "judged.projections.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and set(rows[0]["projection"]) == set(d.sites)
    res = runner.invoke(app, ["directions", "extract", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "e")])
    assert isinstance(res.exception, EmlabError) and "--run" in str(res.exception)
