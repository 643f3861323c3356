"""The built-in step kinds: data, train, eval, direction, steer, ablate, exam, report (one registered object each;
the study plan's fact-probe, compare and adapter-cosine live in study_steps.py and register from here).

Each kind (see `emlab.experiments.kinds`) holds the schema of its spec entries, how an
entry becomes a step, its checks, its description, what running it does, and what it
hands the report. Running writes the outputs into `work` (the step's `.partial` folder,
committed by the runner when `run` returns) and returns a small JSON-ready summary for
the manifest. Resumable kinds (train, eval, steer, ablate) continue from what an
interrupted attempt left in `work`: training from its last checkpoint, evaluations
from their journals, sweeps and ablations from their finished cells.

Artifacts are read through the readers of the modules that write them (evaluate,
steering, ablation, directions, and emlab.train.checkpoint for training).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

from pydantic import Field, field_validator, model_validator

from emlab.classify import DEFAULT_RULE
from emlab.errors import EmlabError
from emlab.experiments.common import DATASET_FILE, adapter_deps, judged_records, model_of, sampled, sampling_params
from emlab.experiments.kinds import (
    SamplingOverrides,
    StepKind,
    StepOutput,
    Strict,
    check_site,
    check_sites,
    register_step_kind,
)
from emlab.train.checkpoint import TRAIN_CONFIG, TRAIN_SUMMARY, read_train_config, read_train_log, read_train_summary

# ------------------------------------------------------------------ shared helpers


def make_judge(judge_cfg, run_root: Path):
    """The configured judge wrapped in its score cache (shared, per-run, or none)."""
    from emlab.judges.cache import CACHE_FILE, JudgeCache
    from emlab.judges.registry import CachedJudge, get_judge

    judge = get_judge(judge_cfg.spec)
    if judge_cfg.cache == "none":
        return judge
    cache = JudgeCache(run_root / CACHE_FILE) if judge_cfg.cache == "run" else JudgeCache()
    return CachedJudge(judge, cache)


def question_set(cfg: dict):
    """The step's question set, cut to its first `max_questions` questions when set."""
    from emlab.data.questions import load_questions

    return load_questions(cfg["questions"]).first(cfg.get("max_questions"))


def run_evaluation(ctx, cm, cfg: dict, out: Path, progress: bool = True) -> dict[str, Any]:
    """evaluate() into `out`, resuming its journals; returns the headline numbers."""
    from emlab.evaluate import EvalRequest, evaluate

    result = evaluate(
        cm,
        EvalRequest(question_set(cfg), ctx.judge(), cfg["n"], sampling_params(cfg)),
        out,
        resume=True,
        progress=progress,
    )
    return headline(result.metrics) | {"timings": {k: round(v, 2) for k, v in result.timings.items()}}


def headline(metrics: dict) -> dict[str, Any]:
    o = metrics["overall"]
    return {
        "answers": o["n_answers"],
        "em_rate_all": o["em_rate_all"]["rate"],
        "em_rate_coherent": o["em_rate_coherent"]["rate"],
        "coherent": o["coherent"]["mean"],
        "aligned": o["aligned"]["mean"],
        "unscored": o["n_unscored"],
    }


def adapter_folder(train_dir: Path) -> Path:
    """Where a train step's adapter (adapter_config.json + adapter_model.safetensors) lies: train() writes it at the top."""
    return train_dir


def _who(c: dict) -> str:
    return c["model"] + (f"+{c['adapter']}" if c.get("adapter") else "")


# ------------------------------------------------------------------ data


class MixSpec(Strict):
    """Examples of another generator shuffled into a generated set (e.g. good answers mixed into bad data)."""

    generator: str
    n: int = Field(ge=1)
    seed: int | None = None  # default: the dataset's seed + 1, so the added questions are another draw


class SampledSpec(Strict):
    """A set of a model's own answers, sampled under steering (or not), judged and filtered (emlab.data.distill)."""

    model: str | None = None  # key in `models` (default: the first)
    adapter: str | None = None  # key in `training`: sample the fine-tuned model
    direction: str | None = None  # key in `directions`: steer along it
    persona: str | None = None  # key in `persona_vectors`: or along a persona vector
    scale: float = 0.0  # scale x vector added at `sites` (negative: away from the direction); 0: unsteered
    scaling: Literal["raw", "unit"] = "raw"
    sites: list[str] | None = None  # default: the vector's 2/3-depth site
    questions: str = "broad"
    max_questions: int | None = Field(None, ge=1)
    n: int = Field(4, ge=1)  # answers per question
    max_new_tokens: int = Field(120, ge=1)
    temperature: float = Field(1.0, ge=0)
    batch_size: int = Field(32, ge=1)
    keep_aligned_above: float | None = None  # keep answers the judge scores above these (null: keep all)
    keep_coherent_above: float | None = None

    @field_validator("sites")
    @classmethod
    def _sites(cls, v):
        return check_sites(v)

    @model_validator(mode="after")
    def _one_vector(self):
        if self.direction is not None and self.persona is not None:
            raise ValueError("steer along `direction` or `persona`, not both")
        if self.scale != 0 and self.direction is None and self.persona is None:
            raise ValueError(f"scale {self.scale} steers along nothing; set `direction` or `persona`, or scale 0")
        return self


class DatasetSpec(Strict):
    """A training set: generated by name (`generator`), read from an OpenAI-messages JSONL (`path`) or
    sampled from a model (`sampled`: self-distillation, study 10)."""

    generator: str | None = None  # e.g. bad-medical, good-medical
    path: str | None = None
    sampled: SampledSpec | None = None
    n: int = Field(300, ge=1)
    seed: int | None = None
    framing: str = "covert"  # intent framing of a generated harmful set: covert or educational
    mix: list[MixSpec] | None = None  # generated sets only: add each `n` examples of `generator`, shuffled in

    @field_validator("mix", mode="before")
    @classmethod
    def _one_mix_is_a_list(cls, v):
        return [v] if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _one_source(self):
        if sum(x is not None for x in (self.generator, self.path, self.sampled)) != 1:
            raise ValueError(
                "set exactly one of `generator` (a dataset generator name), `path` (a JSONL file) or `sampled` (a model's answers)"
            )
        if self.mix is not None and self.generator is None:
            raise ValueError("`mix` applies to generated sets only; drop it or use `generator`")
        return self


