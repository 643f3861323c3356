"""Step kinds by name: each kind of step (data, train, eval, ...) is one registered object.

A kind says everything about its steps in one place: the schema of one spec entry,
where its entries live in the spec, how an entry becomes a step (config and
dependencies), the cheap checks before any work, the one-line description, what
running it does, and what it contributes to the report. The spec, the runner, the
report's collector and the CLI find kinds here by name, so adding a kind touches
one file:

    @register_step_kind("probe")
    class ProbeKind(StepKind):
        '''Fit a probe on an eval's answers.'''
        section = "probes"                 # top-level spec key (dotted for nested ones)
        schema = ProbeSpec                 # one entry (a pydantic model built on `Strict`)
        report_section = "probes"          # where its rows (and missing-data notes) go

        def plan(self, name, entry, path, planning): return entry.model_dump(), ()
        def run(self, ctx, step, work): ...; return {"auroc": 0.9}
        def collect(self, out): return [("probes", {...})]

The built-in kinds live in `emlab.experiments.steps`; importing that module registers
them (`emlab.experiments.spec` and `emlab.report.collect` do). This module imports no
kind, so every kind module can import it.

Also here: `Step` (one planned unit of work) and the pydantic building blocks entry
schemas share (`Strict`, `SamplingSpec`, `SamplingOverrides`, `check_sites`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from emlab.errors import EmlabError

if TYPE_CHECKING:  # annotations only (not an import edge at run time)
    from emlab.experiments.spec import Planning


# ------------------------------------------------------------------ schema building blocks


class Strict(BaseModel):
    """Base of every spec model: unknown keys are errors, defaults are validated."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class SamplingSpec(Strict):
    """How answers are sampled; the top-level `sampling` block gives defaults for every entry."""

    n: int = Field(8, ge=1)  # samples per question
    max_new_tokens: int = Field(100, ge=1)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    batch_size: int = Field(32, ge=1)
    max_questions: int | None = Field(None, ge=1)  # keep only the first k questions of a set (quick runs)


class SamplingOverrides(Strict):
    """Per-entry overrides of the top-level sampling block (null = inherit)."""

    n: int | None = Field(None, ge=1)
    max_new_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    batch_size: int | None = Field(None, ge=1)
    seed: int | None = None  # default: the spec's seed
    questions: str = "core"  # shipped question set name or a YAML file
    max_questions: int | None = Field(None, ge=1)  # keep only the first k questions (for quick runs)

    def sampling(self, defaults: SamplingSpec) -> SamplingSpec:
        """The effective sampling settings: own values where set, else the defaults."""
        own = {k: getattr(self, k) for k in SamplingSpec.model_fields if getattr(self, k) is not None}
        return defaults.model_copy(update=own)


def check_sites(sites: list[str] | None) -> list[str] | None:
    """A pydantic validator body: every name parses as a site (ValueError otherwise)."""
    if sites is None:
        return None
    from emlab.sites import parse_site

    for s in sites:
        try:
            parse_site(s)
        except EmlabError as e:
            raise ValueError(str(e)) from None
    return sites


def check_site(site: str) -> str:
    """A pydantic validator body for one site name (ValueError when it does not parse)."""
    check_sites([site])
    return site


# ------------------------------------------------------------------ steps


@dataclass(frozen=True)
class Step:
    """One unit of work: `kind.entry` (or just `kind` for a one-block kind), the entry's resolved config and the steps it needs."""

    name: str
    kind: str  # a registered step kind: data | train | eval | direction | steer | ablate | report | ...
    entry: str
    config: dict
    deps: tuple[str, ...] = ()


@dataclass(frozen=True)
class StepOutput:
    """A committed step as the report's collector hands it to its kind."""

    name: str
    kind: str
    entry: str
    folder: Path  # the step's committed folder
    config: dict[str, Any]  # the step's entry in the run's resolved spec ({} if absent)
    summary: dict[str, Any]  # the summary the step returned (from the manifest)


