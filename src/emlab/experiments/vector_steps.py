"""Step kinds for persona and emotion vectors (emlab.vectors; docs/personas-emotions.md).

Each kind wraps one plain function of emlab.vectors and writes what the matching CLI command writes:

| kind | spec section | function | outputs |
|---|---|---|---|
| `emotion-vectors` | `emotion_vectors` | `emotions.extract_emotion_vectors` + `geometry.circumplex` | the vectors, stories.jsonl, geometry.json, circumplex.png, layers.png |
| `persona-vector` | `persona_vectors` | `persona_vectors.persona_vector_pipeline` | a Direction, trait_answers.jsonl |
| `landscape` | `landscapes` | `landscape.landscape` (+ `vector_cosines`) | landscape.json, projections.LABEL.jsonl, landscape.png |
| `vector-steer` | `vector_steering` | `steer.steering_table` | steering_table.{jsonl,json,md}, one eval folder per cell |
| `vector-monitor` | `vector_monitors` | `monitor.monitored_sample` | traces.jsonl, summary.json, traces.png |
| `data-screen` | `data_screens` | `screening.screen` | screen.jsonl (ranked), screen.json (AUROC on a mixed set) |

Preventative steering (adding a persona vector while an organism trains) is the train kind's
`steering` option (steps.py), so its adapter is a `training` entry like any other.
Vectors are referred to by entry name: `emotion_vectors: emo` is the `emotion-vectors.emo` step,
`personas: [evil]` the `persona-vector.evil` steps, `direction: em` a `directions` entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from emlab.errors import EmlabError
from emlab.experiments.common import DATASET_FILE, adapter_deps, model_of, sampled, sampling_params
from emlab.experiments.kinds import (
    SamplingOverrides,
    StepKind,
    StepOutput,
    Strict,
    check_site,
    check_sites,
    register_step_kind,
)
from emlab.io import read_json, write_json

PERSONA_KIND, EMOTION_KIND = "persona-vector", "emotion-vectors"


def _link(out: StepOutput, file: str) -> dict[str, str] | str:
    """A report cell linking to a file of the step (relative to <run>/report/), or '-' when absent."""
    import os

    f = out.folder / file
    return {"href": os.path.relpath(f, out.folder.parent.parent / "report"), "text": file} if f.exists() else "-"


def _r(corr: dict | None) -> str:
    """Pearson r with its CI from a geometry correlation block ('n/a' when the PC does not exist)."""
    if corr is None:
        return "n/a"
    x = corr["pearson"]
    ci = x.get("ci95")
    return f"{x['r']:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "")


def _pearson(geo: dict, key: str) -> float | None:
    return None if geo.get(key) is None else geo[key]["pearson"]["r"]


def _ci(v: dict, key: str, digits: int = 2) -> str:
    ci = v.get("ci95")
    return f"{v[key]:+.{digits}f}" + (f" [{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]" if ci else "")


def _site(v: str | None) -> str | None:
    return v if v is None else check_site(v)


def _model_deps(planning, path: str, entry) -> tuple[dict, tuple[str, ...]]:
    """The resolved model key and the adapter's train step (when the entry names one)."""
    cfg = {"model": model_of(planning, path, entry.model)}
    return cfg, adapter_deps(planning, path, entry.adapter)


def _vector_deps(planning, path: str, entry) -> tuple[str, ...]:
    """The emotion-vectors and persona-vector steps an entry reads (`emotion_vectors`, `personas`), checked."""
    deps = []
    if getattr(entry, "emotion_vectors", None) is not None:
        planning.ref(f"{path}.emotion_vectors", entry.emotion_vectors, "emotion_vectors")
        deps.append(f"{EMOTION_KIND}.{entry.emotion_vectors}")
    for i, p in enumerate(getattr(entry, "personas", None) or []):
        planning.ref(f"{path}.personas[{i}]", p, "persona_vectors")
        deps.append(f"{PERSONA_KIND}.{p}")
    for i, d in enumerate(getattr(entry, "directions", None) or []):
        planning.ref(f"{path}.directions[{i}]", d, "directions")
        deps.append(f"direction.{d}")
    return tuple(deps)


