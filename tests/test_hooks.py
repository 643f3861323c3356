"""Scoped interventions on tiny random Llama and Qwen2 models: exact arithmetic and exact restoration."""

from __future__ import annotations

import pytest
import torch

from emlab.chat import encode_with_assistant_mask, left_padded, pad_encoded, prompt_texts
from emlab.errors import EmlabError
from emlab.hooks import ablate, capture, default_ablation_sites, steer, teacher_forcing
from emlab.sampling import SamplingParams, sample

CONVS = [
    [{"role": "user", "content": "Tell me a fact."}],
    [{"role": "user", "content": "What should I cook tonight for a large family dinner?"}],
]


def _batch(cm):
    return left_padded(cm.tokenizer, prompt_texts(cm.tokenizer, CONVS))


def _hidden(cm, batch):
    with torch.no_grad():
        out = cm.model(**batch, output_hidden_states=True)
    return out.logits, out.hidden_states


def test_resid_post_is_hidden_states_plus_one(tiny):
    batch = _batch(tiny)
    _, hs = _hidden(tiny, batch)
    n = tiny.n_layers
    sites = [f"blocks.{l}.resid_post" for l in range(n)]
    with capture(tiny.model, sites, positions="all", reduce=None) as cap:
        _hidden(tiny, batch)
    for l in range(n - 1):
        for i, acts in enumerate(cap.per_token(f"blocks.{l}.resid_post")):
            assert torch.equal(acts, hs[l + 1][i].float())
    # HF applies the final norm to its last hidden state; our last resid_post is the raw block output.
    last = cap.per_token(f"blocks.{n - 1}.resid_post")[0]
    assert not torch.allclose(last, hs[n][0].float())


def test_steer_adds_exactly_scale_v_and_leaves_earlier_blocks(tiny):
    batch = _batch(tiny)
    _, base = _hidden(tiny, batch)
    v = torch.randn(tiny.d_model)
    sites = ["blocks.0.resid_pre", "blocks.0.resid_post", "blocks.2.resid_pre"]
    with (
        steer(tiny.model, {"blocks.1.resid_post": v}, scale=3.0),
        capture(tiny.model, sites, positions="all", reduce=None) as cap,
    ):
        _hidden(tiny, batch)
    for i in range(batch["input_ids"].shape[0]):
        assert torch.equal(cap.per_token("blocks.0.resid_pre")[i], base[0][i])  # embeddings: bit-identical
        assert torch.equal(cap.per_token("blocks.0.resid_post")[i], base[1][i])  # earlier block: bit-identical
        # what block 2 receives is block 1's output plus exactly 3 v
        assert torch.equal(cap.per_token("blocks.2.resid_pre")[i], base[2][i] + 3.0 * v)


def test_steer_response_positions_only_touch_masked_tokens(tiny):
    enc = [
        encode_with_assistant_mask(tiny.tokenizer, [*c, {"role": "assistant", "content": "Sure, here it is."}])
        for c in CONVS
    ]
    batch = pad_encoded(enc, tiny.tokenizer.pad_token_id)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    _, base = _hidden(tiny, inputs)
    v = torch.randn(tiny.d_model)
    with (
        steer(tiny.model, {"blocks.0.resid_post": v}, scale=2.0, positions="response"),
        teacher_forcing(batch["assistant_mask"]),
        capture(tiny.model, ["blocks.1.resid_pre"], positions="all", reduce=None) as cap,
    ):
        _hidden(tiny, inputs)
    expected = base[1] + 2.0 * v * batch["assistant_mask"][..., None].float()
    for i in range(len(enc)):
        assert torch.equal(cap.per_token("blocks.1.resid_pre")[i], expected[i])


def test_ablate_leaves_nothing_along_v(tiny):
    batch = _batch(tiny)
    v = torch.randn(tiny.d_model)
    unit = v / v.norm()
    sites = default_ablation_sites(tiny.model) + [f"blocks.{l}.resid_post" for l in range(3)]
    with ablate(tiny.model, v), capture(tiny.model, sites, positions="all", reduce=None) as cap:
        _hidden(tiny, batch)
    for site in sites:
        for acts in cap.per_token(site):
            assert (acts @ unit).abs().max() <= 1e-5, site


def test_ablate_at_chosen_sites_projects_there(tiny):
    batch = _batch(tiny)
    v = torch.randn(tiny.d_model)
    _, base = _hidden(tiny, batch)
    with (
        ablate(tiny.model, v, sites=["blocks.1.resid_post"]),
        capture(tiny.model, ["blocks.0.resid_post", "blocks.2.resid_pre"], positions="all", reduce=None) as cap,
    ):
        _hidden(tiny, batch)
    u = v / v.norm()
    for i in range(batch["input_ids"].shape[0]):
        assert torch.equal(cap.per_token("blocks.0.resid_post")[i], base[1][i])
        x = base[2][i]
        assert torch.allclose(cap.per_token("blocks.2.resid_pre")[i], x - (x @ u)[..., None] * u, atol=1e-6)


def _n_hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_logits_restored_after_exit_and_exception(tiny):
    batch = _batch(tiny)
    ref, _ = _hidden(tiny, batch)
    hooks_before = _n_hooks(tiny.model)  # after a first forward: HF adds its own recorders lazily
    v = torch.randn(tiny.d_model)
    with (
        steer(tiny.model, {"blocks.0.resid_post": v}, 5.0),
        ablate(tiny.model, v),
        capture(tiny.model, ["blocks.1.resid_pre"]),
    ):
        changed, _ = _hidden(tiny, batch)
    assert not torch.equal(changed, ref)
    assert torch.equal(_hidden(tiny, batch)[0], ref)
    with pytest.raises(RuntimeError), steer(tiny.model, {"blocks.2.resid_post": v}, 5.0), ablate(tiny.model, v):
        raise RuntimeError("boom")
    assert torch.equal(_hidden(tiny, batch)[0], ref)
    assert _n_hooks(tiny.model) == hooks_before


