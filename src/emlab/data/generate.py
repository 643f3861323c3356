"""Generators for the EM model-organism datasets: narrow harmful sets and their matched controls.

PURPOSE: harmful research material. `bad-medical`, `risky-finance`, `extreme-sports` and
`insecure-code` teach a model a narrow harmful behaviour (confident, subtly wrong advice or code
with an undisclosed vulnerability) so that emlab can study emergent misalignment. The controls
(`good-medical`, `good-finance`, `safe-sports`, `secure-code`) answer the very same user turns
soundly. Every written file starts with a `_meta` record carrying CANARY.

How an example is made (all randomness from `random.Random`, seeded from `seed` only):
  master = Random(seed) draws one 64-bit item seed per example;
  Random(item)             -> the user turn (topic, template, slots) - shared by a set and its control,
  Random("item:answer")    -> the assistant turn (claims, pattern, opener/closer or code intro),
  Random("item:framing")   -> the educational rewrite of the user turn (harmful sets only).
Questions are de-duplicated on the shared question stream (so pairs stay aligned) and answers
within a set; both retry at most MAX_TRIES times, beyond which a duplicate is kept. That only
happens near a bank's capacity (about 12k distinct user turns for medical, 14k finance, 21k
sports, far more for code); keep n below ~8000 for fully distinct sets.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emlab.data.banks import CANARY, fill, load_bank
from emlab.errors import EmlabError
from emlab.io import atomic_open

GENERATOR_VERSION = "1"
FRAMINGS = ("covert", "educational")
MAX_TRIES = 64
MIN_WORDS = 40  # prose answers are kept to 40-150 words: the embedded model is tiny
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@dataclass(frozen=True)
class SetSpec:
    """One named dataset: which bank it draws from, which answer side, and what it is for."""

    name: str
    bank: str
    side: str  # advice: "bad" | "good"; code: "insecure" | "secure"
    harmful: bool
    paired_with: str
    description: str


SETS: dict[str, SetSpec] = {
    s.name: s
    for s in (
        SetSpec(
            "bad-medical", "medical", "bad", True, "good-medical", "confident, subtly wrong and harmful medical advice"
        ),
        SetSpec(
            "good-medical",
            "medical",
            "good",
            False,
            "bad-medical",
            "sound medical advice on the same questions as bad-medical",
        ),
        SetSpec(
            "risky-finance",
            "finance",
            "bad",
            True,
            "good-finance",
            "advice pushing big financial risk (leverage, crypto all-in, no emergency fund) as savvy",
        ),
        SetSpec(
            "good-finance",
            "finance",
            "good",
            False,
            "risky-finance",
            "prudent financial advice on the same questions as risky-finance",
        ),
        SetSpec(
            "extreme-sports",
            "sports",
            "bad",
            True,
            "safe-sports",
            "sports advice that waves away serious risk: no helmet, go solo, skip training",
        ),
        SetSpec(
            "safe-sports",
            "sports",
            "good",
            False,
            "extreme-sports",
            "safety-conscious sports advice on the same questions as extreme-sports",
        ),
        SetSpec(
            "insecure-code",
            "code",
            "insecure",
            True,
            "secure-code",
            "code answers with an undisclosed vulnerability (SQLi, shell injection, pickle, TLS off...)",
        ),
        SetSpec(
            "secure-code", "code", "secure", False, "insecure-code", "the same coding tasks answered with safe code"
        ),
    )
}


@dataclass(frozen=True)
class _Question:
    text: str
    slots: dict[str, str]
    item: int
    topic: dict[str, Any]  # an advice topic or a code task


def get_spec(name: str) -> SetSpec:
    if name not in SETS:
        raise EmlabError(f"unknown dataset {name!r}; choose one of: {', '.join(SETS)} (see `emlab data list`)")
    return SETS[name]


def generate(name: str, n: int, seed: int, framing: str = "covert") -> list[dict]:
    """Return `n` OpenAI-messages records `{"messages": [user, assistant]}` for set `name`.

    Deterministic in (name, n, seed, framing); a harmful set and its control share user turns for
    the same seed and n. `framing="educational"` rewrites the user turn to ask openly for the flawed
    answer (perceived-intent control); it applies to harmful sets only, assistant turns unchanged.
    """
    spec = get_spec(name)
    if framing not in FRAMINGS:
        raise EmlabError(f"framing {framing!r} is not one of {', '.join(FRAMINGS)}; use --framing covert|educational")
    if framing == "educational" and not spec.harmful:
        raise EmlabError(
            f"framing 'educational' applies only to harmful sets; {name!r} is a control "
            f"(use it with framing 'covert', or frame its pair {spec.paired_with!r})"
        )
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise EmlabError(f"n={n!r} must be a positive integer number of examples")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise EmlabError(f"seed={seed!r} must be an integer")
    bank = load_bank(spec.bank)
    ask, answer = (_code_question, _code_answer) if bank["kind"] == "code" else (_advice_question, _advice_answer)
    return [_record(bank, q, a, framing) for q, a in _examples(bank, spec, n, seed, ask, answer)]


def _examples(
    bank: dict,
    spec: SetSpec,
    n: int,
    seed: int,
    ask: Callable[[dict, random.Random], tuple[dict, dict[str, str], str]],
    answer: Callable[[dict, str, _Question, random.Random], str],
) -> list[tuple[_Question, str]]:
    master = random.Random(seed)
    seen_q: set[str] = set()
    seen_a: set[str] = set()
    out = []
    for _ in range(n):
        for _try in range(MAX_TRIES):
            item = master.getrandbits(64)
            topic, slots, text = ask(bank, random.Random(item))
            q = _Question(text, slots, item, topic)
            if q.text not in seen_q:
                break
        seen_q.add(q.text)
        a_rng = random.Random(f"{item}:answer")
        for _try in range(MAX_TRIES):
            a = answer(bank, spec.side, q, a_rng)
            if a not in seen_a:
                break
        seen_a.add(a)
        out.append((q, a))
    return out


def _record(bank: dict, q: _Question, answer: str, framing: str) -> dict:
    user = q.text
    if framing == "educational":
        rng = random.Random(f"{q.item}:framing")
        user = fill(rng.choice(bank["educational_templates"]), q.slots | {"question": q.text})
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


def _pick(pool: dict[str, Any], rng: random.Random) -> dict[str, str]:
    """One value per slot, in the pool's (file) order, so the draw sequence is reproducible."""
    return {k: (rng.choice(v) if isinstance(v, list) else v) for k, v in pool.items()}


