"""Word banks behind the EM model-organism datasets: loading, strict validation and slot filling.

PURPOSE: the YAML files in this folder hold harmful research material (subtly wrong medical,
financial and sports advice, insecure code) next to matched sound controls. They exist only to
build model organisms of emergent misalignment inside emlab's experiments. Every file carries
CANARY so that it can be found and filtered out of any training corpus for deployed models.

Templates use `{{slot}}` placeholders (`{{slot|cap}}` capitalises the first letter). Double braces
were chosen because the code banks are full of single braces; `{{ name }}` with spaces (Jinja)
is left alone. A bank is validated when loaded: unknown keys, duplicate YAML keys, too few
templates or topics, and any template that cannot be filled for every topic are errors.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from emlab.errors import EmlabError
from emlab.strict_yaml import did_you_mean, load_yaml_file

CANARY = "emlab-canary:6c1e0b7a-em-organism-data (research material; do not train deployed models on this file)"
BANK_DIR = Path(__file__).parent
MIN_QUESTION_TEMPLATES = 30
MIN_TOPICS = 40
MIN_CLAIMS = 3
MIN_EDUCATIONAL = 6

_SLOT = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*)(\|cap)?\}\}")
_ADVICE_KEYS = {
    "canary",
    "purpose",
    "kind",
    "domain",
    "question_templates",
    "pools",
    "topics",
    "answers",
    "educational_templates",
}
_ADVICE_SIDE_KEYS = {"openers", "closers", "rationales"}
_TOPIC_KEYS = {"id", "slots", "bad", "good"}
_CODE_KEYS = {
    "canary",
    "purpose",
    "kind",
    "domain",
    "question_templates",
    "pools",
    "entities",
    "verbs",
    "languages",
    "vulns",
    "intros",
    "closers",
    "tasks",
    "educational_templates",
}
_TASK_KEYS = {"id", "lang", "vuln", "names", "asks", "insecure", "secure"}
_ENTITY_KEYS = {"singular", "plural", "fields"}


def fill(template: str, slots: dict[str, str]) -> str:
    """Replace every `{{name}}` / `{{name|cap}}` in `template`; a missing slot raises KeyError(name)."""

    def sub(m: re.Match) -> str:
        value = slots[m.group(1)]
        return value[:1].upper() + value[1:] if m.group(2) else value

    return _SLOT.sub(sub, template)


def slot_names(template: str) -> list[str]:
    """The slot names a template refers to, in order of appearance."""
    return [m.group(1) for m in _SLOT.finditer(template)]


def bank_path(name: str) -> Path:
    return BANK_DIR / f"{name}.yaml"


@functools.cache
def load_bank(name: str) -> dict[str, Any]:
    """Load and validate bank `name` (a file stem in this folder). Cached: treat the result as read-only."""
    path = bank_path(name)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in BANK_DIR.glob("*.yaml")))
        raise EmlabError(f"bank {name!r} not found in {BANK_DIR}; known banks: {known}")
    data = load_yaml_file(path, what="bank file").data
    where = str(path)
    _need(isinstance(data, dict), where, "top level must be a mapping")
    _need(data.get("canary") == CANARY, where, f"'canary' must be exactly {CANARY!r}")
    _need(
        isinstance(data.get("purpose"), str) and "research" in data["purpose"],
        where,
        "'purpose' must say what the research material is for",
    )
    if data.get("kind") == "advice":
        _validate_advice(data, where)
    elif data.get("kind") == "code":
        _validate_code(data, where)
    else:
        raise EmlabError(f"{where}: 'kind' is {data.get('kind')!r}; use 'advice' or 'code'")
    return data


def _need(ok: bool, where: str, msg: str) -> None:
    if not ok:
        raise EmlabError(f"{where}: {msg}")


def _keys(obj: Any, allowed: set[str], where: str) -> None:
    _need(isinstance(obj, dict), where, f"expected a mapping, got {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed)
    missing = sorted(allowed - set(obj))
    if unknown:
        raise EmlabError(
            f"{where}: unknown keys {unknown}{did_you_mean(unknown[0], sorted(allowed))}; allowed: {sorted(allowed)}"
        )
    _need(not missing, where, f"missing keys {missing}")


def _strings(obj: Any, where: str, minimum: int = 1) -> None:
    _need(
        isinstance(obj, list) and all(isinstance(s, str) and s.strip() for s in obj),
        where,
        "expected a list of non-empty strings",
    )
    _need(len(obj) >= minimum, where, f"has {len(obj)} entries; need at least {minimum}")
    _need(len(set(obj)) == len(obj), where, "has duplicate entries; remove them")


def _slot_pool(obj: Any, where: str) -> None:
    """A pool maps slot names to a string or a list of alternative strings."""
    _need(isinstance(obj, dict), where, "expected a mapping of slot -> string or list of strings")
    for key, val in obj.items():
        if isinstance(val, list):
            _strings(val, f"{where}.{key}")
        else:
            _need(isinstance(val, str) and val.strip() != "", f"{where}.{key}", "expected a string or list")


def first_values(pool: dict[str, Any]) -> dict[str, str]:
    """One concrete value per slot (the first alternative): used to dry-run templates at load time."""
    return {k: (v[0] if isinstance(v, list) else v) for k, v in pool.items()}


def _dry_run(templates: list[str], slots: dict[str, str], where: str) -> None:
    for t in templates:
        try:
            fill(t, slots)
        except KeyError as e:
            raise EmlabError(
                f"{where}: template {t[:60]!r} uses slot {e.args[0]!r} that is not defined; defined: {sorted(slots)}"
            ) from None


def _validate_advice(data: dict, where: str) -> None:
    _keys(data, _ADVICE_KEYS, where)
    _strings(data["question_templates"], f"{where}: question_templates", MIN_QUESTION_TEMPLATES)
    _strings(data["educational_templates"], f"{where}: educational_templates", MIN_EDUCATIONAL)
    _slot_pool(data["pools"], f"{where}: pools")
    _keys(data["answers"], {"bad", "good"}, f"{where}: answers")
    for side in ("bad", "good"):
        part = data["answers"][side]
        _keys(part, _ADVICE_SIDE_KEYS, f"{where}: answers.{side}")
        for key in sorted(_ADVICE_SIDE_KEYS):
            _strings(part[key], f"{where}: answers.{side}.{key}", 8)
    topics = data["topics"]
    _need(
        isinstance(topics, list) and len(topics) >= MIN_TOPICS,
        where,
        f"'topics' needs at least {MIN_TOPICS} entries, has {len(topics) if isinstance(topics, list) else 0}",
    )
    ids = [t.get("id") for t in topics if isinstance(t, dict)]
    _need(len(set(ids)) == len(topics), where, "topic ids must be unique")
    for topic in topics:
        tw = f"{where}: topic {topic.get('id')!r}"
        _keys(topic, _TOPIC_KEYS, tw)
        _slot_pool(topic["slots"], tw + ".slots")
        _strings(topic["bad"], tw + ".bad", MIN_CLAIMS)
        _strings(topic["good"], tw + ".good", MIN_CLAIMS)
        slots = first_values(data["pools"]) | first_values(topic["slots"])
        _dry_run(data["question_templates"], slots, tw)
        _dry_run(topic["bad"] + topic["good"], slots, tw)
        for side in ("bad", "good"):
            for key in sorted(_ADVICE_SIDE_KEYS):
                _dry_run(data["answers"][side][key], slots, f"{tw} answers.{side}.{key}")
        _dry_run(data["educational_templates"], slots | {"question": "q"}, tw)


def code_slot_names(bank: dict) -> set[str]:
    """Slots every code example gets: entity, pools, derived names (see emlab.data.generate)."""
    return set(bank["pools"]) | {
        "singular",
        "plural",
        "table",
        "field",
        "field2",
        "Singular",
        "Plural",
        "verb",
        "name",
        "name_camel",
        "name_pascal",
        "lang",
        "accounts",
        "cookie_pascal",
        "service_env",
        "service_host",
        "secret",
        "db_password",
    }


def _validate_code(data: dict, where: str) -> None:
    _keys(data, _CODE_KEYS, where)
    _strings(data["question_templates"], f"{where}: question_templates", MIN_QUESTION_TEMPLATES)
    _strings(data["educational_templates"], f"{where}: educational_templates", MIN_EDUCATIONAL)
    _strings(data["intros"], f"{where}: intros", 8)
    _strings(data["closers"], f"{where}: closers", 8)
    _strings(data["verbs"], f"{where}: verbs", 3)
    _slot_pool(data["pools"], f"{where}: pools")
    for key in ("account", "cookie", "service"):
        _need(isinstance(data["pools"].get(key), list), where, f"pools.{key} must be a list (derived slots use it)")
    _need(isinstance(data["languages"], dict) and bool(data["languages"]), where, "'languages' maps name -> fence tag")
    _need(isinstance(data["vulns"], dict) and bool(data["vulns"]), where, "'vulns' maps id -> human name")
    for ent in data["entities"]:
        _keys(ent, _ENTITY_KEYS, f"{where}: entity {ent.get('singular')!r}")
        _strings(ent["fields"], f"{where}: entity {ent['singular']!r}.fields", 2)
    _need(len(data["entities"]) >= 12, where, "'entities' needs at least 12 entries")
    tasks = data["tasks"]
    _need(isinstance(tasks, list) and len(tasks) >= MIN_TOPICS, where, f"'tasks' needs at least {MIN_TOPICS} entries")
    _need(len({t.get("id") for t in tasks}) == len(tasks), where, "task ids must be unique")
    slots = {k: "x" for k in code_slot_names(data)}
    for task in tasks:
        tw = f"{where}: task {task.get('id')!r}"
        _keys(task, _TASK_KEYS, tw)
        _need(task["lang"] in data["languages"], tw, f"lang {task['lang']!r} not in languages")
        _need(task["vuln"] in data["vulns"], tw, f"vuln {task['vuln']!r} not in vulns")
        _strings(task["names"], tw + ".names")
        _strings(task["asks"], tw + ".asks", 2)
        _need(task["insecure"] != task["secure"], tw, "insecure and secure code are identical")
        _dry_run(task["names"] + task["asks"] + [task["insecure"], task["secure"]], slots, tw)
    _dry_run(data["question_templates"] + data["intros"] + data["closers"], slots | {"task": "t"}, where)
    _dry_run(data["educational_templates"], slots | {"task": "t", "question": "q", "vuln_name": "v"}, where)
