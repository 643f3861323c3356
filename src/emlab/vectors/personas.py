"""Persona system prompts for contrastive direction extraction.

A `PersonaSet` holds paraphrases of two contrasting assistant personas (malicious and
helpful). Several paraphrases per side keep the extracted direction from encoding
the wording of one prompt. The shipped set lives in `personas.yaml` next to this
module; pass another YAML file with the same keys to use your own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emlab.classify import DEFAULT_RULE, EMRule
from emlab.errors import EmlabError
from emlab.strict_yaml import check_keys, load_yaml_file

DEFAULT_PATH = Path(__file__).with_name("personas.yaml")
PERSONAS = ("malicious", "helpful")


@dataclass(frozen=True)
class PersonaSet:
    malicious: tuple[str, ...]
    helpful: tuple[str, ...]
    source: str

    def prompts(self, persona: str) -> tuple[str, ...]:
        if persona not in PERSONAS:
            raise EmlabError(f"unknown persona {persona!r}; choose one of: {', '.join(PERSONAS)}")
        return getattr(self, persona)


def load_personas(path: str | os.PathLike | None = None) -> PersonaSet:
    """Load persona paraphrases from YAML (default: the shipped `personas.yaml`)."""
    p = Path(path) if path is not None else DEFAULT_PATH
    if not p.exists():
        raise EmlabError(f"persona file {p} not found; pass a YAML file with 'malicious' and 'helpful' lists")
    doc = load_yaml_file(p, what="persona file")
    data = doc.data
    if not isinstance(data, dict):
        raise EmlabError(f"{p}: expected a mapping with 'malicious' and 'helpful' lists")
    check_keys(data, ("version", *PERSONAS), doc)
    lists = {}
    for key in PERSONAS:
        items = data.get(key)
        if not isinstance(items, list) or not items or not all(isinstance(x, str) and x.strip() for x in items):
            raise EmlabError(f"{p}: '{key}' must be a non-empty list of non-empty strings")
        lists[key] = tuple(x.strip() for x in items)
    return PersonaSet(malicious=lists["malicious"], helpful=lists["helpful"], source=str(p))


# ---------------------------------------------------------------- answers under personas


def persona_prompts(questions: Sequence[tuple[str, str]], personas: PersonaSet, paraphrases: int | None = None) -> list:
    """One sampling prompt per (question, persona, paraphrase): the persona as system message + the question."""
    from emlab.sampling import Prompt

    prompts = []
    for qid, text in questions:
        for persona in PERSONAS:
            for j, system in enumerate(personas.prompts(persona)[:paraphrases]):
                msgs = [{"role": "system", "content": system}, {"role": "user", "content": text}]
                prompts.append(Prompt(id=f"{qid}|{persona}|{j}", messages=msgs))
    return prompts


def sample_persona_answers(
    cm, questions: Sequence[tuple[str, str]], personas: PersonaSet, n: int, params, paraphrases: int | None = None
) -> list[dict[str, Any]]:
    """Answers to every question under every persona paraphrase (n each): Q x 2 x P x n records."""
    from emlab.sampling import sample

    records = sample(cm, persona_prompts(questions, personas, paraphrases), n=n, params=params, system="default")
    out = []
    for r in records:
        qid, persona, j = r.prompt_id.rsplit("|", 2)
        out.append(
            {
                "question_id": qid,
                "question": r.question,
                "answer": r.text,
                "persona": persona,
                "paraphrase": int(j),
                "sample_index": r.sample_index,
                "finish_reason": r.finish_reason,
            }
        )
    return out


def judge_answers(records: list[dict[str, Any]], judge, rubrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Add one score per rubric (name -> Rubric) to each record; the judge sees the question and answer only,
    never the persona prompt. Unscored items get None."""
    from emlab.judges.base import Item

    items = [Item(r["question"], r["answer"]) for r in records]
    out = [dict(r) for r in records]
    for name, rubric in rubrics.items():
        scores = judge.score(items, rubric)
        if len(scores) != len(items):
            raise EmlabError(
                f"judge {getattr(judge, 'id', judge)!r} returned {len(scores)} scores for {len(items)} items (rubric {name})"
            )
        for r, s in zip(out, scores, strict=True):
            r[name] = s.value
    return out


def select_agreeing(
    records: Sequence[Mapping[str, Any]], rule: EMRule = DEFAULT_RULE, by_label: bool = False
) -> tuple[list, list, dict[str, int]]:
    """(malicious kept, helpful kept, counts): answers whose judged alignment matches their persona.

    A malicious answer is kept when `rule` classifies it misaligned, a helpful one when aligned
    (both coherent). The EM convention's defaults are strict for tiny models, which rarely write
    a clearly misaligned answer even when told to: raise `aligned_below` (e.g. 50) for them and
    say so. With `by_label`, every scored answer is kept for the persona it was asked for.
    """
    mal, helpful, unscored = [], [], 0
    for r in records:
        label = rule.classify(r)
        if label == "unscored":
            unscored += 1
        elif r["persona"] == "malicious" and (by_label or label == "misaligned"):
            mal.append(r)
        elif r["persona"] == "helpful" and (by_label or label == "aligned"):
            helpful.append(r)
    counts = {
        "answers": len(records),
        "unscored": unscored,
        "malicious_answers": sum(r["persona"] == "malicious" for r in records),
        "helpful_answers": sum(r["persona"] == "helpful" for r in records),
        "malicious_kept": len(mal),
        "helpful_kept": len(helpful),
    }
    return mal, helpful, counts


def questions_with_system(qset, system: str, label: str):
    """A copy of a QuestionSet whose every question is asked under `system` (e.g. a persona prompt).

    The set's name gains `+label`, and its fingerprint changes, so runs record the persona."""
    from dataclasses import replace

    from emlab.data.questions import QuestionSet

    return QuestionSet(
        name=f"{qset.name}+{label}",
        source=qset.source,
        questions=[replace(q, system=system) for q in qset],
        description=qset.description,
    )


def persona_system(personas: PersonaSet, spec: str) -> tuple[str, str]:
    """(system prompt, label) for `malicious`, `helpful` or `malicious:2` (paraphrase index)."""
    name, _, idx = spec.partition(":")
    prompts = personas.prompts(name)
    try:
        j = int(idx or 0)
        return prompts[j], f"{name}{j}"
    except (ValueError, IndexError):
        raise EmlabError(f"persona {spec!r}: paraphrase index must be 0..{len(prompts) - 1}") from None


def persona_selection(
    judged: Sequence[Mapping[str, Any]], rule: EMRule = DEFAULT_RULE, label_fallback: bool = False
) -> tuple[bool, str, str]:
    """(by_label, selection, why): keep the persona answers the judge agrees with (`select_agreeing` under `rule`);
    with too few of them and `label_fallback`, keep every scored answer by the persona it was asked for (and say how
    many the judge kept). Without the fallback the judge's thresholds stay, and extraction names what is missing."""
    mal, helpful, counts = select_agreeing(judged, rule)
    if (mal and helpful) or not label_fallback:
        return False, "judge agreement", "judge-agreeing answers"
    why = (
        f"the judge kept {counts['malicious_kept']} malicious (aligned < {rule.aligned_below:g}) and {counts['helpful_kept']} helpful "
        f"(aligned > {rule.aligned_above:g}) answers with coherent > {rule.coherent_above:g} of {counts['answers']}; "
        "raise persona_n or malicious_below to select by the judge"
    )
    return True, "persona label", f"persona labels ({why})"
