"""The experiment spec: a strict, versioned YAML schema and the step plan it implies.

Strict means: unknown keys are errors that name the key's path and the closest
valid key, duplicate keys are errors with their line (see emlab.strict_yaml), a
`version: 1` field is required, and every cross-reference (an eval's `adapter`,
a steering entry's `direction`) must name an existing entry. All of it is
checked before any work starts.

The schema is the core keys (`SpecCore`: version, name, seed, models, judge,
sampling) plus one section per registered step kind (`emlab.experiments.kinds`):
`datasets`, `training`, `evals`, `directions`, `interventions.steering`,
`interventions.ablation`, `report`. Each kind turns its entries into steps named
`<kind>.<entry>` (`data.bad-medical`, `train.organism`, `eval.base`, `direction.main`,
`steer.sweep`, `ablate.organism`), or `<kind>` for a one-block kind (`report`), and
says what they depend on.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, Field, ValidationError, create_model

import emlab.experiments.steps  # noqa: F401  (registers the built-in step kinds)
from emlab.errors import EmlabError
from emlab.experiments.kinds import (  # re-exported: `spec` is the door that has the built-in kinds registered
    SamplingOverrides,
    SamplingSpec,
    Step,
    StepKind,
    Strict,
    check_sites,
    describe_step_kinds,
    get_step_kind,
    register_step_kind,
    step_kinds,
)
from emlab.strict_yaml import YamlDoc, join_path, load_yaml, load_yaml_file
from emlab.strict_yaml import closest as _closest

__all__ = [
    "Plan",
    "Planning",
    "SamplingOverrides",
    "SamplingSpec",
    "SpecCore",
    "Step",
    "StepKind",
    "Strict",
    "check_sites",
    "describe_step_kinds",
    "get_step_kind",
    "load_spec",
    "load_spec_text",
    "register_step_kind",
    "spec_model",
    "step_kinds",
]

SPEC_VERSION = 1
BUILTIN_DIR = Path(__file__).parent / "builtin"


class ModelSpec(Strict):
    """A base model: an embedded name (smollm2-135m), a local folder saved with save_pretrained, or a hub id."""

    ref: str
    dtype: Literal["float32", "bfloat16"] = "float32"  # fp32 keeps evaluation numbers reproducible


class JudgeSpec(Strict):
    """Which judge scores answers, and where its scores are cached."""

    spec: str = "offline"  # a get_judge spec: offline, openai:MODEL, local:REF; "default" = openai when OPENAI_API_KEY is set, else offline
    cache: Literal["shared", "run", "none"] = (
        "shared"  # shared: $EMLAB_CACHE/judge-cache.sqlite; run: inside the run folder
    )


class SpecCore(Strict):
    """The keys every spec has; the step kinds add their sections (datasets, training, evals, ...) after these."""

    version: Literal[1]
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    seed: int = 0
    models: dict[str, ModelSpec] = Field(min_length=1)
    judge: JudgeSpec = JudgeSpec()
    sampling: SamplingSpec = SamplingSpec()

    def default_model(self) -> str:
        return next(iter(self.models))


_SPEC_MODELS: dict[tuple, type[SpecCore]] = {}


def spec_model() -> type[SpecCore]:
    """The whole spec's schema: SpecCore + one section per registered step kind (in planning order).

    A kind's `section` is a top-level key, or dotted (`interventions.steering`) for a key of a
    nested block that several kinds share. Rebuilt when the registered kinds change.
    """
    kinds = step_kinds()
    key = tuple((k.name, id(k)) for k in kinds)
    if key not in _SPEC_MODELS:
        _SPEC_MODELS.clear()
        _SPEC_MODELS[key] = _build_spec_model(kinds)
    return _SPEC_MODELS[key]


def _section_field(kind: StepKind):
    if kind.entries:
        return (
            types.GenericAlias(dict, (str, kind.schema)),
            Field(default_factory=dict),
        )  # dict[str, <the kind's schema>]
    return (kind.schema | None, Field(default_factory=kind.schema))


def _build_spec_model(kinds: list[StepKind]) -> type[SpecCore]:
    fields: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        top, _, sub = kind.section.partition(".")
        taken = (
            top in SpecCore.model_fields
            or (top in fields and top not in nested)
            or (not sub and top in nested)
            or sub in nested.get(top, {})
        )
        if taken or "." in sub:
            raise EmlabError(
                f"step kind {kind.name!r}: spec section {kind.section!r} is taken or nested too deep; give the kind another `section`"
            )
        if not sub:
            fields[top] = _section_field(kind)
            continue
        nested.setdefault(top, {})[sub] = _section_field(kind)
        fields.setdefault(top, None)  # keeps the block where its first kind is
    for top, subs in nested.items():
        block = create_model(f"{top.title()}Spec", __base__=Strict, **subs)
        fields[top] = (block, Field(default_factory=block))
    return create_model("Spec", __base__=SpecCore, __doc__="A whole experiment.", **fields)


def __getattr__(name: str):
    if name == "Spec":  # the schema of the currently registered kinds
        return spec_model()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------ plan


@dataclass
class Plan:
    spec: SpecCore
    steps: list[Step]
    source: str = "<spec>"
    base_dir: Path = field(default_factory=Path.cwd)

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise EmlabError(f"no step {name!r} in this plan; steps: {', '.join(s.name for s in self.steps)}")

    def seeds(self) -> dict[str, int]:
        """Every seed the run uses, by step."""
        out = {"spec": self.spec.seed}
        for s in self.steps:
            for key in ("seed", "random_seed"):
                if s.config.get(key) is not None:
                    out[s.name if key == "seed" else f"{s.name}.{key}"] = s.config[key]
        return out


def load_spec(path: str | Path) -> Plan:
    """Read, validate and plan a spec file (or a built-in spec name such as `demo`)."""
    p = resolve_spec_path(path)
    return plan_from_doc(load_yaml_file(p, what="spec file"), base_dir=p.parent)


def load_spec_text(text: str, source: str = "<string>", base_dir: Path | None = None) -> Plan:
    return plan_from_doc(load_yaml(text, source), base_dir=base_dir or Path.cwd())


def resolve_spec_path(path: str | Path) -> Path:
    """A spec path, or the name of a built-in spec (`demo`, `demo-quick`)."""
    p = Path(path)
    if p.exists():
        return p
    builtin = BUILTIN_DIR / f"{path}.yaml"
    if not p.suffix and builtin.exists():
        return builtin
    names = sorted(f.stem for f in BUILTIN_DIR.glob("*.yaml"))
    raise EmlabError(f"spec {str(path)!r} not found; pass a YAML file or a built-in spec name ({', '.join(names)})")


def builtin_specs() -> list[str]:
    return sorted(f.stem for f in BUILTIN_DIR.glob("*.yaml"))


def plan_from_resolved(data: dict, source: str) -> Plan:
    """Re-plan from a resolved spec stored in a run manifest (its paths are already absolute)."""
    return plan_from_doc(YamlDoc(data=data, source=source), base_dir=Path.cwd())


def plan_from_doc(doc: YamlDoc, base_dir: Path) -> Plan:
    if not isinstance(doc.data, dict):
        got = "an empty file" if doc.data is None else type(doc.data).__name__
        raise EmlabError(f"{doc.source}: a spec is a YAML mapping starting with `version: 1`, got {got}")
    if "version" not in doc.data:
        raise EmlabError(
            f"{doc.source}: missing required key 'version'; add `version: {SPEC_VERSION}` at the top of the spec"
        )
    try:
        spec = spec_model().model_validate(doc.data)
    except ValidationError as e:
        raise EmlabError(_explain(e, doc)) from None
    spec = _resolve_paths(spec, base_dir)
    steps = _make_steps(spec, doc)
    return Plan(spec=spec, steps=steps, source=doc.source, base_dir=base_dir)


# ------------------------------------------------------------------ errors


def _loc_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else join_path(path, part)
    return path


def _explain(e: ValidationError, doc: YamlDoc) -> str:
    """One line for the first error (plus a count of the others)."""
    errors = sorted(
        e.errors(), key=lambda x: x["type"] != "extra_forbidden"
    )  # a misspelt key explains its "missing" twin
    first = errors[0]
    loc = tuple(first["loc"])
    path = _loc_path(loc)
    where = doc.where(path)
    kind = first["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        valid = _valid_keys(spec_model(), loc[:-1])
        hint = _closest(key, valid)
        msg = (
            f"{where}: unknown key {path!r}"
            + (f"; did you mean {hint!r}?" if hint else "")
            + f" (valid keys here: {', '.join(valid)})"
        )
    elif kind == "missing":
        msg = f"{where}: missing required key {path!r}; add it"
    elif path == "version":
        msg = f"{where}: unsupported spec version {first.get('input')!r}; this emlab reads `version: {SPEC_VERSION}`"
    else:
        got = first.get("input")
        shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
        msg = f"{where}: {path}: {first['msg']}{shown}"
    more = len(errors) - 1
    return msg + (f" [and {more} more error{'s' if more > 1 else ''}]" if more else "")


def _strip_optional(t):
    if typing.get_origin(t) in (Union, types.UnionType):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return t


def _valid_keys(cls: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the model found at `loc` inside `cls` (empty when not a model)."""
    t: Any = cls
    for part in loc:
        t = _strip_optional(t)
        origin = typing.get_origin(t)
        if isinstance(t, type) and issubclass(t, BaseModel) and isinstance(part, str) and part in t.model_fields:
            t = t.model_fields[part].annotation
        elif origin is dict:
            t = typing.get_args(t)[1]
        elif origin is list and isinstance(part, int):
            t = typing.get_args(t)[0]
        else:
            return []
    t = _strip_optional(t)
    return list(t.model_fields) if isinstance(t, type) and issubclass(t, BaseModel) else []