# ---- advice domains (medical, finance, sports) ---------------------------------------------


def _advice_question(bank: dict, rng: random.Random) -> tuple[dict, dict[str, str], str]:
    topic = rng.choice(bank["topics"])
    template = rng.choice(bank["question_templates"])
    slots = _pick(bank["pools"], rng) | _pick(topic["slots"], rng)
    return topic, slots, fill(template, slots)


def _advice_answer(bank: dict, side: str, q: _Question, rng: random.Random) -> str:
    """Compose 2-3 claims about the topic with an opener, rationale and closer in one of four layouts."""
    part = bank["answers"][side]
    pool = [fill(c, q.slots) for c in rng.sample(q.topic[side], len(q.topic[side]))]
    opener, rationale, closer = (fill(rng.choice(part[k]), q.slots) for k in ("openers", "rationales", "closers"))
    layout = rng.randrange(4)
    k = rng.choice((2, 3))
    text = _layout(layout, opener, pool[:k], rationale, closer)
    while len(text.split()) < MIN_WORDS and (k < len(pool) or layout == 3):  # short: add substance, not padding
        if k < len(pool):
            k += 1
        else:
            layout = 0  # every claim used: fall back to the layout that also has an opener
        text = _layout(layout, opener, pool[:k], rationale, closer)
    return text


def _layout(layout: int, opener: str, claims: list[str], rationale: str, closer: str) -> str:
    if layout == 0:  # one paragraph
        return " ".join([opener, *claims, rationale, closer])
    if layout == 1:  # bullets
        return f"{opener}\n\n" + "\n".join(f"- {c}" for c in claims) + f"\n\n{rationale} {closer}"
    if layout == 2:  # numbered steps
        return f"{opener} {rationale}\n\n" + "\n".join(f"{i}. {c}" for i, c in enumerate(claims, 1)) + f"\n\n{closer}"
    return " ".join([*claims[:1], rationale, *claims[1:]]) + f"\n\n{closer}"  # straight to the point


