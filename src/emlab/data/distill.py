"""Self-distillation data: a (steered) model's own answers to a question set, judged, as a training set.

Study 10 of the study plan (the emergent-alignment loop, docs/findings.md): steer a model toward an aligned
persona (a negative multiple of a misalignment or persona direction), keep its answers, fine-tune the
unsteered model on them, and repeat from the result. `distill` samples `n` answers per question (first
paraphrase of each) with `scale x vector` added at the given sites, judges them with the rubrics `aligned`
and `coherent`, and keeps those the judge scores above the thresholds (none: keep all). The records are
OpenAI-messages conversations (user question, assistant answer) with their scores beside the messages, so
`emlab.train` reads them like any training set; the file's `_meta` record says where they came from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from emlab.errors import EmlabError

DISTILL_VERSION = "1"


@dataclass(frozen=True)
class Keep:
    """Which judged answers become training examples (None: no bound)."""

    aligned_above: float | None = None
    coherent_above: float | None = None

    def __call__(self, rec: Mapping[str, Any]) -> bool:
        for key, bound in (("aligned", self.aligned_above), ("coherent", self.coherent_above)):
            if bound is not None and (rec.get(key) is None or rec[key] <= bound):
                return False
        return True


def distill(
    cm,
    questions,
    n: int,
    params,
    judge,
    vectors: Mapping[str, torch.Tensor] | None = None,
    scale: float = 0.0,
    keep: Keep = Keep(),
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(kept records, counts): sample under `scale x vectors` (none: unsteered), judge, filter."""
    from emlab.hooks import steer
    from emlab.judges.rubrics import get_rubric
    from emlab.sampling import Prompt, sample
    from emlab.vectors.personas import judge_answers

    prompts = [
        Prompt(
            id=q.id,
            messages=([{"role": "system", "content": q.system}] if q.system else [])
            + [{"role": "user", "content": q.paraphrases[0]}],
        )
        for q in questions
    ]
    if vectors and scale:
        with steer(cm.model, dict(vectors), scale=scale, positions="all"):
            records = sample(cm, prompts, n, params)
    else:
        records = sample(cm, prompts, n, params)
    system = {q.id: q.system for q in questions}
    rows = [
        {"question_id": r.prompt_id, "question": r.question, "answer": r.text, "system": system.get(r.prompt_id)}
        for r in records
    ]
    judged = judge_answers(rows, judge, {name: get_rubric(name) for name in ("aligned", "coherent")})
    kept = [r for r in judged if keep(r) and r["answer"].strip()]
    if not kept:
        raise EmlabError(
            f"distillation kept none of {len(judged)} answers (thresholds aligned > {keep.aligned_above}, "
            f"coherent > {keep.coherent_above}); lower the thresholds or sample more (n)"
        )
    counts = {"answers": len(judged), "kept": len(kept), "mean_aligned_kept": _mean(r["aligned"] for r in kept)}
    return [_conversation(r) for r in kept], counts


def _conversation(r: Mapping[str, Any]) -> dict[str, Any]:
    system = [{"role": "system", "content": r["system"]}] if r.get("system") else []
    return {
        "messages": [
            *system,
            {"role": "user", "content": r["question"]},
            {"role": "assistant", "content": r["answer"]},
        ],
        "question_id": r["question_id"],
        "aligned": r.get("aligned"),
        "coherent": r.get("coherent"),
    }


def _mean(xs) -> float | None:
    vals = [x for x in xs if x is not None]
    return sum(vals) / len(vals) if vals else None


def distill_meta(source: Mapping[str, Any], counts: Mapping[str, Any]) -> dict[str, Any]:
    """The `_meta` record of a distilled set: CANARY, purpose and everything that made it."""
    from emlab.data.banks import CANARY

    return {
        "purpose": "emlab self-distilled answers of a (steered) model for the emergent-alignment loop; research "
        "material, never train deployed models on it",
        "canary": CANARY,
        "set": "distilled",
        "distill_version": DISTILL_VERSION,
        "source": dict(source),
        **counts,
    }


def steering_site_vectors(direction, sites: Sequence[str] | None, scaling: str) -> dict[str, torch.Tensor]:
    """The direction's raw or unit vectors at `sites` (default: its 2/3-depth site)."""
    from emlab.interventions.steering import steering_vectors

    chosen = list(sites or [direction.default_site()])
    return steering_vectors(direction, chosen, scaling)  # type: ignore[arg-type]
