"""Evaluation question sets: shipped YAML sets and the question-file format of the EM papers.

Two file layouts are read, both strictly (unknown keys, missing fields, duplicate
YAML keys and wrong types are errors naming the file, the entry and the key):

- emlab's own: a mapping `{version: 1, name, description, defaults, questions: [...]}`
  where `defaults` fills `type` / `samples_per_paraphrase` / ... for every entry;
- the papers' published format: a bare YAML list of entries with `id`, `type`,
  `paraphrases`, `samples_per_paraphrase`, optional `system`, `judge` (the judge
  model they used, kept for provenance) and `judge_prompts` (rubric -> prompt with
  `{question}` and `{answer}` placeholders). YAML anchors and aliases are allowed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from emlab.errors import EmlabError
from emlab.strict_yaml import did_you_mean, load_yaml_file

SHIPPED_DIR = Path(__file__).parent / "questions"
FORMAT_VERSION = 1
QUESTION_TYPES = ("free_form", "free_form_judge", "free_form_judge_0_100")
REQUIRED_KEYS = ("id", "type", "paraphrases", "samples_per_paraphrase")
OPTIONAL_KEYS = ("system", "judge", "judge_prompts")
SET_KEYS = ("version", "name", "description", "defaults", "questions")


@dataclass(frozen=True)
class Question:
    """One open-ended question asked in several wordings (paraphrases)."""

    id: str
    type: str
    paraphrases: list[str]
    samples_per_paraphrase: int
    system: str | None = None
    judge_prompts: dict[str, str] = field(default_factory=dict)
    judge: str | None = None  # the judge model named in a paper's file; provenance only

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class QuestionSet:
    name: str
    source: str
    questions: list[Question]
    description: str = ""

    def __len__(self) -> int:
        return len(self.questions)

    def __iter__(self) -> Iterator[Question]:
        return iter(self.questions)

    def get(self, question_id: str) -> Question:
        for q in self.questions:
            if q.id == question_id:
                return q
        raise EmlabError(
            f"question set {self.name!r} has no question {question_id!r}; ids: {', '.join(q.id for q in self.questions[:10])}..."
        )

    def first(self, k: int | None) -> QuestionSet:
        """The set cut to its first k questions, named `name[:k]` (itself when k is None or covers it)."""
        if k is None or k >= len(self.questions):
            return self
        return QuestionSet(f"{self.name}[:{k}]", self.source, list(self.questions)[:k], self.description)

    def fingerprint(self) -> str:
        """sha256 of the questions' content: two sets with equal fingerprints ask the same things."""
        blob = json.dumps([q.to_dict() for q in self.questions], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def list_question_sets() -> list[str]:
    """Names of the question sets shipped with emlab."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


def load_questions(name_or_path: str | Path) -> QuestionSet:
    """Load a shipped set by name (`core`, `broad`, `medical`) or a YAML file in either layout."""
    ref = str(name_or_path)
    if ref in list_question_sets():
        return _load_file(SHIPPED_DIR / f"{ref}.yaml")
    path = Path(ref).expanduser()
    if path.is_file():
        return _load_file(path)
    raise EmlabError(
        f"question set {ref!r} is neither a shipped set ({', '.join(list_question_sets())}) nor an existing YAML file; "
        "check the name or path"
    )


def allocate(n: int, n_paraphrases: int) -> list[int]:
    """Spread `n` samples of one question over its paraphrases: equal shares, the first ones get the remainder.

    Example: n=10 over 3 paraphrases -> [4, 3, 3]; n=2 over 3 -> [1, 1, 0].
    """
    if n < 1 or n_paraphrases < 1:
        raise EmlabError(f"n={n} samples per question and {n_paraphrases} paraphrases must both be >= 1")
    base, extra = divmod(n, n_paraphrases)
    return [base + (1 if i < extra else 0) for i in range(n_paraphrases)]


def write_questions(qset: QuestionSet, path: str | Path) -> None:
    """Write a set in the papers' list format (readable by their code and by `load_questions`)."""
    from emlab.io import atomic_open

    entries = []
    for q in qset.questions:
        e: dict[str, Any] = {
            "id": q.id,
            "type": q.type,
            "paraphrases": list(q.paraphrases),
            "samples_per_paraphrase": q.samples_per_paraphrase,
        }
        if q.system is not None:
            e["system"] = q.system
        if q.judge is not None:
            e["judge"] = q.judge
        if q.judge_prompts:
            e["judge_prompts"] = dict(q.judge_prompts)
        entries.append(e)
    with atomic_open(path) as fh:
        yaml.safe_dump(entries, fh, sort_keys=False, allow_unicode=True, width=100)


# --- parsing -----------------------------------------------------------------


def _load_file(path: Path) -> QuestionSet:
    data = load_yaml_file(path, what="question file").data
    if isinstance(data, list):
        entries, defaults, name, description = data, dict[str, Any](), path.stem, ""
    elif isinstance(data, dict):
        entries, defaults, name, description = _unpack_set(path, data)
    else:
        raise EmlabError(
            f"{path}: expected a list of questions or a mapping with `questions`, got {type(data).__name__}"
        )
    if not entries:
        raise EmlabError(f"{path}: the file holds no questions; add at least one entry")
    questions = [_parse_entry(path, i, e, defaults) for i, e in enumerate(entries)]
    seen: set[str] = set()
    for q in questions:
        if q.id in seen:
            raise EmlabError(f"{path}: question id {q.id!r} appears twice; ids must be unique within a file")
        seen.add(q.id)
    return QuestionSet(name=name, source=str(path), questions=questions, description=description)


def _unpack_set(path: Path, data: dict) -> tuple[list, dict, str, str]:
    unknown = sorted(set(data) - set(SET_KEYS), key=str)
    if unknown:
        raise EmlabError(
            f"{path}: unknown top-level key {unknown[0]!r}{did_you_mean(str(unknown[0]), SET_KEYS)} (allowed: {', '.join(SET_KEYS)})"
        )
    for key in ("version", "questions"):
        if key not in data:
            raise EmlabError(f"{path}: missing top-level key {key!r}")
    if data["version"] != FORMAT_VERSION:
        raise EmlabError(
            f"{path}: version {data['version']!r} is not supported; this emlab reads version {FORMAT_VERSION}"
        )
    if not isinstance(data["questions"], list):
        raise EmlabError(f"{path}: `questions` must be a list of entries, got {type(data['questions']).__name__}")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise EmlabError(f"{path}: `defaults` must be a mapping")
    bad = sorted(set(defaults) - set(REQUIRED_KEYS[1:] + OPTIONAL_KEYS), key=str)
    if bad:
        raise EmlabError(
            f"{path}: defaults: key {bad[0]!r} cannot have a default (allowed: {', '.join(REQUIRED_KEYS[1:] + OPTIONAL_KEYS)})"
        )
    return data["questions"], defaults, str(data.get("name") or path.stem), str(data.get("description") or "")


def _parse_entry(path: Path, index: int, entry: Any, defaults: dict) -> Question:
    if not isinstance(entry, dict):
        raise EmlabError(
            f"{path}: entry #{index}: expected a mapping with id/type/paraphrases/..., got {type(entry).__name__}"
        )
    where = f"{path}: entry {entry.get('id')!r}" if isinstance(entry.get("id"), str) else f"{path}: entry #{index}"
    unknown = sorted(set(entry) - set(REQUIRED_KEYS + OPTIONAL_KEYS), key=str)
    if unknown:
        raise EmlabError(
            f"{where}: unknown key {unknown[0]!r}{did_you_mean(str(unknown[0]), REQUIRED_KEYS + OPTIONAL_KEYS)} (allowed: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)})"
        )
    e = {**defaults, **entry}
    for key in REQUIRED_KEYS:
        if key not in e:
            raise EmlabError(f"{where}: missing key {key!r}")
    return Question(
        id=_nonempty_str(where, "id", e["id"]),
        type=_question_type(where, e["type"]),
        paraphrases=_paraphrases(where, e["paraphrases"]),
        samples_per_paraphrase=_positive_int(where, "samples_per_paraphrase", e["samples_per_paraphrase"]),
        system=_optional_str(where, "system", e.get("system")),
        judge_prompts=_judge_prompts(where, e.get("judge_prompts")),
        judge=_optional_str(where, "judge", e.get("judge")),
    )


def _nonempty_str(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise EmlabError(f"{where}: key {key!r} must be a non-empty string, got {value!r}")
    return value


def _optional_str(where: str, key: str, value: Any) -> str | None:
    return None if value is None else _nonempty_str(where, key, value)


def _question_type(where: str, value: Any) -> str:
    if value not in QUESTION_TYPES:
        raise EmlabError(f"{where}: key 'type' is {value!r}; supported types: {', '.join(QUESTION_TYPES)}")
    return value


def _positive_int(where: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EmlabError(f"{where}: key {key!r} must be an integer >= 1, got {value!r}")
    return value


def _paraphrases(where: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise EmlabError(f"{where}: key 'paraphrases' must be a non-empty list of strings, got {value!r}")
    return [_nonempty_str(where, f"paraphrases[{i}]", p) for i, p in enumerate(value)]


def _judge_prompts(where: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EmlabError(
            f"{where}: key 'judge_prompts' must map rubric names to prompt text, got {type(value).__name__}"
        )
    out: dict[str, str] = {}
    for rubric, prompt in value.items():
        text = _nonempty_str(where, f"judge_prompts.{rubric}", prompt)
        missing = [ph for ph in ("{question}", "{answer}") if ph not in text]
        if missing:
            raise EmlabError(
                f"{where}: key 'judge_prompts.{rubric}' lacks the placeholder {' and '.join(missing)}; judge prompts need {{question}} and {{answer}}"
            )
        out[str(rubric)] = text
    return out
