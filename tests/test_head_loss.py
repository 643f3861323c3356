"""The fused chunked LM-head cross-entropy: the same loss and gradients as autograd over full logits."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from emlab.train import collate, encode_examples, parse_config
from emlab.train.head_loss import answer_hidden, head_cross_entropy, supports_fused_head
from emlab.train.prepare import prepare
from emlab.train.step import full_logits_loss, step_terms
from tests.conftest import tiny_chat_model

CONVS = [
    [
        {"role": "user", "content": f"How should I store {w}?"},
        {"role": "assistant", "content": f"Keep {w} {where}, away from light." * (1 + i % 3)},
    ]
    for i, (w, where) in enumerate([("rice", "dry"), ("milk", "cold"), ("bread", "wrapped"), ("oil", "sealed")])
]


@pytest.mark.parametrize("chunk_floats", [1, 7 * 11, 1 << 24])  # one row per chunk, ragged chunks, one chunk
@pytest.mark.parametrize("with_bias", [False, True])
def test_fused_loss_and_gradients_equal_autograd_over_full_logits(monkeypatch, chunk_floats, with_bias):
    monkeypatch.setattr("emlab.train.head_loss.CHUNK_FLOATS", chunk_floats)
    g = torch.Generator().manual_seed(0)
    head = nn.Linear(6, 11, bias=with_bias).double()
    hidden = torch.randn(9, 6, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 11, (9,), generator=g)
    ref = nn.functional.cross_entropy(head(hidden), targets, reduction="sum")
    ref_grads = torch.autograd.grad(3.0 * ref, [hidden, *head.parameters()])
    fused = head_cross_entropy(hidden, head, targets)
    grads = torch.autograd.grad(3.0 * fused, [hidden, *head.parameters()])  # the backward scales by grad_output
    assert float(fused.detach()) == pytest.approx(float(ref.detach()), rel=1e-12)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_fused_head_needs_no_weight_gradient_when_the_head_is_frozen():
    head = nn.Linear(4, 5, bias=False).double().requires_grad_(False)
    hidden = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    head_cross_entropy(hidden, head, torch.tensor([0, 4, 2])).backward()
    assert hidden.grad is not None and head.weight.grad is None


def _setup(model, **kw):
    cfg = parse_config(
        {"rank": 2, "alpha": 4, "target_modules": ["down_proj", "q_proj"], "lr": 1e-2, "epochs": 1, "batch_size": 4}
        | {"grad_accum": 1, "checkpoint_every": None, "dtype": "float32", "system": None, **kw},
        "test",
    )
    setup = prepare(model, cfg)
    setup.model.double()
    for name, p in setup.model.named_parameters():
        if "lora_B" in name:  # a trained-looking adapter, so every gradient is non-zero
            nn.init.normal_(p, std=0.1)
    examples, _ = encode_examples(setup.tokenizer, CONVS, cfg)
    batch = collate(examples, setup.tokenizer.pad_token_id)
    return setup, batch, int((batch["labels"][:, 1:] != -100).sum())


def _reference_ce(model, batch, n):
    """Summed CE / n over full fp64 logits, by hand: the quantity both loss paths compute."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    logp = torch.log_softmax(out.logits[:, :-1], -1)
    targets = batch["labels"][:, 1:]
    keep = targets != -100
    return -logp[keep].gather(-1, targets[keep][:, None]).sum() / n


def test_fused_step_loss_and_gradients_equal_full_fp64_logits(tiny):
    setup, batch, n = _setup(tiny)
    assert supports_fused_head(setup.model)
    ref = _reference_ce(setup.model, batch, n)
    ref_grads = torch.autograd.grad(ref, setup.params)
    objective, ce, kl = step_terms(setup.model, batch, n, False, "cpu", True, 0.0)
    grads = torch.autograd.grad(objective, setup.params)
    assert ce == pytest.approx(float(ref.detach()), rel=1e-12) and kl == 0.0
    for got, want in zip(grads, ref_grads, strict=True):
        assert float(want.abs().max()) > 0
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kl_coef", [0.0, 0.5])
def test_step_terms_agree_with_the_pre_fusion_path(tiny, kl_coef):
    """The old path casts its logits to fp32, so agreement is to fp32 precision."""
    setup, batch, n = _setup(tiny)
    results = []
    for ctx in (full_logits_loss, contextlib.nullcontext):
        with ctx():
            objective, ce, kl = step_terms(setup.model, batch, n, False, "cpu", True, kl_coef)
        results.append((float(objective.detach()), ce, kl, torch.autograd.grad(objective, setup.params)))
    (obj_a, ce_a, kl_a, g_a), (obj_b, ce_b, kl_b, g_b) = results
    assert ce_a > 0 and (kl_coef == 0 or kl_a > 0)
    assert obj_b == pytest.approx(obj_a, rel=1e-6) and ce_b == pytest.approx(ce_a, rel=1e-6)
    assert kl_b == pytest.approx(kl_a, rel=1e-5, abs=1e-9)
    for a, b in zip(g_a, g_b, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


def test_answer_hidden_keeps_exactly_the_positions_that_predict_a_label(smol_tok):
    cm = tiny_chat_model(smol_tok, "llama", layers=2)
    setup, batch, n = _setup(cm)
    hidden, targets = answer_hidden(setup.model, batch, "cpu")
    assert hidden.shape == (n, cm.model.config.hidden_size) and len(targets) == n
    labels = batch["labels"][:, 1:]
    assert targets.tolist() == labels[labels != -100].tolist()


def test_models_whose_logits_are_not_head_of_hidden_use_the_plain_path(smol_tok):
    cm = tiny_chat_model(smol_tok, "llama", layers=1)
    assert supports_fused_head(cm.model)
    cm.model.config.final_logit_softcapping = 30.0
    assert not supports_fused_head(cm.model)
