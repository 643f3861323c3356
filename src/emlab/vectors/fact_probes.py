"""Linear fact probes: does a model's residual stream still separate true from false statements?

Study 9 of the study plan ("representational capacity", docs/findings.md): a narrow fine-tune that
makes a model give bad medical advice might destroy its medical knowledge, or only change what it
says. A linear probe answers the first question without sampling. For each statement of a bank of
minimal true/false pairs (medical_facts.yaml) the activation at each chosen site is read at the
statement's last token (or averaged over its tokens); a standardised, L2-regularised logistic
regression is fitted with GroupKFold over *pairs* (both sides of a pair share a fold, so every test
fact is unseen); the out-of-fold prediction of every statement is kept.

Per model and site: accuracy (share of statements classified right) and pair accuracy (share of
pairs with both sides right), each with a 95 % bootstrap interval over pairs. Between two models
measured on the same statements and folds: the paired difference of accuracy with a bootstrap
interval over pairs. Deterministic for a given seed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from emlab.errors import EmlabError

FACTS_PATH = Path(__file__).with_name("data") / "medical_facts.yaml"
Position = Literal["last", "mean"]


@dataclass(frozen=True)
class FactPair:
    id: str
    true: str
    false: str


def load_facts(path: str | os.PathLike | None = None) -> list[FactPair]:
    """The pairs of a facts YAML (`pairs: [{id, true, false}, ...]`), checked: ids unique, both sides non-empty."""
    from emlab.strict_yaml import load_yaml_file

    p = Path(path) if path is not None else FACTS_PATH
    if not p.is_file():
        raise EmlabError(f"facts bank {p}: file not found; pass a YAML file with `pairs: [{{id, true, false}}]`")
    doc = load_yaml_file(p, "facts bank").data
    rows = doc.get("pairs") if isinstance(doc, Mapping) else None
    if not isinstance(rows, list) or len(rows) < 10:
        raise EmlabError(f"facts bank {p}: needs a `pairs` list of at least 10 {{id, true, false}} entries")
    pairs, seen = [], set()
    for i, r in enumerate(rows):
        ok = isinstance(r, Mapping) and set(r) == {"id", "true", "false"}
        if not ok or not all(isinstance(r[k], str) and r[k].strip() for k in ("id", "true", "false")):
            raise EmlabError(f"facts bank {p}: pairs[{i}] must have exactly non-empty string keys id, true, false")
        if r["id"] in seen:
            raise EmlabError(f"facts bank {p}: pairs[{i}] repeats id {r['id']!r}; ids must be unique")
        if r["true"].strip() == r["false"].strip():
            raise EmlabError(f"facts bank {p}: pair {r['id']!r} has the same text on both sides")
        seen.add(r["id"])
        pairs.append(FactPair(r["id"], r["true"].strip(), r["false"].strip()))
    return pairs


def statements(pairs: Sequence[FactPair]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(texts, labels 1 = true, group = pair index): each pair's true side, then its false side."""
    texts = [t for p in pairs for t in (p.true, p.false)]
    labels = np.array([1, 0] * len(pairs))
    groups = np.repeat(np.arange(len(pairs)), 2)
    return texts, labels, groups


def statement_activations(
    cm, texts: Sequence[str], sites: Sequence[str], position: Position = "last", batch_size: int = 16
) -> torch.Tensor:
    """[n, len(sites), d] fp32: each plain text's activation at its last token, or the mean over its tokens."""
    from emlab.vectors.directions import forward_answers
    from emlab.vectors.emotions import text_batches

    if position not in ("last", "mean"):
        raise EmlabError(f"position {position!r} is not one of last, mean")
    out = torch.empty(len(texts), len(sites), cm.model.config.hidden_size)
    for idx, batch in text_batches(cm.tokenizer, texts, 0, batch_size):
        if position == "last":  # right-padded: the last real token is at length - 1
            last = batch["attention_mask"].sum(1) - 1
            mask = torch.zeros_like(batch["attention_mask"])
            mask[torch.arange(len(idx)), last] = 1
            batch = batch | {"assistant_mask": mask}
        cap = forward_answers(cm, batch, sites)
        for j, s in enumerate(sites):
            out[idx, j] = cap.stack(s)
    return out


