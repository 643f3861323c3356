"""Misalignment directions: one vector per residual site, with where it came from.

A `Direction` maps site names (`blocks.{l}.resid_post`, the output of decoder block l,
which is HF `hidden_states[l+1]`) to fp32 vectors, and carries its provenance (model,
revision, adapter, method, source data, class counts). It is saved as
`direction.safetensors` (the vectors, one tensor per site) plus `direction.json` (the
provenance), both written atomically.

Extraction by difference of means over ANSWER tokens:
    v_site = mean_{misaligned answers} act_site - mean_{aligned answers} act_site
where act_site of one answer is the mean of the site's activation over the tokens the
assistant wrote (the answer and its end-of-turn token, as marked by
`encode_with_assistant_mask`), computed by teacher forcing question + answer.
A difference of class means already gives each class equal weight whatever its size;
`balance` decides how the rows inside each class are used:
- "subsample" (default): draw min(n_pos, n_neg) rows from each class with a seed, so both
  means carry the same noise;
- "question": weighted means in which every question contributes equally to its class
  (a question that produced many misaligned answers cannot pull the direction towards its topic);
- "none": plain means of all rows.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from emlab.classify import DEFAULT_RULE, EMRule
from emlab.errors import EmlabError
from emlab.io import atomic_path, read_json, write_json

LAYER_CONVENTION = "blocks.{l}.resid_post = HF hidden_states[l+1]"
FORMAT = "emlab.direction/v1"
VECTORS_FILE = "direction.safetensors"
META_FILE = "direction.json"
CHOICE_FILE = "choice.json"  # which method a run's direction step used, and why (write_choice / read_choice)
PERSONA_ANSWERS = "persona_answers.jsonl"  # the judged persona answers a persona contrast was extracted from
Balance = Literal["subsample", "question", "none"]


def _emlab_version() -> str:
    from emlab import __version__

    return __version__


def make_provenance(
    model_info: Mapping[str, Any], method: str, source: str, class_counts: Mapping[str, int] | None = None, **extra: Any
) -> dict[str, Any]:
    """Provenance for a new direction; `model_info` is `ChatModel.provenance()` (model, revision, adapter)."""
    return {
        "format": FORMAT,
        "model": model_info.get("model"),
        "revision": model_info.get("revision"),
        "adapter": model_info.get("adapter"),
        "method": method,
        "source": source,
        "class_counts": dict(class_counts or {}),
        "layer_convention": LAYER_CONVENTION,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "emlab_version": _emlab_version(),
        **extra,
    }


def _site_key(site: str) -> tuple[int, str]:
    from emlab.sites import parse_site

    s = parse_site(site, source="direction")
    return s.layer, s.kind


@dataclass
class Direction:
    """Vectors per site (fp32, CPU) plus provenance. Sites are kept sorted by block."""

    vectors: dict[str, torch.Tensor]
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.vectors:
            raise EmlabError("a Direction needs at least one site vector")
        clean = {}
        for site in sorted(self.vectors, key=_site_key):
            v = torch.as_tensor(self.vectors[site])
            if v.ndim != 1 or not torch.isfinite(v).all():
                raise EmlabError(f"direction vector for {site} must be a finite 1-D tensor, got shape {tuple(v.shape)}")
            clean[site] = v.detach().to("cpu", torch.float32).contiguous()
        self.vectors = clean

    @property
    def sites(self) -> list[str]:
        return list(self.vectors)

    @property
    def origin(self) -> str:
        p = self.provenance
        name = f"{p.get('model')}@{p.get('revision')}"
        return name + (f"+{p['adapter']}" if p.get("adapter") else "")

    def default_site(self) -> str:
        """The site 2/3 of the way through the direction's sites (by block): where a site is not named."""
        return self.sites[len(self.sites) * 2 // 3]

    def vector(self, site: str) -> torch.Tensor:
        if site not in self.vectors:
            raise EmlabError(f"direction from {self.origin} has no site {site!r}; it has: {_short(self.sites)}")
        return self.vectors[site]

    def unit(self, site: str) -> torch.Tensor:
        v = self.vector(site)
        n = v.norm()
        if n == 0:
            raise EmlabError(f"direction vector at {site} is all zeros; it has no unit direction")
        return v / n

    def block(self, layer: int, kind: str = "resid_post") -> torch.Tensor:
        return self.vector(f"blocks.{layer}.{kind}")

    def norms(self) -> dict[str, float]:
        return {s: float(v.norm()) for s, v in self.vectors.items()}

    def restricted(self, sites: Sequence[str]) -> Direction:
        """A copy keeping only `sites` (in that order of blocks)."""
        return Direction({s: self.vector(s) for s in sites}, dict(self.provenance))

    # ------------------------------------------------------------ disk

    def save(self, directory: str | os.PathLike) -> Path:
        """Write `direction.safetensors` then `direction.json` (each atomically); return the folder."""
        from safetensors.torch import save_file

        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / VECTORS_FILE) as tmp:
            save_file(dict(self.vectors), str(tmp), metadata={"format": FORMAT})
        meta = {**self.provenance, "sites": self.sites, "norms": self.norms(), "d_model": self.d_model}
        write_json(folder / META_FILE, meta)
        return folder

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Direction:
        from safetensors.torch import load_file

        folder = Path(directory)
        if not (folder / VECTORS_FILE).exists() or not (folder / META_FILE).exists():
            raise EmlabError(
                f"{folder} is not a direction folder (needs {VECTORS_FILE} and {META_FILE}); create one with `emlab directions extract`"
            )
        meta = read_json(folder / META_FILE)
        vectors = load_file(str(folder / VECTORS_FILE))
        if sorted(vectors) != sorted(meta.get("sites", [])):
            raise EmlabError(
                f"{folder}: {VECTORS_FILE} and {META_FILE} list different sites; the folder is inconsistent, re-extract it"
            )
        prov = {k: v for k, v in meta.items() if k not in ("sites", "norms", "d_model")}
        return cls(vectors, prov)

    @property
    def d_model(self) -> int:
        return int(next(iter(self.vectors.values())).shape[0])

    def check_compatible(self, model) -> None:
        """Raise a one-line EmlabError if a site's block is missing from `model` or its size differs."""
        from emlab.hooks import site_dim
        from emlab.sites import n_layers, parse_site

        n = n_layers(model)
        name = getattr(model, "ref", type(getattr(model, "model", model)).__name__)
        for site in self.sites:
            s = parse_site(site, source=f"direction from {self.origin}")
            if not 0 <= s.layer < n:
                raise EmlabError(
                    f"direction from {self.origin} has site {site} but model {name} has blocks 0..{n - 1}; extract a direction for this model"
                )
            want = site_dim(model, s)
            if self.vectors[site].shape[0] != want:
                raise EmlabError(
                    f"direction from {self.origin} has size {self.vectors[site].shape[0]} at {site} but model {name} needs {want}; "
                    "extract a direction for this model"
                )


