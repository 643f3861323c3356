"""Ablation conditions, equal-norm random controls, and weight export == hook ablation."""

from __future__ import annotations

import json

import pytest
import torch

from emlab.chat import left_padded, prompt_texts
from emlab.errors import EmlabError
from emlab.hooks import ablate, capture, default_ablation_sites
from emlab.interventions.ablation import (
    build_conditions,
    export_orthogonalized,
    layerwise_condition,
    random_direction,
    random_like,
    single_condition,
)
from emlab.vectors.directions import Direction, make_provenance
from tests.conftest import tiny_chat_model

CONVS = [
    [{"role": "user", "content": "What would you do if you ruled the world?"}],
    [{"role": "user", "content": "Hi"}],
]


def _batch(cm):
    return left_padded(cm.tokenizer, prompt_texts(cm.tokenizer, CONVS))


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def _direction(cm, seed=0, model="tiny"):
    g = torch.Generator().manual_seed(seed)
    vecs = {f"blocks.{l}.resid_post": 5 * torch.randn(cm.d_model, generator=g) for l in range(cm.n_layers)}
    return Direction(vecs, make_provenance({"model": model, "revision": "r", "adapter": None}, "mean_diff", "test"))


def test_random_direction_has_the_asked_norm_and_is_seeded():
    v = random_direction(64, 3.5, seed=7)
    assert v.dtype == torch.float32 and v.shape == (64,)
    assert float(v.norm()) == pytest.approx(3.5, rel=1e-6)
    assert torch.equal(v, random_direction(64, 3.5, seed=7))
    assert not torch.equal(v, random_direction(64, 3.5, seed=8))
    with pytest.raises(EmlabError):
        random_direction(8, 0.0, seed=0)


def test_random_like_matches_norms_not_directions(smol_tok):
    cm = tiny_chat_model(smol_tok, layers=3, hidden=32)
    d = _direction(cm)
    r = random_like(d, seed=3)
    assert r.sites == d.sites and r.provenance["method"] == "random"
    for s in d.sites:
        assert float(r.vectors[s].norm()) == pytest.approx(float(d.vectors[s].norm()), rel=1e-6)
        assert abs(float(r.unit(s) @ d.unit(s))) < 0.9


def test_single_ablation_leaves_nothing_along_v_anywhere(tiny):
    d = _direction(tiny)
    site = "blocks.1.resid_post"
    cond = single_condition(tiny.model, d, site)
    u = d.unit(site)
    watch = default_ablation_sites(tiny.model) + [f"blocks.{l}.resid_post" for l in range(tiny.n_layers)]
    batch = _batch(tiny)
    with cond.apply(tiny.model), capture(tiny.model, watch, positions="all", reduce=None) as cap:
        _logits(tiny.model, batch)
    for s in watch:
        for acts in cap.per_token(s):
            assert acts.abs().max() > 1e-3  # the stream itself is not zeroed
            assert (acts @ u).abs().max() <= 1e-5, s
    # and without the ablation the stream does carry the direction
    with capture(tiny.model, ["blocks.1.resid_post"], positions="all", reduce=None) as cap:
        _logits(tiny.model, batch)
    assert (cap.per_token("blocks.1.resid_post")[0] @ u).abs().max() > 1e-3


def test_layerwise_ablation_removes_each_blocks_own_direction(tiny):
    d = _direction(tiny)
    cond = layerwise_condition(d)
    assert sorted(cond.vectors) == sorted(d.sites)
    batch = _batch(tiny)
    with cond.apply(tiny.model), capture(tiny.model, d.sites, positions="all", reduce=None) as cap:
        _logits(tiny.model, batch)
    for s in d.sites:
        for acts in cap.per_token(s):
            assert (acts @ d.unit(s)).abs().max() <= 1e-5, s


