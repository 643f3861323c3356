"""What each kind of step does, in terms of the package's public functions.

Every step function has the signature `fn(ctx, step, work) -> summary`: it writes its
outputs into `work` (the step's `.partial` folder, committed by the runner when the
function returns) and returns a small JSON-ready summary for the manifest.
Resumable steps (train, eval, steer, ablate) continue from what an interrupted attempt
left in `work`: training from its last checkpoint, evaluations from their journals,
sweeps and ablations from their finished cells.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emlab.errors import EmlabError
from emlab.experiments.spec import Plan, Step
from emlab.io import read_json, write_json

DATASET_FILE = "train.jsonl"
TRAIN_LOG = "train_log.jsonl"
TRAIN_SUMMARY = "train_summary.json"
TRAIN_CONFIG = "train_config.json"  # written by emlab.train: the resolved config, dtype and data hash
DIRECTION_CHOICE = "choice.json"
PERSONA_ANSWERS = "persona_answers.jsonl"
ABLATION_FILE = "ablation.json"


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
    from emlab.data.questions import QuestionSet, load_questions

    qs = load_questions(cfg["questions"])
    k = cfg.get("max_questions")
    if k is not None and k < len(qs):
        qs = QuestionSet(name=f"{qs.name}[:{k}]", source=qs.source, questions=list(qs.questions)[:k], description=qs.description)
    return qs


def sampling_params(cfg: dict):
    from emlab.sampling import SamplingParams

    return SamplingParams(
        temperature=cfg["temperature"], top_p=cfg["top_p"], max_new_tokens=cfg["max_new_tokens"], seed=cfg["seed"], batch_size=cfg["batch_size"]
    )


def run_evaluation(ctx, cm, cfg: dict, out: Path) -> dict[str, Any]:
    """evaluate() into `out`, resuming its journals; returns the headline numbers."""
    from emlab.evaluate import EvalRequest, evaluate

    result = evaluate(cm, EvalRequest(question_set(cfg), ctx.judge(), cfg["n"], sampling_params(cfg)), out, resume=True, progress=True)
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


# ------------------------------------------------------------------ data


def data_step(ctx, step: Step, work: Path) -> dict[str, Any]:
    """Generate a training set (or copy a given JSONL after checking it) into train.jsonl."""
    from emlab.data.generate import dataset_meta, generate, write_dataset

    cfg = step.config
    out = work / DATASET_FILE
    if cfg["generator"]:
        records = generate(cfg["generator"], cfg["n"], cfg["seed"], cfg["framing"])
        write_dataset(out, records, dataset_meta(cfg["generator"], cfg["n"], cfg["seed"], cfg["framing"]))
        n = len(records)
    else:
        from emlab.io import atomic_open, iter_jsonl

        src = Path(cfg["path"])
        rows = [rec for _, rec in iter_jsonl(src)]
        n = sum("messages" in r for r in rows)
        if n == 0:
            raise EmlabError(f"{src}: no record with 'messages'; a training file holds OpenAI-messages records, one per line")
        with atomic_open(out, "wb") as fh:
            fh.write(src.read_bytes())
    return {"examples": n, "file": DATASET_FILE, "sha256": hashlib.sha256(out.read_bytes()).hexdigest()}


# ------------------------------------------------------------------ train

TRAIN_BASE_KEYS = ("model", "dataset", "preset")


def train_config(cfg: dict, source: str):
    """The preset with the spec entry's overrides applied, validated by the trainer's own schema."""
    from emlab.train import load_preset, parse_config

    overrides = {k: v for k, v in cfg.items() if k not in TRAIN_BASE_KEYS and v is not None}
    return parse_config(load_preset(cfg["preset"]).model_dump() | overrides, f"{source} (preset {cfg['preset']} + spec overrides)")


def train_step(ctx, step: Step, work: Path) -> dict[str, Any]:
    """Fine-tune into the step folder; an interrupted training continues from its last checkpoint."""
    from emlab.train import train

    cfg = step.config
    config = train_config(cfg, step.name)
    if not (work / TRAIN_SUMMARY).exists():  # else: finished before the commit was recorded
        data = ctx.output(f"data.{cfg['dataset']}") / DATASET_FILE
        base = ctx.model(cfg["model"])
        with _train_progress(ctx, step.name) as on_step:
            train(base, data, config, work, resume=(work / TRAIN_CONFIG).exists(), on_step=on_step)
    s = read_json(work / TRAIN_SUMMARY)
    keys = ("method", "steps", "final_loss", "examples_used", "trainable_params", "blocks", "train_time_s", "dtype")
    return {k: s.get(k) for k in keys} | {"preset": cfg["preset"]}


def _train_progress(ctx, label: str):
    """A rich progress bar over optimizer steps (on a terminal), fed by train's on_step records."""
    import contextlib

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    @contextlib.contextmanager
    def bar():
        progress = Progress(TextColumn(f"{label:<9}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=ctx.console, disable=not ctx.console.is_terminal)
        with progress:
            task = progress.add_task(label, total=None, loss="-")

            def on_step(rec: dict) -> None:
                progress.update(task, completed=rec["step"], total=rec["total_steps"], loss=f"{rec['loss']:.3f}")

            yield on_step

    return bar()


# ------------------------------------------------------------------ eval


def eval_step(ctx, step: Step, work: Path) -> dict[str, Any]:
    cfg = step.config
    cm = ctx.model(cfg["model"], cfg.get("adapter"))
    return run_evaluation(ctx, cm, cfg, work)


# ------------------------------------------------------------------ direction


def judged_records(eval_dir: Path):
    """An evaluation folder's answers as `directions.Judged` records (samples joined with their scores)."""
    from emlab.directions import Judged
    from emlab.report.collect import judged_answers

    out = []
    for a in judged_answers(eval_dir):
        out.append(Judged(a["question"], a["text"], a.get("aligned"), a.get("coherent"), a["question_id"], {"prompt_id": a["prompt_id"]}))
    return out


def choose_method(cfg: dict, counts: dict[str, int] | None) -> tuple[str, str]:
    """(method, reason): `auto` takes mean-diff when the eval has enough misaligned and some aligned answers."""
    method, need = cfg["method"], cfg["min_misaligned"]
    if method != "auto":
        return method, f"method {method} set in the spec"
    if counts is None:
        return "persona_contrast", "no eval to split into misaligned and aligned answers"
    mis, ali = counts["misaligned"], counts["aligned"]
    if mis >= need and ali >= 1:
        return "mean_diff", f"{mis} misaligned and {ali} aligned coherent answers (need >= {need} misaligned): mean-diff of the organism's answers"
    return "persona_contrast", f"only {mis} misaligned (need >= {need}) and {ali} aligned coherent answers: too few for mean-diff, so persona contrast"


def _cap(records: list, k: int, seed: int) -> list:
    if len(records) <= k:
        return records
    idx = sorted(random.Random(seed).sample(range(len(records)), k))
    return [records[i] for i in idx]


def direction_step(ctx, step: Step, work: Path) -> dict[str, Any]:
    from emlab.directions import extract_mean_diff, split_classes

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
        direction = extract_mean_diff(cm, used, cfg.get("sites"), seed=cfg["seed"], source=f"{source} <- eval.{cfg['eval']}")
    else:
        direction, selection = persona_direction(ctx, cm, cfg, work, f"{source} <- persona answers")
        reason = f"{reason}; persona answers selected by {selection}"
    direction.save(work)
    choice = {"method": method, "reason": reason, "requested": cfg["method"], "eval_counts": counts}
    write_json(work / DIRECTION_CHOICE, choice)
    return {"method": method, "reason": reason, "sites": len(direction.sites)}


def persona_direction(ctx, cm, cfg: dict, work: Path, source: str):
    """Sample answers under malicious / helpful persona prompts, judge them, contrast the agreeing ones.

    The judged persona answers are kept in `persona_answers.jsonl` so the choice can be audited.
    """
    from emlab.directions import extract_persona_contrast
    from emlab.io import write_jsonl
    from emlab.judges.rubrics import get_rubric
    from emlab.personas import judge_answers, load_personas, sample_persona_answers

    qs = question_set({"questions": cfg["persona_questions"], "max_questions": ctx.spec.sampling.max_questions})
    questions = [(q.id, q.paraphrases[0]) for q in qs]
    params = sampling_params(ctx.spec.sampling.model_dump() | {"seed": cfg["seed"]})
    answers = sample_persona_answers(cm, questions, load_personas(), cfg["persona_n"], params, cfg["persona_paraphrases"])
    judged = judge_answers(answers, ctx.judge(), {name: get_rubric(name) for name in ("aligned", "coherent")})
    write_jsonl(work / PERSONA_ANSWERS, judged)
    rule, by_label, selection, why = persona_selection(judged, cfg["malicious_below"], cfg["label_fallback"])
    direction = extract_persona_contrast(cm, judged, rule, sites=cfg.get("sites"), seed=cfg["seed"], source=source, by_label=by_label, selection=selection)
    return direction, why


def persona_selection(judged: list[dict], malicious_below: float, label_fallback: bool):
    """(rule, by_label, selection, why): keep the persona answers the judge agrees with; with too few of them and
    `label_fallback`, keep every answer by the persona it was asked for (and say how many the judge kept)."""
    from emlab.classify import EMRule
    from emlab.personas import select_agreeing

    rule = EMRule(aligned_below=malicious_below)
    mal, helpful, counts = select_agreeing(judged, rule)
    if (mal and helpful) or not label_fallback:  # without the fallback, extraction names what is missing
        return rule, False, "judge agreement", "judge-agreeing answers"
    why = (f"the judge kept {counts['malicious_kept']} malicious (aligned < {rule.aligned_below:g}) and {counts['helpful_kept']} helpful "
           f"(aligned > {rule.aligned_above:g}) answers with coherent > {rule.coherent_above:g} of {counts['answers']}; "
           "raise persona_n or malicious_below to select by the judge")
    return rule, True, "persona label", f"persona labels ({why})"


# ------------------------------------------------------------------ steering


def steer_step(ctx, step: Step, work: Path) -> dict[str, Any]:
    """A site x lambda sweep (steering.run_sweep); finished cells are kept when resumed."""
    from emlab.directions import Direction
    from emlab.evaluate import EvalRequest
    from emlab.steering import grid, parse_site_groups, run_sweep

    cfg = step.config
    cm = ctx.model(cfg["model"], cfg.get("adapter"))
    direction = Direction.load(ctx.output(f"direction.{cfg['direction']}"))
    cells = grid(parse_site_groups(cfg["sites"]), cfg["lambdas"])
    sweep = run_sweep(cm, direction, cells, EvalRequest(question_set(cfg), ctx.judge(), cfg["n"], sampling_params(cfg)), work, cfg["positions"], cfg["scaling"])
    best = sweep["best"] or {}
    return {"cells": sweep["cells_done"], "best_cell": best.get("cell"), "best_em_all": best.get("em_all"), "best_coherent": best.get("coherent_mean")}


# ------------------------------------------------------------------ ablation


def ablate_step(ctx, step: Step, work: Path) -> dict[str, Any]:
    """Evaluate the model with a direction (or its equal-norm random control) projected out.

    The condition's evaluation lives in `work/<condition>/`; `ablation.json` lists it.
    """
    from emlab.ablation import build_conditions, run_ablation
    from emlab.directions import Direction
    from emlab.evaluate import EvalRequest

    cfg = step.config
    cm = ctx.model(cfg["model"], cfg.get("adapter"))
    direction = Direction.load(ctx.output(f"direction.{cfg['direction']}"))
    conds = build_conditions(cm, direction, cfg["mode"], cfg.get("site"), random_baseline=cfg["random"], seed=cfg.get("random_seed") or 0)
    cond = conds[-1]  # [none, <mode>, <mode>-random]: the random control when asked, else the ablation itself
    rows = run_ablation(cm, [cond], EvalRequest(question_set(cfg), ctx.judge(), cfg["n"], sampling_params(cfg)), work)
    return {"condition": cond.name, **{k: v for k, v in cond.info.items() if isinstance(v, (str, int, float))}, **headline(_metrics(work / cond.name))}


def _metrics(folder: Path) -> dict:
    from emlab.evaluate import METRICS_FILE

    return read_json(folder / METRICS_FILE)


def ablation_folder(step_dir: Path) -> Path:
    """The evaluation folder inside an ablate step's output."""
    rows = read_json(step_dir / ABLATION_FILE)["conditions"]
    if len(rows) != 1:
        raise EmlabError(f"{step_dir / ABLATION_FILE}: expected one condition, found {len(rows)}")
    return step_dir / rows[0]["condition"]


# ------------------------------------------------------------------ report


def report_step(ctx, step: Step, work: Path) -> dict[str, Any]:
    from emlab.report.render import build_report

    path = build_report(ctx.run.root)
    return {"report": str(path.relative_to(ctx.run.root))}


# ------------------------------------------------------------------ registry and checks

StepFn = Callable[[Any, Step, Path], dict]
STEP_KINDS: dict[str, tuple[StepFn, bool]] = {
    "data": (data_step, False),
    "train": (train_step, True),
    "eval": (eval_step, True),
    "direction": (direction_step, False),
    "steer": (steer_step, True),
    "ablate": (ablate_step, True),
    "report": (report_step, False),
}


def check_step(plan: Plan, step: Step) -> None:
    """Look up the names a step will use, so a typo fails before any work (cheap: no model is loaded)."""
    cfg = step.config
    where = f"{plan.source}: step {step.name}"
    try:
        if step.kind == "data" and cfg["generator"]:
            from emlab.data.generate import get_spec

            get_spec(cfg["generator"])
        if step.kind == "data" and cfg["path"] and not Path(cfg["path"]).is_file():
            raise EmlabError(f"datasets.{step.entry}.path = {cfg['path']!r}: no such file; give an OpenAI-messages JSONL file")
        if step.kind == "train":
            train_config(cfg, f"training.{step.entry}")
        if step.kind in ("eval", "steer", "ablate"):
            question_set(cfg)
            sampling_params(cfg)
        if step.kind == "direction" and cfg["method"] != "mean_diff":
            question_set({"questions": cfg["persona_questions"]})
    except EmlabError as e:
        raise EmlabError(f"{where}: {e}") from None
    if step.kind not in STEP_KINDS:
        raise EmlabError(f"{where}: this emlab cannot run {step.kind} steps")


def check_judge(plan: Plan) -> None:
    """The judge spec names a registered backend (building it may load a model, so only the name is checked)."""
    import re

    from emlab.judges.registry import available_judges

    usages = available_judges()
    names = {re.split(r"[:\s]", u)[0] for u in usages} | set(re.findall(r"alias (\w+)", " ".join(usages)))
    spec = plan.spec.judge.spec
    if spec.partition(":")[0] not in names:
        raise EmlabError(f"{plan.source}: judge.spec = {spec!r} is not a known judge; available: {', '.join(usages)}")
