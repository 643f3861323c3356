"""Rank-1 LoRA interpretability: per-token adapter scalars, linear probes, B-vector geometry, adapter steering.

A rank-1 LoRA adapter on block l's MLP down projection adds `scaling * B (A x)` to the
residual stream: a fixed direction B (d_model) times one scalar per token, A·x, read off
the MLP's hidden activation x. Those scalars (site `blocks.{l}.mlp.down_proj.lora_scalar`,
the output of peft's `lora_A`) are a tiny, readable summary of what the fine-tune does
per token. This module

- captures them over answer tokens (`lora_scalars`, `answer_features`: mean per answer),
- fits logistic-regression probes over repeated stratified splits (`probe`) to ask whether
  they separate misaligned from aligned answers, or one topic from the rest,
- compares every B with a mean-diff direction at its block (`b_cosines`),
- scales adapters inside a `with` block (`scale_adapters`), restoring exactly on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from emlab.classify import DEFAULT_RULE, EMRule
from emlab.errors import EmlabError


@dataclass(frozen=True)
class Adapter:
    """One active LoRA adapter inside a decoder block."""

    block: int
    path: str  # module path inside the block, e.g. "mlp.down_proj"
    name: str  # full module name in the model
    site: str | None  # blocks.{l}.mlp.down_proj.lora_scalar for down_proj adapters, else None
    layer: nn.Module  # the peft LoRA layer (wraps the base linear)
    adapter_name: str

    def _peft(self, attr: str) -> Any:
        """A peft attribute of the layer (`lora_A`, `lora_B`: ModuleDicts; `scaling`: a dict; each keyed by
        adapter name). peft sets them at run time, so torch's Module type cannot describe them."""
        return getattr(self.layer, attr)

    @property
    def A(self) -> torch.Tensor:  # [r, d_in]
        return self._peft("lora_A")[self.adapter_name].weight.detach().float()

    @property
    def B(self) -> torch.Tensor:  # [d_out, r]
        return self._peft("lora_B")[self.adapter_name].weight.detach().float()

    @property
    def scaling(self) -> float:
        return float(self._peft("scaling")[self.adapter_name])

    @property
    def key(self) -> str:
        return self.site or f"blocks.{self.block}.{self.path}"


def adapters(model) -> list[Adapter]:
    """Every active LoRA adapter in the decoder blocks, in block order."""
    from emlab.sites import _child, _down_proj, decoder_blocks, unwrap

    full_names = {id(m): n for n, m in unwrap(model).named_modules()}
    found = []
    for l, block in enumerate(decoder_blocks(model)):
        mlp = _child(block, ("mlp", "feed_forward", "ffn"), "MLP")
        down = _down_proj(mlp) if mlp is not None else None
        for path, m in block.named_modules():
            lora_a = getattr(m, "lora_A", None)
            if not isinstance(lora_a, nn.ModuleDict):
                continue
            for a in getattr(m, "active_adapters", []):
                if a in lora_a:
                    site = f"blocks.{l}.mlp.down_proj.lora_scalar" if m is down else None
                    found.append(Adapter(l, path, full_names.get(id(m), path), site, m, a))
    return found


def scalar_sites(model) -> list[str]:
    """The lora_scalar sites of the model's down_proj adapters."""
    sites = [a.site for a in adapters(model) if a.site is not None]
    if not sites:
        raise EmlabError(
            "this model has no active LoRA adapter on an MLP down projection; load it with its rank-1 adapter (--adapter)"
        )
    return sites


def lora_scalars(
    cm, pairs: Sequence[tuple[str, str]], sites: Sequence[str] | None = None, system="default", batch_size: int = 8
) -> list[torch.Tensor]:
    """Per answer: [n_answer_tokens, n_sites * r] adapter scalars A·x over the answer tokens (fp32)."""
    from emlab.vectors.directions import forward_answers, teacher_forced_batches

    sites = list(sites or scalar_sites(cm.model))
    out: list[torch.Tensor | None] = [None] * len(pairs)
    for idx, batch in teacher_forced_batches(cm, pairs, system, batch_size):
        cap = forward_answers(cm, batch, sites, reduce=None)
        per_site = [cap.per_token(s) for s in sites]  # each: list over rows of [n_tok, r]
        for row, i in enumerate(idx):
            out[i] = torch.cat([p[row] for p in per_site], dim=-1)
    return out  # type: ignore[return-value]  # every slot is filled: the batches cover each index once


def answer_features(per_token: Sequence[torch.Tensor], reduce: str = "mean") -> np.ndarray:
    """[n, k] one feature per adapter scalar: its mean (or max |.|, signed) over the answer's tokens."""
    rows = []
    for t in per_token:
        if t.shape[0] == 0:
            raise EmlabError("an answer has no answer tokens to average; check the assistant mask")
        if reduce == "mean":
            rows.append(t.mean(0))
        elif reduce == "absmax":
            rows.append(t.gather(0, t.abs().argmax(0, keepdim=True))[0])
        else:
            raise EmlabError(f"unknown reduce {reduce!r}; choose mean or absmax")
    return torch.stack(rows).double().numpy()


