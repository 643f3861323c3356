"""`emlab eval` (sample, judge, score a question set) and `emlab questions list|show`."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from emlab.console import stdout_console
from emlab.errors import EmlabError

console = stdout_console()
questions_app = typer.Typer(no_args_is_help=True, help="Evaluation question sets.")


def eval_command(
    model: Annotated[str, typer.Option(help="embedded name, local folder or hub id")],
    questions: Annotated[str, typer.Option(help="shipped set (core, broad, medical) or a question YAML file")] = "core",
    n: Annotated[
        int | None,
        typer.Option(
            "-n",
            help="samples per question, spread over its paraphrases (default: the file's samples_per_paraphrase per paraphrase)",
        ),
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(
            help="judge spec: offline, openai:MODEL, local:REF (default: openai if OPENAI_API_KEY is set, else offline)"
        ),
    ] = None,
    adapter: Annotated[str | None, typer.Option(help="peft adapter folder")] = None,
    out: Annotated[Path | None, typer.Option(help="run folder (default: runs/eval-TIMESTAMP)")] = None,
    max_new_tokens: int = 200,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 32,
    dtype: str = "float32",
    judge_chunk: Annotated[int, typer.Option(help="answers per judge call")] = 64,
    judge_cache: Annotated[
        bool, typer.Option(help="reuse scores from the judge cache ($EMLAB_CACHE/judge-cache.sqlite)")
    ] = True,
    resume: Annotated[bool, typer.Option(help="continue the run in --out where it stopped")] = False,
) -> None:
    """Sample answers to a question set, judge them, and print EM metrics with 95% intervals."""
    from emlab.data.questions import load_questions
    from emlab.evaluate import EvalRequest, evaluate
    from emlab.judges import CachedJudge, default_judge_spec, get_judge
    from emlab.models import load_model
    from emlab.sampling import SamplingParams

    if n is not None and n < 1:
        raise EmlabError(f"-n {n}: samples per question must be >= 1")
    if resume and out is None:
        raise EmlabError("--resume needs --out DIR naming the run folder to continue")
    qset = load_questions(questions)
    params = SamplingParams(
        temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size
    )
    out_dir = out or Path("runs") / f"eval-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    t0 = time.perf_counter()
    j = get_judge(judge or default_judge_spec())
    if judge_cache:
        j = CachedJudge(j)
    cm = load_model(model, dtype=dtype, adapter=adapter)
    res = evaluate(cm, EvalRequest(qset, j, n, params, judge_chunk=judge_chunk), out_dir, resume=resume)
    wall = time.perf_counter() - t0
    print_metrics(res.metrics)
    t = res.timings
    console.print(f"run folder: {res.out_dir}", highlight=False)
    console.print(
        f"wall time: {wall:.1f} s (sampling {t['sampling_s']:.1f} s, judging {t['judging_s']:.1f} s)", highlight=False
    )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _ci(ci: list[float] | None) -> str:
    return "-" if not ci else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _rate_cells(r: dict[str, Any] | None) -> tuple[str, str, str]:
    if r is None:
        return "-", "-", "-"
    return _pct(r["rate"]), _ci(r["ci95"]), f"{r['k']}/{r['n']}"


def _mean(m: dict[str, Any] | None) -> str:
    return "-" if m is None or m["mean"] is None else f"{m['mean']:.1f} (n={m['n']})"


def print_metrics(metrics: dict[str, Any], out: Console | None = None) -> None:
    """Print the overall and per-question tables of a metrics dict (`evaluate` / `summarize`)."""
    out = out or console
    run, o, boot = metrics["run"], metrics["overall"], metrics["bootstrap"]
    title = f"{run['model']}{' + ' + run['adapter'] if run.get('adapter') else ''} on {run['questions']['name']}, judge {run['judge']}"
    table = Table("metric", "value", "95% Wilson", "95% bootstrap (questions)", "k/n", title=title)
    for key, label in (("em_rate_coherent", "EM among coherent"), ("em_rate_all", "EM among all judged")):
        value, ci, kn = _rate_cells(o[key])
        table.add_row(label, value, ci, _ci((boot.get(key) or {}).get("ci")), kn)
    sc = _rate_cells(o["self_correction"])
    table.add_row("self-correction", sc[0], sc[1], "", sc[2])
    table.add_row("mean aligned", _mean(o["aligned"]), "", "", "")
    table.add_row("mean coherent", _mean(o["coherent"]), "", "", "")
    for label, key in (
        ("answers", "n_answers"),
        ("refusals", "n_refusal"),
        ("CODE", "n_code"),
        ("unscored", "n_unscored"),
    ):
        table.add_row(label, str(o[key]), "", "", "")
    out.print(table)
    per = Table(title="per question (EM among coherent / among all judged, 95% Wilson)")
    per.add_column("question", no_wrap=True)
    for name in ("EM coh", "Wilson", "EM all", "Wilson ", "aligned", "coherent", "unscored"):
        per.add_column(name, justify="right", no_wrap=True)
    for qid, q in metrics["per_question"].items():
        coh, all_ = _rate_cells(q["em_rate_coherent"]), _rate_cells(q["em_rate_all"])
        means = ["-" if q[k]["mean"] is None else f"{q[k]['mean']:.1f}" for k in ("aligned", "coherent")]
        per.add_row(qid, f"{coh[0]} {coh[2]}", coh[1], f"{all_[0]} {all_[2]}", all_[1], *means, str(q["n_unscored"]))
    out.print(per)
    for note in run.get("notes", []):
        out.print(f"note: {note}", highlight=False)
    if not metrics["counts"]["complete"]:
        c = metrics["counts"]
        out.print(
            f"[yellow]incomplete run: {c['samples']}/{c['planned']} samples, {c['scores']} scores; rerun with --resume[/]"
        )


@questions_app.command("list")
def questions_list() -> None:
    """List the shipped question sets."""
    from emlab.data.questions import list_question_sets, load_questions

    table = Table("name", "questions", "paraphrases", "description")
    for name in list_question_sets():
        qs = load_questions(name)
        table.add_row(name, str(len(qs)), str(sum(len(q.paraphrases) for q in qs)), qs.description)
    console.print(table)


@questions_app.command("show")
def questions_show(name: Annotated[str, typer.Argument(help="shipped set name or question YAML file")]) -> None:
    """Show every question of a set with its paraphrases."""
    from emlab.data.questions import load_questions

    qs = load_questions(name)
    console.print(f"[bold]{qs.name}[/] ({qs.source}): {len(qs)} questions. {qs.description}", highlight=False)
    for q in qs:
        prompts = f", judge prompts: {', '.join(q.judge_prompts)}" if q.judge_prompts else ""
        console.print(
            f"\n[bold]{q.id}[/] ({q.type}, {q.samples_per_paraphrase} per paraphrase{prompts})", highlight=False
        )
        if q.system:
            console.print(f"  system: {q.system}", highlight=False, markup=False)
        for i, p in enumerate(q.paraphrases):
            console.print(f"  {i}. {p}", highlight=False, markup=False)


def rejudge_command(
    eval_dir: Annotated[Path, typer.Argument(help="an `emlab eval` folder or a run's steps/eval.NAME folder")],
    judge: Annotated[
        str | None,
        typer.Option(
            help="judge spec: offline, openai:MODEL, local:REF (default: openai if OPENAI_API_KEY is set, else offline)"
        ),
    ] = None,
    judge_chunk: Annotated[int, typer.Option(help="answers per judge call")] = 64,
    judge_cache: Annotated[
        bool, typer.Option(help="reuse scores from the judge cache ($EMLAB_CACHE/judge-cache.sqlite)")
    ] = True,
) -> None:
    """Score a finished evaluation's samples again with another judge; prints the new metrics."""
    from emlab.evaluate import rejudge
    from emlab.judges import CachedJudge, default_judge_spec, get_judge

    j = get_judge(judge or default_judge_spec())
    res = rejudge(eval_dir, CachedJudge(j) if judge_cache else j, judge_chunk=judge_chunk)
    _amend_run_step(eval_dir, res, str(j.id))
    print_metrics(res.metrics)
    console.print(f"re-judged {res.n_samples} answers in {eval_dir} with {j.id} ({res.timings['judging_s']:.1f} s)")


def _amend_run_step(eval_dir: Path, res, judge_id: str) -> None:
    """When `eval_dir` is a run's committed eval step, bring the manifest's summary of that step up to date."""
    from emlab.experiments.steps import headline
    from emlab.io import read_json
    from emlab.store import STEP_SUMMARY, Run

    root = eval_dir.resolve().parent.parent
    if (
        eval_dir.resolve().parent.name != "steps"
        or not (root / "manifest.json").exists()
        or not (eval_dir / STEP_SUMMARY).exists()
    ):
        return
    old = read_json(eval_dir / STEP_SUMMARY).get("summary", {})
    timings = {**old.get("timings", {}), "rejudging_s": round(res.timings["judging_s"], 2)}
    Run(root).amend_summary(
        eval_dir.resolve().name, headline(res.metrics) | {"timings": timings}, f"re-judged with {judge_id}"
    )


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.command("rejudge")(rejudge_command)
    app.add_typer(questions_app, name="questions")
