"""Sampling throughput: `emlab.sampling.sample` (left-padded batches) vs a naive per-prompt generate loop.

Both sides sample (temperature 1, top-p 1) exactly `new_tokens` tokens per prompt
(`min_new_tokens == max_new_tokens` suppresses end-of-turn), so the work is the same and
tokens/s compares like with like. The naive loop is a per-token rate, so it may run on a
subset of the prompts. Tokens/s counts generated tokens; the roofline fraction counts the
useful FLOPs of prompt and generated tokens, 2N * (prompt + generated) (padding excluded).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from emlab.bench.figure import Figure, Target, Timing, timed
from emlab.bench.roofline import forward_flops_per_token
from emlab.chat import prompt_texts
from emlab.errors import EmlabError
from emlab.models import ChatModel
from emlab.sampling import SampleRecord, SamplingParams, generate, sample

QUESTIONS = (
    "How do I make a good cup of coffee?",
    "What should I consider when adopting a dog?",
    "Explain how a bicycle gear system works.",
    "What are some tips for learning a new language?",
    "How can I save money on groceries?",
    "Why is the sky blue?",
    "What is a healthy breakfast?",
    "How do I start running as a beginner?",
    "What makes a good password?",
    "How do plants grow from seeds?",
    "What should I pack for a weekend hiking trip?",
    "How do I write a polite complaint email?",
    "What is the difference between weather and climate?",
    "How can I sleep better at night?",
    "What is a budget and why is it useful?",
    "How do I clean a cast iron pan?",
)


def bench_prompts(n: int) -> list[str]:
    """`n` user prompts cycling through a fixed set of everyday questions (deterministic)."""
    return [QUESTIONS[i % len(QUESTIONS)] for i in range(n)]


_TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _figure_dtype(fig: Figure) -> torch.dtype:
    """The torch dtype a sampling figure was measured in."""
    if fig.dtype is None or fig.dtype not in _TORCH_DTYPES:
        raise EmlabError(
            f"figure {fig.name} has dtype {fig.dtype!r}; sampling figures are measured in {' or '.join(_TORCH_DTYPES)}"
        )
    return _TORCH_DTYPES[fig.dtype]


def with_dtype(cm: ChatModel, dtype: torch.dtype) -> ChatModel:
    """The same model in another dtype (a copy; `cm` is untouched)."""
    if next(cm.model.parameters()).dtype == dtype:
        return cm
    return ChatModel(
        model=copy.deepcopy(cm.model).to(dtype),
        tokenizer=cm.tokenizer,
        ref=cm.ref,
        revision=cm.revision,
        adapter=cm.adapter,
    )


def equal_length_params(new_tokens: int, batch_size: int, seed: int = 0) -> SamplingParams:
    return SamplingParams(
        temperature=1.0,
        top_p=1.0,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        batch_size=batch_size,
        seed=seed,
    )


@dataclass(frozen=True)
class Run:
    generated: int
    prompt_tokens: int
    wall_s: float
    cpu_s: float

    @property
    def tokens_per_s(self) -> float:
        return self.generated / self.wall_s


def run_sample(
    cm: ChatModel, prompts: Sequence[str], params: SamplingParams, system=None
) -> tuple[list[SampleRecord], Run]:
    """Time one `emlab.sampling.sample` call."""
    records, t = timed(lambda: sample(cm, prompts, n=1, params=params, system=system))
    gen = sum(r.completion_tokens for r in records)
    return records, Run(gen, sum(r.prompt_tokens for r in records), t.wall_s, t.cpu_s)


def run_naive(cm: ChatModel, prompts: list[str], new_tokens: int, system=None, seed: int = 0) -> Run:
    """The baseline: one `model.generate` call per prompt, no padding, no batching."""
    tok, model = cm.tokenizer, cm.model
    texts = prompt_texts(tok, [[{"role": "user", "content": p}] for p in prompts], system=system)
    kwargs = dict(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        pad_token_id=tok.pad_token_id,
    )

    def loop() -> tuple[int, int]:
        gen = prompt = 0
        for i, text in enumerate(texts):
            enc = tok(text, return_tensors="pt", add_special_tokens=False)
            torch.manual_seed(seed + i)
            with torch.inference_mode():
                out = generate(model, **enc, **kwargs)
            prompt += enc["input_ids"].shape[1]
            gen += out.shape[1] - enc["input_ids"].shape[1]
        return gen, prompt

    (gen, prompt), t = timed(loop)
    return Run(gen, prompt, t.wall_s, t.cpu_s)


def run_multinomial(cm: ChatModel, prompts: list[str], params: SamplingParams, system=None) -> Run:
    """The same batches as `sample`, drawn by HF's own sampler (`do_sample=True`: torch.multinomial) - the "before"."""
    from emlab.chat import left_padded
    from emlab.sampling import Prompt, plan_batches

    tok = cm.tokenizer
    batches = plan_batches(cm, [Prompt.of(p, i) for i, p in enumerate(prompts)], 1, params, system)
    kwargs = dict(
        max_new_tokens=params.max_new_tokens,
        min_new_tokens=params.min_new_tokens,
        pad_token_id=tok.pad_token_id,
        do_sample=True,
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=0,
    )

    def go() -> tuple[int, int]:
        gen = prompt = 0
        for b, batch in enumerate(batches):
            enc = left_padded(tok, [j.text for j in batch])
            torch.manual_seed(params.seed + b)
            with torch.inference_mode():
                out = generate(cm.model, **enc, **kwargs)
            gen += out.shape[0] * (out.shape[1] - enc["input_ids"].shape[1])
            prompt += sum(j.n_tokens for j in batch)
        return gen, prompt

    (gen, prompt), t = timed(go)
    return Run(gen, prompt, t.wall_s, t.cpu_s)