# ---------------------------------------------------------------- probes


def probe(
    features: np.ndarray,
    labels: Sequence[int],
    columns: Sequence[str] | None = None,
    n_splits: int = 20,
    test_size: float = 0.3,
    seed: int = 0,
    C: float = 1.0,
) -> dict[str, Any]:
    """Logistic-regression probe over `n_splits` stratified random splits (seeded).

    Features are standardized on each training split. Returns mean/std/per-split accuracy,
    precision, recall, F1 and AUROC on the held-out parts, and per column the distribution
    of the (standardized) coefficients across splits and how often each is positive.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score
    from sklearn.model_selection import StratifiedShuffleSplit
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    _check_probe_input(X, y, test_size)
    columns = list(columns or [f"f{i}" for i in range(X.shape[1])])
    splitter = StratifiedShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=seed)
    scores: dict[str, list[float]] = {k: [] for k in ("accuracy", "precision", "recall", "f1", "auroc")}
    coefs = []
    for train, test in splitter.split(X, y):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))
        clf.fit(X[train], y[train])
        prob = clf.predict_proba(X[test])[:, 1]
        pred = (prob >= 0.5).astype(int)
        scores["accuracy"].append(accuracy_score(y[test], pred))
        scores["precision"].append(precision_score(y[test], pred, zero_division=0))
        scores["recall"].append(recall_score(y[test], pred, zero_division=0))
        scores["f1"].append(f1_score(y[test], pred, zero_division=0))
        scores["auroc"].append(roc_auc_score(y[test], prob))
        coefs.append(clf[-1].coef_[0])
    C_ = np.array(coefs)  # [splits, k]
    return {
        "n": len(y),
        "n_positive": int(y.sum()),
        "n_splits": n_splits,
        "test_size": test_size,
        "seed": seed,
        "C": C,
        "chance_accuracy": float(max(y.mean(), 1 - y.mean())),
        "metrics": {
            k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "per_split": [float(x) for x in v]}
            for k, v in scores.items()
        },
        "coefficients": {
            c: {
                "mean": float(C_[:, i].mean()),
                "std": float(C_[:, i].std()),
                "min": float(C_[:, i].min()),
                "max": float(C_[:, i].max()),
                "frac_positive": float((C_[:, i] > 0).mean()),
            }
            for i, c in enumerate(columns)
        },
    }


def _check_probe_input(X: np.ndarray, y: np.ndarray, test_size: float) -> None:
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise EmlabError(f"probe needs features [n, k] and n labels, got {X.shape} and {y.shape[0]} labels")
    if set(np.unique(y)) - {0, 1}:
        raise EmlabError(f"probe labels must be 0/1, got values {sorted(set(np.unique(y).tolist()))[:5]}")
    counts = np.bincount(y, minlength=2)
    n_test_min = min(counts) * test_size
    if counts.min() < 4 or n_test_min < 1:
        raise EmlabError(
            f"probe needs at least 4 answers per class (and >= 1 per class in each test split), got {counts[0]} negative and {counts[1]} positive; judge more answers"
        )


def alignment_labels(records: Sequence[Any], rule: EMRule = DEFAULT_RULE) -> tuple[list[int], list[int]]:
    """(row indices, labels) for misaligned (1) vs aligned (0) coherent answers under `rule`; other rows are left out."""
    idx, lab = [], []
    for i, r in enumerate(records):
        label = rule.classify(r)
        if label in ("misaligned", "aligned"):
            idx.append(i)
            lab.append(int(label == "misaligned"))
    return idx, lab


def topic_labels(values: Sequence[float | None], above: float = 50.0) -> tuple[list[int], list[int]]:
    """(row indices, labels): 1 where a topic rubric (e.g. `medical`) scored > `above`; unscored rows left out."""
    scored = [(i, v) for i, v in enumerate(values) if v is not None]
    return [i for i, _ in scored], [int(v > above) for _, v in scored]


# ---------------------------------------------------------------- geometry


def b_cosines(model, direction) -> list[dict[str, Any]]:
    """For each down_proj adapter: cosine of its B vector(s) with the direction at the same block's resid_post."""
    from emlab.vectors.directions import cosine

    rows = []
    for a in adapters(model):
        if a.site is None:
            continue
        site = f"blocks.{a.block}.resid_post"
        v = direction.vectors.get(site)
        for j in range(a.B.shape[1]):
            b = a.B[:, j]
            rows.append(
                {
                    "adapter": a.site,
                    "rank_index": j,
                    "direction_site": site,
                    "cosine": cosine(b, v) if v is not None and v.shape == b.shape else None,
                    "norm_B": float(b.norm()),
                    "norm_A": float(a.A[j].norm()),
                    "scaling": a.scaling,
                }
            )
    return rows


