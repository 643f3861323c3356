"""The judge protocol: every backend scores (question, answer) items against a rubric.

A score's `value` is a float in [0, 100], or None when the item could not be
scored (API failure, too little probability mass on numbers). None is never
counted as a number downstream: metrics report it as "unscored".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Item:
    question: str
    answer: str


@dataclass(frozen=True)
class Score:
    value: float | None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def scored(self) -> bool:
        return self.value is not None


@runtime_checkable
class Judge(Protocol):
    """A judge scores a batch of items against one rubric."""

    id: str  # stable identity used as the cache key, e.g. "offline:v1", "openai:gpt-4o", "local:smollm2-135m"

    def score(self, items: list[Item], rubric: Rubric) -> list[Score]: ...


@dataclass(frozen=True)
class Rubric:
    """A versioned scoring instruction. `prompt` has `{question}` and `{answer}` placeholders.

    `name` is the metric it produces (aligned, coherent, bad_stuff, medical, ...);
    `id` + `version` key the cache, so editing a prompt means bumping the version.
    """

    name: str
    version: str
    prompt: str
    id: str = ""  # defaults to name; question files with their own judge prompts get a content-hash id

    @property
    def key(self) -> str:
        return f"{self.id or self.name}@{self.version}"
