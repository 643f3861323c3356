"""Batteries as registered objects, and what one returns: a `BatteryResult`.

A battery is one object with a name, a version, the framework marker it comes from, the
metrics it reports (names, meaning, which end is bad) and two methods:

    run(ctx, folder) -> BatteryResult    sample, judge and score (writes its journals into `folder`)
    score(...)       -> BatteryResult    the arithmetic alone, on answers already judged (tests call it)

Batteries register with `@register_battery` and are found by name (`get_battery("power")`), in
exam order (`list_batteries()`). Thresholds are *not* part of a battery: they live in the
versioned triage rules (`exam/triage.yaml`), which turn metric values into pass/fail.

A `BatteryResult` is JSON on disk (`batteries/<name>/result.json`); its `fingerprint` says what
it was computed from (bank content, sizes, judge, seed), so a resumed exam can tell a finished
battery from a stale one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from emlab.errors import EmlabError
from emlab.io import read_json, write_json

if TYPE_CHECKING:
    from emlab.exam.context import ExamContext

RESULT_FILE = "result.json"
RESULT_FORMAT = "emlab.exam.battery/v1"
Bad = Literal["above", "below"]  # which side of its threshold a metric fails on


@dataclass(frozen=True)
class MetricSpec:
    """A metric a battery reports: its name, what it measures, and which end is bad."""

    name: str
    description: str
    bad: Bad = "above"
    unit: str = ""


@dataclass
class Metric:
    """One measured value with its 95 % interval. `value` None: not measurable here (reason in `note`)."""

    name: str
    value: float | None
    ci: tuple[float, float] | None = None
    n: int = 0  # units the interval is over (items, answers)
    unit_of_n: str = "items"
    method: str = ""  # how it was measured: "offline proxy: ...", "rubric exam_compliance@1", ...
    p_value: float | None = None  # for metrics that carry a test (trend, ...)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["value"], d["p_value"] = _round(self.value), _round(self.p_value)
        d["ci"] = None if self.ci is None else [_round(self.ci[0]), _round(self.ci[1])]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Metric:
        ci = d.get("ci")
        return cls(**{**d, "ci": None if ci is None else (float(ci[0]), float(ci[1]))})


@dataclass
class BatteryResult:
    """What a battery found: metrics with intervals, the raw evidence, and details for the card."""

    battery: str
    version: str
    metrics: list[Metric]
    evidence: list[dict[str, Any]] = field(default_factory=list)  # answers that show why (question, text, scores, why)
    details: dict[str, Any] = field(default_factory=dict)  # per-item tables, informational numbers
    n_answers: int = 0
    n_unscored: int = 0
    notes: list[str] = field(default_factory=list)
    fingerprint: str = ""

    def metric(self, name: str) -> Metric:
        for m in self.metrics:
            if m.name == name:
                return m
        raise EmlabError(
            f"battery {self.battery} has no metric {name!r}; it has {', '.join(m.name for m in self.metrics)}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RESULT_FORMAT,
            "battery": self.battery,
            "version": self.version,
            "fingerprint": self.fingerprint,
            "n_answers": self.n_answers,
            "n_unscored": self.n_unscored,
            "metrics": [m.to_dict() for m in self.metrics],
            "evidence": self.evidence,
            "details": _rounded(self.details),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "result") -> BatteryResult:
        if d.get("format") != RESULT_FORMAT:
            raise EmlabError(
                f"{where}: not a battery result ({RESULT_FORMAT}); delete the battery folder to recompute it"
            )
        return cls(
            battery=d["battery"],
            version=d["version"],
            metrics=[Metric.from_dict(m) for m in d["metrics"]],
            evidence=d.get("evidence", []),
            details=d.get("details", {}),
            n_answers=d.get("n_answers", 0),
            n_unscored=d.get("n_unscored", 0),
            notes=d.get("notes", []),
            fingerprint=d.get("fingerprint", ""),
        )

    def save(self, folder: Path) -> Path:
        path = Path(folder) / RESULT_FILE
        write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, folder: Path) -> BatteryResult:
        path = Path(folder) / RESULT_FILE
        return cls.from_dict(read_json(path), str(path))


class Battery:
    """Base class: subclasses set the class attributes and implement `run` (and a pure `score`)."""

    name: str = ""
    number: int = 0  # its number in the exam description (docs/exam.md)
    title: str = ""
    version: str = "1"
    marker: str = ""  # where it comes from in the latent-persona-risk framework
    rule: str = ""  # the documented pass/fail rule in words (thresholds come from triage.yaml)
    metrics: tuple[MetricSpec, ...] = ()
    needs: tuple[str, ...] = ()  # batteries whose results this one reads (they run first)
    banks: tuple[str, ...] = ()  # question bank files in exam/banks (without .yaml)

    def sizes(self, ctx: ExamContext) -> dict[str, int]:
        """How much this battery samples under the context's profile (part of the fingerprint)."""
        return dict(ctx.profile.sizes.get(self.name, {}))

    def fingerprint_parts(self, ctx: ExamContext) -> dict[str, Any]:
        """Everything the result depends on besides the model; a change means recomputing."""
        from emlab.exam.banks import load_bank

        parts: dict[str, Any] = {
            "battery": self.name,
            "version": self.version,
            "sizes": self.sizes(ctx),
            "judge": ctx.judge_id,
            "sampling": ctx.sampling_dict(self.name),
            "system": ctx.system,
        }
        from emlab.exam.lexicon import LEXICON_VERSION

        parts["banks"] = {name: load_bank(name).fingerprint for name in self.banks}
        parts["lexicon"] = LEXICON_VERSION
        return parts

    def run(self, ctx: ExamContext, folder: Path) -> BatteryResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def spec(self, metric: str) -> MetricSpec:
        for m in self.metrics:
            if m.name == metric:
                return m
        raise EmlabError(
            f"battery {self.name} has no metric {metric!r}; it has {', '.join(m.name for m in self.metrics)}"
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "number": self.number,
            "title": self.title,
            "version": self.version,
            "marker": self.marker,
            "rule": self.rule,
            "metrics": [asdict(m) for m in self.metrics],
            "needs": list(self.needs),
            "banks": list(self.banks),
        }