def read_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """direction.json as written: the provenance plus sites, norms and d_model."""
    return read_json(Path(directory) / META_FILE)


def write_choice(directory: str | os.PathLike, choice: Mapping[str, Any]) -> None:
    """choice.json: the method a direction was extracted with, and why (a run's `method: auto`)."""
    write_json(Path(directory) / CHOICE_FILE, dict(choice))


def read_choice(directory: str | os.PathLike) -> dict[str, Any]:
    """choice.json, or {} when the folder has none (a direction from `emlab directions extract`)."""
    path = Path(directory) / CHOICE_FILE
    return read_json(path) if path.exists() else {}


def _short(items: Sequence[str], k: int = 6) -> str:
    return ", ".join(items[:k]) + (f", ... ({len(items)} in all)" if len(items) > k else "")


# ---------------------------------------------------------------- the math


def mean_difference(
    pos: torch.Tensor,
    neg: torch.Tensor,
    balance: Balance = "subsample",
    seed: int = 0,
    pos_groups: Sequence[str] | None = None,
    neg_groups: Sequence[str] | None = None,
) -> torch.Tensor:
    """mean(pos) - mean(neg) over the first axis. pos: [n_pos, ...], neg: [n_neg, ...] -> [...].

    `balance` (see the module docstring) needs `*_groups` (a question id per row) when "question".
    """
    if pos.shape[0] == 0 or neg.shape[0] == 0:
        raise EmlabError(
            f"mean difference needs rows in both classes, got {pos.shape[0]} positive and {neg.shape[0]} negative"
        )
    if pos.shape[1:] != neg.shape[1:]:
        raise EmlabError(f"class activations differ in shape: {tuple(pos.shape[1:])} vs {tuple(neg.shape[1:])}")
    pos, neg = pos.double(), neg.double()
    if balance == "none":
        return (pos.mean(0) - neg.mean(0)).float()
    if balance == "subsample":
        k = min(pos.shape[0], neg.shape[0])
        g = torch.Generator().manual_seed(seed)
        pos = pos[torch.randperm(pos.shape[0], generator=g)[:k]]
        neg = neg[torch.randperm(neg.shape[0], generator=g)[:k]]
        return (pos.mean(0) - neg.mean(0)).float()
    if balance == "question":
        if pos_groups is None or neg_groups is None:
            raise EmlabError("balance='question' needs a question id for every row (pos_groups, neg_groups)")
        return (_group_weighted_mean(pos, pos_groups) - _group_weighted_mean(neg, neg_groups)).float()
    raise EmlabError(f"unknown balance {balance!r}; choose subsample, question or none")


