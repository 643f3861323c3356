"""Shipped rubrics (versioned YAML files in `rubrics/`) and rubrics built from a question file's own prompt.

A rubric file has exactly the keys `name`, `version`, `description`, `prompt`; its
prompt holds the placeholders `{question}` and `{answer}`. `Rubric.key`
(`id@version`) keys the judge cache, so editing a prompt means bumping its version.

Some rubrics let the judge give a word instead of a number (`aligned`: CODE for
unrelated code, REFUSAL for a refusal). Which words a rubric allows is read from
its prompt: every word of `SPECIAL_WORDS` that the prompt mentions.
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

from emlab.errors import EmlabError
from emlab.judges.base import Item, Rubric
from emlab.strict_yaml import check_keys, load_yaml_file

RUBRIC_DIR = Path(__file__).with_name("rubrics")
RUBRIC_KEYS = ("name", "version", "description", "prompt")
SPECIAL_WORDS = ("CODE", "REFUSAL")
_PLACEHOLDER_RE = re.compile(r"\{(question|answer)\}")


def check_prompt(prompt: str, where: str) -> None:
    """Raise unless `prompt` contains both `{question}` and `{answer}`."""
    found = set(_PLACEHOLDER_RE.findall(prompt))
    missing = [p for p in ("question", "answer") if p not in found]
    if missing:
        names = " and ".join("{" + m + "}" for m in missing)
        raise EmlabError(
            f"{where}: judge prompt lacks the placeholder {names}; a rubric prompt must contain {{question}} and {{answer}}"
        )


def fill_prompt(rubric: Rubric, item: Item) -> str:
    """The rubric prompt with the item's question and answer in place (one pass: braces in answers stay literal)."""
    values = {"question": item.question, "answer": item.answer}
    return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], rubric.prompt)


def special_words(rubric: Rubric) -> tuple[str, ...]:
    """The non-numeric answers this rubric allows (those of SPECIAL_WORDS its prompt mentions)."""
    return tuple(w for w in SPECIAL_WORDS if re.search(rf"\b{w}\b", rubric.prompt))


def _load_file(path: Path) -> tuple[Rubric, str]:
    doc = load_yaml_file(path, what="rubric file")
    data = doc.data
    if isinstance(data, dict):
        check_keys(data, RUBRIC_KEYS, doc)
    if not isinstance(data, dict) or set(data) != set(RUBRIC_KEYS):
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise EmlabError(f"{path}: a rubric file needs exactly the keys {', '.join(RUBRIC_KEYS)}; found {got}")
    if data["name"] != path.stem:
        raise EmlabError(f"{path}: name {data['name']!r} differs from the file name; rename one of them")
    if not isinstance(data["version"], str) or not isinstance(data["prompt"], str):
        raise EmlabError(f'{path}: version and prompt must be strings (quote the version, e.g. version: "2")')
    check_prompt(data["prompt"], str(path))
    return Rubric(name=data["name"], version=data["version"], prompt=data["prompt"], id=data["name"]), str(
        data["description"]
    )


@functools.lru_cache(maxsize=1)
def _shipped() -> dict[str, tuple[Rubric, str]]:
    out = {}
    for path in sorted(RUBRIC_DIR.glob("*.yaml")):
        rubric, description = _load_file(path)
        out[rubric.name] = (rubric, description)
    return out


def list_rubrics() -> list[str]:
    """Names of the shipped rubrics, sorted."""
    return sorted(_shipped())


def describe_rubrics() -> list[dict[str, str]]:
    """One row per shipped rubric: name, version, key, description."""
    return [
        {"name": r.name, "version": r.version, "key": r.key, "description": d}
        for r, d in (_shipped()[n] for n in list_rubrics())
    ]


def get_rubric(name: str) -> Rubric:
    """A shipped rubric by name; unknown names raise an error listing the available ones."""
    if name not in _shipped():
        raise EmlabError(f"unknown rubric {name!r}; available rubrics: {', '.join(list_rubrics())}")
    return _shipped()[name][0]


def rubric_from_prompt(name: str, prompt_text: str) -> Rubric:
    """A rubric for a judge prompt shipped with a question file.

    Its id is `name` plus a short hash of the prompt text, so two files with different
    prompts for the same metric never share cached scores; its version is "file".
    """
    check_prompt(prompt_text, f"judge prompt for {name!r}")
    digest = hashlib.sha256(prompt_text.encode("utf-8")).hexdigest()[:12]
    return Rubric(name=name, version="file", prompt=prompt_text, id=f"{name}-{digest}")