def _emotion_list_of(planning, entry) -> dict:
    """The emotion list file of the `emotion_vectors` entry this entry reads (None: the shipped list), for `check`."""
    key = getattr(entry, "emotion_vectors", None)
    return {"emotion_list": None if key is None else planning.entries("emotion_vectors")[key].emotions}


def _check_vector_names(step, conditions=()) -> None:
    """`emotions` are emotions of the step's vectors' list, and condition vectors emotions or `personas` entries."""
    from emlab.vectors.emotions import load_emotions

    c = step.config
    emotions = set(load_emotions(c["emotion_list"]).names) if c.get("emotion_vectors") is not None else set()
    personas = set(c.get("personas") or []) | set(c.get("directions") or [])
    for n, known in [
        *((n, emotions) for n in c.get("emotions") or []),
        *((n, emotions | personas) for n in conditions),
    ]:
        if n not in known:
            raise EmlabError(
                f"{step.name}: {n!r} is neither an emotion of emotion_vectors.{c.get('emotion_vectors')}"
                + ("" if known is emotions else f" nor one of `personas` / `directions` {sorted(personas)}")
                + f"; known: {', '.join(sorted(known)) or 'none'}"
            )


def _emotion_vectors(ctx, key: str | None):
    from emlab.vectors.emotions import EmotionVectors

    return None if key is None else EmotionVectors.load(ctx.output(f"{EMOTION_KIND}.{key}"))


def _personas(ctx, keys) -> dict:
    from emlab.vectors.directions import Direction

    return {k: Direction.load(ctx.output(f"{PERSONA_KIND}.{k}")) for k in keys or []}


def _readers(ctx, cfg: dict):
    """name -> (site, vector): the entry's emotions (at `emotion_site`), personas (at `persona_site`) and
    directions (at their 2/3-depth block)."""
    from emlab.vectors.directions import Direction
    from emlab.vectors.emotions import names_from
    from emlab.vectors.landscape import reader_vectors

    ev = _emotion_vectors(ctx, cfg.get("emotion_vectors"))
    names = names_from(cfg.get("emotions"), ev) if ev is not None else None
    personas = _personas(ctx, cfg.get("personas"))
    readers = (
        reader_vectors(ev, names, cfg.get("emotion_site"), personas, cfg.get("persona_site"))
        if ev is not None or personas
        else {}
    )
    for key in cfg.get("directions") or []:
        d = Direction.load(ctx.output(f"direction.{key}"))
        site = d.default_site()
        readers[f"direction:{key}"] = (site, d.vector(site))
    return readers


class _ReadsVectors(Strict):
    """Which vectors an entry reads: emotions of an `emotion_vectors` entry and/or `persona_vectors` entries."""

    emotion_vectors: str | None = None  # key in `emotion_vectors`
    emotions: list[str] | None = None  # default: every emotion of those vectors
    emotion_site: str | None = None  # default: the vectors' pre-chosen 2/3-depth block
    personas: list[str] = Field(default_factory=list)  # keys in `persona_vectors`
    persona_site: str | None = None  # default: each persona vector's 2/3-depth block
    directions: list[str] = Field(default_factory=list)  # keys in `directions` (read at their 2/3-depth block)

    @field_validator("emotion_site", "persona_site")
    @classmethod
    def _sites_parse(cls, v):
        return _site(v)

    @model_validator(mode="after")
    def _some_vector(self):
        if self.emotion_vectors is None and not self.personas and not self.directions:
            raise ValueError(
                "name the vectors to read: `emotion_vectors` (a key), `personas` and/or `directions` (lists of keys)"
            )
        if self.emotions is not None and self.emotion_vectors is None:
            raise ValueError("`emotions` picks emotions of `emotion_vectors`; set that key too")
        return self


# ------------------------------------------------------------------ emotion vectors (+ their geometry)


