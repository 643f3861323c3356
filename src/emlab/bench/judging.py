"""Judge throughput in answers/s, each against the cheapest part of its own work.

  offline - get_judge("offline") on the aligned rubric, vs the MiniLM embedding of the answers
            alone (the judge also embeds questions, computes text features and applies its
            linear heads; the ratio shows what those cost on top).
  fluency - judge v2's fluency features (teacher-forced answers under the reference model) with the
            head in chunks over reused buffers, vs the same with the whole batch's logits at once
            (fix 8 in docs/performance.md); rounds interleaved.
  local   - the local judge (emlab.judges.local.LocalJudge: a prefill of the rubric prompt, then
            the 101 candidate numbers as one trie pass over the KV cache) built on the model
            being benchmarked, vs a prefill-only forward of the same prompts in the same
            batches: the floor any teacher-forced judge pays. Useful FLOPs per answer:
            2N * (prompt tokens + trie nodes).

The local judge is built on the already-loaded model (the object get_judge("local:REF")
returns, without a second load); set-up times are reported, not counted in answers/s.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from emlab.bench.figure import Figure, timed
from emlab.bench.roofline import forward_flops_per_token
from emlab.chat import render
from emlab.errors import EmlabError
from emlab.judges.base import Item
from emlab.models import ChatModel


def offline_figure(pairs: Sequence[tuple[str, str]]) -> Figure:
    from emlab.judges.offline import OfflineJudge
    from emlab.judges.registry import get_judge
    from emlab.judges.rubrics import get_rubric

    items = [Item(q, a) for q, a in pairs]
    judge, setup = timed(lambda: get_judge("offline"))
    if not isinstance(judge, OfflineJudge):  # the registry types what it builds as the Judge protocol
        raise EmlabError(
            f"judge 'offline' is a {type(judge).__name__}, not an OfflineJudge; the offline-judge figure times its embedder"
        )
    rubric = get_rubric("aligned")
    embedder, load = timed(lambda: judge.embedder)
    judge.score(items[:2], rubric)  # warm-up on two items (their texts are then memoised)
    fresh = items[2:] if len(items) > 2 else items
    _, t = timed(lambda: judge.score(fresh, rubric))
    answers = [it.answer for it in fresh]
    _, base = timed(
        lambda: embedder.model.encode(
            answers, batch_size=32, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
        )
    )
    return Figure(
        name="judging.offline",
        group="judging",
        unit="answers/s",
        value=len(fresh) / t.wall_s,
        baseline=len(fresh) / base.wall_s,
        baseline_name="MiniLM embedding of the answers alone",
        timing=t,
        details={
            "answers": len(fresh),
            "rubric": "aligned",
            "baseline_wall_s": base.wall_s,
            "setup_s": setup.wall_s + load.wall_s,
            "judge": judge.id,
        },
    )


def fluency_figure(pairs: Sequence[tuple[str, str]], rounds: int = 2) -> Figure:
    from emlab.judges.fluency import get_fluency_scorer

    scorer = get_fluency_scorer()
    questions, answers = [q for q, _ in pairs], [a for _, a in pairs]
    seconds: dict[int | None, float] = {}
    features: dict[int | None, np.ndarray] = {}
    chunked = scorer.head_chunk_floats
    try:
        for r in range(rounds):
            for chunk in (chunked, None) if r % 2 == 0 else (None, chunked):
                scorer.head_chunk_floats = chunk
                scorer._memo.clear()
                features[chunk], t = timed(lambda: scorer.features(questions, answers))
                seconds[chunk] = seconds.get(chunk, 0.0) + t.wall_s
    finally:
        scorer.head_chunk_floats = chunked
        scorer._memo.clear()
    return Figure(
        name="judging.fluency_chunked",
        group="judging",
        unit="answers/s",
        value=rounds * len(pairs) / seconds[chunked],
        baseline=rounds * len(pairs) / seconds[None],
        baseline_name="the same features with the whole batch's logits at once",
        details={
            "answers": len(pairs),
            "rounds": rounds,
            "wall_s": seconds[chunked],
            "baseline_wall_s": seconds[None],
            "max_abs_diff_vs_baseline": float(abs(features[chunked] - features[None]).max()),
        },
    )


def judge_prompts(cm: ChatModel, items: Sequence[Item], rubric) -> list[list[int]]:
    from emlab.judges.rubrics import fill_prompt

    texts = [
        render(
            cm.tokenizer,
            [{"role": "user", "content": fill_prompt(rubric, it)}],
            system="default",
            add_generation_prompt=True,
        )
        for it in items
    ]
    return [cm.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def prefill_only(cm: ChatModel, prompts: list[list[int]], batch_size: int) -> None:
    """Left-padded forwards of the prompts, last-position logits only (no scoring)."""
    pad = cm.tokenizer.pad_token_id
    order = sorted(prompts, key=len)
    for i in range(0, len(order), batch_size):
        chunk = order[i : i + batch_size]
        width = max(map(len, chunk))
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk])
        attn = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
        with torch.inference_mode():
            cm.model(
                input_ids=ids, attention_mask=attn, position_ids=(attn.cumsum(-1) - 1).clamp(min=0), logits_to_keep=1
            )


def local_figure(cm: ChatModel, pairs: Sequence[tuple[str, str]]) -> Figure:
    from emlab.judges.local import LocalJudge
    from emlab.judges.rubrics import get_rubric

    items = [Item(q, a) for q, a in pairs]
    rubric = get_rubric("aligned")
    judge, setup = timed(lambda: LocalJudge(cm))
    judge.score(items[:1], rubric)  # warm-up
    _, t = timed(lambda: judge.score(items, rubric))
    prompts = judge_prompts(cm, items, rubric)
    _, base = timed(lambda: prefill_only(cm, prompts, judge.batch_size))
    nodes = int(judge.trie.node_tokens.shape[0])
    mean_prompt = sum(map(len, prompts)) / len(prompts)
    dtype = "bf16" if next(cm.model.parameters()).dtype == torch.bfloat16 else "fp32"
    return Figure(
        name="judging.local",
        group="judging",
        unit="answers/s",
        value=len(items) / t.wall_s,
        baseline=len(items) / base.wall_s,
        baseline_name="prefill-only forward of the same judge prompts",
        dtype=dtype,
        flops_per_unit=forward_flops_per_token(cm.model) * (mean_prompt + nodes),
        timing=t,
        details={
            "answers": len(items),
            "rubric": "aligned",
            "judge": judge.id,
            "batch_size": judge.batch_size,
            "mean_prompt_tokens": mean_prompt,
            "trie_nodes": nodes,
            "baseline_wall_s": base.wall_s,
            "setup_s": setup.wall_s,
        },
    )