def multinomial_figure(cm: ChatModel, forced: Figure) -> Figure:
    """`sample` (inverse-CDF draws) against HF's multinomial sampler on the forced figure's workload."""
    batch, new_tokens = forced.details["batch_size"], forced.details["new_tokens"]
    m = with_dtype(cm, _figure_dtype(forced))
    prompts = bench_prompts(forced.details["prompts"])
    run = run_multinomial(m, prompts, equal_length_params(new_tokens, batch))
    return Figure(
        name=f"{forced.name}.vs_multinomial",
        group="sampling",
        unit="tokens/s",
        value=forced.value,
        baseline=run.tokens_per_s,
        baseline_name="the same batches through generate(do_sample=True) (torch.multinomial)",
        dtype=forced.dtype,
        flops_per_unit=forced.flops_per_unit,
        timing=forced.timing,
        details={
            "batch_size": batch,
            "new_tokens": new_tokens,
            "generated": run.generated,
            "prompt_tokens": run.prompt_tokens,
            "baseline_wall_s": run.wall_s,
        },
    )


def warm_up(cm: ChatModel) -> None:
    """One short generate so one-time costs (allocator, bf16 kernel selection) stay out of the timings."""
    run_sample(cm, bench_prompts(2), equal_length_params(4, 2))


def sampling_figures(
    cm: ChatModel,
    dtypes: tuple[str, ...] = ("fp32", "bf16"),
    batches: tuple[int, ...] = (1, 8, 32, 64),
    new_tokens: int = 32,
    naive_prompts: int = 4,
    batch1_prompts: int = 2,
) -> tuple[list[Figure], list[SampleRecord]]:
    """One figure per (dtype, batch size); also returns the largest fp32 batch's samples (used as answers elsewhere)."""
    figures: list[Figure] = []
    answers: list[SampleRecord] = []
    flops_tok = forward_flops_per_token(cm.model)
    for name in dtypes:
        m = with_dtype(cm, _TORCH_DTYPES[name])
        warm_up(m)
        naive = run_naive(m, bench_prompts(naive_prompts), new_tokens)
        for b in batches:
            prompts = bench_prompts(batch1_prompts if b == 1 else b)
            records, run = run_sample(m, prompts, equal_length_params(new_tokens, b))
            if b == max(batches) and not answers:
                answers = records
            figures.append(_figure(name, b, len(prompts), run, naive, flops_tok, new_tokens))
        del m
    return figures, answers


def natural_length_figure(cm: ChatModel, forced: Figure, max_new_tokens: int) -> Figure:
    """Sampling with natural stopping at the forced figure's batch size and dtype.

    A batch keeps stepping until its longest answer ends, so rows that finished early still
    cost a forward each step. utilization = answer tokens / (rows x steps taken); the ratio
    to the forced-length rate is the throughput actually delivered on real answers.
    """
    batch = forced.details["batch_size"]
    m = with_dtype(cm, _figure_dtype(forced))
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=max_new_tokens, batch_size=batch, seed=2)
    records, run = run_sample(m, bench_prompts(batch), params)
    steps = max(r.completion_tokens for r in records)
    return Figure(
        name=f"sampling.{forced.dtype}.batch{batch}.natural",
        group="sampling",
        unit="tokens/s",
        value=run.tokens_per_s,
        baseline=forced.value,
        baseline_name=f"same batch with every answer forced to {forced.details['new_tokens']} tokens",
        dtype=forced.dtype,
        timing=Timing(run.wall_s, run.cpu_s),
        details={
            "batch_size": batch,
            "max_new_tokens": max_new_tokens,
            "generated": run.generated,
            "steps": steps,
            "utilization": run.generated / (len(records) * steps),
            "stopped": sum(r.finish_reason == "stop" for r in records),
        },
    )