# ---------------------------------------------------------------- adapter steering


def _select(model, scales: Mapping[int | str, float]) -> tuple[list[Adapter], dict[str, float]]:
    found = adapters(model)
    if not found:
        raise EmlabError("this model has no active LoRA adapter to scale; load it with its adapter (--adapter)")
    chosen: dict[str, float] = {}
    for key, scale in scales.items():
        if isinstance(key, int):
            hits = [a for a in found if a.block == key]
        else:
            hits = [a for a in found if key in (a.site, a.key, a.name, a.name.removeprefix("base_model.model."))]
        if not hits:
            raise EmlabError(f"no LoRA adapter matches {key!r}; adapters: {', '.join(a.key for a in found)}")
        for a in hits:
            chosen[a.name] = float(scale)
    return found, chosen


@contextlib.contextmanager
def scale_adapters(model, scales: Mapping[int | str, float], others: float = 1.0) -> Iterator[list[str]]:
    """Multiply chosen adapters' contributions (B·A·x·scaling) by a factor inside the block.

    Keys: a block index (every adapter in that block), a lora_scalar site, `blocks.{l}.{path}`,
    or a module name. Adapters not named get `others` (1 keeps them, 0 switches them off,
    -1 reverses them). Implemented as forward hooks on each `lora_B` output, removed on exit,
    so logits afterwards are bit-identical. Yields the keys of the adapters it changed.
    """
    found, chosen = _select(model, scales)
    handles = []
    changed = []
    try:
        for a in found:
            s = chosen.get(a.name, float(others))
            if s == 1.0:
                continue
            handles.append(a._peft("lora_B")[a.adapter_name].register_forward_hook(lambda mod, args, out, s=s: out * s))
            changed.append(a.key)
        yield changed
    finally:
        for h in handles:
            h.remove()


# ---------------------------------------------------------------- one call for a judged run


def probe_report(
    cm,
    records: Sequence[Any],
    topic: str | None = None,
    labels: Mapping[str, int] | None = None,
    direction=None,
    n_splits: int = 20,
    seed: int = 0,
    rule: EMRule = DEFAULT_RULE,
    system="default",
    batch_size: int = 8,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Probes on the adapter scalars of judged answers (`directions.Judged`): aligned-vs-misaligned,
    and topic-vs-other from a rubric score in each record's `extra[topic]` or from `labels`
    (answer key -> 0/1, keyed by prompt_id). Returns (report, per-answer feature rows)."""
    sites = scalar_sites(cm.model)
    feats = answer_features(lora_scalars(cm, [(r.question, r.answer) for r in records], sites, system, batch_size))
    columns = [f"{s}[{j}]" for s in sites for j in range(feats.shape[1] // len(sites))]
    report: dict[str, Any] = {
        "model": cm.provenance(),
        "adapters": [a.key for a in adapters(cm.model)],
        "columns": columns,
        "probes": {},
    }
    idx, lab = alignment_labels(records, rule)
    report["probes"]["misaligned_vs_aligned"] = _try_probe(feats[idx], lab, columns, n_splits, seed)
    if topic is not None or labels is not None:
        tidx, tlab = _topic(records, topic, labels)
        report["probes"][f"{topic or 'label'}_vs_other"] = _try_probe(feats[tidx], tlab, columns, n_splits, seed)
    if direction is not None:
        report["b_cosines"] = b_cosines(cm.model, direction)
    rows = [
        {
            "prompt_id": r.extra.get("prompt_id"),
            "question_id": r.question_id,
            "aligned": r.aligned,
            "coherent": r.coherent,
            "features": dict(zip(columns, f.tolist(), strict=True)),
        }
        for r, f in zip(records, feats, strict=True)
    ]
    return report, rows


def _topic(records: Sequence[Any], topic: str | None, labels: Mapping[str, int] | None) -> tuple[list[int], list[int]]:
    if labels is not None:
        idx = [i for i, r in enumerate(records) if str(r.extra.get("prompt_id")) in labels]
        return idx, [int(labels[str(records[i].extra.get("prompt_id"))]) for i in idx]
    values = [r.extra.get(topic) for r in records]
    if all(v is None for v in values):
        raise EmlabError(
            f"no answer carries a {topic!r} score; judge the run with that rubric (--judge) or pass --labels"
        )
    return topic_labels(values)


def _try_probe(X: np.ndarray, y: Sequence[int], columns, n_splits: int, seed: int) -> dict[str, Any]:
    """A probe, or the reason it could not be fitted (too few answers in a class) — recorded, not hidden."""
    try:
        return probe(X, y, columns, n_splits=n_splits, seed=seed)
    except EmlabError as e:
        return {"skipped": str(e), "n": len(y), "n_positive": int(sum(y))}
