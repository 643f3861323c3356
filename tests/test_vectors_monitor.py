"""Monitoring hook: bit-identical generation, per-token projections equal teacher-forced dot products, hooks removed."""

from __future__ import annotations

import pytest
import torch

from emlab.chat import left_padded, prompt_texts
from emlab.errors import EmlabError
from emlab.sampling import Prompt, SamplingParams, sample
from emlab.vectors.monitor import monitor, monitored_sample, plot_traces, summarize_traces, write_traces
from tests.conftest import tiny_chat_model

PROMPTS = [
    Prompt("a", [{"role": "user", "content": "Tell me about your day."}]),
    Prompt("b", [{"role": "user", "content": "Hi"}]),
]


def _readers(cm):
    g = torch.Generator().manual_seed(3)
    return {
        "x": ("blocks.0.resid_post", torch.randn(cm.d_model, generator=g)),
        "y": ("blocks.1.resid_post", torch.randn(cm.d_model, generator=g)),
    }


def _generate(cm, scores=True):
    enc = left_padded(cm.tokenizer, prompt_texts(cm.tokenizer, [p.messages for p in PROMPTS]))
    with torch.inference_mode():
        return cm.model.generate(
            **enc,
            max_new_tokens=7,
            do_sample=False,
            pad_token_id=cm.tokenizer.pad_token_id,
            output_scores=scores,
            return_dict_in_generate=True,
            temperature=None,
            top_p=None,
            top_k=None,
        )


def _all_hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_monitor_leaves_generation_bit_identical(smol_tok, family):
    cm = tiny_chat_model(smol_tok, family, layers=3)
    before_hooks = _all_hooks(cm.model)
    plain = _generate(cm)
    with monitor(cm.model, _readers(cm)) as mon:
        watched = _generate(cm)
    assert torch.equal(plain.sequences, watched.sequences)
    for a, b in zip(plain.scores, watched.scores, strict=True):
        assert torch.equal(a, b)  # logits bit-identical
    assert _all_hooks(cm.model) == before_hooks  # every hook removed
    after = _generate(cm)
    assert torch.equal(after.sequences, plain.sequences)
    assert len(mon.traces()) == len(PROMPTS)


def test_projections_equal_teacher_forced_dot_products(smol_tok):
    cm = tiny_chat_model(smol_tok, "llama", layers=3)
    readers = _readers(cm)
    params = SamplingParams(temperature=0.0, max_new_tokens=7, batch_size=4)
    out = monitored_sample(cm, PROMPTS, 1, params, readers)
    plain = sample(cm, PROMPTS, 1, params)
    assert [r["text"] for r in out] == [r.text for r in plain]  # sampling unchanged
    for rec in out:
        p = next(p for p in PROMPTS if p.id == rec["prompt_id"])
        prompt_ids = cm.tokenizer(prompt_texts(cm.tokenizer, [p.messages])[0], add_special_tokens=False)["input_ids"]
        n = len(rec["projections"]["x"])
        assert n == rec["completion_tokens"] - 1  # the last generated token is never fed back
        # teacher-force prompt + the generated tokens that were fed, compare position by position
        ids = torch.tensor([prompt_ids + _fed_ids(cm, rec)])
        with torch.no_grad():
            hs = cm.model(input_ids=ids, output_hidden_states=True).hidden_states
        for name, (site, v) in readers.items():
            layer = int(site.split(".")[1])
            u = v.double() / v.double().norm()
            hand = (hs[layer + 1][0, len(prompt_ids) :].double() @ u).tolist()
            assert rec["projections"][name] == pytest.approx(hand, abs=1e-4)


def _fed_ids(cm, rec):
    """Re-derive the fed token ids: sampling is greedy, so regenerate and take all but the last new token."""
    p = next(p for p in PROMPTS if p.id == rec["prompt_id"])
    enc = cm.tokenizer(prompt_texts(cm.tokenizer, [p.messages])[0], add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        out = cm.model.generate(
            **enc,
            max_new_tokens=7,
            do_sample=False,
            pad_token_id=cm.tokenizer.pad_token_id,
            temperature=None,
            top_p=None,
            top_k=None,
        )
    new = out[0, enc["input_ids"].shape[1] :].tolist()
    return new[: len(rec["projections"]["x"])]


def test_traces_store_summary_and_plot(smol_tok, tmp_path):
    cm = tiny_chat_model(smol_tok, "qwen2", layers=2)
    out = monitored_sample(cm, PROMPTS, 2, SamplingParams(max_new_tokens=6, batch_size=3, seed=1), _readers(cm))
    assert [(r["prompt_id"], r["sample_index"]) for r in out] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert all(len(r["tokens"]) == len(r["projections"]["x"]) == len(r["projections"]["y"]) for r in out)
    write_traces(tmp_path / "t.jsonl", out)
    assert len((tmp_path / "t.jsonl").read_text().splitlines()) == 4
    s = summarize_traces(out)
    assert set(s) == {"x", "y"} and s["x"]["n"] >= 1
    assert plot_traces(out, tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    with (
        pytest.raises(EmlabError, match="non-zero 1-D vector"),
        monitor(cm.model, {"z": ("blocks.0.resid_post", torch.zeros(cm.d_model))}),
    ):
        pass
