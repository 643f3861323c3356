"""Training-data screening by projection difference, and preventative steering during fine-tuning.

Screening (after Chen et al. 2025): for each training conversation (prompt turns + final assistant response),
    proj_train = act(response written in the dataset) . u
    proj_base  = act(the base model's own response to the same prompt) . u
    score      = proj_train - proj_base
where act is the site's activation averaged over the response tokens (teacher-forced, the whole conversation
as context) and u the unit persona vector. A large score means the dataset pushes the model further along
the trait than it would go by itself; `screen` ranks examples by it (rank 1 = most trait-inducing).
Base responses are sampled greedily (temperature 0) unless given.

Preventative steering: `train_with_steering` fine-tunes through `emlab.train.train` with a training callback
that enters `hooks.steer` on the model being trained (train's own copy) at the first step and leaves it after
the last, so scale x vector is added at the chosen sites of every training forward (positions "all") and the
caller's model never carries a hook. Only positions="all" is supported (no teacher-forcing mask exists in the loop).
The adapter is saved unsteered: at evaluation the vector is gone, which is the point (the model no longer
needs to move along the trait to fit the data). A file `preventative_steering.json` records vector, sites
and scale next to the adapter.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from emlab.errors import EmlabError
from emlab.train.callbacks import Callback, TrainState

if TYPE_CHECKING:
    from emlab.chat import Message


def split_conversation(conv: Sequence[Mapping[str, str]], where: str = "conversation") -> tuple[list[Message], str]:
    """(prompt messages, final assistant response) of one conversation."""
    if not conv or conv[-1].get("role") != "assistant":
        raise EmlabError(f"{where}: the last message must be the assistant's response to screen")
    return [dict(m) for m in conv[:-1]], str(conv[-1]["content"])


def response_activations(
    cm,
    conversations: Sequence[Sequence[Message]],
    sites: Sequence[str],
    system="default",
    batch_size: int = 8,
) -> torch.Tensor:
    """Mean activation over the FINAL assistant turn (+ end-of-turn) of each conversation. -> [n, S, d]."""
    from emlab.chat import Encoded, encode_with_assistant_mask, pad_encoded, render, with_system
    from emlab.vectors.directions import forward_answers

    tok = cm.tokenizer
    enc = []
    for i, conv in enumerate(conversations):
        e = encode_with_assistant_mask(tok, list(conv), system=system)
        # tokens of everything before the final answer (its generation prompt included) are not measured
        before = render(
            tok,
            with_system(list(conv[:-1]), system),
            system=None if system is None else "default",
            add_generation_prompt=True,
        )
        n_before = len(tok(before, add_special_tokens=False)["input_ids"])
        mask = [m if t >= n_before else 0 for t, m in enumerate(e.assistant_mask)]
        if not any(mask):
            raise EmlabError(f"conversation #{i}: no tokens of the final assistant turn to measure")
        enc.append(Encoded(e.input_ids, mask))
    out = torch.empty(len(enc), len(sites), cm.model.config.hidden_size)
    order = sorted(range(len(enc)), key=lambda i: len(enc[i].input_ids))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        cap = forward_answers(cm, pad_encoded([enc[i] for i in idx], tok.pad_token_id, side="right"), sites)
        for j, s in enumerate(sites):
            out[idx, j] = cap.stack(s)
    return out


def base_responses(cm, prompts: Sequence[Sequence[Message]], params=None) -> list[str]:
    """The model's own answer to each prompt (greedy by default)."""
    from emlab.sampling import Prompt, SamplingParams, sample

    params = params or SamplingParams(temperature=0.0, max_new_tokens=200, batch_size=16)
    recs = sample(cm, [Prompt(id=f"x{i}", messages=list(p)) for i, p in enumerate(prompts)], n=1, params=params)
    return [r.text for r in recs]


