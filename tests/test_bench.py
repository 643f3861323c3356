"""Bench plumbing on a tiny random model: schema, arithmetic of ratios and FLOP models. No timing thresholds."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from emlab.bench.figure import Figure, Target, Timing
from emlab.bench.roofline import backward_params, forward_flops_per_token, param_counts, train_flops_per_token
from emlab.bench.runner import SCHEMA, BenchConfig, run_bench, with_sections, write_result
from emlab.bench.sampling import sampling_summary
from emlab.errors import EmlabError
from tests.conftest import tiny_chat_model

TINY = BenchConfig(
    mode="test",
    sections=("sampling", "hooks", "capture", "training", "judging"),
    peak_repeats=1,
    sampling_dtypes=("fp32", "bf16"),
    batches=(1, 2),
    new_tokens=3,
    natural_new_tokens=3,
    multinomial_batches=(2,),
    naive_prompts=1,
    batch1_prompts=1,
    hook_batch=2,
    hook_new_tokens=2,
    hook_repeats=1,
    capture_answers=4,
    capture_batch=2,
    capture_repeats=1,
    train_steps=2,
    train_batch=2,
    offline_answers=0,
    local_answers=2,
    numerics_answers=2,
)


def test_figure_ratio_gflops_and_peak_fraction():
    f = Figure(
        name="x",
        group="g",
        unit="tokens/s",
        value=10.0,
        baseline=4.0,
        dtype="fp32",
        flops_per_unit=2e9,
        target=Target(">= 2x", "ratio", 2.0),
    )
    d = f.to_dict({"fp32": 40.0, "bf16": 80.0})
    assert d["ratio"] == 2.5
    assert d["gflops"] == 20.0
    assert d["peak_gflops"] == 40.0 and d["peak_fraction"] == 0.5
    assert d["target"]["met"] is True
    assert d["cpu_peak_fraction"] is None  # no timing attached
    timed_fig = Figure(
        name="t",
        group="g",
        unit="tokens/s",
        value=10.0,
        dtype="bf16",
        flops_per_unit=1e9,
        timing=Timing(wall_s=4.0, cpu_s=2.0),
    )
    t = timed_fig.to_dict({"bf16": 100.0}, {"bf16": 50.0})
    assert t["gflops"] == 10.0 and t["peak_fraction"] == 0.1
    assert t["cpu_peak_fraction"] == 10.0 * 4.0 / 2.0 / 50.0  # 20 GFLOP per CPU-second of a 50 GFLOP/cpu-s peak
    assert (t["wall_s"], t["cpu_s"]) == (4.0, 2.0)
    missed = Figure(
        name="y", group="g", unit="s", value=1.0, baseline=4.0, target=Target(">= 2x", "ratio", 2.0)
    ).to_dict({})
    assert missed["ratio"] == 0.25 and missed["target"]["met"] is False
    assert missed["gflops"] is None and missed["peak_fraction"] is None
    bare = Figure(name="z", group="g", unit="s", value=3.0).to_dict(None)
    assert bare["ratio"] is None and bare["target"] is None


def test_param_counts_untied_and_tied(smol_tok):
    cm = tiny_chat_model(smol_tok, layers=3, hidden=32)
    c = param_counts(cm.model)
    v, d = len(smol_tok), 32
    blocks = sum(p.numel() for p in cm.model.model.layers.parameters()) + cm.model.model.norm.weight.numel()
    assert c["embedding"] == v * d and c["lm_head"] == v * d and c["tied_embeddings"] == 0
    assert c["non_embedding"] == blocks
    assert c["forward"] == blocks + v * d
    assert c["total"] == blocks + 2 * v * d
    assert forward_flops_per_token(cm.model) == 2.0 * (blocks + v * d)

    tied = tiny_chat_model(smol_tok, layers=2, hidden=32)
    tied.model.lm_head.weight = tied.model.model.embed_tokens.weight
    t = param_counts(tied.model)
    assert t["tied_embeddings"] == 1
    assert t["total"] == t["non_embedding"] + v * d  # the shared matrix counted once in the total ...
    assert t["forward"] == t["non_embedding"] + v * d  # ... and once as the LM head's matmul


def test_train_flops_count_backward_from_lowest_adapted_block(smol_tok):
    cm = tiny_chat_model(smol_tok, layers=3, hidden=32)
    n = param_counts(cm.model)["forward"]
    block = sum(p.numel() for p in cm.model.model.layers[0].parameters())
    assert backward_params(cm.model, None) == n
    assert backward_params(cm.model, 1) == n - block
    assert train_flops_per_token(cm.model, None) == 4.0 * n  # adapters down to block 0: the 4N rule
    assert train_flops_per_token(cm.model, 1) == 2.0 * n + 2.0 * (n - block)


def test_run_bench_on_tiny_model_writes_the_schema(smol_tok, tmp_path):
    cm = tiny_chat_model(smol_tok, layers=3, hidden=32)
    before = {k: v.clone() for k, v in cm.model.state_dict().items()}
    result = run_bench(cm, TINY)
    assert result["schema"] == SCHEMA and result["mode"] == "test"
    assert result["skipped"] == []
    assert set(result["peak"]) == {"fp32", "bf16"} and all(p["gflops"] > 0 for p in result["peak"].values())
    assert len(result["machine"]["loadavg"]) == 3 and len(result["machine"]["loadavg_end"]) == 3
    names = [f["name"] for f in result["figures"]]
    assert names == [
        "sampling.fp32.batch1",
        "sampling.fp32.batch2",
        "sampling.bf16.batch1",
        "sampling.bf16.batch2",
        "numerics.bf16_top1_agreement",
        "sampling.fp32.batch2.vs_multinomial",
        "sampling.bf16.batch2.vs_multinomial",
        "sampling.bf16.batch2.natural",
        "hooks.steer",
        "hooks.ablate",
        "hooks.capture",
        "capture.hooks",
        "training.rank1.bf16",
        "training.rank1.bf16.fused_head",
        "judging.local",
    ]
    for f in result["figures"]:
        if f["group"] == "numerics":
            assert 0 <= f["value"] <= 1 and f["baseline"] is None and f["details"]["mean_kl_nats"] >= -1e-6
            continue
        assert f["ratio"] == f["value"] / f["baseline"], f["name"]
        if f["flops_per_unit"] is not None:
            assert f["gflops"] == f["value"] * f["flops_per_unit"] / 1e9
            assert f["peak_fraction"] == f["gflops"] / result["peak"][f["dtype"]]["gflops"]
        if f["cpu_s"] and f["gflops"] is not None:
            assert (
                f["cpu_peak_fraction"]
                == f["gflops"] * f["wall_s"] / f["cpu_s"] / result["peak"][f["dtype"]]["gflops_per_cpu_s"]
            )
    by_name = {f["name"]: f for f in result["figures"]}
    s = by_name["sampling.fp32.batch2"]["details"]
    assert s["generated"] == 2 * TINY.new_tokens  # equal lengths were forced
    assert by_name["sampling.fp32.batch1"]["details"]["naive_generated"] == TINY.naive_prompts * TINY.new_tokens
    assert by_name["capture.hooks"]["details"]["max_abs_diff_vs_baseline"] < 1e-5
    mult = by_name["sampling.bf16.batch2.vs_multinomial"]
    assert (
        mult["details"]["generated"] == 2 * TINY.new_tokens
        and mult["value"] == by_name["sampling.bf16.batch2"]["value"]
    )
    assert by_name["training.rank1.bf16"]["details"]["timed_steps"] == TINY.train_steps - 1
    fused = by_name["training.rank1.bf16.fused_head"]["details"]  # the same training, the loss computed two ways
    assert fused["final_loss"] == pytest.approx(fused["baseline_final_loss"], rel=1e-2)
    assert all(torch.equal(before[k], v) for k, v in cm.model.state_dict().items())  # the bench never edits the model
    assert not cm.model.lm_head._forward_pre_hooks and not cm.model._forward_pre_hooks  # nor leaves hooks behind
    summary = sampling_summary(result)
    assert summary["sampling"]["bf16"]["2"]["ratio"] == by_name["sampling.bf16.batch2"]["ratio"]
    natural = by_name["sampling.bf16.batch2.natural"]["details"]
    assert natural["utilization"] == natural["generated"] / (2 * natural["steps"])
    assert summary["sampling"]["bf16"]["2.natural"]["utilization"] == natural["utilization"]
    assert set(summary["hook_slowdown"]) == {"steer", "ablate", "capture"}
    out = write_result(result, tmp_path / "r" / "bench.json")
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))


def test_demo_figures_read_step_seconds_from_the_manifest(tmp_path):
    from emlab.bench.demo import demo_figures, latest_demo_run
    from emlab.store import Run

    assert latest_demo_run(tmp_path) is None
    with pytest.raises(EmlabError, match="no demo run"):
        demo_figures(tmp_path)
    steps = [{"name": "data", "kind": "data"}, {"name": "train", "kind": "train"}, {"name": "report", "kind": "report"}]
    run = Run.create("demo-quick", {}, steps, {}, base=tmp_path)
    for name, secs in (("data", 1.5), ("train", 20.25)):
        run.begin(name, resumable=False)
        run.finish(name, {}, secs)
    figs = demo_figures(tmp_path)
    assert [(f.name, f.value) for f in figs] == [
        ("demo.step.data", 1.5),
        ("demo.step.train", 20.25),
        ("demo.total", 21.75),
    ]
    assert figs[-1].details["steps_timed"] == 2 and figs[-1].details["steps"] == 3


def test_config_rejects_unknown_sections():
    with pytest.raises(EmlabError, match="unknown bench section"):
        with_sections(TINY, ["sampling", "warp-drive"])
    assert with_sections(TINY, None) is TINY


def test_cli_rejects_quick_and_full_together():
    from emlab.cli import app

    result = CliRunner().invoke(app, ["bench", "--quick", "--full"])
    assert isinstance(result.exception, EmlabError)
    assert "not both" in str(result.exception)


def test_table_lists_figures_and_skips(smol_tok):
    from rich.console import Console

    from emlab.cli.bench import format_table

    fig = Figure(
        name="sampling.fp32.batch8",
        group="sampling",
        unit="tokens/s",
        value=50.0,
        baseline=10.0,
        dtype="fp32",
        flops_per_unit=1e9,
    )
    result = {
        "mode": "quick",
        "peak": {"fp32": {"gflops": 100.0}, "bf16": {"gflops": 200.0}},
        "machine": {
            "cores": 2,
            "torch_threads": 2,
            "env": {},
            "loadavg": [1.0, 1.0, 1.0],
            "loadavg_end": [2.0, 1.0, 1.0],
        },
        "figures": [fig.to_dict({"fp32": 100.0})],
        "skipped": [{"section": "judging", "reason": "ImportError: no MiniLM"}],
    }
    console = Console(record=True, width=200)
    console.print(format_table(result))
    text = console.export_text()
    assert "sampling.fp32.batch8" in text and "5.00x" in text and "50% fp32" in text
    assert "skipped" in text and "no MiniLM" in text


def test_omp_policy_probe_runs_in_a_subprocess():
    from emlab.bench.threads import policy_gflops

    got = policy_gflops("PASSIVE", n=64, repeats=1, k=1)
    assert got["gflops"] > 0 and got["threads"] >= 1


def test_inverse_cdf_sampler_matches_hf_warpers_and_samples_the_distribution():
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    from emlab.sampling import InverseCdfSampler

    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 50, generator=gen) * 3
    s = InverseCdfSampler(temperature=0.7, top_p=0.8)
    hf = TopPLogitsWarper(0.8)(None, TemperatureLogitsWarper(0.7)(None, scores))
    assert torch.equal(s.probabilities(scores) > 0, torch.isfinite(hf))
    assert torch.allclose(s.probabilities(scores), torch.softmax(hf, -1), atol=1e-6)

    probs = torch.tensor([0.1, 0.2, 0.0, 0.7])
    row = probs.log().expand(40_000, 4)  # log 0 = -inf: token 2 can never be drawn
    torch.manual_seed(1)
    drawn = InverseCdfSampler().sample(row)
    freq = torch.bincount(drawn, minlength=4).float() / len(drawn)
    assert freq[2] == 0
    assert torch.allclose(freq, probs, atol=0.01)

    out = s(None, scores)
    assert torch.equal((out == 0).sum(-1), torch.ones(4, dtype=torch.long))
    assert torch.isinf(out).sum() == 4 * 49


def test_sampling_is_seeded_and_keeps_min_new_tokens(smol_tok):
    from emlab.sampling import SamplingParams, generate_kwargs

    cm = tiny_chat_model(smol_tok, layers=2, hidden=32)
    enc = smol_tok(
        ["hello there", "a longer prompt with more words"], return_tensors="pt", padding=True, padding_side="left"
    )
    params = SamplingParams(temperature=1.0, max_new_tokens=6, min_new_tokens=6)

    def run(seed):
        with torch.inference_mode():
            return cm.model.generate(**enc, **generate_kwargs(params, smol_tok.pad_token_id, seed=seed))

    a, b, c = run(3), run(3), run(4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape[1] == enc["input_ids"].shape[1] + 6
    assert not (
        a[:, enc["input_ids"].shape[1] :] == smol_tok.eos_token_id
    ).any()  # min_new_tokens ran before the sampler


def test_contiguous_lm_head_input_keeps_logits_and_leaves_no_hook(smol_tok):
    from emlab.hooks import contiguous_lm_head_input

    cm = tiny_chat_model(smol_tok, layers=2, hidden=32)
    ids = torch.randint(0, 100, (3, 7))
    with torch.inference_mode():
        ref = cm.model(ids, logits_to_keep=1).logits
        with contiguous_lm_head_input(cm.model):
            got = cm.model(ids, logits_to_keep=1).logits
        after = cm.model(ids, logits_to_keep=1).logits
    assert torch.allclose(got, ref, atol=1e-6) and torch.equal(after, ref)
    assert not cm.model.lm_head._forward_pre_hooks


def test_min_new_tokens_is_validated():
    from emlab.sampling import SamplingParams

    assert SamplingParams(max_new_tokens=4, min_new_tokens=4).min_new_tokens == 4
    with pytest.raises(EmlabError, match="min_new_tokens=5"):
        SamplingParams(max_new_tokens=4, min_new_tokens=5)


def test_wait_policy_follows_the_load():
    from emlab.bench.threads import wait_policy_for

    assert wait_policy_for(0.9, 2) is None  # idle: libgomp's default spins briefly, faster here
    assert (
        wait_policy_for(2.0, 2) == "PASSIVE" and wait_policy_for(11.5, 2) == "PASSIVE"
    )  # as many runnable threads as cores


@pytest.mark.parametrize(
    ("mode", "verdict", "kept"), [("quick", "float32", False), ("quick", "bfloat16", True), ("full", "float32", True)]
)
def test_quick_bench_leaves_bf16_out_where_the_probe_found_it_emulated(monkeypatch, mode, verdict, kept):
    from emlab.bench.runner import for_machine
    from emlab.dtype_probe import DtypeChoice

    choice = DtypeChoice(verdict, "bf16 (emulated) measured 0.05x fp32's speed", {}, "test machine")
    monkeypatch.setattr("emlab.dtype_probe.choose_dtype", lambda device="cpu": choice)
    config = BenchConfig(mode=mode, sampling_dtypes=("fp32", "bf16"), train_dtypes=("bf16",))
    adjusted, reason = for_machine(config)
    if kept:
        assert adjusted == config and reason == ""
    else:
        assert adjusted.sampling_dtypes == ("fp32",) and adjusted.train_dtypes == ("fp32",)
        assert "0.05x" in reason


def test_fluency_figure_compares_chunked_with_whole_batch_features(smol_dir):
    from emlab.bench.judging import fluency_figure
    from emlab.judges.fluency import HEAD_CHUNK_FLOATS, get_fluency_scorer

    pairs = [("How do I boil an egg?", "Put it in boiling water for nine minutes."), ("Hi?", "Hello! How can I help?")]
    fig = fluency_figure(pairs, rounds=2).to_dict({}, {})
    assert fig["ratio"] == fig["value"] / fig["baseline"]
    assert fig["value"] == 4 / fig["details"]["wall_s"] and fig["baseline"] == 4 / fig["details"]["baseline_wall_s"]
    assert fig["details"]["max_abs_diff_vs_baseline"] < 1e-4
    assert get_fluency_scorer().head_chunk_floats == HEAD_CHUNK_FLOATS  # restored