# ------------------------------------------------------------------ references and steps


@dataclass
class Planning:
    """What a step kind sees while it plans an entry: the validated spec, where each key sits in the YAML, the steps so far."""

    spec: SpecCore
    doc: YamlDoc
    steps: list[Step]

    def where(self, path: str) -> str:
        """`file:line` of a spec key path (for error messages)."""
        return self.doc.where(path)

    def entries(self, section: str) -> dict[str, Any]:
        """The entries of a spec section by its (dotted) key: `models`, `training`, `interventions.steering`."""
        obj: Any = self.spec
        for part in section.split("."):
            obj = getattr(obj, part)
        return obj

    def ref(self, path: str, value: str, section: str) -> None:
        """`value` (found at spec key `path`) must name an entry of `section`; else an error with file:line and did-you-mean."""
        table = self.entries(section)
        if value in table:
            return
        hint = _closest(value, list(table))
        choices = ", ".join(table) or "none defined"
        raise EmlabError(
            f"{self.where(path)}: {path} = {value!r} is not an entry of `{section}`"
            + (f"; did you mean {hint!r}?" if hint else "")
            + f" (entries: {choices})"
        )


def _resolve_paths(spec: SpecCore, base_dir: Path) -> SpecCore:
    """Make spec-relative file references absolute, so a run does not depend on the working directory."""

    def fix(p: str) -> str:
        q = Path(p).expanduser()
        looks_like_path = p.startswith((".", "/", "~")) or q.suffix in (".yaml", ".yml", ".jsonl")
        return str((base_dir / q).resolve()) if looks_like_path and not q.is_absolute() else p

    spec = spec.model_copy(deep=True)
    if spec.judge.spec == "default":
        from emlab.judges.registry import default_judge_spec

        spec.judge.spec = default_judge_spec()
    if spec.judge.spec.startswith("local:"):  # a local judge model may be a folder next to the spec
        spec.judge.spec = "local:" + fix(spec.judge.spec.removeprefix("local:"))
    for m in spec.models.values():
        m.ref = fix(m.ref)
    for kind, entries in _sections(spec):
        for entry in entries.values():
            kind.resolve_paths(entry, fix)
    return spec