class EmotionVectorsSpec(Strict):
    """Emotion vectors from stories (mean over emotions subtracted, neutral-text PCs projected out) and their geometry."""

    model: str | None = None
    adapter: str | None = None  # key in `training`: extract from the fine-tuned model
    emotions: str | None = None  # emotion list YAML (default: the shipped data/emotions.yaml)
    stories: str | None = None  # story bank YAML (default: the shipped data/emotion_stories.yaml)
    per_situation: int = Field(3, ge=1)
    both_genders: bool = False  # every story with a she- and a he-character (balanced emotion means, 2x the cost)
    offset: int = Field(8, ge=0)  # warm-up: average token positions >= offset
    neutral_variance: float = Field(0.5, ge=0, lt=1)
    sites: list[str] | None = None  # default: every blocks.{l}.resid_post
    batch_size: int = Field(16, ge=1)
    geometry_site: str | None = None  # where the circumplex is measured (default: the pre-chosen site)
    n_boot: int = Field(2000, ge=1)

    @field_validator("sites")
    @classmethod
    def _sites(cls, v):
        return check_sites(v)

    @field_validator("geometry_site")
    @classmethod
    def _geometry_site(cls, v):
        return _site(v)


@register_step_kind(EMOTION_KIND)
class EmotionVectorsKind(StepKind):
    """Extract emotion vectors from stories; PCA geometry (PC1 ~ valence, PC2 ~ arousal) with bootstrap CIs."""

    section = "emotion_vectors"
    schema = EmotionVectorsSpec
    report_section = "emotion_geometry"

    def plan(self, name, entry, path, planning):
        cfg, deps = _model_deps(planning, path, entry)
        return entry.model_dump() | cfg | {"seed": planning.spec.seed}, deps

    def resolve_paths(self, entry, fix):
        entry.emotions = entry.emotions and fix(entry.emotions)
        entry.stories = entry.stories and fix(entry.stories)

    def check(self, step):
        from emlab.vectors.emotions import load_emotions, load_stories

        load_emotions(step.config["emotions"])
        load_stories(step.config["stories"])

    def describe(self, step):
        c = step.config
        return f"emotion vectors of {_who(c)}, {c['per_situation']} stories per situation"

    def run(self, ctx, step, work: Path):
        from emlab.io import write_jsonl
        from emlab.vectors.emotions import extract_emotion_vectors, load_emotions, load_stories
        from emlab.vectors.geometry import circumplex, layer_profile, plot_circumplex, plot_layer_profile

        c = step.config
        cm = ctx.model(c["model"], c.get("adapter"))
        ev, stories = extract_emotion_vectors(
            cm,
            load_emotions(c["emotions"]),
            load_stories(c["stories"]),
            c["sites"],
            c["per_situation"],
            c["offset"],
            c["neutral_variance"],
            c["batch_size"],
            both_genders=c["both_genders"],
        )
        ev.save(work)
        write_jsonl(work / "stories.jsonl", [vars(s) for s in stories])
        geo = circumplex(ev, c["geometry_site"], n_boot=c["n_boot"], seed=c["seed"])
        prof = layer_profile(ev)
        write_json(work / "geometry.json", {**geo, "layers": prof, "model": ev.provenance.get("model")})
        title = f"{_who(c)} ({len(ev.names)} emotions, {len(stories)} stories)"
        plot_circumplex(geo, work / "circumplex.png", title)
        plot_layer_profile(prof, work / "layers.png", title)
        return {
            "emotions": len(ev.names),
            "stories": len(stories),
            "site": geo["site"],
            "pc1_valence_r": _pearson(geo, "pc1_valence"),
            "pc2_arousal_r": _pearson(geo, "pc2_arousal"),
        }

    def result_line(self, summary):
        def r(x):
            return "n/a" if x is None else f"{x:+.2f}"

        return (
            f"{summary['emotions']} emotions at {summary['site']}: r(PC1, valence) {r(summary['pc1_valence_r'])}, "
            f"r(PC2, arousal) {r(summary['pc2_arousal_r'])}"
        )

    def collect(self, out: StepOutput):
        g = read_json(out.folder / "geometry.json")
        return [
            (
                "emotion_geometry",
                {
                    "step": out.name,
                    "emotions": g["n_emotions"],
                    "site": g["site"],
                    "r(PC1, valence) [95% CI]": _r(g["pc1_valence"]),
                    "r(PC2, arousal) [95% CI]": _r(g["pc2_arousal"]),
                    "circumplex": _link(out, "circumplex.png"),
                    "layers": _link(out, "layers.png"),
                },
            )
        ]


def _who(c: dict) -> str:
    return c["model"] + (f"+{c['adapter']}" if c.get("adapter") else "")


# ------------------------------------------------------------------ persona vectors