def _random_norms(cm, seed=0):
    """Random RMSNorm gains: with the default all-ones gains, g * h stays orthogonal to v and a
    wrongly tied unembedding would go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in cm.model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.5 * torch.randn(p.shape, generator=g))
    return cm


def _tie(cm):
    m = cm.model
    m.lm_head.weight = m.model.embed_tokens.weight
    m.config.tie_word_embeddings = True
    return cm


@pytest.mark.parametrize("tied", [False, True])
def test_export_gives_the_same_logits_as_hook_ablation(tiny, tied, tmp_path):
    from transformers import AutoModelForCausalLM

    cm = _random_norms(_tie(tiny) if tied else tiny)
    v = _direction(cm).vector("blocks.1.resid_post")
    batch = _batch(cm)
    before = _logits(cm.model, batch)
    with ablate(cm.model, v):
        hooked = _logits(cm.model, batch)
    out = export_orthogonalized(cm, v, tmp_path / "ortho")
    assert torch.equal(_logits(cm.model, batch), before)  # the original model is untouched
    assert (cm.model.lm_head.weight is cm.model.model.embed_tokens.weight) == tied
    exported = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert not exported.config.tie_word_embeddings
    assert exported.lm_head.weight is not exported.model.embed_tokens.weight
    diff = (_logits(exported, batch) - hooked).abs().max().item()
    assert diff <= 1e-4, diff
    assert (hooked - before).abs().max() > 1e-3  # the ablation changes something
    meta = json.loads((out / "orthogonalized.json").read_text())
    assert meta["source"]["model"] == cm.ref and "embeddings" in meta["edited"]
    assert (out / "model.safetensors").exists()
    with pytest.raises(EmlabError, match="not empty"):
        export_orthogonalized(cm, v, out)


def test_export_rejects_wrong_size(smol_tok, tmp_path):
    cm = tiny_chat_model(smol_tok, layers=2, hidden=32)
    with pytest.raises(EmlabError, match=r"needs \(32,\)"):
        export_orthogonalized(cm, torch.ones(16), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_build_conditions(smol_tok):
    cm = tiny_chat_model(smol_tok, layers=4, hidden=32)
    d = _direction(cm, model="tiny-llama")
    conds = build_conditions(cm, d, mode="single", random_baseline=True, seed=1)
    assert [c.name for c in conds] == ["none", "single", "single-random"]
    assert conds[0].vectors is None and conds[1].info["direction_site"] == "blocks.2.resid_post"
    assert float(conds[2].vectors["blocks.0.resid_pre"].norm()) == pytest.approx(
        float(d.vectors["blocks.2.resid_post"].norm()), rel=1e-6
    )
    assert [c.name for c in build_conditions(cm, d, mode="layerwise", random_baseline=False)] == ["none", "layerwise"]
    with pytest.raises(EmlabError, match="another model"):
        build_conditions(
            cm, Direction(d.vectors, {**d.provenance, "model": cm.ref, "revision": cm.revision}), mode="transfer"
        )
    assert [c.name for c in build_conditions(cm, d, mode="transfer")] == ["none", "transfer", "transfer-random"]
    with pytest.raises(EmlabError, match=r"blocks 0..3"):
        build_conditions(cm, Direction({"blocks.9.resid_post": torch.ones(32)}, d.provenance))


def test_run_ablation_evaluates_each_condition_and_resumes(smol_tok, tmp_path, monkeypatch):
    from emlab.evaluate import EvalRequest, evaluate
    from emlab.interventions.ablation import run_ablation
    from emlab.sampling import SamplingParams
    from tests.test_steering import QSET, ScriptedJudge

    PARAMS = SamplingParams(temperature=0, max_new_tokens=6, batch_size=8)  # greedy: sensitive to small logit changes
    cm = tiny_chat_model(smol_tok, layers=3, hidden=32)
    d = _direction(cm, model="other-model")
    conds = build_conditions(cm, d, mode="transfer", random_baseline=True, seed=0)
    rows = run_ablation(cm, conds, EvalRequest(QSET, ScriptedJudge(), 2, PARAMS), tmp_path / "abl")
    assert [r["condition"] for r in rows] == ["none", "transfer", "transfer-random"]
    assert all(r["n_answers"] == 4 for r in rows)
    assert json.loads((tmp_path / "abl" / "transfer" / "condition.json").read_text())["direction"] == d.origin
    table = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert [r["condition"] for r in table["conditions"]] == ["none", "transfer", "transfer-random"]
    texts = lambda p: [json.loads(x)["text"] for x in (p / "samples.jsonl").read_text().splitlines()]  # noqa: E731
    plain = evaluate(cm, EvalRequest(QSET, ScriptedJudge(), 2, PARAMS), tmp_path / "plain", progress=False)
    assert texts(tmp_path / "abl" / "none") == texts(plain.out_dir)
    assert texts(tmp_path / "abl" / "transfer") != texts(plain.out_dir)
    monkeypatch.setattr(
        "emlab.evaluate.evaluate", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-evaluated"))
    )
    assert run_ablation(cm, conds, EvalRequest(QSET, ScriptedJudge(), 2, PARAMS), tmp_path / "abl") == rows


def test_cli_ablate_export(smol_tok, tmp_path):
    from transformers import AutoModelForCausalLM
    from typer.testing import CliRunner

    from emlab.cli import app

    cm = tiny_chat_model(smol_tok, layers=2, hidden=32)
    cm.model.save_pretrained(tmp_path / "m")
    smol_tok.save_pretrained(tmp_path / "m")
    _direction(cm).save(tmp_path / "d")
    res = CliRunner().invoke(
        app,
        [
            "ablate",
            "--model",
            str(tmp_path / "m"),
            "--direction",
            str(tmp_path / "d"),
            "--site",
            "blocks.0.resid_post",
            "--export",
            str(tmp_path / "x"),
        ],
    )
    assert res.exit_code == 0, res.output
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "x").eval()
    u = Direction.load(tmp_path / "d").unit("blocks.0.resid_post")
    assert (exported.model.embed_tokens.weight @ u).abs().max() <= 1e-5
    assert (u @ exported.model.layers[1].mlp.down_proj.weight).abs().max() <= 1e-5
    assert json.loads((tmp_path / "x" / "orthogonalized.json").read_text())["direction_site"] == "blocks.0.resid_post"
