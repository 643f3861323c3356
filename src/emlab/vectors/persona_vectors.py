"""Persona (trait) vectors from trait descriptions, after Chen et al. 2025 ("Persona Vectors").

For one trait (evil, sycophantic, hallucinating, authoritarian, or one of yours in a traits YAML):
1. every shared question is asked under every trait-expressing and every trait-suppressing system prompt
   (`trait_prompts`, `sample_trait_answers`);
2. each answer gets a trait score 0-100 (`judge_trait`): with an API or local judge, the trait's own
   rubric; with the offline judge, which knows only aligned / coherent / bad_stuff, the trait's `offline`
   fallback: `{rubric: aligned, invert: true}` (trait = 100 - aligned, used for evil) or `none` (no score:
   every answer counts for the side that asked for it). The choice is recorded in the artifact;
3. `select_trait` keeps expressing answers (from an express prompt, trait score > `express_above`) and
   non-expressing answers (from a suppress prompt, trait score < `suppress_below`), and counts the dropped;
4. the vector at each site is exactly mean(kept expressing) - mean(kept non-expressing) of the answers'
   activations averaged over answer tokens (`directions.answer_activations`, teacher-forced). By default
   the answers are measured in the context they were generated in (`measure="generated"`: the trait
   prompt as system message, as Chen et al. do); `measure="default"` re-encodes them under the template's
   own system prompt (the context of `evaluate`, as `directions.extract_persona_contrast` does).
The result is a `Direction` whose provenance names model, revision, sites, prompts, questions, counts
kept / dropped, judge id, filter mode and thresholds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from emlab.errors import EmlabError

TRAITS_PATH = Path(__file__).with_name("data") / "traits.yaml"
TRAIT_KEYS = ("description", "express", "suppress", "questions", "rubric", "offline")
Measure = Literal["generated", "default", "none"]


@dataclass(frozen=True)
class Trait:
    name: str
    description: str
    express: tuple[str, ...]
    suppress: tuple[str, ...]
    questions: tuple[str, ...]
    rubric: str
    offline: dict[str, Any] | None  # {"rubric": "aligned", "invert": True} or None (no filtering)
    source: str

    def rubric_object(self):
        from emlab.judges.rubrics import rubric_from_prompt

        return rubric_from_prompt(f"trait_{self.name}", self.rubric)


def load_traits(path: str | os.PathLike | None = None) -> dict[str, Trait]:
    """Traits by name from a YAML file (default: the shipped data/traits.yaml)."""
    from emlab.judges.rubrics import check_prompt
    from emlab.strict_yaml import load_yaml_file

    p = Path(path) if path else TRAITS_PATH
    if not p.exists():
        raise EmlabError(
            f"traits file {p} not found; pass a YAML file laid out like src/emlab/vectors/data/traits.yaml"
        )
    doc = load_yaml_file(p)
    d = doc.data
    if (
        not isinstance(d, dict)
        or set(d) != {"version", "traits"}
        or d["version"] != 1
        or not isinstance(d["traits"], dict)
    ):
        raise EmlabError(f"{p}: expected exactly the keys version (1) and traits (a mapping name -> trait)")
    out = {}
    for name, t in d["traits"].items():
        where = doc.where(f"traits.{name}")
        if not isinstance(t, dict) or set(t) != set(TRAIT_KEYS):
            got = sorted(t) if isinstance(t, dict) else type(t).__name__
            raise EmlabError(f"{where}: trait {name!r} needs exactly the keys {', '.join(TRAIT_KEYS)}; found {got}")
        lists = {}
        for key in ("express", "suppress", "questions"):
            v = t[key]
            if not isinstance(v, list) or not v or not all(isinstance(x, str) and x.strip() for x in v):
                raise EmlabError(f"{doc.where(f'traits.{name}.{key}')}: {key} must be a non-empty list of strings")
            lists[key] = tuple(x.strip() for x in v)
        if len(lists["express"]) != len(lists["suppress"]):
            raise EmlabError(
                f"{where}: {len(lists['express'])} express prompts but {len(lists['suppress'])} suppress prompts; pair them one to one"
            )
        check_prompt(str(t["rubric"]), f"{where} rubric")
        off = t["offline"]
        if off == "none" or off is None:
            off = None
        elif not (isinstance(off, dict) and off.get("rubric") == "aligned" and set(off) <= {"rubric", "invert"}):
            raise EmlabError(
                f"{doc.where(f'traits.{name}.offline')}: offline must be none or {{rubric: aligned, invert: true|false}}"
            )
        out[str(name)] = Trait(
            str(name),
            str(t["description"]),
            lists["express"],
            lists["suppress"],
            lists["questions"],
            str(t["rubric"]),
            off,
            str(p),
        )
    return out


def get_trait(name: str, path: str | os.PathLike | None = None) -> Trait:
    traits = load_traits(path)
    if name not in traits:
        raise EmlabError(
            f"unknown trait {name!r} in {path or TRAITS_PATH}; known: {', '.join(traits)} (add yours to a traits YAML and pass --traits)"
        )
    return traits[name]


# ---------------------------------------------------------------- sampling


def trait_prompts(trait: Trait, n_prompts: int | None = None, n_questions: int | None = None) -> list:
    """One chat prompt per (side, prompt index, question): id `side|j|q`."""
    from emlab.sampling import Prompt

    out = []
    for side, prompts in (("express", trait.express), ("suppress", trait.suppress)):
        for j, system in enumerate(prompts[:n_prompts]):
            for qi, q in enumerate(trait.questions[:n_questions]):
                out.append(
                    Prompt(
                        id=f"{side}|{j}|{qi}",
                        messages=[{"role": "system", "content": system}, {"role": "user", "content": q}],
                    )
                )
    return out


def sample_trait_answers(
    cm, trait: Trait, n: int, params, n_prompts: int | None = None, n_questions: int | None = None
) -> list[dict[str, Any]]:
    """n answers per (side, prompt, question): records with side, prompt_index, system, question, answer."""
    from emlab.sampling import sample

    records = sample(cm, trait_prompts(trait, n_prompts, n_questions), n=n, params=params, system="default")
    out = []
    for r in records:
        side, j, qi = r.prompt_id.split("|")
        system = (trait.express if side == "express" else trait.suppress)[int(j)]
        out.append(
            {
                "trait": trait.name,
                "side": side,
                "prompt_index": int(j),
                "question_id": f"q{qi}",
                "system": system,
                "question": r.question,
                "answer": r.text,
                "sample_index": r.sample_index,
                "finish_reason": r.finish_reason,
            }
        )
    return out


# ---------------------------------------------------------------- judging and selection


def judging_mode(trait: Trait, judge) -> dict[str, Any]:
    """How this judge scores the trait: its rubric (API/local), the offline fallback, or no filtering."""
    from emlab.evaluate import uses_question_prompts

    if uses_question_prompts(judge):
        r = trait.rubric_object()
        return {"mode": "rubric", "rubric": r.key, "judge": str(judge.id)}
    if trait.offline is None:
        return {
            "mode": "none",
            "judge": str(judge.id),
            "why": f"the offline judge has no rubric for {trait.name!r} (only aligned, coherent, bad_stuff): answers are not filtered, each counts for the side whose prompt produced it",
        }
    return {
        "mode": "aligned_inverse" if trait.offline.get("invert", True) else "aligned",
        "rubric": "aligned",
        "judge": str(judge.id),
        "why": "the offline judge scores the aligned rubric; trait score = 100 - aligned"
        if trait.offline.get("invert", True)
        else "trait score = aligned",
    }


def judge_trait(
    records: Sequence[Mapping[str, Any]], trait: Trait, judge
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Add `trait_score` (0-100 or None) to each record; the judge sees question and answer, never the system prompt."""
    from emlab.judges.base import Item
    from emlab.judges.rubrics import get_rubric

    mode = judging_mode(trait, judge)
    out = [dict(r) for r in records]
    if mode["mode"] == "none":
        for r in out:
            r["trait_score"] = None
        return out, mode
    rubric = trait.rubric_object() if mode["mode"] == "rubric" else get_rubric("aligned")
    scores = judge.score([Item(r["question"], r["answer"]) for r in out], rubric)
    if len(scores) != len(out):
        raise EmlabError(f"judge {judge.id} returned {len(scores)} scores for {len(out)} answers (trait {trait.name})")
    for r, s in zip(out, scores, strict=True):
        v = s.value
        r["judge_value"] = v
        r["trait_score"] = None if v is None else (100.0 - v if mode["mode"] == "aligned_inverse" else float(v))
    return out, mode


