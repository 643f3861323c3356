"""Integration: the embedded SmolLM2-135M model, for real."""

from __future__ import annotations

import pytest
import torch

from emlab.hooks import steer
from emlab.sampling import SamplingParams, sample

pytestmark = pytest.mark.integration

PROMPTS = ["What is the capital of France?", "Give me one tip for sleeping better.", "Write a haiku about the sea."]


def test_batched_greedy_equals_one_by_one(smol):
    params = SamplingParams(temperature=0, max_new_tokens=24, batch_size=8)
    batched = sample(smol, PROMPTS, params=params)
    single = [sample(smol, [p], params=params)[0] for p in PROMPTS]
    assert [r.text for r in batched] == [r.text for r in single]
    assert "Paris" in batched[0].text


def test_random_steering_changes_text_and_model_is_restored(smol):
    params = SamplingParams(temperature=0, max_new_tokens=20)
    before = sample(smol, PROMPTS[:1], params=params)[0].text
    ids = smol.tokenizer("Hello", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits_before = smol.model(ids).logits
    g = torch.Generator().manual_seed(0)
    v = torch.randn(smol.d_model, generator=g)
    v = v / v.norm() * 60.0
    with steer(smol, {"blocks.10.resid_post": v}, scale=1.0):
        steered = sample(smol, PROMPTS[:1], params=params)[0].text
    assert steered != before
    assert sample(smol, PROMPTS[:1], params=params)[0].text == before
    with torch.no_grad():
        assert torch.equal(smol.model(ids).logits, logits_before)
