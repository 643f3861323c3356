"""Validate and load chat datasets in OpenAI-messages JSONL.

Each non-blank line is `{"messages": [{"role": ..., "content": ...}, ...]}`; an optional first line
`{"_meta": {...}}` describes the file (emlab's generators write one carrying the canary). The
checks are what a trainer relies on: UTF-8, a JSON object per line, roles in {system, user,
assistant}, non-empty string contents, a system message only first, at least one user turn, and an
assistant turn last. Every error is one line naming `file:line`, what is wrong and the fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from emlab.data.banks import CANARY
from emlab.errors import EmlabError
from emlab.io import iter_jsonl

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class DatasetSummary:
    """What `emlab data check` reports about a valid file."""

    path: str
    examples: int
    distinct_answers: int
    canary: bool
    meta: dict | None


def validate_messages(rec: dict[str, Any], where: str) -> list[dict]:
    """Return rec["messages"] if it is a trainable conversation, else raise EmlabError naming `where`."""
    if "messages" not in rec:
        keys = ", ".join(sorted(map(str, rec))) or "none"
        raise EmlabError(
            f'{where}: no "messages" key (keys: {keys}); each line needs '
            '{"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}'
        )
    msgs = rec["messages"]
    if not isinstance(msgs, list):
        raise EmlabError(
            f'{where}: "messages" is a {type(msgs).__name__}, expected a list of {{"role", "content"}} objects'
        )
    if not msgs:
        raise EmlabError(f'{where}: "messages" is empty; add a user message and an assistant answer')
    for i, msg in enumerate(msgs):
        _validate_message(msg, i, where)
    roles = [m["role"] for m in msgs]
    if "user" not in roles:
        raise EmlabError(
            f'{where}: no user message; add the question as {{"role": "user", "content": ...}} before the answer'
        )
    if roles[-1] != "assistant":
        raise EmlabError(
            f'{where}: last message has role "{roles[-1]}", expected "assistant"; end each example '
            "with the answer to train on"
        )
    return msgs


def _validate_message(msg: Any, i: int, where: str) -> None:
    at = f"{where}: messages[{i}]"
    if not isinstance(msg, dict):
        raise EmlabError(f'{at} is a {type(msg).__name__}, expected an object with "role" and "content"')
    if "role" not in msg:
        raise EmlabError(f'{at} has no "role"; add "role": "system", "user" or "assistant"')
    role = msg["role"]
    if not isinstance(role, str):
        raise EmlabError(f"{at}.role is {type(role).__name__} {role!r}, expected one of {', '.join(ROLES)}")
    if role not in ROLES:
        raise EmlabError(f'{at}.role "{role}" is not one of {", ".join(ROLES)}; rename it')
    if role == "system" and i != 0:
        raise EmlabError(f"{at} is a system message after the start; move it to messages[0]")
    if "content" not in msg:
        raise EmlabError(f'{at} ({role}) has no "content"; add the message text')
    content = msg["content"]
    if not isinstance(content, str):
        raise EmlabError(
            f"{at}.content ({role}) is {type(content).__name__}, expected a string; "
            "join multi-part content into one string"
        )
    if not content.strip():
        raise EmlabError(f"{at}.content ({role}) is empty; write the text or drop the example")


def _read(path: str | os.PathLike) -> tuple[dict | None, list[list[dict]]]:
    meta: dict | None = None
    convs: list[list[dict]] = []
    first = True
    for lineno, rec in iter_jsonl(path):
        where = f"{path}:{lineno}"
        if "_meta" in rec:
            if not first:
                raise EmlabError(
                    f'{where}: a "_meta" record is allowed only as the first line; move it to line 1 or delete it'
                )
            if not isinstance(rec["_meta"], dict) or "messages" in rec:
                raise EmlabError(
                    f'{where}: "_meta" must be an object on a line of its own, e.g. {{"_meta": {{"set": "..."}}}}'
                )
            meta = rec["_meta"]
        else:
            convs.append(validate_messages(rec, where))
        first = False
    if not convs:
        raise EmlabError(
            f'{path}: no examples found; each line needs a "messages" list (generate one with `emlab data generate`)'
        )
    return meta, convs


def load_conversations(path: str | os.PathLike) -> list[list[dict]]:
    """Validate `path` and return its conversations (message lists), skipping the `_meta` line."""
    return _read(path)[1]


def summarize(path: str | os.PathLike) -> DatasetSummary:
    """Validate `path` and count its examples, distinct final answers, and whether it carries the canary."""
    meta, convs = _read(path)
    canary = (meta or {}).get("canary") == CANARY or any(CANARY in m["content"] for c in convs for m in c)
    answers = {c[-1]["content"] for c in convs}
    return DatasetSummary(str(path), len(convs), len(answers), canary, meta)