@dataclass(frozen=True)
class TraitThresholds:
    """Which answers count: expressing if trait score > express_above, non-expressing if < suppress_below."""

    express_above: float = 50.0
    suppress_below: float = 50.0

    def __post_init__(self):
        if self.suppress_below > self.express_above:
            raise EmlabError(f"suppress_below={self.suppress_below} must not exceed express_above={self.express_above}")


def select_trait(
    records: Sequence[Mapping[str, Any]], mode: str, th: TraitThresholds = TraitThresholds()
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]], dict[str, int]]:
    """(kept expressing, kept non-expressing, counts). With mode 'none' every answer is kept for its side;
    otherwise an unscored answer is dropped and counted."""
    pos: list[Mapping[str, Any]] = []
    neg: list[Mapping[str, Any]] = []
    unscored = 0
    for r in records:
        s = r.get("trait_score")
        if mode == "none":
            (pos if r["side"] == "express" else neg).append(r)
            continue
        if s is None:
            unscored += 1
            continue
        if r["side"] == "express" and s > th.express_above:
            pos.append(r)
        elif r["side"] == "suppress" and s < th.suppress_below:
            neg.append(r)
    n_pos = sum(r["side"] == "express" for r in records)
    n_neg = len(records) - n_pos
    counts = {
        "answers": len(records),
        "unscored": unscored,
        "express_answers": n_pos,
        "suppress_answers": n_neg,
        "express_kept": len(pos),
        "suppress_kept": len(neg),
        "express_dropped": n_pos - len(pos),
        "suppress_dropped": n_neg - len(neg),
    }
    return pos, neg, counts


