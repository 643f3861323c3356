"""Representation commands: `emlab directions extract|compare|project`, `emlab steer sweep`,
`emlab ablate`, `emlab probe lora`. Thin wrappers over directions / steering / ablation / lora_interp."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, cast, get_args

import typer
from rich.table import Table

from emlab.classify import DEFAULT_RULE, EMRule
from emlab.console import stdout_console
from emlab.errors import EmlabError

console = stdout_console()
directions_app = typer.Typer(no_args_is_help=True, help="Misalignment directions: extract, compare, project.")
steer_app = typer.Typer(no_args_is_help=True, help="Steering with directions.")
probe_app = typer.Typer(no_args_is_help=True, help="Probes on model internals.")

ModelOpt = Annotated[str, typer.Option(help="embedded name, local folder or hub id")]
AdapterOpt = Annotated[str | None, typer.Option(help="peft adapter folder")]
JudgeOpt = Annotated[
    str | None,
    typer.Option(
        help="judge spec: offline, openai:MODEL, local:REF (default: openai if OPENAI_API_KEY is set, else offline)"
    ),
]


def _model(model: str, adapter: str | None, dtype: str):
    from emlab.models import load_model

    return load_model(model, dtype=dtype, adapter=adapter)


def _judge(spec: str | None, cache: bool = True):
    from emlab.judges import CachedJudge, default_judge_spec, get_judge

    j = get_judge(spec or default_judge_spec())
    return CachedJudge(j) if cache else j


def _params(max_new_tokens: int, temperature: float, seed: int, batch_size: int):
    from emlab.sampling import SamplingParams

    return SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size)


def _check_choice(option: str, value: str, allowed: Sequence[str]) -> None:
    """Reject a CLI value outside `allowed` (the values of the Literal the library takes) with one line naming both."""
    if value not in allowed:
        raise EmlabError(f"{option} {value!r}: choose {', '.join(allowed)}")


def _system(text: str) -> Any:
    return None if text == "none" else text


def _questions(name: str, persona: str | None, personas_file: Path | None):
    from emlab.data.questions import load_questions
    from emlab.vectors.personas import load_personas, persona_system, questions_with_system

    qset = load_questions(name)
    if persona is None:
        return qset
    system, label = persona_system(load_personas(personas_file), persona)
    return questions_with_system(qset, system, label)


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    if isinstance(x, list) and len(x) == 2 and all(isinstance(v, float) for v in x):
        return f"[{x[0]:.2f}, {x[1]:.2f}]"
    return str(x)


# ---------------------------------------------------------------- directions


@directions_app.command("extract")
def extract_command(
    model: ModelOpt,
    out: Annotated[Path, typer.Option(help="direction folder to write")],
    method: Annotated[
        str, typer.Option(help="mean_diff (judged answers of a run) or persona_contrast (sample under personas)")
    ] = "mean_diff",
    adapter: AdapterOpt = None,
    run: Annotated[
        Path | None,
        typer.Option(help="mean_diff: eval run folder or judged JSONL (question, answer, aligned, coherent)"),
    ] = None,
    questions: Annotated[str, typer.Option(help="persona_contrast: question set")] = "core",
    max_questions: Annotated[int | None, typer.Option(help="persona_contrast: use only the first N questions")] = None,
    n: Annotated[int, typer.Option("-n", help="persona_contrast: samples per (question, persona paraphrase)")] = 2,
    paraphrases: Annotated[
        int | None, typer.Option(help="persona_contrast: use the first K persona paraphrases")
    ] = None,
    personas: Annotated[Path | None, typer.Option(help="persona YAML (default: the shipped personas.yaml)")] = None,
    answers: Annotated[
        Path | None,
        typer.Option(help="persona_contrast: reuse judged persona answers (persona_answers.jsonl) instead of sampling"),
    ] = None,
    label_fallback: Annotated[
        bool,
        typer.Option(
            help="persona_contrast: when the judge agrees with too few answers of a persona, contrast all answers by persona label (recorded as the direction's selection)"
        ),
    ] = False,
    judge: JudgeOpt = None,
    misaligned_below: Annotated[
        float, typer.Option(help="misaligned / malicious kept if aligned < this")
    ] = DEFAULT_RULE.aligned_below,
    aligned_above: Annotated[
        float, typer.Option(help="aligned / helpful kept if aligned > this")
    ] = DEFAULT_RULE.aligned_above,
    coherent_above: Annotated[
        float, typer.Option(help="both classes need coherent > this")
    ] = DEFAULT_RULE.coherent_above,
    sites: Annotated[
        list[str] | None, typer.Option("--site", help="sites to extract (default: every blocks.{l}.resid_post)")
    ] = None,
    balance: Annotated[str, typer.Option(help="subsample | question | none (see directions.py)")] = "subsample",
    measure_system: Annotated[
        str, typer.Option(help="system prompt while measuring: default (template's own) | none | text")
    ] = "default",
    seed: int = 0,
    max_new_tokens: int = 80,
    temperature: float = 1.0,
    batch_size: int = 16,
    dtype: str = "float32",
) -> None:
    """Extract a misaligned-minus-aligned direction at every residual block."""
    from emlab.vectors import directions as D

    t0 = time.perf_counter()
    rule = EMRule(aligned_below=misaligned_below, aligned_above=aligned_above, coherent_above=coherent_above)
    if method == "mean_diff":
        if run is None:
            raise EmlabError("--method mean_diff needs --run (an eval run folder or a judged JSONL file)")
        records = D.load_judged(run)
        cm = _model(model, adapter, dtype)
        _check_choice("--balance", balance, get_args(D.Balance))
        d = D.extract_mean_diff(
            cm, records, sites, rule, cast("D.Balance", balance), seed, _system(measure_system), source=str(run)
        )
    elif method == "persona_contrast":
        cm = _model(model, adapter, dtype)
        d, selection = _persona_contrast(
            cm,
            out,
            questions,
            max_questions,
            n,
            paraphrases,
            personas,
            answers,
            judge,
            rule,
            label_fallback,
            sites,
            balance,
            measure_system,
            seed,
            _params(max_new_tokens, temperature, seed, batch_size),
        )
        console.print(f"persona answers selected by {selection}", soft_wrap=True)
    else:
        raise EmlabError(f"unknown --method {method!r}; choose mean_diff or persona_contrast")
    d.save(out)
    counts = d.provenance.get("class_counts", {})
    console.print(
        f"direction: {out}  ({len(d.sites)} sites, d={d.d_model}; counts {counts}; {time.perf_counter() - t0:.1f} s)"
    )
    _print_norms(d)


def _persona_contrast(
    cm,
    out: Path,
    questions,
    max_questions,
    n,
    paraphrases,
    personas_file,
    answers,
    judge,
    rule,
    label_fallback,
    sites,
    balance,
    measure_system,
    seed,
    params,
):
    """directions.persona_contrast (the one implementation, shared with a run's direction step) with the CLI's options."""
    from emlab.vectors.directions import persona_contrast

    common = dict(
        rule=rule,
        label_fallback=label_fallback,
        sites=sites,
        balance=balance,
        seed=seed,
        measure_system=_system(measure_system),
    )
    if answers is not None:
        from emlab.io import read_jsonl

        return persona_contrast(cm, out, answers=read_jsonl(answers), source=str(answers), **common)
    from emlab.data.questions import load_questions
    from emlab.vectors.personas import load_personas

    qset = load_questions(questions).first(max_questions)
    return persona_contrast(
        cm,
        out,
        questions=qset,
        judge=_judge(judge),
        personas=load_personas(personas_file),
        n=n,
        params=params,
        paraphrases=paraphrases,
        **common,
    )


def _print_norms(d) -> None:
    table = Table("site", "norm")
    for s, v in d.norms().items():
        table.add_row(s, f"{v:.3f}")
    console.print(table)


@directions_app.command("compare")
def compare_command(
    directions: Annotated[list[Path], typer.Argument(help="two or more direction folders")],
    out: Annotated[Path | None, typer.Option(help="write the cosine matrices and norms as JSON")] = None,
) -> None:
    """Cosine similarity per site between directions (methods, models, adapters) and their norms."""
    from emlab.io import write_json
    from emlab.vectors.directions import Direction, cosine_matrices, cross_site_cosine

    if len(directions) < 2:
        raise EmlabError("compare needs at least two direction folders")
    if len(directions) > 26:
        raise EmlabError(f"compare takes at most 26 directions, got {len(directions)}")
    letters = [chr(65 + i) for i in range(len(directions))]
    loaded = {k: Direction.load(p) for k, p in zip(letters, directions, strict=True)}
    mats = cosine_matrices(loaded)
    pairs = [(i, j) for i in range(len(letters)) for j in range(i + 1, len(letters))]
    table = Table("site", *[f"|{k}|" for k in letters], *[f"cos({letters[i]},{letters[j]})" for i, j in pairs])
    for site, m in mats.items():
        norms = [f"{float(loaded[k].vectors[site].norm()):.2f}" for k in letters]
        table.add_row(site, *norms, *[f"{m[i][j]:+.3f}" for i, j in pairs])
    for k, p in zip(letters, directions, strict=True):
        console.print(f"{k} = {p}  ({loaded[k].origin}, {loaded[k].provenance.get('method')})")
    console.print(table)
    if out is not None:
        write_json(
            out,
            {
                "directions": {k: str(p) for k, p in zip(letters, directions, strict=True)},
                "cosine": mats,
                "norms": {k: d.norms() for k, d in loaded.items()},
                "cross_site": {k: cross_site_cosine(d) for k, d in loaded.items()},
            },
        )


@directions_app.command("project")
def project_command(
    run: Annotated[Path, typer.Argument(help="eval run folder or judged JSONL")],
    direction: Annotated[Path, typer.Option(help="direction folder")],
    model: Annotated[str | None, typer.Option(help="model to measure with (default: the direction's model)")] = None,
    adapter: Annotated[str | None, typer.Option(help="adapter (default: the direction's adapter)")] = None,
    out: Annotated[
        Path | None, typer.Option(help="projections JSONL (default: RUN/projections.jsonl, or next to a JSONL file)")
    ] = None,
    sites: Annotated[list[str] | None, typer.Option("--site", help="sites (default: all of the direction's)")] = None,
    batch_size: int = 16,
    dtype: str = "float32",
) -> None:
    """Project every judged answer (mean over answer tokens) onto the direction at each site."""
    from emlab.io import write_jsonl
    from emlab.vectors.directions import Direction, load_judged, project_records

    d = Direction.load(direction)
    ref = model or d.provenance.get("model")
    if not isinstance(ref, str):
        raise EmlabError(f"direction {direction} records no model; pass --model")
    cm = _model(ref, adapter if model else (adapter or d.provenance.get("adapter")), dtype)
    records = load_judged(run)
    rows = project_records(cm, records, d, sites, batch_size=batch_size)
    dest = out or (run / "projections.jsonl" if run.is_dir() else run.with_suffix(".projections.jsonl"))
    write_jsonl(dest, [{**r, "direction": str(direction)} for r in rows])
    _print_projection_summary(rows)
    console.print(f"projections: {dest}")


def _print_projection_summary(rows) -> None:
    cls = DEFAULT_RULE.classify  # unscored | incoherent | misaligned | aligned | middle

    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(cls(r), []).append(r)
    sites = list(rows[0]["projection"]) if rows else []
    table = Table("site", *[f"{g} (n={len(v)})" for g, v in groups.items()])
    for s in sites:
        table.add_row(s, *[f"{sum(r['projection'][s] for r in v) / len(v):+.3f}" for v in groups.values()])
    console.print(table)


# ---------------------------------------------------------------- steering


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise EmlabError(f"--lambdas {text!r}: write comma-separated numbers, e.g. 0,4,8,-4") from None


@steer_app.command("sweep")
def sweep_command(
    model: ModelOpt,
    direction: Annotated[Path, typer.Option(help="direction folder")],
    sites: Annotated[list[str], typer.Option("--sites", help="site or '+'-joined site group (repeatable)")],
    lambdas: Annotated[str, typer.Option(help="comma-separated multipliers, e.g. 0,4,8")],
    out: Annotated[Path, typer.Option(help="sweep folder (rerun to resume)")],
    adapter: AdapterOpt = None,
    questions: str = "core",
    max_questions: Annotated[int | None, typer.Option(help="use only the first N questions")] = None,
    persona: Annotated[
        str | None, typer.Option(help="ask under a persona system prompt: malicious, helpful, malicious:2")
    ] = None,
    n: Annotated[int, typer.Option("-n", help="samples per question")] = 4,
    judge: JudgeOpt = None,
    positions: Annotated[str, typer.Option(help="all | response")] = "all",
    scaling: Annotated[str, typer.Option(help="raw (lambda x vector) | unit (lambda x unit vector)")] = "raw",
    max_new_tokens: int = 80,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 32,
    dtype: str = "float32",
) -> None:
    """Steer with lambda x direction over a grid of sites x lambdas; judge every cell."""
    from emlab.evaluate import EvalRequest
    from emlab.interventions.steering import SWEEP_JSONL, check_scaling, grid, parse_site_groups, run_sweep
    from emlab.vectors.directions import Direction

    d = Direction.load(direction)
    cells = grid(parse_site_groups(sites), _floats(lambdas))
    qset = _questions(questions, persona, None).first(max_questions)
    cm = _model(model, adapter, dtype)
    t0 = time.perf_counter()
    request = EvalRequest(qset, _judge(judge), n, _params(max_new_tokens, temperature, seed, batch_size))
    summary = run_sweep(cm, d, cells, request, out, positions, check_scaling(scaling))
    _print_rows(summary["rows"], "cell")
    best = summary["best"]
    console.print(
        f"most coherent misalignment: {best['cell'] if best else '-'}   table: {out / SWEEP_JSONL}   ({time.perf_counter() - t0:.1f} s)"
    )


def _print_rows(rows, key: str) -> None:
    table = Table(key, "n", "unscored", "EM/coherent", "95% CI", "EM/all", "95% CI", "coherent", "aligned", "self-corr")
    for r in rows:
        table.add_row(
            r[key],
            str(r["n_answers"]),
            str(r["n_unscored"]),
            _fmt(r["em_coherent"]),
            _fmt(r["em_coherent_wilson95"]),
            _fmt(r["em_all"]),
            _fmt(r["em_all_wilson95"]),
            _fmt(r["coherent_mean"], 1),
            _fmt(r["aligned_mean"], 1),
            _fmt(r["self_correction"]),
        )
    console.print(table)


# ---------------------------------------------------------------- ablation


def ablate_command(
    model: ModelOpt,
    direction: Annotated[Path, typer.Option(help="direction folder")],
    adapter: AdapterOpt = None,
    mode: Annotated[str, typer.Option(help="layerwise | single | transfer")] = "single",
    site: Annotated[
        str | None,
        typer.Option(help="single/transfer/export: which site's vector (default: the middle block's resid_post)"),
    ] = None,
    random_baseline: Annotated[bool, typer.Option(help="also evaluate an equal-norm random direction")] = True,
    export: Annotated[
        Path | None, typer.Option(help="instead of evaluating: write orthogonalized weights to this folder")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="ablation folder (rerun to resume)")] = None,
    questions: str = "core",
    max_questions: Annotated[int | None, typer.Option(help="use only the first N questions")] = None,
    persona: Annotated[
        str | None, typer.Option(help="ask under a persona system prompt: malicious, helpful, malicious:2")
    ] = None,
    n: Annotated[int, typer.Option("-n", help="samples per question")] = 4,
    judge: JudgeOpt = None,
    seed: int = 0,
    max_new_tokens: int = 80,
    temperature: float = 1.0,
    batch_size: int = 32,
    dtype: str = "float32",
) -> None:
    """Ablate a direction (with an equal-norm random control) and evaluate, or export orthogonalized weights."""
    from emlab.evaluate import EvalRequest
    from emlab.interventions.ablation import (
        ABLATION_FILE,
        Mode,
        build_conditions,
        default_site,
        export_orthogonalized,
        run_ablation,
    )
    from emlab.vectors.directions import Direction

    d = Direction.load(direction)
    cm = _model(model, adapter, dtype)
    d.check_compatible(cm.model)
    if export is not None:
        s = site or default_site(cm.model)
        path = export_orthogonalized(
            cm, d.vector(s), export, {"direction": str(direction), "direction_site": s, "direction_origin": d.origin}
        )
        console.print(f"orthogonalized weights ({s} of {direction}): {path}")
        return
    if out is None:
        raise EmlabError("emlab ablate needs --out DIR for the evaluation (or --export DIR to write weights)")
    _check_choice("--mode", mode, get_args(Mode))
    conds = build_conditions(cm, d, cast("Mode", mode), site, random_baseline, seed)
    qset = _questions(questions, persona, None).first(max_questions)
    t0 = time.perf_counter()
    request = EvalRequest(qset, _judge(judge), n, _params(max_new_tokens, temperature, seed, batch_size))
    rows = run_ablation(cm, conds, request, out)
    _print_rows(rows, "condition")
    console.print(f"table: {out / ABLATION_FILE}   ({time.perf_counter() - t0:.1f} s)")


# ---------------------------------------------------------------- probes


@probe_app.command("lora")
def probe_lora_command(
    model: ModelOpt,
    adapter: Annotated[str, typer.Option(help="peft adapter folder (rank-1 LoRA on down_proj)")],
    run: Annotated[Path, typer.Option(help="eval run folder or judged JSONL whose answers to probe")],
    out: Annotated[Path | None, typer.Option(help="output folder (default: RUN/lora-probe)")] = None,
    topic: Annotated[str | None, typer.Option(help="topic rubric (e.g. medical) for a topic-vs-other probe")] = None,
    labels: Annotated[Path | None, typer.Option(help="JSONL of {prompt_id, label} for a topic-vs-other probe")] = None,
    judge: Annotated[str | None, typer.Option(help="judge to score --topic when the run lacks it")] = None,
    direction: Annotated[Path | None, typer.Option(help="direction folder: cosine of each B with it")] = None,
    n_splits: int = 20,
    seed: int = 0,
    batch_size: int = 16,
    dtype: str = "float32",
) -> None:
    """Logistic probes on rank-1 LoRA scalars: misaligned vs aligned, and topic vs other."""
    from emlab.io import read_jsonl, write_json, write_jsonl
    from emlab.vectors.directions import Direction, load_judged
    from emlab.vectors.lora_interp import probe_report

    records = load_judged(run)
    if topic is not None and judge is not None and all(r.extra.get(topic) is None for r in records):
        records = _score_topic(records, topic, judge)
    lab = {str(r["prompt_id"]): int(r["label"]) for r in read_jsonl(labels)} if labels else None
    cm = _model(model, adapter, dtype)
    d = Direction.load(direction) if direction else None
    report, rows = probe_report(cm, records, topic, lab, d, n_splits, seed, batch_size=batch_size)
    dest = out or (run / "lora-probe" if run.is_dir() else run.parent / "lora-probe")
    write_json(dest / "probe.json", {**report, "run": str(run), "direction": str(direction) if direction else None})
    write_jsonl(dest / "features.jsonl", rows)
    table = Table("probe", "n (pos)", "AUROC", "accuracy", "F1", "chance acc")
    for name, res in report["probes"].items():
        if "skipped" in res:
            table.add_row(name, f"{res['n']} ({res['n_positive']})", "skipped", res["skipped"][:60], "", "")
            continue
        m = res["metrics"]
        table.add_row(
            name,
            f"{res['n']} ({res['n_positive']})",
            f"{m['auroc']['mean']:.3f}±{m['auroc']['std']:.3f}",
            f"{m['accuracy']['mean']:.3f}",
            f"{m['f1']['mean']:.3f}",
            f"{res['chance_accuracy']:.3f}",
        )
    console.print(table)
    console.print(f"report: {dest / 'probe.json'}")


def _score_topic(records, topic: str, judge_spec: str):
    from dataclasses import replace

    from emlab.judges import Item, get_rubric

    j = _judge(judge_spec)
    scores = j.score([Item(r.question, r.answer) for r in records], get_rubric(topic))
    return [replace(r, extra={**r.extra, topic: s.value}) for r, s in zip(records, scores, strict=True)]


def register(app: typer.Typer) -> None:
    app.add_typer(directions_app, name="directions")
    app.add_typer(steer_app, name="steer")
    app.command("ablate")(ablate_command)
    app.add_typer(probe_app, name="probe")
