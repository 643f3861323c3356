"""Persona vectors on tiny random models: trait file, judging modes, selection, exact mean difference, pipeline."""

from __future__ import annotations

import pytest
import torch

from emlab.errors import EmlabError
from emlab.judges.base import Score
from emlab.sampling import SamplingParams
from emlab.vectors import persona_vectors as P
from emlab.vectors.directions import Direction, answer_activations
from tests.conftest import tiny_chat_model


class FakeOffline:
    """Stands in for the offline judge (its id starts with 'offline'): scores only `aligned`."""

    id = "offline:vtest"

    def __init__(self):
        self.rubrics = []

    def score(self, items, rubric):
        self.rubrics.append(rubric.name)
        assert rubric.name == "aligned"
        return [Score(10.0 if i % 3 else 90.0) for i, _ in enumerate(items)]


class FakeApi:
    """Stands in for an API judge: scores the trait rubric; every fourth item unscored."""

    id = "scripted:api"

    def __init__(self):
        self.keys = []

    def score(self, items, rubric):
        self.keys.append(rubric.key)
        return [
            Score(None) if i % 4 == 3 else Score(80.0 if "evil" in it.question or i % 2 == 0 else 20.0)
            for i, it in enumerate(items)
        ]


def test_shipped_traits():
    traits = P.load_traits()
    assert {"evil", "sycophantic", "hallucinating", "authoritarian"} <= set(traits)
    evil = traits["evil"]
    assert evil.offline == {"rubric": "aligned", "invert": True}
    assert traits["sycophantic"].offline is None
    assert len(evil.express) == len(evil.suppress) >= 3 and len(evil.questions) >= 8
    assert evil.rubric_object().key.startswith("trait_evil-")


def test_user_defined_trait_and_errors(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text(
        "version: 1\ntraits:\n  grumpy:\n    description: grumpy\n    express: [Be grumpy.]\n    suppress: [Be cheerful.]\n"
        "    questions: ['How are you?']\n    rubric: 'Q {question} A {answer} score 0-100'\n    offline: none\n"
    )
    t = P.get_trait("grumpy", p)
    assert t.offline is None and t.express == ("Be grumpy.",)
    p.write_text(p.read_text().replace("    offline: none\n", ""))
    with pytest.raises(EmlabError, match="needs exactly the keys"):
        P.load_traits(p)
    with pytest.raises(EmlabError, match="unknown trait 'nope'"):
        P.get_trait("nope")


def _records(trait, n_per=2):
    recs = []
    for side, prompts in (("express", trait.express), ("suppress", trait.suppress)):
        for j, system in enumerate(prompts[:2]):
            for qi, q in enumerate(trait.questions[:2]):
                for k in range(n_per):
                    recs.append(
                        {
                            "side": side,
                            "prompt_index": j,
                            "question_id": f"q{qi}",
                            "system": system,
                            "question": q,
                            "answer": f"Answer {side} {j} {qi} {k}: "
                            + ("I will hurt them." if side == "express" else "I will help them."),
                            "sample_index": k,
                        }
                    )
    return recs


def test_judging_modes_and_selection():
    traits = P.load_traits()
    evil, syc = traits["evil"], traits["sycophantic"]
    recs = _records(evil)
    judged, mode = P.judge_trait(recs, evil, FakeOffline())
    assert mode["mode"] == "aligned_inverse"
    assert [r["trait_score"] for r in judged[:3]] == [10.0, 90.0, 90.0]  # 100 - aligned
    pos, neg, counts = P.select_trait(judged, mode["mode"])
    assert all(r["side"] == "express" and r["trait_score"] > 50 for r in pos)
    assert all(r["side"] == "suppress" and r["trait_score"] < 50 for r in neg)
    assert counts["express_kept"] + counts["express_dropped"] == counts["express_answers"] == 8
    judged, mode = P.judge_trait(_records(syc), syc, FakeOffline())
    assert mode["mode"] == "none" and "not filtered" in mode["why"] and all(r["trait_score"] is None for r in judged)
    pos, neg, counts = P.select_trait(judged, "none")
    assert (len(pos), len(neg), counts["express_dropped"]) == (8, 8, 0)
    api = FakeApi()
    judged, mode = P.judge_trait(_records(syc), syc, api)
    assert mode["mode"] == "rubric" and api.keys[0].startswith("trait_sycophantic-")
    _, _, counts = P.select_trait(judged, "rubric")
    assert counts["unscored"] == 4


def test_persona_vector_is_exact_mean_difference(smol_tok):
    cm = tiny_chat_model(smol_tok, "llama", layers=3)
    evil = P.load_traits()["evil"]
    judged, mode = P.judge_trait(_records(evil), evil, FakeOffline())
    pos, neg, _counts = P.select_trait(judged, mode["mode"])
    sites = ["blocks.0.resid_post", "blocks.1.resid_post"]
    d = P.extract_persona_vector(cm, judged, evil, mode, sites, measure="generated")

    # by hand: each kept answer measured under its own system prompt, then mean(pos) - mean(neg)
    def acts(rs):
        return torch.cat(
            [answer_activations(cm, [(r["question"], r["answer"])], sites, system=r["system"]) for r in rs]
        )

    hand = acts(pos).double().mean(0) - acts(neg).double().mean(0)
    for j, s in enumerate(sites):
        torch.testing.assert_close(d.vector(s).double(), hand[j], atol=1e-5, rtol=0)
    p = d.provenance
    assert p["method"] == "persona_vector" and p["trait"] == "evil" and p["judging"]["judge"] == "offline:vtest"
    assert p["class_counts"]["express_kept"] == len(pos) and p["prompts"]["express"] == list(evil.express)
    assert p["model"] == "tiny-llama" and p["revision"] == "random-seed-0" and p["sites_measured"] == sites
    d_def = P.extract_persona_vector(cm, judged, evil, mode, sites, measure="default")
    a = answer_activations(cm, [(r["question"], r["answer"]) for r in pos + neg], sites, system="default")
    torch.testing.assert_close(
        d_def.vector(sites[0]).double(),
        (a[: len(pos)].double().mean(0) - a[len(pos) :].double().mean(0))[0],
        atol=1e-5,
        rtol=0,
    )
    with pytest.raises(EmlabError, match="kept 0 expressing"):
        P.extract_persona_vector(cm, [r for r in judged if r["side"] == "suppress"], evil, mode, sites)


def test_pipeline_samples_judges_and_saves(smol_tok, tmp_path):
    cm = tiny_chat_model(smol_tok, "qwen2", layers=2)
    evil = P.load_traits()["evil"]
    d, judged = P.persona_vector_pipeline(
        cm,
        evil,
        FakeOffline(),
        1,
        SamplingParams(max_new_tokens=5, batch_size=16),
        tmp_path / "pv",
        n_prompts=2,
        n_questions=3,
    )
    assert len(judged) == 2 * 2 * 3 and (tmp_path / "pv" / "trait_answers.jsonl").exists()
    back = Direction.load(tmp_path / "pv")
    assert back.sites == d.sites and torch.equal(back.vector(d.sites[0]), d.vector(d.sites[0]))
    assert back.provenance["sampling"]["max_new_tokens"] == 5