_REGISTRY: dict[str, Battery] = {}


def register_battery(cls: type[Battery]) -> type[Battery]:
    """Class decorator: instantiate and register a battery under its `name` (exam order = registration order)."""
    battery = cls()
    if not battery.name or battery.name in _REGISTRY:
        raise EmlabError(f"battery class {cls.__name__}: name {battery.name!r} is empty or already registered")
    _REGISTRY[battery.name] = battery
    return cls


def list_batteries() -> list[Battery]:
    """The registered batteries in exam order."""
    return list(_REGISTRY.values())


def get_battery(name: str) -> Battery:
    if name not in _REGISTRY:
        raise EmlabError(f"unknown battery {name!r}; batteries: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


# ---------------------------------------------------------------- helpers shared by batteries


def evidence_row(answer: dict[str, Any], why: str, keys: Sequence[str] = ("aligned", "coherent")) -> dict[str, Any]:
    """One evidence entry: where the answer came from, its text (escaped by the card), its scores and why it is shown."""
    return {
        "id": answer.get("id", ""),
        "item": answer.get("item", ""),
        "condition": answer.get("condition", ""),
        "question": answer.get("question", ""),
        "text": answer.get("text", ""),
        "scores": {k: _round(answer.get(k)) for k in keys if k in answer},
        "why": why,
    }


def pick(answers: Sequence[dict[str, Any]], key: Callable[[dict[str, Any]], float], k: int = 3) -> list[dict[str, Any]]:
    """The k answers with the smallest key (ties keep order)."""
    return sorted(answers, key=key)[:k]


def _round(x: Any, digits: int = 6) -> Any:
    if isinstance(x, float):
        if not math.isfinite(x):
            return None
        if abs(x) < 1e-12:  # floating dust (a Wilson bound of 3e-18) reads as 0
            return 0.0
        return float(f"{x:.{digits}g}")
    return x


def _rounded(obj: Any) -> Any:
    """Floats rounded to 6 significant digits everywhere (card data must not depend on the last bits)."""
    if isinstance(obj, float):
        return _round(obj)
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v) for v in obj]
    return obj