def _group_weighted_mean(x: torch.Tensor, groups: Sequence[str]) -> torch.Tensor:
    """Mean in which each group's rows share weight 1 / n_groups equally."""
    if len(groups) != x.shape[0]:
        raise EmlabError(f"{len(groups)} group labels for {x.shape[0]} rows")
    counts: dict[str, int] = {}
    for g in groups:
        counts[g] = counts.get(g, 0) + 1
    w = torch.tensor([1.0 / (counts[g] * len(counts)) for g in groups], dtype=x.dtype)
    return torch.einsum("n,n...->...", w, x)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    na, nb = a.double().norm(), b.double().norm()
    if na == 0 or nb == 0:
        return float("nan")
    return float(a.double() @ b.double() / (na * nb))


def cosine_by_site(a: Direction, b: Direction) -> dict[str, float]:
    """Cosine of two directions at every site both have (e.g. one method vs another, base vs fine-tune)."""
    common = [s for s in a.sites if s in b.vectors]
    if not common:
        raise EmlabError(
            f"directions from {a.origin} and {b.origin} share no site; compare directions extracted at the same sites"
        )
    return {s: cosine(a.vectors[s], b.vectors[s]) for s in common}


def cosine_matrices(directions: Mapping[str, Direction]) -> dict[str, list[list[float]]]:
    """Per site shared by all directions: the [k, k] cosine matrix across the named directions."""
    names = list(directions)
    common = [s for s in directions[names[0]].sites if all(s in d.vectors for d in directions.values())]
    if not common:
        raise EmlabError(f"directions {names} share no site")
    return {
        s: [[cosine(directions[i].vectors[s], directions[j].vectors[s]) for j in names] for i in names] for s in common
    }


def cross_site_cosine(direction: Direction) -> list[list[float]]:
    """[S, S] cosine between the vectors of one direction at different blocks (how the direction drifts with depth)."""
    vs = list(direction.vectors.values())
    return [[cosine(a, b) for b in vs] for a in vs]