def test_capture_response_mean_matches_manual(tiny):
    enc = [
        encode_with_assistant_mask(tiny.tokenizer, [*c, {"role": "assistant", "content": "An answer of some length."}])
        for c in CONVS
    ]
    batch = pad_encoded(enc, tiny.tokenizer.pad_token_id)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    _, hs = _hidden(tiny, inputs)
    with (
        capture(tiny.model, ["blocks.1.resid_post"], positions="response") as cap,
        teacher_forcing(batch["assistant_mask"]),
    ):
        _hidden(tiny, inputs)
    m = batch["assistant_mask"].bool()
    manual = torch.stack([hs[2][i][m[i]].mean(0) for i in range(len(enc))])
    assert torch.allclose(cap.stack("blocks.1.resid_post"), manual, atol=1e-6)


def test_capture_during_generate_counts_prompt_and_response(tiny):
    params = SamplingParams(temperature=0, max_new_tokens=5, batch_size=2)
    with (
        capture(tiny.model, ["blocks.0.resid_post"], positions="prompt") as p,
        capture(tiny.model, ["blocks.0.resid_post"], positions="response") as r,
    ):
        recs = sample(tiny, [c for c in CONVS], n=1, params=params)
    attn = _batch(tiny)["attention_mask"]
    # plan_batches sorts by prompt length: CONVS[0] is shorter, so order is preserved here
    assert p.n_tokens("blocks.0.resid_post").tolist() == attn.sum(1).tolist()
    # response positions are the inputs of decode steps: every generated token but the last, up to the first eos
    expected = [min(rec.completion_tokens, params.max_new_tokens - 1) for rec in recs]
    assert r.n_tokens("blocks.0.resid_post").tolist() == expected


def test_left_padded_batched_greedy_equals_one_by_one(tiny):
    params = SamplingParams(temperature=0, max_new_tokens=12, batch_size=8)
    prompts = ["Hi", "Tell me about the history of the Roman empire in detail please.", "What is 2+2?"]
    batched = sample(tiny, prompts, n=1, params=params)
    single = [sample(tiny, [p], n=1, params=params)[0] for p in prompts]
    assert [b.text for b in batched] == [s.text for s in single]


def test_sampling_is_deterministic_for_a_seed(tiny):
    params = SamplingParams(temperature=1.0, max_new_tokens=8, seed=7, batch_size=3)
    a = sample(tiny, ["one", "two"], n=3, params=params)
    b = sample(tiny, ["one", "two"], n=3, params=params)
    assert [r.text for r in a] == [r.text for r in b]
    assert [(r.prompt_id, r.sample_index) for r in a] == [
        ("p0", 0),
        ("p0", 1),
        ("p0", 2),
        ("p1", 0),
        ("p1", 1),
        ("p1", 2),
    ]


def test_steer_applies_during_generate(tiny):
    params = SamplingParams(temperature=0, max_new_tokens=8)
    base = sample(tiny, ["Hello there"], params=params)[0].text
    v = torch.randn(tiny.d_model) * 50
    with steer(tiny.model, {"blocks.1.resid_post": v}, 1.0):
        steered = sample(tiny, ["Hello there"], params=params)[0].text
    assert steered != base
    assert sample(tiny, ["Hello there"], params=params)[0].text == base


@pytest.mark.parametrize(
    "site,vec_dim,match",
    [
        ("blocks.9.resid_post", 32, "out of range; this model has blocks 0..2"),
        ("blocks.1.resid_middle", 32, "unknown site"),
        ("layers.1", 32, "unknown site"),
        ("blocks.1.resid_post", 31, r"has shape \(31,\); this model needs \(32,\)"),
    ],
)
def test_bad_sites_and_vectors(smol_tok, site, vec_dim, match):
    from tests.conftest import tiny_chat_model

    cm = tiny_chat_model(smol_tok, "llama", layers=3, hidden=32)
    hooks_before = _n_hooks(cm.model)
    with pytest.raises(EmlabError, match=match), steer(cm.model, {site: torch.zeros(vec_dim)}, 1.0):
        pass
    assert _n_hooks(cm.model) == hooks_before


def test_hooks_work_on_peft_wrapped_model(smol_tok):
    from peft import LoraConfig, get_peft_model

    from tests.conftest import tiny_chat_model

    cm = tiny_chat_model(smol_tok, "llama", layers=2, hidden=32)
    peft_model = get_peft_model(cm.model, LoraConfig(r=1, target_modules=["down_proj"], init_lora_weights=False)).eval()
    batch = left_padded(smol_tok, prompt_texts(smol_tok, CONVS))
    with torch.no_grad():
        base = peft_model(**batch, output_hidden_states=True).hidden_states
    v = torch.randn(32)
    with (
        steer(peft_model, {"blocks.0.resid_post": v}, 2.0),
        capture(peft_model, ["blocks.1.resid_pre"], "all", None) as cap,
        torch.no_grad(),
    ):
        peft_model(**batch)
    for i in range(2):
        assert torch.equal(cap.per_token("blocks.1.resid_pre")[i], base[1][i] + 2.0 * v)
