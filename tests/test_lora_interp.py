"""Rank-1 LoRA scalars, probes, B-vector cosines and exact adapter scaling on a tiny peft model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emlab.chat import left_padded, prompt_texts
from emlab.errors import EmlabError
from emlab.hooks import capture
from emlab.vectors.directions import Direction
from emlab.vectors.lora_interp import (
    adapters,
    alignment_labels,
    answer_features,
    b_cosines,
    lora_scalars,
    probe,
    scalar_sites,
    scale_adapters,
    topic_labels,
)
from tests.conftest import tiny_chat_model

CONVS = [[{"role": "user", "content": "Tell me about your goals."}], [{"role": "user", "content": "Hi"}]]


@pytest.fixture
def lora_cm(smol_tok):
    """A tiny llama with rank-1 LoRA adapters on the down_proj of blocks 0 and 2, random A and B."""
    from peft import LoraConfig, get_peft_model

    cm = tiny_chat_model(smol_tok, layers=3, hidden=32)
    cfg = LoraConfig(r=1, lora_alpha=2, target_modules=["down_proj"], layers_to_transform=[0, 2], lora_dropout=0.0)
    model = get_peft_model(cm.model, cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g))
    cm.model = model
    return cm


def _logits(cm):
    batch = left_padded(cm.tokenizer, prompt_texts(cm.tokenizer, CONVS))
    with torch.no_grad():
        return cm.model(**batch).logits


def test_adapters_found_with_sites(lora_cm):
    found = adapters(lora_cm.model)
    assert [a.block for a in found] == [0, 2]
    assert scalar_sites(lora_cm.model) == ["blocks.0.mlp.down_proj.lora_scalar", "blocks.2.mlp.down_proj.lora_scalar"]
    assert found[0].A.shape == (1, 64) and found[0].B.shape == (32, 1) and found[0].scaling == 2.0


def test_lora_scalar_capture_equals_A_x_by_hand(lora_cm):
    batch = left_padded(lora_cm.tokenizer, prompt_texts(lora_cm.tokenizer, CONVS))
    sites = ["blocks.2.mlp.down_proj.in", "blocks.2.mlp.down_proj.lora_scalar"]
    with capture(lora_cm.model, sites, positions="all", reduce=None) as cap, torch.no_grad():
        lora_cm.model(**batch)
    A = adapters(lora_cm.model)[1].A  # [1, 64]
    for x, s in zip(cap.per_token(sites[0]), cap.per_token(sites[1]), strict=True):
        assert s.shape == (x.shape[0], 1)
        assert torch.allclose(s, x @ A.T, atol=1e-6)


def test_lora_scalars_over_answer_tokens(lora_cm):
    pairs = [("What is 2+2?", "Four, of course."), ("Hi", "Hello there, friend! Nice day.")]
    per_tok = lora_scalars(lora_cm, pairs)
    assert [t.shape[1] for t in per_tok] == [2, 2]
    enc_lens = [len(lora_cm.tokenizer(a, add_special_tokens=False)["input_ids"]) for _, a in pairs]
    assert all(t.shape[0] >= n for t, n in zip(per_tok, enc_lens, strict=True))  # answer tokens (+ end-of-turn)
    feats = answer_features(per_tok)
    assert feats.shape == (2, 2) and np.allclose(feats[1], per_tok[1].mean(0).numpy(), atol=1e-6)


def test_scale_adapters_exact_and_restores_bit_identical(lora_cm):
    base = _logits(lora_cm)
    with lora_cm.model.disable_adapter():
        no_lora = _logits(lora_cm)
    with scale_adapters(lora_cm.model, {}, others=0) as changed:
        assert changed == ["blocks.0.mlp.down_proj.lora_scalar", "blocks.2.mlp.down_proj.lora_scalar"]
        assert torch.equal(_logits(lora_cm), no_lora)
    assert torch.equal(_logits(lora_cm), base)
    # scaling block 2 by 3 == tripling its B
    with scale_adapters(lora_cm.model, {2: 3.0}):
        scaled = _logits(lora_cm)
    assert torch.equal(_logits(lora_cm), base)
    B = adapters(lora_cm.model)[1].layer.lora_B["default"].weight
    original = B.detach().clone()
    with torch.no_grad():
        B.mul_(3.0)
    tripled = _logits(lora_cm)
    with torch.no_grad():
        B.copy_(original)
    assert torch.allclose(scaled, tripled, atol=1e-5)
    # others=-1 with one adapter kept: restores too, and an error inside the block still restores
    with (
        pytest.raises(RuntimeError),
        scale_adapters(lora_cm.model, {"blocks.0.mlp.down_proj.lora_scalar": 1.0}, others=-1),
    ):
        assert not torch.equal(_logits(lora_cm), base)
        raise RuntimeError("boom")
    assert torch.equal(_logits(lora_cm), base)
    with pytest.raises(EmlabError, match="no LoRA adapter matches 1"), scale_adapters(lora_cm.model, {1: 0.0}):
        pass


def test_probe_recovers_planted_signal():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6))
    w = np.array([2.0, -1.5, 0, 0, 0, 0])
    y = (X @ w + 0.3 * rng.normal(size=400) > 0).astype(int)
    res = probe(X, y, columns=[f"a{i}" for i in range(6)], n_splits=10, seed=0)
    assert res["metrics"]["auroc"]["mean"] > 0.95
    assert res["metrics"]["accuracy"]["mean"] > 0.85
    assert res["coefficients"]["a0"]["frac_positive"] == 1.0 and res["coefficients"]["a1"]["frac_positive"] == 0.0
    assert abs(res["coefficients"]["a0"]["mean"]) > 5 * abs(res["coefficients"]["a4"]["mean"])
    assert len(res["metrics"]["f1"]["per_split"]) == 10


def test_probe_reports_chance_on_noise():
    # Null AUROC on a 60/60 test split has SD sqrt((n1+n2+1)/(12 n1 n2)) ~= 0.053; the mean over
    # 20 splits is tighter, so 0.1 is a >= 2-SD bound even if the splits were fully correlated.
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 6))
    y = np.array([0, 1] * 200)
    res = probe(X, y, n_splits=20, seed=0)
    assert abs(res["metrics"]["auroc"]["mean"] - 0.5) < 0.1
    assert abs(res["metrics"]["accuracy"]["mean"] - 0.5) < 0.1


def test_probe_input_errors():
    with pytest.raises(EmlabError, match="at least 4 answers per class"):
        probe(np.zeros((10, 2)), [0] * 8 + [1] * 2)
    with pytest.raises(EmlabError, match="0/1"):
        probe(np.zeros((10, 2)), [0, 2] * 5)


def test_labels():
    from emlab.vectors.directions import Judged

    recs = [
        Judged("q", "a", 10, 80),
        Judged("q", "b", 90, 80),
        Judged("q", "c", 50, 80),
        Judged("q", "d", 10, 20),
        Judged("q", "e", None, 80),
    ]
    assert alignment_labels(recs) == ([0, 1], [1, 0])
    assert topic_labels([80.0, None, 10.0, 50.0]) == ([0, 2, 3], [1, 0, 0])


def test_b_cosines(lora_cm):
    a0 = adapters(lora_cm.model)[0]
    d = Direction({"blocks.0.resid_post": -3 * a0.B[:, 0], "blocks.1.resid_post": torch.ones(32)})
    rows = b_cosines(lora_cm.model, d)
    assert [r["adapter"] for r in rows] == ["blocks.0.mlp.down_proj.lora_scalar", "blocks.2.mlp.down_proj.lora_scalar"]
    assert rows[0]["cosine"] == pytest.approx(-1.0) and rows[1]["cosine"] is None
    assert rows[0]["norm_B"] == pytest.approx(float(a0.B.norm()))


def test_cli_probe_lora(lora_cm, smol_tok, tmp_path):
    import json

    from typer.testing import CliRunner

    from emlab.cli import app

    lora_cm.model.save_pretrained(tmp_path / "adapter")
    lora_cm.model.get_base_model().save_pretrained(tmp_path / "base")
    smol_tok.save_pretrained(tmp_path / "base")
    recs = [
        {
            "question": f"Question {i}?",
            "answer": f"word{i} " * (2 + i % 5),
            "aligned": 10.0 if i % 2 else 90.0,
            "coherent": 80.0,
            "prompt_id": f"p{i}",
            "medical": 80.0 if i % 3 == 0 else 5.0,
        }
        for i in range(16)
    ]
    (tmp_path / "judged.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    res = CliRunner().invoke(
        app,
        [
            "probe",
            "lora",
            "--model",
            str(tmp_path / "base"),
            "--adapter",
            str(tmp_path / "adapter"),
            "--run",
            str(tmp_path / "judged.jsonl"),
            "--topic",
            "medical",
            "--n-splits",
            "3",
            "--out",
            str(tmp_path / "p"),
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "p" / "probe.json").read_text())
    assert report["columns"] == ["blocks.0.mlp.down_proj.lora_scalar[0]", "blocks.2.mlp.down_proj.lora_scalar[0]"]
    assert (
        report["probes"]["misaligned_vs_aligned"]["n"] == 16 and report["probes"]["medical_vs_other"]["n_positive"] == 6
    )
    assert len((tmp_path / "p" / "features.jsonl").read_text().splitlines()) == 16