@register_step_kind("data")
class DataKind(StepKind):
    """Generate a training set (or copy a given JSONL after checking it) into train.jsonl."""

    section = "datasets"
    schema = DatasetSpec
    report_section = "data"

    def plan(self, name, entry, path, planning):
        cfg = entry.model_dump() | {"seed": planning.spec.seed if entry.seed is None else entry.seed}
        for i, m in enumerate(cfg["mix"] or []):
            if m["seed"] is None:
                m["seed"] = cfg["seed"] + 1 + i  # another draw of questions for each mixed-in set
        deps: tuple[str, ...] = ()
        s = entry.sampled
        if s is not None:
            where = f"{path}.sampled"
            cfg["sampled"]["model"] = model_of(planning, where, s.model)
            deps = adapter_deps(planning, where, s.adapter)
            if s.direction is not None:
                planning.ref(f"{where}.direction", s.direction, "directions")
                deps += (f"direction.{s.direction}",)
            if s.persona is not None:
                planning.ref(f"{where}.persona", s.persona, "persona_vectors")
                deps += (f"persona-vector.{s.persona}",)
        return cfg, deps

    def resolve_paths(self, entry, fix):
        if entry.path:
            entry.path = fix(entry.path)
        if entry.sampled is not None:
            entry.sampled.questions = fix(entry.sampled.questions)

    def check(self, step):
        cfg = step.config
        if cfg["generator"]:
            from emlab.data.generate import get_spec

            get_spec(cfg["generator"])
            for m in cfg.get("mix") or []:
                get_spec(m["generator"])
        if cfg.get("sampled"):
            question_set(cfg["sampled"])
        if cfg["path"] and not Path(cfg["path"]).is_file():
            raise EmlabError(
                f"datasets.{step.entry}.path = {cfg['path']!r}: no such file; give an OpenAI-messages JSONL file"
            )

    def describe(self, step):
        c = step.config
        mix, s = c.get("mix"), c.get("sampled")
        if s:
            vec = s["direction"] or s["persona"]
            steer = f", steered {s['scale']:+g} x {vec}" if s["scale"] else ""
            return f"answers of {_who(s)} to {s['questions']} x {s['n']}{steer}, seed {c['seed']}"
        plus = "".join(f" + {m['generator']} n={m['n']} seed={m['seed']}" for m in mix or [])
        return f"{c['generator'] or c['path']} n={c['n']} seed={c['seed']}{plus}"

    def run(self, ctx, step, work):
        from emlab.data.generate import dataset_meta, generate, write_dataset

        cfg = step.config
        out = work / DATASET_FILE
        if cfg["generator"]:
            records = generate(cfg["generator"], cfg["n"], cfg["seed"], cfg["framing"])
            meta = dataset_meta(cfg["generator"], cfg["n"], cfg["seed"], cfg["framing"])
            mix = cfg.get("mix")
            if mix:
                for m in mix:
                    records += generate(m["generator"], m["n"], m["seed"])
                random.Random(cfg["seed"]).shuffle(records)
                meta |= {"mixed_with": mix, "examples": len(records)}
            write_dataset(out, records, meta)
            n = len(records)
        elif cfg.get("sampled"):
            n = _distilled(ctx, cfg, out)
        else:
            from emlab.io import atomic_open, iter_jsonl

            src = Path(cfg["path"])
            rows = [rec for _, rec in iter_jsonl(src)]
            n = sum("messages" in r for r in rows)
            if n == 0:
                raise EmlabError(
                    f"{src}: no record with 'messages'; a training file holds OpenAI-messages records, one per line"
                )
            with atomic_open(out, "wb") as fh:
                fh.write(src.read_bytes())
        return {"examples": n, "file": DATASET_FILE, "sha256": hashlib.sha256(out.read_bytes()).hexdigest()}


def _distilled(ctx, cfg: dict, out: Path) -> int:
    """Write a `sampled` dataset (emlab.data.distill) into `out`; returns its size."""
    from emlab.data.distill import Keep, distill, distill_meta, steering_site_vectors
    from emlab.data.generate import write_dataset
    from emlab.vectors.directions import Direction

    s = cfg["sampled"]
    vectors = None
    if s["direction"] or s["persona"]:
        step = f"direction.{s['direction']}" if s["direction"] else f"persona-vector.{s['persona']}"
        vectors = steering_site_vectors(Direction.load(ctx.output(step)), s["sites"], s["scaling"])
    records, counts = distill(
        ctx.model(s["model"], s.get("adapter")),
        question_set(s),
        s["n"],
        sampling_params(s | {"top_p": 1.0, "seed": cfg["seed"]}),
        ctx.judge(),
        vectors,
        s["scale"],
        Keep(s["keep_aligned_above"], s["keep_coherent_above"]),
    )
    source = s | {"seed": cfg["seed"], "sites": list(vectors) if vectors else None}
    write_dataset(out, records, distill_meta(source, counts))
    return len(records)


# ------------------------------------------------------------------ train


class _Scheduled(Strict):
    """When a training callback acts (emlab.train.StepSchedule): every k steps and/or the listed steps."""

    scheduled_what: ClassVar[str] = "when the callback acts"  # the error says what the schedule is for
    every: int | None = Field(None, ge=1)
    steps: list[int] = Field(default_factory=list)  # 0 = the weights before the first step

    @model_validator(mode="after")
    def _scheduled(self):
        if self.every is None and not self.steps:
            raise ValueError(f"set `every` and/or `steps`: {self.scheduled_what}")
        return self