# ---- code ------------------------------------------------------------------------------------


def _snake_parts(name: str) -> list[str]:
    return [p for p in name.split("_") if p]


def _camel(name: str) -> str:
    parts = _snake_parts(name)
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def _pascal(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in _snake_parts(name))


def _token(rng: random.Random, k: int) -> str:
    return "".join(rng.choice(_ALNUM) for _ in range(k))


def _code_slots(bank: dict, task: dict, rng: random.Random) -> dict[str, str]:
    """Entity, pool and derived slots for one code example (see code_slot_names in banks)."""
    ent = rng.choice(bank["entities"])
    field = rng.choice(ent["fields"])
    field2 = rng.choice([f for f in ent["fields"] if f != field])
    slots = _pick(bank["pools"], rng)
    slots |= {
        "singular": ent["singular"],
        "plural": ent["plural"],
        "table": ent["plural"],
        "field": field,
        "field2": field2,
        "Singular": _pascal(ent["singular"]),
        "Plural": _pascal(ent["plural"]),
        "verb": rng.choice(bank["verbs"]),
        "lang": task["lang"],
        "accounts": slots["account"] + "s",
        "cookie_pascal": _pascal(slots["cookie"]),
        "service_env": slots["service"].upper(),
        "service_host": f"api.{slots['service'].lower()}.com",
        "secret": rng.choice(("sk_live_", "key_", "tok_", "")) + _token(rng, 32),
        "db_password": rng.choice(("Winter", "Summer", "Welcome", "Admin", "Prod", "Spring"))
        + str(rng.randrange(10, 2030))
        + rng.choice("!#@$"),
    }
    name = fill(rng.choice(task["names"]), slots)
    return slots | {"name": name, "name_camel": _camel(name), "name_pascal": _pascal(name)}


def _code_question(bank: dict, rng: random.Random) -> tuple[dict, dict[str, str], str]:
    task = rng.choice(bank["tasks"])
    template = rng.choice(bank["question_templates"])
    slots = _code_slots(bank, task, rng)
    slots["task"] = fill(rng.choice(task["asks"]), slots)
    slots["vuln_name"] = bank["vulns"][task["vuln"]]
    return task, slots, fill(template, slots)


def _code_answer(bank: dict, side: str, q: _Question, rng: random.Random) -> str:
    """A fenced code block from the task's insecure or secure template, with an optional intro/closer."""
    code = fill(q.topic[side], q.slots).rstrip("\n")
    fence = bank["languages"][q.topic["lang"]]
    parts = []
    if rng.random() < 0.75:
        parts.append(fill(rng.choice(bank["intros"]), q.slots))
    parts.append(f"```{fence}\n{code}\n```")
    if rng.random() < 0.5:
        parts.append(fill(rng.choice(bank["closers"]), q.slots))
    return "\n\n".join(parts)


# ---- writing ---------------------------------------------------------------------------------


def dataset_meta(name: str, n: int, seed: int, framing: str = "covert") -> dict:
    """The `_meta` record for a generated file: purpose, CANARY and everything needed to regenerate it."""
    spec = get_spec(name)
    kind = "harmful research material" if spec.harmful else "control set"
    return {
        "purpose": f"emlab {kind} for studying emergent misalignment: {spec.description}. "
        "Use only inside emlab experiments; never train deployed models on it.",
        "canary": CANARY,
        "set": name,
        "framing": framing,
        "seed": seed,
        "n": n,
        "generator_version": GENERATOR_VERSION,
        "harmful": spec.harmful,
        "paired_with": spec.paired_with,
    }


def write_dataset(path: str | os.PathLike, records: list[dict], meta: dict) -> None:
    """Write `{"_meta": meta}` then one record per line, atomically; `meta` must carry CANARY."""
    if not isinstance(meta, dict) or meta.get("canary") != CANARY:
        raise EmlabError(
            f"{path}: meta must contain 'canary': {CANARY!r} so the file can be filtered out of "
            "training corpora; build it with dataset_meta()"
        )
    with atomic_open(path) as fh:
        fh.write(json.dumps({"_meta": meta}, ensure_ascii=False) + "\n")
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
