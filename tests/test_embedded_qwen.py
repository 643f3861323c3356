"""Integration: the second embedded model, Qwen2.5-Coder-0.5B-Instruct, for real (kept short)."""

from __future__ import annotations

import pytest
import torch

from emlab.chat import render
from emlab.hooks import capture
from emlab.sampling import SamplingParams, sample

pytestmark = pytest.mark.integration

QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


@pytest.fixture(scope="module")
def qwen():
    from emlab.models import load_model

    return load_model("qwen2.5-coder-0.5b")


def test_qwen_loads_with_its_shape_and_provenance(qwen):
    assert qwen.n_layers == 24 and qwen.d_model == 896
    assert qwen.model.config.model_type == "qwen2"
    assert qwen.revision == "gguf-sha256:1d9614638d18024d"
    assert qwen.tokenizer.eos_token == "<|im_end|>"


def test_qwen_system_prompt_kept_dropped_replaced(qwen):
    conv = [{"role": "user", "content": "hi"}]
    assert QWEN_SYSTEM in render(qwen.tokenizer, conv, "default")
    dropped = render(qwen.tokenizer, conv, None)
    assert "system" not in dropped and dropped.startswith("<|im_start|>user\nhi")
    assert "Be brief." in render(qwen.tokenizer, conv, "Be brief.") and QWEN_SYSTEM not in render(
        qwen.tokenizer, conv, "Be brief."
    )


def test_qwen_greedy_answers_batch_equals_single_and_capture_matches_hidden_states(qwen):
    prompts = ["What is the capital of France?", "Name one primary colour."]
    params = SamplingParams(temperature=0, max_new_tokens=12, batch_size=2)
    batched = sample(qwen, prompts, params=params)
    assert [r.text for r in batched] == [sample(qwen, [p], params=params)[0].text for p in prompts]
    assert "Paris" in batched[0].text
    ids = qwen.tokenizer("Hello there", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hs = qwen.model(ids, output_hidden_states=True).hidden_states
    with (
        capture(qwen, ["blocks.23.resid_post", "blocks.5.resid_post"], positions="all", reduce=None) as acts,
        torch.no_grad(),
    ):
        qwen.model(ids)
    assert torch.equal(acts.per_token("blocks.5.resid_post")[0], hs[6][0])  # blocks.l.resid_post = hidden_states[l+1]