def out_of_fold_correct(x: np.ndarray, labels: np.ndarray, groups: np.ndarray, folds: int, c: float) -> np.ndarray:
    """Per statement: was its out-of-fold prediction right? GroupKFold by pair; standardise + logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_groups = len(np.unique(groups))
    if not 2 <= folds <= n_groups:
        raise EmlabError(f"folds={folds} must be between 2 and the number of pairs ({n_groups})")
    correct = np.zeros(len(labels), dtype=bool)
    for train, test in GroupKFold(n_splits=folds).split(x, labels, groups):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        probe.fit(x[train], labels[train])
        correct[test] = probe.predict(x[test]) == labels[test]
    return correct


def _by_pair(correct: np.ndarray) -> np.ndarray:
    return correct.reshape(-1, 2)  # statements are laid out pair by pair (statements())


def accuracy_row(correct: np.ndarray, seed: int) -> dict[str, Any]:
    """Accuracy and pair accuracy with bootstrap intervals over pairs."""
    from emlab.exam.stats import bootstrap_ci

    pairs = list(_by_pair(correct))
    acc_ci = bootstrap_ci(pairs, lambda u: float(np.mean(u)), seed=seed)
    both_ci = bootstrap_ci(pairs, lambda u: float(np.mean([p.all() for p in u])), seed=seed)
    return {
        "accuracy": float(correct.mean()),
        "accuracy_ci": acc_ci,
        "pair_accuracy": float(np.mean([p.all() for p in pairs])),
        "pair_accuracy_ci": both_ci,
        "statements": int(correct.size),
    }


def paired_difference(correct_b: np.ndarray, correct_a: np.ndarray, seed: int) -> dict[str, Any]:
    """accuracy(b) - accuracy(a) on the same statements, with a bootstrap interval over pairs."""
    from emlab.exam.stats import bootstrap_ci

    if correct_a.shape != correct_b.shape:
        raise EmlabError(f"paired difference needs the same statements: shapes {correct_a.shape} vs {correct_b.shape}")
    units = list(zip(_by_pair(correct_b), _by_pair(correct_a), strict=True))

    def diff(u):
        return float(np.mean([b.mean() - a.mean() for b, a in u]))

    return {"difference": diff(units), "difference_ci": bootstrap_ci(units, diff, seed=seed)}


def probe_models(
    models: Mapping[str, Any],
    sites: Sequence[str],
    pairs: Sequence[FactPair],
    position: Position = "last",
    folds: int = 5,
    c: float = 0.1,
    seed: int = 0,
    batch_size: int = 16,
) -> list[dict[str, Any]]:
    """One row per (model label, site): accuracies with CIs, and the difference against the first model.

    `models` maps a label to a ChatModel (or a zero-argument callable returning one, loaded in turn);
    all are probed on the same statements, folds and sites.
    """
    if not models:
        raise EmlabError("probe_models needs at least one model")
    texts, labels, groups = statements(pairs)
    rows: list[dict[str, Any]] = []
    reference: dict[str, np.ndarray] = {}  # site -> the first model's per-statement correctness
    first = next(iter(models))
    for label, cm in models.items():
        acts = statement_activations(cm() if callable(cm) else cm, texts, sites, position, batch_size).numpy()
        for j, site in enumerate(sites):
            correct = out_of_fold_correct(acts[:, j].astype(np.float64), labels, groups, folds, c)
            row = {"model": label, "site": site} | accuracy_row(correct, seed)
            if site in reference:
                d = paired_difference(correct, reference[site], seed)
                row |= {f"difference_vs_{first}": d["difference"], f"difference_vs_{first}_ci": d["difference_ci"]}
            else:
                reference[site] = correct
            rows.append(row | {"correct": correct.astype(int).tolist()})
    return rows