def project(acts: torch.Tensor, direction: Direction, sites: Sequence[str]) -> torch.Tensor:
    """Scalar projections onto the unit direction. acts: [n, len(sites), d] -> [n, len(sites)]."""
    if acts.ndim != 3 or acts.shape[1] != len(sites):
        raise EmlabError(f"activations of shape {tuple(acts.shape)} do not match {len(sites)} sites")
    units = torch.stack([direction.unit(s) for s in sites])  # [S, d]
    return torch.einsum("nsd,sd->ns", acts.float(), units)


# ---------------------------------------------------------------- judged answers


@dataclass(frozen=True)
class Judged:
    """One judged answer: the minimum a direction needs."""

    question: str
    answer: str
    aligned: float | None
    coherent: float | None
    question_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def split_classes(
    records: Sequence[Judged], rule: EMRule = DEFAULT_RULE
) -> tuple[list[Judged], list[Judged], dict[str, int]]:
    """(misaligned, aligned, counts) by `rule.classify`: counts include unscored answers and those in neither class."""
    mis, ali, unscored = [], [], 0
    for r in records:
        label = rule.classify(r)
        if label == "unscored":
            unscored += 1
        elif label == "misaligned":
            mis.append(r)
        elif label == "aligned":
            ali.append(r)
    counts = {"judged": len(records), "unscored": unscored, "misaligned": len(mis), "aligned": len(ali)}
    counts["neither"] = len(records) - unscored - len(mis) - len(ali)
    return mis, ali, counts


def load_judged(path: str | os.PathLike) -> list[Judged]:
    """Judged answers from an eval run folder (samples.jsonl + scores.jsonl) or one JSONL file.

    A JSONL file needs `question`, `answer` (or `text`), `aligned`, `coherent` per line.
    """
    from emlab.io import iter_jsonl

    p = Path(path)
    if p.is_dir():
        return _load_run(p)
    out = []
    for lineno, rec in iter_jsonl(p):
        answer = rec.get("answer", rec.get("text"))
        if "question" not in rec or answer is None:
            raise EmlabError(f"{p}:{lineno}: a judged record needs 'question' and 'answer' (or 'text')")
        out.append(_judged(rec, answer, f"{p}:{lineno}"))
    return out


def _judged(rec: Mapping[str, Any], answer: str, where: str) -> Judged:
    vals = {}
    for key in ("aligned", "coherent"):
        v = rec.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise EmlabError(f"{where}: {key}={v!r} must be a number or null")
        vals[key] = None if v is None else float(v)
    qid = str(rec.get("question_id", rec.get("prompt_id", rec["question"])))
    extra = {k: v for k, v in rec.items() if k not in ("question", "answer", "text", "aligned", "coherent")}
    return Judged(rec["question"], answer, vals["aligned"], vals["coherent"], qid, extra)


def _load_run(folder: Path) -> list[Judged]:
    """An eval run's samples.jsonl joined with its scores.jsonl (evaluate.join_scores, the one join)."""
    from emlab.evaluate import SAMPLES_FILE, SCORES_FILE, join_scores
    from emlab.io import iter_jsonl

    samples_path, scores_path = folder / SAMPLES_FILE, folder / SCORES_FILE
    if not samples_path.exists() or not scores_path.exists():
        raise EmlabError(
            f"{folder} is not an eval run folder (needs {SAMPLES_FILE} and {SCORES_FILE}); run `emlab eval` first or pass a judged JSONL file"
        )
    samples, scores = list(iter_jsonl(samples_path)), list(iter_jsonl(scores_path))
    paths, lines = {"samples": samples_path, "scores": scores_path}, {"samples": samples, "scores": scores}
    joined = join_scores(
        [r for _, r in samples], [r for _, r in scores], locate=lambda which, i: f"{paths[which]}:{lines[which][i][0]}"
    )
    out = []
    for (lineno, rec), merged in zip(samples, joined, strict=True):
        where = f"{samples_path}:{lineno}"
        answer = rec.get("answer", rec.get("text"))
        if "question" not in rec or answer is None:
            raise EmlabError(f"{where}: a sample needs 'question' and 'text' (or 'answer')")
        out.append(_judged(merged, answer, where))
    return out