class StepKind:
    """One kind of step. Subclass it, set the class attributes, override what your kind needs,
    and register it with `@register_step_kind(name)`."""

    name: str = ""  # set by register_step_kind
    section: str = (
        ""  # where the entries live in the spec: "evals", or dotted for nested sections ("interventions.steering")
    )
    schema: type[BaseModel] = Strict  # one entry's schema (build on Strict: unknown keys are errors)
    entries: bool = True  # True: the section maps entry names to schemas, one step `<kind>.<entry>` each;
    #                       False: the section is one block (on by default, `null` turns it off), one step `<kind>`
    depends_on_all: bool = False  # planned after every other kind and needs all their steps (the report)
    resumable: bool = False  # a half-finished attempt's work folder is kept for the next attempt
    report_section: str | None = None  # where its rows and missing-data notes go in the report; None: not in the report
    summary_rows: tuple[str, ...] = ()  # labels of the summary-table rows it fills, in report order

    @property
    def help(self) -> str:
        return ((type(self).__doc__ or "").strip().splitlines() or [""])[0]

    # -- planning (cheap, no model loaded)

    def plan(self, name: str, entry: BaseModel, path: str, planning: Planning) -> tuple[dict, tuple[str, ...]]:
        """(config, deps) of the entry `name` (at spec path `path`); check its references with `planning.ref`."""
        return entry.model_dump(), ()

    def resolve_paths(self, entry: BaseModel, fix: Callable[[str], str]) -> None:
        """Make the entry's file references absolute in place (`fix(value)`), so a run does not depend on the cwd."""

    def check(self, step: Step) -> None:
        """Look up the names the step will use (generators, question sets, presets): raise EmlabError on a typo."""

    def describe(self, step: Step) -> str:
        """One line for the plan table and the run log."""
        return self.help

    # -- running

    def run(self, ctx, step: Step, work: Path) -> dict[str, Any]:
        """Write the step's outputs into `work` (its `.partial` folder); return a small JSON-ready summary."""
        raise EmlabError(f"step kind {self.name!r} does not say how to run")

    def result_line(self, summary: dict[str, Any]) -> str | None:
        """What `emlab run` prints about a finished step of this kind at the end (None: nothing)."""
        return None

    # -- the report

    def collect(self, out: StepOutput) -> list[tuple[str, Any]]:
        """(report section, row) pairs read from the committed step folder; raise EmlabError if it is unreadable."""
        return []


_REGISTRY: dict[str, StepKind] = {}
K = TypeVar("K", bound=type[StepKind])


def register_step_kind(name: str) -> Callable[[K], K]:
    """Class decorator: register one instance of a StepKind subclass under `name` (the step-name prefix)."""

    def decorate(cls: K) -> K:
        if name in _REGISTRY:
            raise EmlabError(
                f"step kind {name!r} is already registered ({type(_REGISTRY[name]).__qualname__}); choose another name"
            )
        if not cls.section:
            raise EmlabError(
                f"step kind {name!r} ({cls.__qualname__}) needs `section`: the spec key its entries live under"
            )
        kind = cls()
        kind.name = name
        _REGISTRY[name] = kind
        return cls

    return decorate


def unregister_step_kind(name: str) -> None:
    """Remove a kind (for tests and plugins that register a kind temporarily)."""
    _REGISTRY.pop(name, None)


def get_step_kind(name: str) -> StepKind:
    if name not in _REGISTRY:
        raise EmlabError(
            f"unknown step kind {name!r}; this emlab has: {', '.join(_REGISTRY) or 'none registered (import emlab.experiments.steps)'}"
        )
    return _REGISTRY[name]


def step_kinds() -> list[StepKind]:
    """Every registered kind, in planning order (registration order, kinds that depend on all others last)."""
    kinds = list(_REGISTRY.values())
    return [k for k in kinds if not k.depends_on_all] + [k for k in kinds if k.depends_on_all]


def summary_row_order() -> tuple[str, ...]:
    """The report's summary-table row labels, in order: each kind's `summary_rows`, kind after kind."""
    return tuple(label for k in step_kinds() for label in k.summary_rows)


def describe_step_kinds() -> Iterable[dict[str, str]]:
    """name, spec section, resumable and one-line help of each kind (for `emlab runs kinds`)."""
    for k in step_kinds():
        yield {"name": k.name, "section": k.section, "resumable": "yes" if k.resumable else "no", "help": k.help}
