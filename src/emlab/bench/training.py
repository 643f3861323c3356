"""Rank-1 LoRA training throughput: `emlab.train.train` vs a plain peft + torch loop on the same batches.

Both sides train the demo's organism set-up (preset rank1-middle: one rank-1 adapter on the
middle block's mlp.down_proj) for the same optimizer steps over the same micro-batches (built
with emlab.train's own encode/plan/collate), with bf16 base weights and fp32 adapters. The
plain loop computes under bf16 autocast and takes HF's loss over full logits; emlab.train makes
its own choices (today: no autocast for LoRA, the fused chunked head over the label positions,
emlab.train.head_loss). A second figure per dtype compares emlab.train with its own loss the
pre-fusion way (`full_logits_loss`: full logits from the earliest label). The first step of each
is a warm-up and is not timed. Tokens/s counts non-pad tokens.

Roofline (see emlab.bench.roofline): 2N forward + 2 N_bwd backward FLOPs per token, N_bwd =
LM head + the blocks from the adapted one up; the 4N rule is the case of an adapter in block 0.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Sequence

import torch

from emlab.bench.figure import Figure, Target
from emlab.bench.roofline import forward_flops_per_token, train_flops_per_token
from emlab.errors import EmlabError
from emlab.io import iter_jsonl
from emlab.models import ChatModel

DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


def bench_config(steps: int, batch_size: int, dtype: str, preset: str = "rank1-middle"):
    """The preset with a fixed step count, one micro-batch per step, no checkpoints."""
    from emlab.train import load_preset, parse_config

    base = load_preset(preset).model_dump()
    base.update(
        max_steps=steps,
        epochs=1,
        batch_size=batch_size,
        grad_accum=1,
        checkpoint_every=None,
        dtype=DTYPES[dtype],
        device="cpu",
    )
    return parse_config(base, f"bench training config (preset {preset})")


def conversations(pairs: Sequence[tuple[str, str]]) -> list[list[dict]]:
    return [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in pairs]


def run_emlab_train(cm: ChatModel, convs: list[list[dict]], config) -> dict:
    """Train with emlab.train; per-step tokens and seconds from its log (step 1 dropped as warm-up)."""
    from emlab.train import train

    with tempfile.TemporaryDirectory(prefix="emlab-bench-train-") as tmp:
        result = train(cm, convs, config, out_dir=tmp)
        log = [rec for _, rec in iter_jsonl(f"{tmp}/train_log.jsonl")]
    timed_steps = log[1:]
    return {
        "tokens": sum(r["tokens"] for r in timed_steps),
        "seconds": sum(r["time_s"] for r in timed_steps),
        "steps": len(timed_steps),
        "blocks": result.summary.get("blocks"),
        "final_loss": result.final_loss,
    }


def step_batches(cm: ChatModel, convs: list[list[dict]], config) -> list[list[dict[str, torch.Tensor]]]:
    """The micro-batches of each optimizer step, exactly as emlab.train plans epoch 0."""
    from emlab.train import collate, encode_examples, plan_epoch

    examples, _ = encode_examples(cm.tokenizer, convs, config)
    plan = plan_epoch([len(e.input_ids) for e in examples], config.batch_size, config.seed, 0)
    micro = [collate([examples[i] for i in idx], cm.tokenizer.pad_token_id) for idx in plan]
    k = config.grad_accum
    steps = [micro[i : i + k] for i in range(0, len(micro), k)]
    return steps[: config.max_steps]


def run_plain_loop(cm: ChatModel, convs: list[list[dict]], config) -> dict:
    """The baseline: get_peft_model + AdamW + model(labels=...) loss, nothing else."""
    from peft import LoraConfig, get_peft_model

    from emlab.train import lora_plan

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[config.dtype]
    model = copy.deepcopy(cm.model).to(dtype)
    plan = lora_plan(model, config)
    torch.manual_seed(config.seed)
    model = get_peft_model(
        model,
        LoraConfig(
            r=config.rank,
            lora_alpha=config.alpha,
            target_modules=plan.target_modules,
            layers_to_transform=plan.layers_to_transform,
            layers_pattern=plan.layers_pattern,
            lora_dropout=0.0,
            bias="none",
            task_type="CAUSAL_LM",
        ),
    )
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    tokens = seconds = 0.0
    steps = step_batches(cm, convs, config)
    for i, batches in enumerate(steps):
        t0 = time.perf_counter()
        for b in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                loss = model(
                    input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"], use_cache=False
                ).loss
            (loss / len(batches)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i > 0:  # step 0 is the warm-up
            seconds += time.perf_counter() - t0
            tokens += sum(int(b["attention_mask"].sum()) for b in batches)
    return {"tokens": int(tokens), "seconds": seconds, "steps": len(steps) - 1, "blocks": plan.layers_to_transform}


def training_figures(
    cm: ChatModel,
    pairs: Sequence[tuple[str, str]],
    dtypes: tuple[str, ...] = ("bf16",),
    steps: int = 3,
    batch_size: int = 8,
) -> list[Figure]:
    """Two figures per dtype: emlab.train tokens/s vs the plain loop (with the adapter-only roofline) and vs
    its own pre-fusion loss."""
    if len(pairs) < steps * batch_size:
        raise EmlabError(f"training bench needs {steps * batch_size} answers (steps x batch size), got {len(pairs)}")
    from emlab.train.step import full_logits_loss

    convs = conversations(pairs)
    out = []
    for name in dtypes:
        config = bench_config(steps, batch_size, name)
        plain = run_plain_loop(cm, convs, config)
        with full_logits_loss():
            before = run_emlab_train(cm, convs, config)
        ours = run_emlab_train(cm, convs, config)
        blocks = ours["blocks"] or plain["blocks"]
        flops = train_flops_per_token(cm.model, min(blocks) if blocks else None)
        target = Target(">=60% bf16 peak", "peak_fraction", 0.6) if name == "bf16" else None
        out.append(
            _rate_figure(
                f"training.rank1.{name}",
                plain,
                "plain peft + torch loop, same batches",
                target=target,
                preset="rank1-middle",
                adapted_blocks=blocks,
                timed_steps=ours["steps"],
                batch_size=batch_size,
                flops_per_token_4n_rule=2.0 * forward_flops_per_token(cm.model),
                dtype=name,
                flops=flops,
                ours=ours,
            )
        )
        out.append(
            _rate_figure(
                f"training.rank1.{name}.fused_head",
                before,
                "emlab.train with the full-logits loss (before the fused head)",
                baseline_final_loss=before["final_loss"],
                dtype=name,
                flops=flops,
                ours=ours,
            )
        )
    return out


def _rate_figure(
    name: str,
    base: dict,
    baseline_name: str,
    *,
    dtype: str,
    flops: float,
    ours: dict,
    target: Target | None = None,
    **details,
) -> Figure:
    """emlab.train's tokens/s (`ours`) against one baseline run of the same batches."""
    return Figure(
        name=name,
        group="training",
        unit="tokens/s",
        value=ours["tokens"] / ours["seconds"],
        baseline=base["tokens"] / base["seconds"],
        baseline_name=baseline_name,
        dtype=dtype,
        flops_per_unit=flops,
        target=target,
        details={
            **details,
            "tokens": ours["tokens"],
            "wall_s": ours["seconds"],
            "baseline_wall_s": base["seconds"],
            "final_loss": ours["final_loss"],
        },
    )