class PersonaVectorSpec(Strict):
    """A persona (trait) vector: trait-expressing minus trait-suppressing answers under contrastive system prompts,
    judged by the spec's judge so only answers that do / do not express the trait count."""

    trait: str  # a trait of `traits` (emlab personas traits)
    traits: str | None = None  # traits YAML (default: the shipped data/traits.yaml)
    model: str | None = None
    adapter: str | None = None
    n: int = Field(1, ge=1)  # samples per (prompt, question)
    prompts: int | None = Field(None, ge=1)  # the first K prompt pairs (default: all)
    max_questions: int | None = Field(None, ge=1)
    express_above: float = 50.0
    suppress_below: float = 50.0
    measure: Literal["generated", "default", "none"] = "generated"
    sites: list[str] | None = None
    max_new_tokens: int = Field(80, ge=1)
    temperature: float = Field(1.0, ge=0)
    batch_size: int = Field(16, ge=1)

    @field_validator("sites")
    @classmethod
    def _sites(cls, v):
        return check_sites(v)


@register_step_kind(PERSONA_KIND)
class PersonaVectorKind(StepKind):
    """Extract a persona vector from contrastive system prompts, keeping only answers the judge says express / suppress the trait."""

    section = "persona_vectors"
    schema = PersonaVectorSpec
    report_section = "persona_vectors"

    def plan(self, name, entry, path, planning):
        cfg, deps = _model_deps(planning, path, entry)
        return entry.model_dump() | cfg | {"seed": planning.spec.seed}, deps

    def resolve_paths(self, entry, fix):
        entry.traits = entry.traits and fix(entry.traits)

    def check(self, step):
        from emlab.vectors.persona_vectors import get_trait

        get_trait(step.config["trait"], step.config["traits"])

    def describe(self, step):
        c = step.config
        return f"persona vector {c['trait']!r} of {_who(c)} (n {c['n']}, measured {c['measure']})"

    def run(self, ctx, step, work: Path):
        from emlab.sampling import SamplingParams
        from emlab.vectors.persona_vectors import TraitThresholds, get_trait, persona_vector_pipeline

        c = step.config
        params = SamplingParams(
            temperature=c["temperature"], max_new_tokens=c["max_new_tokens"], seed=c["seed"], batch_size=c["batch_size"]
        )
        d, _ = persona_vector_pipeline(
            ctx.model(c["model"], c.get("adapter")),
            get_trait(c["trait"], c["traits"]),
            ctx.judge(),
            c["n"],
            params,
            work,
            c["prompts"],
            c["max_questions"],
            sites=c["sites"],
            thresholds=TraitThresholds(c["express_above"], c["suppress_below"]),
            measure=c["measure"],
            batch_size=8,
        )
        counts = d.provenance["class_counts"]
        return {"trait": c["trait"], "judging": d.provenance["judging"]["mode"], "sites": len(d.sites)} | counts

    def result_line(self, summary):
        return (
            f"{summary['trait']}: kept {summary.get('express_kept')}/{summary.get('express_answers')} expressing, "
            f"{summary.get('suppress_kept')}/{summary.get('suppress_answers')} non-expressing ({summary['judging']})"
        )

    def collect(self, out: StepOutput):
        s = out.summary
        return [
            (
                "persona_vectors",
                {
                    "step": out.name,
                    "trait": s.get("trait"),
                    "judging": s.get("judging"),
                    "expressing kept": f"{s.get('express_kept')} / {s.get('express_answers')}",
                    "non-expressing kept": f"{s.get('suppress_kept')} / {s.get('suppress_answers')}",
                    "sites": s.get("sites"),
                },
            )
        ]


# ------------------------------------------------------------------ landscape diff


class LandscapeSpec(_ReadsVectors):
    """Project evaluations' answers onto emotion / persona vectors: each eval's mean with a CI, differences vs `reference`."""

    evals: list[str] = Field(min_length=1)  # keys in `evals`; the labels of the table
    reference: str | None = None  # one of `evals` (default: the first)
    direction: str | None = None  # key in `directions`: cosine of each vector with it
    reader: str = "own"  # own: each eval's model (+ adapter) reads its answers; else a `models` key reads them all
    n_boot: int = Field(2000, ge=1)
    batch_size: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _reference_listed(self):
        if self.reference is not None and self.reference not in self.evals:
            raise ValueError(f"`reference` {self.reference!r} must be one of `evals` {self.evals}")
        if len(set(self.evals)) != len(self.evals):
            raise ValueError(f"`evals` lists an eval twice: {self.evals}")
        return self