def screen(
    cm,
    conversations: Sequence[Sequence[Mapping[str, str]]],
    direction,
    site: str,
    base: Sequence[str] | None = None,
    params=None,
    system="default",
    batch_size: int = 8,
) -> list[dict[str, Any]]:
    """Score and rank every conversation by projection difference (see the module docstring)."""
    direction.check_compatible(cm.model)
    u = direction.unit(site).double()
    split = [split_conversation(c, f"conversation #{i}") for i, c in enumerate(conversations)]
    prompts = [p for p, _ in split]
    base = list(base) if base is not None else base_responses(cm, prompts, params)
    if len(base) != len(split):
        raise EmlabError(f"{len(base)} base responses for {len(split)} conversations; give one per conversation")
    train_acts = response_activations(
        cm, [[*p, {"role": "assistant", "content": r}] for p, r in split], [site], system, batch_size
    )[:, 0]
    base_acts = response_activations(
        cm,
        [[*p, {"role": "assistant", "content": b}] for p, b in zip(prompts, base, strict=True)],
        [site],
        system,
        batch_size,
    )[:, 0]
    pt, pb = (train_acts.double() @ u), (base_acts.double() @ u)
    rows: list[dict[str, Any]] = []
    for i, ((p, r), b) in enumerate(zip(split, base, strict=True)):
        rows.append(
            {
                "index": i,
                "prompt": next((m["content"] for m in reversed(p) if m["role"] == "user"), ""),
                "response": r,
                "base_response": b,
                "proj_train": float(pt[i]),
                "proj_base": float(pb[i]),
                "score": float(pt[i] - pb[i]),
            }
        )
    for rank, row in enumerate(sorted(rows, key=lambda r: -r["score"]), start=1):
        row["rank"] = rank
    return rows


def screening_auroc(rows: Sequence[Mapping[str, Any]], labels: Sequence[int]) -> float | None:
    """AUROC of the score for separating labelled trait-inducing (1) from other (0) examples (None if one class is empty)."""
    pos = [r["score"] for r, l in zip(rows, labels, strict=True) if l]
    neg = [r["score"] for r, l in zip(rows, labels, strict=True) if not l]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


# ---------------------------------------------------------------- preventative steering


def train_with_steering(
    cm,
    data,
    config,
    out_dir: str | os.PathLike,
    direction,
    sites: Sequence[str],
    scale: float,
    scaling: str = "unit",
    resume: bool = False,
    on_step=None,
    callbacks: Sequence = (),
):
    """`emlab.train.train` with scale x vector added at `sites` in every training forward; returns the TrainResult.

    `callbacks` are train's other callbacks (e.g. a GradientProbe); they see the steered model."""
    from emlab.interventions.steering import check_scaling, steering_vectors
    from emlab.io import read_json, write_json
    from emlab.train import train

    if isinstance(cm, (str, os.PathLike)):
        raise EmlabError(
            "train_with_steering needs a loaded ChatModel (the steering hooks travel with train's copy of it), not a model reference"
        )
    direction.check_compatible(cm.model)
    vectors = steering_vectors(direction, sites, check_scaling(scaling))  # raw or unit vectors per site
    out = Path(out_dir)
    info = {
        "direction": direction.origin,
        "direction_method": direction.provenance.get("method"),
        "trait": direction.provenance.get("trait") or direction.provenance.get("emotion"),
        "sites": list(sites),
        "scale": float(scale),
        "scaling": scaling,
        "positions": "all",
        "norms": {s: float(v.norm()) for s, v in vectors.items()},
        "note": "steering active during training only; the saved adapter is unsteered",
    }
    if (out / "preventative_steering.json").exists():
        old = read_json(out / "preventative_steering.json")
        if {k: old.get(k) for k in ("sites", "scale", "scaling", "direction")} != {
            k: info[k] for k in ("sites", "scale", "scaling", "direction")
        }:
            raise EmlabError(
                f"{out}/preventative_steering.json was written with other steering settings; use another --out"
            )
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "preventative_steering.json", info)
    return train(
        cm,
        data,
        config,
        out,
        resume=resume,
        on_step=on_step,
        callbacks=[_SteerWhileTraining(vectors, scale), *callbacks],
    )


class _SteerWhileTraining(Callback):
    """Adds scale x vector at each site of the model being trained (train's copy) from its first step to its last."""

    def __init__(self, vectors: dict, scale: float):
        self.vectors, self.scale = vectors, scale
        self._scope = contextlib.ExitStack()

    def on_train_begin(self, state: TrainState) -> None:
        from emlab.hooks import steer

        self._scope.enter_context(steer(state.model, self.vectors, scale=self.scale, positions="all"))

    def on_train_end(self, state: TrainState) -> None:
        self._scope.close()