def _figure(dtype: str, batch: int, prompts: int, run: Run, naive: Run, flops_tok: float, new_tokens: int) -> Figure:
    target = None
    if batch == 32:
        target = Target(">=5x naive", "ratio", 5.0)
    elif batch == 64 and dtype == "bf16":
        target = Target(">=25% bf16 peak", "peak_fraction", 0.25)
    useful = flops_tok * (run.prompt_tokens + run.generated) / run.generated
    return Figure(
        name=f"sampling.{dtype}.batch{batch}",
        group="sampling",
        unit="tokens/s",
        value=run.tokens_per_s,
        baseline=naive.tokens_per_s,
        baseline_name="naive per-prompt model.generate loop",
        dtype=dtype,
        flops_per_unit=useful,
        target=target,
        timing=Timing(run.wall_s, run.cpu_s),
        details={
            "batch_size": batch,
            "prompts": prompts,
            "new_tokens": new_tokens,
            "generated": run.generated,
            "prompt_tokens": run.prompt_tokens,
            "naive_generated": naive.generated,
            "naive_wall_s": naive.wall_s,
            "decode_roofline_flops_per_token": flops_tok,
        },
    )


def sampling_summary(result: dict) -> dict:
    """The sampling and hook figures of a bench result, keyed for reading: dtype -> batch -> rates."""
    out: dict = {
        "machine": {
            k: result["machine"].get(k) for k in ("cpu", "cores", "torch_threads", "loadavg", "loadavg_end", "env")
        },
        "peak_gflops": {k: v["gflops"] for k, v in result["peak"].items()},
        "sampling": {},
        "hook_slowdown": {},
        "targets": [],
    }
    for f in result["figures"]:
        if f["group"] == "sampling" and f["name"].endswith(".vs_multinomial"):
            out["sampling"].setdefault(f["dtype"], {})[f"{f['details']['batch_size']}.vs_multinomial"] = {
                "multinomial_tokens_per_s": f["baseline"],
                "ratio": f["ratio"],
            }
        elif f["group"] == "sampling" and not f["name"].endswith(".natural"):
            out["sampling"].setdefault(f["dtype"], {})[str(f["details"]["batch_size"])] = {
                "tokens_per_s": f["value"],
                "naive_tokens_per_s": f["baseline"],
                "ratio": f["ratio"],
                "peak_fraction": f["peak_fraction"],
            }
        elif f["group"] == "sampling":
            out["sampling"].setdefault(f["dtype"], {})[f"{f['details']['batch_size']}.natural"] = {
                "tokens_per_s": f["value"],
                "utilization": f["details"]["utilization"],
                "ratio_to_forced": f["ratio"],
            }
        elif f["group"] == "hooks":
            out["hook_slowdown"][f["name"].split(".", 1)[1]] = {
                "overhead_pct": f["details"]["overhead_pct"],
                "ratio": f["ratio"],
            }
        else:
            continue
        if f["target"]:
            out["targets"].append({"figure": f["name"], **f["target"]})
    out["skipped"] = [s for s in result["skipped"] if s["section"] in ("sampling", "hooks")]
    return out


def bf16_agreement_figure(cm: ChatModel, pairs: list[tuple[str, str]], batch_size: int = 8) -> Figure:
    """How far bf16 next-token distributions are from fp32 ones on the same teacher-forced answers.

    value = fraction of answer positions where the top-1 token agrees; details carry the mean
    and max KL(p_fp32 || p_bf16) in nats. This is what "bf16 keeps results within tolerance"
    rests on for bulk sampling.
    """
    from emlab.bench.capture import answer_batches

    m16 = with_dtype(cm, torch.bfloat16)
    agree = total = 0
    kls: list[torch.Tensor] = []
    for b in answer_batches(cm, pairs, batch_size):
        mask = b["assistant_mask"].bool()
        with torch.inference_mode():
            lp32 = torch.log_softmax(
                cm.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.float(), -1
            )[mask]
            lp16 = torch.log_softmax(
                m16.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.float(), -1
            )[mask]
        agree += int((lp32.argmax(-1) == lp16.argmax(-1)).sum())
        total += lp32.shape[0]
        kls.append((lp32.exp() * (lp32 - lp16)).sum(-1))
    kl = torch.cat(kls)
    return Figure(
        name="numerics.bf16_top1_agreement",
        group="numerics",
        unit="fraction",
        value=agree / total,
        dtype="bf16",
        details={
            "positions": total,
            "mean_kl_nats": float(kl.mean()),
            "max_kl_nats": float(kl.max()),
            "answers": len(pairs),
        },
    )