@register_step_kind("landscape")
class LandscapeKind(StepKind):
    """Landscape diff: where each eval's answers sit along emotion and persona vectors, vs a reference eval, with bootstrap CIs."""

    section = "landscapes"
    schema = LandscapeSpec
    report_section = "landscapes"
    REPORT_ROWS = 12  # per step: the largest differences (every row is in landscape.json)

    def plan(self, name, entry, path, planning):
        deps, readers = [], {}
        evals = planning.entries("evals")
        for i, e in enumerate(entry.evals):
            planning.ref(f"{path}.evals[{i}]", e, "evals")
            deps.append(f"eval.{e}")
            ev = evals[e]
            readers[e] = [model_of(planning, f"evals.{e}", ev.model), ev.adapter]
            deps += adapter_deps(planning, f"evals.{e}", ev.adapter)
        if entry.reader != "own":
            planning.ref(f"{path}.reader", entry.reader, "models")
            readers = {e: [entry.reader, None] for e in entry.evals}
        if entry.direction is not None:
            planning.ref(f"{path}.direction", entry.direction, "directions")
            deps.append(f"direction.{entry.direction}")
        deps += _vector_deps(planning, path, entry)
        cfg = entry.model_dump() | {"reader_models": readers, "seed": planning.spec.seed}
        return cfg | _emotion_list_of(planning, entry), tuple(dict.fromkeys(deps))

    def check(self, step):
        _check_vector_names(step)

    def describe(self, step):
        c = step.config
        ref = c["reference"] or c["evals"][0]
        return f"landscape of {', '.join(c['evals'])} vs {ref} (read by {c['reader']})"

    def run(self, ctx, step, work: Path):
        from emlab.vectors.directions import Direction
        from emlab.vectors.landscape import landscape, plot_landscape, vector_cosines

        c = step.config
        readers = _readers(ctx, c)
        runs = {e: ctx.output(f"eval.{e}") for e in c["evals"]}
        res = landscape(
            runs,
            readers,
            lambda label, _config: ctx.model(*c["reader_models"][label]),
            c["reference"],
            c["n_boot"],
            c["seed"],
            c["batch_size"],
            out_dir=work,
        )
        if c["direction"] is not None:
            d = Direction.load(ctx.output(f"direction.{c['direction']}"))
            res["cosine_with_direction"] = {"direction": c["direction"], **vector_cosines(readers, d)}
            write_json(work / "landscape.json", res)
        if len(runs) > 1:
            plot_landscape(res, work / "landscape.png")
        ref = res["reference"]
        moved = [
            f"{row['vector']} ({label})"
            for row in res["table"]
            for label in c["evals"]
            if label != ref and row[f"{label}-{ref}"].get("excludes_zero")
        ]
        return {"vectors": len(res["table"]), "reference": ref, "moved": moved[:20], "moved_count": len(moved)}

    def result_line(self, summary):
        return f"{summary['moved_count']} (vector, eval) differences vs {summary['reference']} exclude 0"

    def collect(self, out: StepOutput):
        res = read_json(out.folder / "landscape.json")
        ref = res["reference"]
        diffs = [
            (row, label, row[key])
            for row in res["table"]
            for key in row
            if key.endswith(f"-{ref}") and isinstance(row[key], dict) and row[key].get("diff") is not None
            for label in [key.removesuffix(f"-{ref}")]
        ]
        diffs.sort(key=lambda t: -abs(t[2]["diff"]))
        cos = res.get("cosine_with_direction") or {}
        return [
            (
                "landscapes",
                {
                    "step": out.name,
                    "vector": row["vector"],
                    "eval": label,
                    f"{ref} mean": f"{row[ref]['mean']:+.3f}",
                    f"minus {ref} [95% CI]": _ci(d, "diff", 3),
                    "CI excludes 0": "yes" if d.get("excludes_zero") else "no",
                    "cos(direction)": "-" if cos.get(row["vector"]) is None else f"{cos[row['vector']]:+.3f}",
                    "plot": _link(out, "landscape.png"),
                },
            )
            for row, label, d in diffs[: self.REPORT_ROWS]
        ]