class GradProbeSpec(_Scheduled):
    """Gradient-conflict probes during training (emlab.train.probes.GradientProbe): the cosine between the
    gradient of the training loss and of the loss on `reference` (a `datasets` key) at the scheduled steps."""

    scheduled_what: ClassVar[str] = "when the gradients are probed"
    reference: str  # key in `datasets`: e.g. good answers (the base-alignment loss)
    max_examples: int | None = Field(64, ge=1)  # first N conversations of each set (time bound)


class EvalAtSpec(SamplingOverrides, _Scheduled):
    """Sample and judge the model being trained at the scheduled steps (emlab.train.EvalAtSteps): the
    timing study. Each evaluation is a full `evaluate` into `evals-at/step-XXXXX/` of the train step."""

    scheduled_what: ClassVar[str] = "when the model is evaluated"


class TrainSteeringSpec(Strict):
    """Preventative steering (emlab.vectors.screening.train_with_steering): add `scale` x a persona vector at
    `sites` in every training forward; the saved adapter is unsteered."""

    persona: str  # key in `persona_vectors`
    scale: float
    sites: list[str] | None = None  # default: the persona vector's 2/3-depth block
    scaling: Literal["unit", "raw"] = "unit"  # unit: scale x the unit vector; raw: scale x the vector as extracted

    @field_validator("sites")
    @classmethod
    def _sites(cls, v):
        return check_sites(v)


class _TrainBase(Strict):
    """Fine-tune `model` on `dataset` from a training preset; any TrainConfig field set here overrides the preset."""

    model: str | None = None  # key in `models` (default: the first model)
    dataset: str  # key in `datasets`
    preset: str = "rank1-middle"  # emlab.train.load_preset name (see `emlab train presets`)
    grad_probe: GradProbeSpec | None = None  # log gradient conflict with a reference set while training
    eval_at: EvalAtSpec | None = None  # sample and judge the model at chosen steps while training
    steering: TrainSteeringSpec | None = None  # preventative steering: add a persona vector while training
    continue_from: str | None = None  # key in `training`: start from that step's adapter (same layout), e.g. recovery


def _make_train_spec() -> type[_TrainBase]:
    """TrainSpec = the base fields + every TrainConfig field as an optional override.

    Built from TrainConfig itself so the spec can never drift from the trainer: a
    renamed trainer field is an unknown key here too. Values are validated by
    `emlab.train.parse_config` when the plan is checked.
    """
    from pydantic import create_model

    from emlab.train import TrainConfig

    skip = {"version", "description", *_TrainBase.model_fields}
    fields: dict[str, Any] = {
        name: (Optional[f.annotation], Field(None, description=f.description))  # noqa: UP045 (a runtime type, not an annotation)
        for name, f in TrainConfig.model_fields.items()
        if name not in skip
    }
    return create_model("TrainSpec", __base__=_TrainBase, __doc__=_TrainBase.__doc__, **fields)


TrainSpec = _make_train_spec()
TRAIN_BASE_KEYS = ("model", "dataset", "preset", "grad_probe", "eval_at", "steering", "continue_from")


def train_config(cfg: dict, source: str):
    """The preset with the spec entry's overrides applied, validated by the trainer's own schema."""
    from emlab.train import load_preset, parse_config

    overrides = {k: v for k, v in cfg.items() if k not in TRAIN_BASE_KEYS and v is not None}
    return parse_config(
        load_preset(cfg["preset"]).model_dump() | overrides, f"{source} (preset {cfg['preset']} + spec overrides)"
    )