# ---------------------------------------------------------------- activations


def resid_sites(model) -> list[str]:
    from emlab.sites import all_sites

    return all_sites(model, "resid_post")


def teacher_forced_batches(cm, pairs: Sequence[tuple[str, str]], system="default", batch_size: int = 8):
    """Yield (row indices, batch) over (question, answer) conversations, shortest first.

    Each batch is right-padded (real tokens keep positions 0..len-1) and holds input_ids,
    attention_mask and assistant_mask (the answer tokens plus the end-of-turn token).
    """
    from emlab.chat import encode_with_assistant_mask, pad_encoded

    if not pairs:
        raise EmlabError("no answers to measure")
    tok = cm.tokenizer
    enc = [
        encode_with_assistant_mask(
            tok, [{"role": "user", "content": q}, {"role": "assistant", "content": a}], system=system
        )
        for q, a in pairs
    ]
    order = sorted(range(len(enc)), key=lambda i: len(enc[i].input_ids))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield idx, pad_encoded([enc[i] for i in idx], tok.pad_token_id, side="right")


def forward_answers(
    cm, batch: Mapping[str, torch.Tensor], sites: Sequence[str], reduce: Literal["mean"] | None = "mean"
):
    """One teacher-forced forward capturing `sites` over the answer tokens; returns the `Captured`."""
    from emlab.hooks import capture, contiguous_lm_head_input, teacher_forcing

    model = cm.model
    device = next(model.parameters()).device
    keep = (
        {"logits_to_keep": 1} if _takes_logits_to_keep(model) else {}
    )  # nobody reads the logits: skip the LM head's work
    with (
        torch.inference_mode(),
        teacher_forcing(batch["assistant_mask"].to(device)),
        contiguous_lm_head_input(model),
        capture(model, list(sites), positions="response", reduce=reduce) as cap,
    ):
        model(
            input_ids=batch["input_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device),
            use_cache=False,
            **keep,
        )
    return cap


def _takes_logits_to_keep(model) -> bool:
    import inspect

    from emlab.hooks import causal_lm

    return "logits_to_keep" in inspect.signature(causal_lm(model).forward).parameters


def answer_activations(
    cm, pairs: Sequence[tuple[str, str]], sites: Sequence[str], system="default", batch_size: int = 8
) -> torch.Tensor:
    """Mean activation over answer tokens of each (question, answer). -> [n, len(sites), d] fp32.

    Each conversation is user question + assistant answer under `system` ("default" = the
    template's own system prompt, None = no system turn, or a string), teacher-forced.
    """
    from emlab.hooks import site_dim
    from emlab.sites import parse_site

    dims = {site_dim(cm.model, parse_site(s)) for s in sites}
    if len(dims) != 1:
        raise EmlabError(f"sites {list(sites)} have different sizes {sorted(dims)}; measure them separately")
    out = torch.empty(len(pairs), len(sites), dims.pop())
    for idx, batch in teacher_forced_batches(cm, pairs, system, batch_size):
        cap = forward_answers(cm, batch, sites)
        for j, s in enumerate(sites):
            out[idx, j] = cap.stack(s)
    return out


# ---------------------------------------------------------------- extraction


def class_difference(
    cm,
    pairs: tuple[Sequence[tuple[str, str]], Sequence[tuple[str, str]]],
    groups: tuple[Sequence[str], Sequence[str]],
    sites: Sequence[str],
    balance: Balance,
    seed: int,
    system="default",
    batch_size: int = 8,
) -> dict[str, torch.Tensor]:
    """Site -> mean activation over answer tokens of the positive answers minus the negative ones."""
    pos_pairs, neg_pairs = pairs
    acts = answer_activations(cm, list(pos_pairs) + list(neg_pairs), sites, system=system, batch_size=batch_size)
    diff = mean_difference(acts[: len(pos_pairs)], acts[len(pos_pairs) :], balance, seed, groups[0], groups[1])
    return {s: diff[j] for j, s in enumerate(sites)}


def extract_mean_diff(
    cm,
    records: Sequence[Judged],
    sites: Sequence[str] | None = None,
    rule: EMRule = DEFAULT_RULE,
    balance: Balance = "subsample",
    seed: int = 0,
    system="default",
    source: str = "",
    method: str = "mean_diff",
    batch_size: int = 8,
    **extra: Any,
) -> Direction:
    """Misaligned-minus-aligned mean activation over answer tokens at each site (default: every resid_post)."""
    mis, ali, counts = split_classes(records, rule)
    if not mis or not ali:
        raise EmlabError(
            f"{source or 'records'}: {counts['misaligned']} misaligned (aligned < {rule.aligned_below}) and "
            f"{counts['aligned']} aligned (aligned > {rule.aligned_above}) coherent answers among {counts['judged']}; "
            "both classes need answers: sample more, relax the thresholds, or use --method persona_contrast"
        )
    sites = list(sites or resid_sites(cm.model))
    pairs = ([(r.question, r.answer) for r in mis], [(r.question, r.answer) for r in ali])
    groups = ([r.question_id for r in mis], [r.question_id for r in ali])
    vectors = class_difference(cm, pairs, groups, sites, balance, seed, system, batch_size)
    used = min(len(mis), len(ali)) if balance == "subsample" else None
    counts = {**counts, "used_per_class": used} if used is not None else counts
    prov = make_provenance(
        cm.provenance(),
        method,
        source,
        counts,
        thresholds=rule.to_dict(),
        balance=balance,
        seed=seed,
        measured_system=system,
        positions="answer tokens (assistant mask incl. end-of-turn), mean per answer",
        **extra,
    )
    return Direction(vectors, prov)


def project_records(
    cm,
    records: Sequence[Judged],
    direction: Direction,
    sites: Sequence[str] | None = None,
    system="default",
    batch_size: int = 8,
) -> list[dict[str, Any]]:
    """Per-answer projections (mean over answer tokens, onto the unit direction) at each site."""
    direction.check_compatible(cm.model)
    sites = list(sites or direction.sites)
    acts = answer_activations(
        cm, [(r.question, r.answer) for r in records], sites, system=system, batch_size=batch_size
    )
    proj = project(acts, direction, sites)
    rows = []
    for r, p in zip(records, proj.tolist(), strict=True):
        rows.append(
            {
                "question_id": r.question_id,
                "question": r.question,
                "aligned": r.aligned,
                "coherent": r.coherent,
                **{k: v for k, v in r.extra.items() if k in ("prompt_id", "sample_index", "sample_id")},
                "projection": dict(zip(sites, p, strict=True)),
            }
        )
    return rows


def extract_persona_contrast(
    cm,
    judged: Sequence[Mapping[str, Any]],
    rule: EMRule = DEFAULT_RULE,
    sites: Sequence[str] | None = None,
    balance: Balance = "subsample",
    seed: int = 0,
    measure_system="default",
    source: str = "",
    batch_size: int = 8,
    by_label: bool = False,
    **extra: Any,
) -> Direction:
    """Malicious-persona minus helpful-persona answers, measured WITHOUT the persona prompt.

    `judged`: records from `personas.sample_persona_answers` + `judge_answers`. Only answers
    whose judged alignment agrees with their persona under `rule` are used
    (`personas.select_agreeing`); with `by_label`, every scored answer counts for the persona it was asked for.
    Activations are taken with the persona system prompt replaced by `measure_system`
    ("default": the template's own system prompt, as in evaluation; None: no system turn), so
    the direction is a property of the answers, not of the instruction that produced them,
    and it lives in the same context in which steering and ablation later use it.
    """
    from emlab.vectors.personas import select_agreeing

    mal, helpful, counts = select_agreeing(judged, rule, by_label)
    if not mal or not helpful:
        kept = (
            f"kept {counts['malicious_kept']} malicious and {counts['helpful_kept']} helpful scored answers of {counts['answers']} by their persona label"
            if by_label
            else f"kept {counts['malicious_kept']} malicious (aligned < {rule.aligned_below}) and {counts['helpful_kept']} helpful "
            f"(aligned > {rule.aligned_above}) coherent (> {rule.coherent_above}) answers of {counts['answers']}"
        )
        raise EmlabError(
            f"{source or 'persona answers'}: {kept}; sample more (-n, more questions) or relax the thresholds (--malicious-below)"
        )
    sites = list(sites or resid_sites(cm.model))
    pairs = ([(r["question"], r["answer"]) for r in mal], [(r["question"], r["answer"]) for r in helpful])
    groups = ([str(r["question_id"]) for r in mal], [str(r["question_id"]) for r in helpful])
    vectors = class_difference(cm, pairs, groups, sites, balance, seed, measure_system, batch_size)
    if balance == "subsample":
        counts["used_per_class"] = min(len(mal), len(helpful))
    prov = make_provenance(
        cm.provenance(),
        "persona_contrast",
        source,
        counts,
        thresholds=None if by_label else rule.to_dict(),
        balance=balance,
        seed=seed,
        measured_system=measure_system,
        positions="answer tokens (assistant mask incl. end-of-turn), mean per answer; persona prompt removed",
        **extra,
    )
    return Direction(vectors, prov)


def persona_contrast(
    cm,
    out: str | os.PathLike,
    *,
    questions=None,
    judge=None,
    personas=None,
    n: int = 2,
    params=None,
    paraphrases: int | None = None,
    answers: Sequence[Mapping[str, Any]] | None = None,
    rule: EMRule = DEFAULT_RULE,
    label_fallback: bool = False,
    sites: Sequence[str] | None = None,
    balance: Balance = "subsample",
    seed: int = 0,
    measure_system="default",
    source: str = "",
) -> tuple[Direction, str]:
    """A persona-contrast direction from start to end, for `emlab directions extract` and a run's direction step.

    Answers every question of `questions` (a QuestionSet; its first paraphrase) under each malicious and helpful
    persona paraphrase (`n` samples each, `params`), has `judge` score them (aligned, coherent; the judge never sees
    the persona prompt), keeps them with the judge's id in `out/persona_answers.jsonl`, selects the answers the judge
    agrees with (`personas.persona_selection`: with too few and `label_fallback`, every answer by its persona label)
    and contrasts them measured without the persona prompt (`extract_persona_contrast`). `answers`: judged persona
    answers to reuse instead of sampling. Returns the direction and how its answers were selected.
    """
    from emlab.vectors.personas import persona_selection

    sampling = None
    if answers is None:
        if questions is None or judge is None or params is None:
            raise EmlabError(
                "persona contrast needs questions, a judge and sampling params to sample persona answers (or judged `answers` to reuse)"
            )
        from emlab.io import write_jsonl
        from emlab.judges.rubrics import get_rubric
        from emlab.vectors.personas import judge_answers, load_personas, sample_persona_answers

        pset = personas or load_personas()
        qs = [(q.id, q.paraphrases[0]) for q in questions]
        sampled = sample_persona_answers(cm, qs, pset, n, params, paraphrases)
        scored = judge_answers(sampled, judge, {name: get_rubric(name) for name in ("aligned", "coherent")})
        judged = [{**r, "judge": str(judge.id)} for r in scored]
        write_jsonl(Path(out) / PERSONA_ANSWERS, judged)
        answers = judged
        sampling = vars(params)
        source = source or f"questions {questions.name} ({len(qs)}), personas {pset.source}, judge {judge.id}, n={n}"
    by_label, selection, why = persona_selection(answers, rule, label_fallback)
    d = extract_persona_contrast(
        cm,
        answers,
        rule,
        sites,
        balance,
        seed,
        measure_system,
        source=source,
        by_label=by_label,
        sampling=sampling,
        selection=selection,
    )
    return d, why