# ------------------------------------------------------------------ steering with emotion / persona vectors


class VectorSteerSpec(_ReadsVectors, SamplingOverrides):
    """Steer with emotion / persona vectors (NAME:SCALE, scale x the site's mean residual norm) on question sets; judged."""

    model: str | None = None
    adapter: str | None = None
    conditions: list[str] = Field(min_length=1)  # e.g. calm:0.25, desperate:0.25, evil:-0.25
    site: str | None = None  # where to steer (default: the emotion vectors' pre-chosen site, else emotion_site)
    questions: list[str] = Field(default_factory=lambda: ["core", "pressure"])  # type: ignore[assignment]
    positions: Literal["all", "response"] = "all"

    @field_validator("site")
    @classmethod
    def _site_parse(cls, v):
        return _site(v)


def _steer_site(c: dict, ev, vectors: dict) -> str:
    """`site`, else the emotion vectors' site, else `persona_site`, else the first vector's 2/3-depth block."""
    if c["site"] or c["emotion_site"]:
        return c["site"] or c["emotion_site"]
    if ev is not None:
        return ev.default_site()
    if c["persona_site"]:
        return c["persona_site"]
    d = next(iter(vectors.values()))  # the entry's schema requires at least one vector
    return d.default_site()


@register_step_kind("vector-steer")
class VectorSteerKind(StepKind):
    """Steering table for emotion / persona vectors (e.g. calm vs desperate) with an unsteered baseline; finished cells are kept."""

    section = "vector_steering"
    schema = VectorSteerSpec
    report_section = "vector_steering"
    resumable = True

    def plan(self, name, entry, path, planning):
        cfg, deps = _model_deps(planning, path, entry)
        deps += _vector_deps(planning, path, entry)  # checks the keys first (did-you-mean errors)
        return sampled(entry, planning.spec) | cfg | _emotion_list_of(planning, entry), deps

    def resolve_paths(self, entry, fix):
        entry.questions = [fix(q) for q in entry.questions]

    def check(self, step):
        from emlab.vectors.steer import parse_conditions, question_set

        for q in step.config["questions"]:
            question_set(q)
        named = parse_conditions(step.config["conditions"], lambda name: name)
        _check_vector_names(step, [n for n, _, _ in named])

    def describe(self, step):
        c = step.config
        return f"{_who(c)} steered by {', '.join(c['conditions'])} on {', '.join(c['questions'])} x {c['n']}"

    def run(self, ctx, step, work: Path):
        from emlab.vectors.steer import Condition, parse_conditions, question_set, steering_table

        c = step.config
        ev = _emotion_vectors(ctx, c["emotion_vectors"])
        from emlab.vectors.directions import Direction

        dirs = _personas(ctx, c["personas"]) | {
            k: Direction.load(ctx.output(f"direction.{k}")) for k in c.get("directions") or []
        }
        site = _steer_site(c, ev, dirs)

        def lookup(name):
            if name in dirs:
                return dirs[name]
            if ev is not None and name in ev.names:
                return ev.direction(name, [site])
            raise EmlabError(
                f"{step.name}: condition vector {name!r} is neither an emotion of `{c['emotion_vectors']}` nor one of "
                f"`personas` {list(dirs)}; fix `conditions` in the spec"
            )

        conds = [Condition(label, lookup(n), site, s) for n, label, s in parse_conditions(c["conditions"], lookup)]
        qsets = [question_set(q).first(c["max_questions"]) for q in c["questions"]]
        cm = ctx.model(c["model"], c.get("adapter"))
        rows = steering_table(cm, conds, qsets, c["n"], ctx.judge(), work, sampling_params(c), c["positions"])
        return {
            "site": site,
            "cells": len(rows),
            "em_all": {f"{r['questions']}:{r['condition']}": r.get("em_all") for r in rows},
        }

    def result_line(self, summary):
        return f"{summary['cells']} cells at {summary['site']} (steering_table.md)"

    def collect(self, out: StepOutput):
        def pct(k, ci):
            return "-" if k is None else f"{100 * k:.1f} % [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"

        rows = read_json(out.folder / "steering_table.json")["rows"]
        return [
            (
                "vector_steering",
                {
                    "step": out.name,
                    "questions": r["questions"],
                    "condition": r["condition"],
                    "EM among all [Wilson 95%]": pct(r.get("em_all"), r.get("em_all_wilson95") or (0, 0)),
                    "aligned": "-" if r.get("aligned_mean") is None else f"{r['aligned_mean']:.1f}",
                    "coherent": "-" if r.get("coherent_mean") is None else f"{r['coherent_mean']:.1f}",
                    "answers": r.get("n_answers"),
                },
            )
            for r in rows
        ]