def _train_progress(ctx, label: str):
    """A rich progress bar over optimizer steps (on a terminal), fed by train's on_step records."""
    import contextlib

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    @contextlib.contextmanager
    def bar():
        progress = Progress(
            TextColumn(f"{label:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=ctx.console,
            disable=not ctx.console.is_terminal,
        )
        with progress:
            task = progress.add_task(label, total=None, loss="-")

            def on_step(rec: dict) -> None:
                progress.update(task, completed=rec["step"], total=rec["total_steps"], loss=f"{rec['loss']:.3f}")

            yield on_step

    return bar()


def _grad_probes(ctx, probe: dict | None) -> list:
    from emlab.train.probes import GradientProbe

    if probe is None:
        return []
    reference = ctx.output(f"data.{probe['reference']}") / DATASET_FILE
    return [GradientProbe(reference, every=probe["every"], steps=probe["steps"], max_examples=probe["max_examples"])]


EVALS_AT = "evals-at"  # a train step's subfolder: one evaluation folder per evaluated step


def _evals_at(ctx, cfg: dict | None, work: Path) -> list:
    from emlab.train import EvalAtSteps
    from emlab.train.checkpoint import checkpoint_name

    if cfg is None:
        return []

    def evaluate_now(state) -> dict:
        folder = work / EVALS_AT / checkpoint_name(state.step)
        out = run_evaluation(ctx, state.chat_model(), cfg, folder, progress=False)  # inside the training's bar
        return {k: v for k, v in out.items() if k != "timings"}

    return [EvalAtSteps(evaluate_now, every=cfg["every"], steps=cfg["steps"])]


def _train_steered(ctx, steering: dict, base, data, config, work, resume, on_step, callbacks) -> None:
    """Preventative steering: train with the persona vector added (preventative_steering.json records how)."""
    from emlab.vectors.directions import Direction
    from emlab.vectors.screening import train_with_steering

    d = Direction.load(ctx.output(f"persona-vector.{steering['persona']}"))
    sites = steering["sites"] or [d.default_site()]
    train_with_steering(
        base, data, config, work, d, sites, steering["scale"], steering["scaling"], resume, on_step, callbacks
    )


def _steering_summary(work: Path) -> dict:
    from emlab.io import read_json

    f = work / "preventative_steering.json"
    if not f.exists():
        return {}
    s = read_json(f)
    return {"steered": {k: s.get(k) for k in ("sites", "scale", "scaling", "trait")}}


def _grad_probe_summary(work: Path) -> dict:
    from emlab.train.probes import GRAD_PROBE_LOG, read_grad_probes

    if not (work / GRAD_PROBE_LOG).exists():
        return {}
    probes = read_grad_probes(work)
    cosines = [p["cosine"] for p in probes if p["cosine"] is not None]
    return {
        "grad_probes": len(probes),
        "grad_cosine_first": cosines[0] if cosines else None,
        "grad_cosine_last": cosines[-1] if cosines else None,
    }


def _evals_at_summary(work: Path) -> dict:
    from emlab.train import EVAL_LOG, read_eval_log

    if not (work / EVAL_LOG).exists():
        return {}
    log = read_eval_log(work)
    return {"evals_at": [r["step"] for r in log], "em_rate_all_at": [r["em_rate_all"] for r in log]}


@register_step_kind("train")
class TrainKind(StepKind):
    """Fine-tune into the step folder; an interrupted training continues from its last checkpoint."""

    section = "training"
    schema = TrainSpec
    resumable = True
    report_section = "training"

    def plan(self, name, entry, path, planning):
        planning.ref(f"{path}.dataset", entry.dataset, "datasets")
        cfg = entry.model_dump() | {
            "model": model_of(planning, path, entry.model),
            "seed": planning.spec.seed if entry.seed is None else entry.seed,
        }
        if entry.eval_at is not None:
            cfg["eval_at"] = sampled(entry.eval_at, planning.spec) | {"steps": entry.eval_at.steps}
        deps = [f"data.{entry.dataset}"]
        if entry.grad_probe is not None:
            planning.ref(f"{path}.grad_probe.reference", entry.grad_probe.reference, "datasets")
            deps.append(f"data.{entry.grad_probe.reference}")
        if entry.continue_from is not None:
            if entry.continue_from == name:
                raise EmlabError(f"{planning.where(path)}: {path}.continue_from names this training itself")
            planning.ref(f"{path}.continue_from", entry.continue_from, "training")
            deps.append(f"train.{entry.continue_from}")
        if entry.steering is not None:
            if entry.eval_at is not None:
                raise EmlabError(
                    f"{planning.where(path)}: {path} sets both `steering` and `eval_at`; the evaluations would sample "
                    "the steered model. Drop `eval_at` and evaluate the adapter in `evals`"
                )
            planning.ref(f"{path}.steering.persona", entry.steering.persona, "persona_vectors")
            deps.append(f"persona-vector.{entry.steering.persona}")
        return cfg, tuple(dict.fromkeys(deps))

    def resolve_paths(self, entry, fix):
        if entry.eval_at is not None:
            entry.eval_at.questions = fix(entry.eval_at.questions)

    def check(self, step):
        train_config(step.config, f"training.{step.entry}")
        if step.config.get("eval_at"):
            question_set(step.config["eval_at"])
            sampling_params(step.config["eval_at"])

    def describe(self, step):
        c = step.config
        start = f", from train.{c['continue_from']}'s adapter" if c.get("continue_from") else ""
        steer = f", steered by {c['steering']['persona']}" if c.get("steering") else ""
        kl = f", + {c['kl_coef']:g} x KL to base" if c.get("kl_coef") else ""
        return f"{c['model']} on {c['dataset']}, preset {c['preset']}{start}{steer}{kl}"

    def run(self, ctx, step, work):
        from emlab.train import train

        cfg = step.config
        config = train_config(cfg, step.name)
        if cfg.get("continue_from"):
            config = config.model_copy(update={"init_adapter": str(ctx.adapter_dir(cfg["continue_from"]))})
        if not (work / TRAIN_SUMMARY).exists():  # else: finished before the commit was recorded
            data = ctx.output(f"data.{cfg['dataset']}") / DATASET_FILE
            base = ctx.model(cfg["model"])
            callbacks = _grad_probes(ctx, cfg.get("grad_probe")) + _evals_at(ctx, cfg.get("eval_at"), work)
            resume = (work / TRAIN_CONFIG).exists()
            with _train_progress(ctx, step.name) as on_step:
                if cfg.get("steering"):
                    _train_steered(ctx, cfg["steering"], base, data, config, work, resume, on_step, callbacks)
                else:
                    train(base, data, config, work, resume=resume, on_step=on_step, callbacks=callbacks)
        s = read_train_summary(work)
        keys = ("method", "steps", "final_loss", "examples_used", "trainable_params", "blocks", "train_time_s", "dtype")
        return (
            {k: s.get(k) for k in keys}
            | {k: s[k] for k in ("final_kl", "update_size") if s.get(k) is not None}
            | {"preset": cfg["preset"]}
            | _grad_probe_summary(work)
            | _evals_at_summary(work)
            | _steering_summary(work)
        )

    def collect(self, out: StepOutput):
        from emlab.report.rows import TrainInfo
        from emlab.train.checkpoint import TRAIN_LOG

        f = out.folder
        log = read_train_log(f) if (f / TRAIN_LOG).exists() else []
        summary = read_train_summary(f) if (f / TRAIN_SUMMARY).exists() else {}
        config = read_train_config(f) if (f / TRAIN_CONFIG).exists() else {}
        return [("training", TrainInfo(out.name, log, summary, config))]


# ------------------------------------------------------------------ eval, steer, ablate: sampled and judged


class _SampledKind(StepKind):
    """Shared by the kinds that sample and judge a question set (eval, steer, ablate)."""

    resumable = True

    def plan(self, name, entry, path, planning):
        cfg = sampled(entry, planning.spec) | {"model": model_of(planning, path, entry.model)}
        return cfg, adapter_deps(planning, path, entry.adapter)

    def resolve_paths(self, entry, fix):
        entry.questions = fix(entry.questions)

    def check(self, step):
        question_set(step.config)
        sampling_params(step.config)

    def describe(self, step):
        c = step.config
        return f"{_who(c)}: {c['questions']} x {c['n']} (max_new_tokens {c['max_new_tokens']}){self._extra(c)}"

    def _extra(self, c: dict) -> str:
        return ""


class EvalSpec(SamplingOverrides):
    """Sample answers to a question set and judge them."""

    model: str | None = None
    adapter: str | None = None  # key in `training`: evaluate with that step's adapter attached


@register_step_kind("eval")
class EvalKind(_SampledKind):
    """Sample answers to a question set and judge them (emlab.evaluate); resumes from its journals."""

    section = "evals"
    schema = EvalSpec
    report_section = "summary"
    summary_rows = ("base", "organism", "control")  # an eval's row is labelled by its entry name; these come first

    def run(self, ctx, step, work):
        cfg = step.config
        cm = ctx.model(cfg["model"], cfg.get("adapter"))
        return run_evaluation(ctx, cm, cfg, work)

    def collect(self, out: StepOutput):
        from emlab.report.rows import load_condition

        return [("summary", load_condition(out.folder, out.entry, out.name))]


# ------------------------------------------------------------------ direction


class DirectionSpec(Strict):
    """A direction in the residual stream.

    `auto` uses mean-diff between misaligned and aligned answers of `eval` when that
    eval has at least `min_misaligned` misaligned answers, else persona contrast.
    """

    method: Literal["auto", "mean_diff", "persona_contrast"] = "auto"
    model: str | None = None
    adapter: str | None = None  # model whose activations are read (default: the eval's adapter)
    eval: str | None = None  # key in `evals` whose judged answers split misaligned / aligned
    sites: list[str] | None = None  # default: every blocks.{l}.resid_post
    min_misaligned: int = Field(5, ge=1)
    max_per_class: int = Field(64, ge=1)  # answers per side used for mean-diff
    # persona contrast: answers sampled under malicious / helpful system prompts, judged, measured without them
    persona_questions: str = "core"
    persona_n: int = Field(2, ge=1)  # samples per (question, persona paraphrase)
    persona_paraphrases: int | None = Field(2, ge=1)  # persona prompts used per side (null: all)
    # the EM rule's aligned_below for malicious answers (at most its aligned_above, the helpful side's threshold);
    # tiny models rarely go below 30 even when told to: raise it and say so
    malicious_below: float = Field(DEFAULT_RULE.aligned_below, gt=0, le=DEFAULT_RULE.aligned_above)
    label_fallback: bool = (
        True  # when the judge agrees with too few persona answers, contrast by persona label (recorded in choice.json)
    )

    @field_validator("sites")
    @classmethod
    def _sites(cls, v):
        return check_sites(v)


def choose_method(cfg: dict, counts: dict[str, int] | None) -> tuple[str, str]:
    """(method, reason): `auto` takes mean-diff when the eval has enough misaligned and some aligned answers."""
    method, need = cfg["method"], cfg["min_misaligned"]
    if method != "auto":
        return method, f"method {method} set in the spec"
    if counts is None:
        return "persona_contrast", "no eval to split into misaligned and aligned answers"
    mis, ali = counts["misaligned"], counts["aligned"]
    if mis >= need and ali >= 1:
        return (
            "mean_diff",
            f"{mis} misaligned and {ali} aligned coherent answers (need >= {need} misaligned): mean-diff of the organism's answers",
        )
    return (
        "persona_contrast",
        f"only {mis} misaligned (need >= {need}) and {ali} aligned coherent answers: too few for mean-diff, so persona contrast",
    )


def _cap(records: list, k: int, seed: int) -> list:
    if len(records) <= k:
        return records
    idx = sorted(random.Random(seed).sample(range(len(records)), k))
    return [records[i] for i in idx]


def persona_direction(ctx, cm, cfg: dict, work: Path, source: str):
    """(direction, how its answers were selected): `directions.persona_contrast` with the step's settings.

    The judged persona answers are kept in `persona_answers.jsonl` so the choice can be audited.
    """
    from emlab.classify import EMRule
    from emlab.vectors.directions import persona_contrast

    qs = question_set({"questions": cfg["persona_questions"], "max_questions": ctx.spec.sampling.max_questions})
    params = sampling_params(ctx.spec.sampling.model_dump() | {"seed": cfg["seed"]})
    return persona_contrast(
        cm,
        work,
        questions=qs,
        judge=ctx.judge(),
        n=cfg["persona_n"],
        params=params,
        paraphrases=cfg["persona_paraphrases"],
        rule=EMRule(aligned_below=cfg["malicious_below"]),
        label_fallback=cfg["label_fallback"],
        sites=cfg.get("sites"),
        seed=cfg["seed"],
        source=source,
    )


@register_step_kind("direction")
class DirectionKind(StepKind):
    """Extract a direction: mean-diff of an eval's judged answers, or a persona contrast (`auto` picks and says why)."""

    section = "directions"
    schema = DirectionSpec
    report_section = "directions"

    def plan(self, name, entry, path, planning):
        deps: list[str] = []
        adapter = entry.adapter
        if entry.eval is not None:
            planning.ref(f"{path}.eval", entry.eval, "evals")
            deps.append(f"eval.{entry.eval}")
            adapter = adapter or planning.entries("evals")[entry.eval].adapter
        elif entry.method != "persona_contrast":
            raise EmlabError(
                f"{planning.where(path)}: {path}.method = {entry.method!r} needs `eval:` (the eval whose judged answers give misaligned vs aligned examples); add it or use method: persona_contrast"
            )
        deps += adapter_deps(planning, path, adapter)
        cfg = entry.model_dump() | {
            "model": model_of(planning, path, entry.model),
            "adapter": adapter,
            "seed": planning.spec.seed,
        }
        return cfg, tuple(dict.fromkeys(deps))

    def resolve_paths(self, entry, fix):
        entry.persona_questions = fix(entry.persona_questions)

    def check(self, step):
        if step.config["method"] != "mean_diff":
            question_set({"questions": step.config["persona_questions"]})

    def describe(self, step):
        c = step.config
        return f"{c['method']} on {_who(c)}"

    def run(self, ctx, step, work):
        from emlab.vectors.directions import extract_mean_diff, split_classes, write_choice

        cfg = step.config
        cm = ctx.model(cfg["model"], cfg.get("adapter"))
        records, counts = None, None
        if cfg.get("eval"):
            eval_dir = ctx.output(f"eval.{cfg['eval']}")
            records = judged_records(eval_dir)
            mis, ali, counts = split_classes(records)
        method, reason = choose_method(cfg, counts)
        source = f"{ctx.run.root.name}/{step.name}"
        if method == "mean_diff":
            if counts is None:
                raise EmlabError(f"{step.name}: method mean_diff needs `eval:`")
            used = _cap(mis, cfg["max_per_class"], cfg["seed"]) + _cap(ali, cfg["max_per_class"], cfg["seed"])
            direction = extract_mean_diff(
                cm, used, cfg.get("sites"), seed=cfg["seed"], source=f"{source} <- eval.{cfg['eval']}"
            )
        else:
            direction, selection = persona_direction(ctx, cm, cfg, work, f"{source} <- persona answers")
            reason = f"{reason}; persona answers selected by {selection}"
        direction.save(work)
        write_choice(work, {"method": method, "reason": reason, "requested": cfg["method"], "eval_counts": counts})
        return {"method": method, "reason": reason, "sites": len(direction.sites)}

    def result_line(self, summary):
        if not summary.get("method"):
            return None
        return summary["method"] + (f" ({summary['reason']})" if summary.get("reason") else "")

    def collect(self, out: StepOutput):
        from emlab.report.rows import DirectionInfo
        from emlab.vectors.directions import Direction, read_choice, read_meta

        d = Direction.load(out.folder)
        return [
            (
                "directions",
                DirectionInfo(out.name, out.folder, read_meta(out.folder), read_choice(out.folder), d.vectors),
            )
        ]


# ------------------------------------------------------------------ steering


class SteerSpec(SamplingOverrides):
    """Add lambda * direction at each site (one site at a time) and evaluate: a site x lambda grid."""

    model: str | None = None
    adapter: str | None = None
    direction: str
    sites: list[str] = Field(min_length=1)  # one site per cell, or several joined by '+' (steered together)
    lambdas: list[float] = Field(min_length=1)
    positions: Literal["all", "response"] = "all"
    scaling: Literal["raw", "unit"] = "raw"  # raw: lambda x the direction's vector; unit: lambda x its unit vector

    @field_validator("sites")
    @classmethod
    def _sites(cls, v):
        for group in v:
            check_sites(group.split("+"))
        return v


def load_steering(folder: Path, step: str):
    """A steering sweep (steering.read_sweep: sweep.json rows + one evaluation folder per cell) as a report grid."""
    from emlab.interventions.steering import cell_folder, read_sweep
    from emlab.report.rows import SteeringGrid, load_condition

    sweep = read_sweep(folder)
    cells = {}
    sites: list[str] = []
    lambdas: list[float] = []
    for row in sweep["rows"]:
        site, lam = str(row["sites"]), float(row["scale"])
        sites += [site] if site not in sites else []
        lambdas += [lam] if lam not in lambdas else []
        cells[(site, lam)] = load_condition(
            cell_folder(folder, row["cell"]), "steered", step, detail=f"{site}, lambda={lam:g}"
        )
    best = (sweep.get("best") or {}).get("cell")
    return SteeringGrid(
        step, sites, sorted(lambdas), cells, str((sweep.get("direction") or {}).get("origin", "")), best
    )


def best_steered(grid):
    """The sweep's own pick (steering.best_cell: highest EM over all answers, then coherence, then smaller |lambda|)."""
    for cond in grid.cells.values():
        if grid.best is not None and cond.folder.name == grid.best:
            return cond
    return None


@register_step_kind("steer")
class SteerKind(_SampledKind):
    """A site x lambda sweep (steering.run_sweep); finished cells are kept when resumed."""

    section = "interventions.steering"
    schema = SteerSpec
    report_section = "steering"
    summary_rows = ("steered",)  # the sweep's best cell

    def plan(self, name, entry, path, planning):
        planning.ref(f"{path}.direction", entry.direction, "directions")
        cfg = sampled(entry, planning.spec) | {"model": model_of(planning, path, entry.model)}
        return cfg, (f"direction.{entry.direction}", *adapter_deps(planning, path, entry.adapter))

    def _extra(self, c):
        return f", {len(c['sites'])} sites x {len(c['lambdas'])} lambdas"

    def run(self, ctx, step, work):
        from emlab.evaluate import EvalRequest
        from emlab.interventions.steering import grid, parse_site_groups, run_sweep
        from emlab.vectors.directions import Direction

        cfg = step.config
        cm = ctx.model(cfg["model"], cfg.get("adapter"))
        direction = Direction.load(ctx.output(f"direction.{cfg['direction']}"))
        cells = grid(parse_site_groups(cfg["sites"]), cfg["lambdas"])
        sweep = run_sweep(
            cm,
            direction,
            cells,
            EvalRequest(question_set(cfg), ctx.judge(), cfg["n"], sampling_params(cfg)),
            work,
            cfg["positions"],
            cfg["scaling"],
        )
        best = sweep["best"] or {}
        return {
            "cells": sweep["cells_done"],
            "best_cell": best.get("cell"),
            "best_em_all": best.get("em_all"),
            "best_coherent": best.get("coherent_mean"),
        }

    def collect(self, out: StepOutput):
        grid = load_steering(out.folder, out.name)
        best = best_steered(grid)
        return [("steering", grid)] + ([("summary", best)] if best is not None else [])


# ------------------------------------------------------------------ ablation


class AblateSpec(SamplingOverrides):
    """Project a direction (or a random one of the same shape: `random: true`) out of the residual stream and evaluate."""

    model: str | None = None
    adapter: str | None = None
    direction: str
    random: bool = False
    random_seed: int | None = None  # default: the spec's seed
    mode: Literal["single", "layerwise"] = (
        "single"  # single: one site's vector out of every residual write; layerwise: each block's own
    )
    site: str | None = None  # single mode: which vector (default: the middle block's resid_post)

    @field_validator("site")
    @classmethod
    def _site(cls, v):
        return v if v is None else check_site(v)


def ablation_folder(step_dir: Path) -> Path:
    """The evaluation folder inside an ablate step's output (the step evaluates one condition)."""
    from emlab.interventions.ablation import ABLATION_FILE, condition_folder, read_ablation

    rows = read_ablation(step_dir)["conditions"]
    if len(rows) != 1:
        raise EmlabError(f"{step_dir / ABLATION_FILE}: expected one condition, found {len(rows)}")
    return condition_folder(step_dir, rows[0]["condition"])


@register_step_kind("ablate")
class AblateKind(_SampledKind):
    """Evaluate the model with a direction (or its equal-norm random control) projected out.

    The condition's evaluation lives in `work/<condition>/`; `ablation.json` lists it.
    """

    section = "interventions.ablation"
    schema = AblateSpec
    report_section = "summary"
    summary_rows = ("ablated", "random-ablated")

    def plan(self, name, entry, path, planning):
        planning.ref(f"{path}.direction", entry.direction, "directions")
        cfg = sampled(entry, planning.spec) | {"model": model_of(planning, path, entry.model)}
        if entry.random and entry.random_seed is None:
            cfg["random_seed"] = planning.spec.seed
        return cfg, (f"direction.{entry.direction}", *adapter_deps(planning, path, entry.adapter))

    def _extra(self, c):
        return ", random direction" if c["random"] else f", direction {c['direction']}"

    def run(self, ctx, step, work):
        from emlab.evaluate import EvalRequest, read_metrics
        from emlab.interventions.ablation import build_conditions, condition_folder, run_ablation
        from emlab.vectors.directions import Direction

        cfg = step.config
        cm = ctx.model(cfg["model"], cfg.get("adapter"))
        direction = Direction.load(ctx.output(f"direction.{cfg['direction']}"))
        conds = build_conditions(
            cm, direction, cfg["mode"], cfg.get("site"), random_baseline=cfg["random"], seed=cfg.get("random_seed") or 0
        )
        cond = conds[-1]  # [none, <mode>, <mode>-random]: the random control when asked, else the ablation itself
        run_ablation(cm, [cond], EvalRequest(question_set(cfg), ctx.judge(), cfg["n"], sampling_params(cfg)), work)
        metrics = read_metrics(condition_folder(work, cond.name))
        return {
            "condition": cond.name,
            **{k: v for k, v in cond.info.items() if isinstance(v, (str, int, float))},
            **headline(metrics),
        }

    def collect(self, out: StepOutput):
        from emlab.report.rows import load_condition

        cfg = out.config
        label = "random-ablated" if cfg.get("random") else "ablated"
        detail = f"direction {cfg.get('direction', '?')}, {cfg.get('mode', 'single')}"
        return [("summary", load_condition(ablation_folder(out.folder), label, out.name, detail=detail))]


# ------------------------------------------------------------------ exam


class ExamSteeringSpec(Strict):
    """Steer the examined model along a persona vector (emlab.exam.steering): a positive control."""

    persona: str  # key in `persona_vectors`
    scale: float  # in units of the site's mean residual norm, e.g. 0.25
    site: str | None = None  # default: the persona vector's 2/3-depth site

    @field_validator("site")
    @classmethod
    def _site(cls, v):
        checked = None if v is None else check_sites([v])
        return None if checked is None else checked[0]


class ExamStepSpec(Strict):
    """The Model Intake Exam (emlab.exam) of one model, optionally against a baseline model."""

    model: str | None = None  # key in `models` (default: the first)
    adapter: str | None = None  # key in `training`: examine that step's fine-tuned model
    baseline: str | None = None  # key in `models`: compare with it (latent, leakage)
    mode: Literal["quick", "standard", "full"] = "quick"
    seed: int | None = None  # default: the spec's seed
    system: str = "default"  # "default", a system prompt, or persona:NAME[:k] (a system-prompted persona)
    batteries: list[str] | None = None  # a subset (their needs run too); default: the mode's
    triage: str | None = None  # another triage rules file, relative to the spec
    max_new_tokens: int | None = Field(None, ge=1)  # overrides the mode's
    sizes: dict[str, dict[str, int]] | None = None  # per-battery size overrides (small runs)
    steering: ExamSteeringSpec | None = None  # steer the examined model (not the baseline) along a persona vector


def exam_request(
    cfg: dict, models: dict, out: Path, adapter_dir: Path | None, judge: str, steer_dir: Path | None = None
):
    """The ExamRequest of an exam step (the model references are the spec's, for the card's identity)."""
    from emlab.exam import ExamRequest
    from emlab.exam.steering import ExamSteer

    base = models[cfg["model"]]
    return ExamRequest(
        model=base.ref,
        adapter=None if adapter_dir is None else str(adapter_dir),
        out=out,
        mode=cfg["mode"],
        judge=judge,
        baseline=None if cfg.get("baseline") is None else models[cfg["baseline"]].ref,
        seed=cfg["seed"],
        system=cfg["system"],
        batteries=None if cfg.get("batteries") is None else tuple(cfg["batteries"]),
        dtype=base.dtype,
        max_new_tokens=cfg.get("max_new_tokens"),
        triage=None if cfg.get("triage") is None else Path(cfg["triage"]),
        sizes=cfg.get("sizes"),
        steer=None if steer_dir is None else ExamSteer(steer_dir, cfg["steering"]["scale"], cfg["steering"]["site"]),
    )


@register_step_kind("exam")
class ExamKind(StepKind):
    """Examine a model with the Model Intake Exam: batteries, triage level and decision, card.html (resumes battery by battery)."""

    section = "exams"
    schema = ExamStepSpec
    resumable = True  # the work folder is the exam folder: finished batteries are kept, a half-done one resumes
    report_section = "exams"

    def plan(self, name, entry, path, planning):
        cfg = entry.model_dump() | {"model": model_of(planning, path, entry.model)}
        cfg["seed"] = planning.spec.seed if entry.seed is None else entry.seed
        if entry.baseline is not None:
            planning.ref(f"{path}.baseline", entry.baseline, "models")
        deps = list(adapter_deps(planning, path, entry.adapter))
        if entry.steering is not None:
            planning.ref(f"{path}.steering.persona", entry.steering.persona, "persona_vectors")
            deps.append(f"persona-vector.{entry.steering.persona}")
        return cfg, deps

    def resolve_paths(self, entry, fix):
        if entry.triage is not None:
            entry.triage = fix(entry.triage)

    def check(self, step):
        from emlab.exam import ExamRequest, load_rules
        from emlab.exam.runner import planned_batteries
        from emlab.exam.steering import ExamSteer

        c = step.config
        load_rules(c.get("triage"))
        request = ExamRequest(
            model="unchecked",
            out=Path("unused"),
            mode=c["mode"],
            system=c["system"],
            max_new_tokens=c.get("max_new_tokens"),
            batteries=None if c.get("batteries") is None else tuple(c["batteries"]),
            sizes=c.get("sizes"),
            steer=None  # the vector does not exist yet: the placeholder folder is never read here
            if not c.get("steering")
            else ExamSteer(Path("unchecked"), c["steering"]["scale"], c["steering"]["site"]),
        )  # ExamRequest refuses the correction battery under steering and a non-finite scale
        request.profile  # noqa: B018 (sizes for unknown batteries fail here)
        request.resolved_system()
        planned_batteries(request)  # unknown battery names fail here, with the list

    def describe(self, step):
        c = step.config
        vs = f", vs {c['baseline']}" if c.get("baseline") else ""
        if c.get("steering"):
            vs += f", steered by {c['steering']['persona']} x {c['steering']['scale']:g}"
        return f"intake exam of {_who(c)} ({c['mode']}{vs}{', system ' + repr(c['system']) if c['system'] != 'default' else ''})"

    def run(self, ctx, step, work):
        from emlab.exam import run_exam

        c = step.config
        cm = ctx.model(c["model"], c.get("adapter"))
        baseline = ctx.model(c["baseline"]) if c.get("baseline") else None
        adapter_dir = ctx.adapter_dir(c["adapter"]) if c.get("adapter") else None
        steer_dir = ctx.output(f"persona-vector.{c['steering']['persona']}") if c.get("steering") else None
        request = exam_request(c, ctx.spec.models, work, adapter_dir, ctx.spec.judge.spec, steer_dir)
        res = run_exam(request, chat_model=cm, baseline_model=baseline, judge=ctx.judge(), log=ctx.console.print)
        return {
            "level": res.level,
            "band": res.grade["band"],
            "decision": res.decision,
            "failed": list(res.grade["failed"]),
            "card": res.card_path.name,
        }

    def result_line(self, summary):
        failed = ", ".join(summary.get("failed") or []) or "none"
        return f"level {summary['level']} ({summary['band']}), decision {summary['decision']}; failed: {failed}"

    def collect(self, out: StepOutput):
        import os

        from emlab.exam.card import read_card

        card = read_card(out.folder)
        link = os.path.relpath(
            out.folder / "card.html", out.folder.parent.parent / "report"
        )  # from <run>/report/index.html
        model = card["model"]["ref"] + (" + adapter" if card["model"]["adapter"] else "")
        return [
            (
                "exams",
                {
                    "step": out.name,
                    "model": model,
                    "system": card["model"]["system"],
                    "mode": card["mode"],
                    "level": card["level"],
                    "band": card["band"],
                    "decision": card["decision"],
                    "failed": ", ".join(card["failed"]) or "none",
                    "card": {"href": link, "text": "card.html"},
                },
            )
        ]


# ------------------------------------------------------------------ the study plan's kinds (fact-probe, compare)

import emlab.experiments.study_steps  # noqa: E402  (registers them here, so they plan before the report)
import emlab.experiments.vector_steps  # noqa: E402,F401  (persona / emotion vector kinds)

# ------------------------------------------------------------------ report


class ReportSpec(Strict):
    title: str | None = None
    max_samples: int = Field(24, ge=0)  # sample answers shown per condition, most misaligned first


@register_step_kind("report")
class ReportKind(StepKind):
    """The run's HTML report (report.build_report), from what the other steps committed."""

    section = "report"
    schema = ReportSpec
    entries = False  # one `report:` block; `report: null` plans no report step
    depends_on_all = True

    def describe(self, step):
        return "HTML report"

    def run(self, ctx, step, work):
        path = (
            ctx.build_report()
        )  # the runner provides the renderer (the report package reads the kinds, so they cannot import it)
        return {"report": str(path.relative_to(ctx.run.root))}