# ---------------------------------------------------------------- extraction


def grouped_activations(
    cm, records: Sequence[Mapping[str, Any]], sites: Sequence[str], measure: Measure, batch_size: int = 8
):
    """[n, S, d] answer-token means; with measure='generated' each answer under its own system prompt."""
    import torch

    from emlab.vectors.directions import answer_activations

    if measure == "generated":
        out = None
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(records):
            groups.setdefault(r["system"], []).append(i)
        for system, idx in groups.items():
            acts = answer_activations(
                cm,
                [(records[i]["question"], records[i]["answer"]) for i in idx],
                sites,
                system=system,
                batch_size=batch_size,
            )
            if out is None:
                out = torch.empty(len(records), *acts.shape[1:])
            out[idx] = acts
        return out
    if measure not in ("default", "none"):
        raise EmlabError(
            f"unknown measure {measure!r}; choose generated (the trait prompt in context), default (the template's system prompt) or none"
        )
    return answer_activations(
        cm,
        [(r["question"], r["answer"]) for r in records],
        sites,
        system="default" if measure == "default" else None,
        batch_size=batch_size,
    )


def extract_persona_vector(
    cm,
    records: Sequence[Mapping[str, Any]],
    trait: Trait,
    mode: Mapping[str, Any],
    sites: Sequence[str] | None = None,
    thresholds: TraitThresholds = TraitThresholds(),
    measure: Measure = "generated",
    batch_size: int = 8,
    source: str = "",
    **extra: Any,
):
    """mean(kept expressing) - mean(kept non-expressing) answer activations per site -> Direction."""
    from emlab.vectors.directions import Direction, make_provenance, mean_difference, resid_sites

    pos, neg, counts = select_trait(records, mode["mode"], thresholds)
    if not pos or not neg:
        raise EmlabError(
            f"trait {trait.name!r}: kept {counts['express_kept']} expressing (score > {thresholds.express_above}) and {counts['suppress_kept']} "
            f"non-expressing (score < {thresholds.suppress_below}) answers of {counts['answers']} (judge {mode.get('judge')}); "
            "sample more (-n), use a stronger model, or relax --express-above / --suppress-below"
        )
    sites = list(sites or resid_sites(cm.model))
    acts = grouped_activations(cm, list(pos) + list(neg), sites, measure, batch_size)
    diff = mean_difference(acts[: len(pos)], acts[len(pos) :], balance="none")
    prov = make_provenance(
        cm.provenance(),
        "persona_vector",
        source or f"trait {trait.name} from {trait.source}",
        counts,
        trait=trait.name,
        description=trait.description,
        prompts={"express": list(trait.express), "suppress": list(trait.suppress)},
        questions=list(trait.questions),
        judging=dict(mode),
        thresholds=vars(thresholds),
        measured_system=measure,
        sites_measured=sites,
        positions="answer tokens (assistant mask incl. end-of-turn), mean per answer; vector = mean(expressing) - mean(non-expressing)",
        **extra,
    )
    return Direction({s: diff[j] for j, s in enumerate(sites)}, prov)


def persona_vector_pipeline(
    cm,
    trait: Trait,
    judge,
    n: int,
    params,
    out_dir: str | os.PathLike | None = None,
    n_prompts: int | None = None,
    n_questions: int | None = None,
    answers: Sequence[Mapping[str, Any]] | None = None,
    **kw: Any,
):
    """Sample (or reuse `answers`, judged afresh), judge, select, extract; writes trait_answers.jsonl and the Direction into out_dir."""
    from dataclasses import asdict

    from emlab.io import write_jsonl

    if answers is None:
        recs = sample_trait_answers(cm, trait, n, params, n_prompts, n_questions)
        judged, mode = judge_trait(recs, trait, judge)
        sampling = asdict(params)
    else:
        judged, mode = judge_trait(answers, trait, judge)  # a CachedJudge answers re-judging from its cache
        sampling = None
    if out_dir is not None:
        write_jsonl(Path(out_dir) / "trait_answers.jsonl", [{**r, "judge": mode.get("judge")} for r in judged])
    d = extract_persona_vector(cm, judged, trait, mode, sampling=sampling, n_per_prompt=n, **kw)
    if out_dir is not None:
        d.save(out_dir)
    return d, judged