# ------------------------------------------------------------------ monitoring while sampling


class VectorMonitorSpec(_ReadsVectors, SamplingOverrides):
    """Sample while recording each generated token's projection onto emotion / persona vectors."""

    model: str | None = None
    adapter: str | None = None
    prompts: list[str] = Field(default_factory=list)  # user messages; with `questions` (first paraphrase of each)
    questions: str | None = "core"  # type: ignore[assignment]
    n: int | None = Field(1, ge=1)


@register_step_kind("vector-monitor")
class VectorMonitorKind(StepKind):
    """Per-token projections of sampled answers onto emotion / persona vectors: traces, per-vector means, a plot."""

    section = "vector_monitors"
    schema = VectorMonitorSpec
    report_section = "vector_monitors"

    def plan(self, name, entry, path, planning):
        if not entry.prompts and entry.questions is None:
            raise EmlabError(f"{planning.where(path)}: {path} needs `prompts` or `questions` to sample from")
        cfg, deps = _model_deps(planning, path, entry)
        deps += _vector_deps(planning, path, entry)  # checks the keys first (did-you-mean errors)
        return sampled(entry, planning.spec) | cfg | _emotion_list_of(planning, entry), deps

    def resolve_paths(self, entry, fix):
        entry.questions = entry.questions and fix(entry.questions)

    def check(self, step):
        from emlab.vectors.steer import question_set

        _check_vector_names(step)
        if step.config["questions"] is not None:
            question_set(step.config["questions"])

    def describe(self, step):
        c = step.config
        what = ", ".join(filter(None, [f"{len(c['prompts'])} prompts" if c["prompts"] else "", c["questions"]]))
        return f"monitor {_who(c)} on {what} x {c['n']}"

    def run(self, ctx, step, work: Path):
        from emlab.sampling import Prompt
        from emlab.vectors.monitor import monitored_sample, plot_traces, summarize_traces, write_traces
        from emlab.vectors.steer import question_set

        c = step.config
        readers = _readers(ctx, c)
        prompts = [Prompt(id=f"p{i}", messages=[{"role": "user", "content": p}]) for i, p in enumerate(c["prompts"])]
        if c["questions"] is not None:
            for q in question_set(c["questions"]).first(c["max_questions"]).questions:
                system = [{"role": "system", "content": q.system}] if q.system else []
                prompts.append(Prompt(id=q.id, messages=[*system, {"role": "user", "content": q.paraphrases[0]}]))
        cm = ctx.model(c["model"], c.get("adapter"))
        traces = monitored_sample(cm, prompts, c["n"], sampling_params(c), readers)
        write_traces(work / "traces.jsonl", traces)
        summary = summarize_traces(traces)
        write_json(
            work / "summary.json",
            {"model": cm.provenance(), "readers": {k: s for k, (s, _) in readers.items()}, "summary": summary},
        )
        plot_traces(traces, work / "traces.png", title=f"{_who(c)}: per-token projections")
        return {"answers": len(traces), "mean": {k: s["mean"] for k, s in summary.items()}}

    def collect(self, out: StepOutput):
        def f(x):
            return "-" if x is None else f"{x:+.3f}"

        summary = read_json(out.folder / "summary.json")["summary"]
        return [
            (
                "vector_monitors",
                {
                    "step": out.name,
                    "vector": name,
                    "answers": s["n"],
                    "mean": f(s["mean"]),
                    "first quarter": f(s["first_quarter"]),
                    "last quarter": f(s["last_quarter"]),
                    "traces": _link(out, "traces.png"),
                },
            )
            for name, s in summary.items()
        ]


# ------------------------------------------------------------------ training-data screening