def _sections(spec: SpecCore):
    """(kind, {entry name: entry}) per registered kind; a one-block kind's block is its only entry (none when null)."""
    planning = Planning(spec, YamlDoc(data=None, source=""), [])
    for kind in step_kinds():
        value = planning.entries(kind.section)
        yield kind, (value if kind.entries else ({} if value is None else {kind.name: value}))


def _make_steps(spec: SpecCore, doc: YamlDoc) -> list[Step]:
    planning = Planning(spec, doc, [])
    for kind, entries in _sections(spec):
        for name, entry in entries.items():
            path = f"{kind.section}.{name}" if kind.entries else kind.section
            config, deps = kind.plan(name, entry, path, planning)
            if kind.depends_on_all:
                deps = tuple(s.name for s in planning.steps)
            step_name = f"{kind.name}.{name}" if kind.entries else kind.name
            planning.steps.append(Step(step_name, kind.name, name, config, tuple(deps)))
    return dependency_order(planning.steps)


def dependency_order(steps: list[Step]) -> list[Step]:
    """The steps in planning order, except that a step moves after the steps it needs when one was planned later
    (a training steered by a persona vector needs that vector's step, whose kind plans after training)."""
    by_name = {s.name: s for s in steps}
    done: dict[str, Step] = {}
    visiting: list[str] = []

    def visit(s: Step) -> None:
        if s.name in done:
            return
        if s.name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(s.name) :], s.name])
            raise EmlabError(f"the spec's steps need each other in a circle: {cycle}; break one of these references")
        visiting.append(s.name)
        for d in s.deps:
            if d in by_name:
                visit(by_name[d])
        visiting.pop()
        done[s.name] = s

    for s in steps:
        visit(s)
    return list(done.values())