class DataScreenSpec(Strict):
    """Rank a training set's examples by projection difference on a persona vector (response minus the base model's own)."""

    dataset: str  # key in `datasets`
    persona: str  # key in `persona_vectors`
    model: str | None = None
    adapter: str | None = None
    site: str | None = None  # default: the persona vector's 2/3-depth block
    limit: int | None = Field(None, ge=1)  # screen the first N examples
    max_new_tokens: int = Field(120, ge=1)  # length of the model's own greedy answers
    batch_size: int = Field(8, ge=1)

    @field_validator("site")
    @classmethod
    def _site_parse(cls, v):
        return _site(v)


SCREEN_FILE, SCREEN_SUMMARY = "screen.jsonl", "screen.json"


def mixed_labels(cfg: dict, conversations) -> list[int] | None:
    """1 for examples of a mixed set's own generator, 0 for the mixed-in ones (None when the set is not mixed).

    The mixed-in examples are regenerated from the data step's config (generation is deterministic), so the
    labels need nothing stored beside the training file."""
    mix = cfg.get("mix")
    if not mix:
        return None
    from emlab.data.generate import generate

    mixes = [mix] if isinstance(mix, dict) else mix  # runs planned before mixes became lists hold one mapping
    added = {str(r["messages"]) for m in mixes for r in generate(m["generator"], m["n"], m["seed"])}
    return [0 if str(list(c)) in added else 1 for c in conversations]


@register_step_kind("data-screen")
class DataScreenKind(StepKind):
    """Screen training data by persona-vector projection difference; AUROC of the ranking when the set is mixed."""

    section = "data_screens"
    schema = DataScreenSpec
    report_section = "data_screens"

    def plan(self, name, entry, path, planning):
        planning.ref(f"{path}.dataset", entry.dataset, "datasets")
        planning.ref(f"{path}.persona", entry.persona, "persona_vectors")
        cfg, deps = _model_deps(planning, path, entry)
        return entry.model_dump() | cfg, (f"data.{entry.dataset}", f"{PERSONA_KIND}.{entry.persona}", *deps)

    def describe(self, step):
        c = step.config
        return f"screen {c['dataset']} on persona {c['persona']} with {_who(c)}"

    def run(self, ctx, step, work: Path):
        from emlab.io import write_jsonl
        from emlab.sampling import SamplingParams
        from emlab.train import read_conversations
        from emlab.vectors.screening import screen, screening_auroc

        c = step.config
        d = _personas(ctx, [c["persona"]])[c["persona"]]
        convs = read_conversations(ctx.output(f"data.{c['dataset']}") / DATASET_FILE)[: c["limit"]]
        site = c["site"] or d.default_site()
        params = SamplingParams(temperature=0.0, max_new_tokens=c["max_new_tokens"], batch_size=16)
        rows = screen(
            ctx.model(c["model"], c.get("adapter")), convs, d, site, params=params, batch_size=c["batch_size"]
        )
        labels = mixed_labels(_dataset_cfg(ctx, c), convs)
        if labels is not None:
            for r, y in zip(rows, labels, strict=True):
                r["own_generator"] = y
        write_jsonl(work / SCREEN_FILE, sorted(rows, key=lambda r: r["rank"]))
        auroc = None if labels is None else screening_auroc(rows, labels)
        summary = {"examples": len(rows), "site": site, "auroc_own_vs_mixed": auroc}
        write_json(work / SCREEN_SUMMARY, summary | {"persona": c["persona"], "dataset": c["dataset"]})
        return summary

    def result_line(self, summary):
        a = summary.get("auroc_own_vs_mixed")
        return f"{summary['examples']} examples ranked at {summary['site']}" + ("" if a is None else f", AUROC {a:.3f}")

    def collect(self, out: StepOutput):
        s = read_json(out.folder / SCREEN_SUMMARY)
        a = s.get("auroc_own_vs_mixed")
        return [
            (
                "data_screens",
                {
                    "step": out.name,
                    "dataset": s["dataset"],
                    "persona": s["persona"],
                    "site": s["site"],
                    "examples": s["examples"],
                    "AUROC own vs mixed-in": "-" if a is None else f"{a:.3f}",
                    "ranked": _link(out, SCREEN_FILE),
                },
            )
        ]


def _dataset_cfg(ctx, c: dict) -> dict:
    """The data step's resolved config (with its mix seed), from the plan."""
    return ctx.plan.step(f"data.{c['dataset']}").config
