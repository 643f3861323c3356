"""Run commands: `emlab run`, `emlab runs list`, `emlab report`, `emlab demo`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from emlab.console import stdout_console
from emlab.errors import EmlabError

console = stdout_console()
err = Console(stderr=True)
runs_app = typer.Typer(no_args_is_help=True, help="Run folders (manifest, step status).")

RunsDir = Annotated[Path | None, typer.Option("--runs-dir", help="where runs live (default: $EMLAB_RUNS or ./runs)")]


def run_command(
    spec: Annotated[str | None, typer.Argument(help="spec YAML file or built-in spec name (demo, demo-quick)")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="validate the spec and print the plan; run nothing")
    ] = False,
    resume: Annotated[str | None, typer.Option("--resume", help="continue this run (folder or run id)")] = None,
    rerun: Annotated[
        list[str] | None, typer.Option("--rerun", help="with --resume: redo this step even if done (repeatable)")
    ] = None,
    runs_dir: RunsDir = None,
) -> None:
    """Execute an experiment spec (or continue a run with --resume)."""
    from emlab.experiments.runner import check_plan, plan_table, resume_run, start_run
    from emlab.experiments.spec import load_spec

    if resume:
        if spec or dry_run:
            raise EmlabError("--resume takes the run to continue; do not also pass a spec or --dry-run")
        run = resume_run(resume, runs_dir, err, rerun=rerun)
        _finish(run.root)
        return
    if rerun:
        raise EmlabError("--rerun needs --resume RUN")
    if not spec:
        raise EmlabError("pass a spec file (or a built-in name such as demo), or --resume RUN")
    if dry_run:
        plan = load_spec(spec)
        check_plan(plan)
        console.print(plan_table(plan))
        console.print(f"[green]spec OK[/]: {len(plan.steps)} steps; seeds {plan.seeds()}")
        return
    run = start_run(spec, runs_dir, err)
    _finish(run.root)


def _finish(root: Path) -> None:
    from emlab.experiments.spec import step_kinds
    from emlab.store import Run

    kinds = {k.name: k for k in step_kinds()}
    report = root / "report" / "index.html"
    if report.exists():
        console.print(summary_table(root))
    for name, s in (
        Run(root).manifest()["steps"].items()
    ):  # what a kind says about its finished step (a direction: which method, and why)
        kind = kinds.get(s.get("kind", ""))
        line = kind.result_line(s["summary"]) if kind is not None and s.get("summary") else None
        if line:
            console.print(f"{name}: {line}", soft_wrap=True)
    if report.exists():
        console.print(f"report: {report}", soft_wrap=True)
    console.print(f"run: {root}", soft_wrap=True)


def summary_table(run_root: Path) -> Table:
    """The report's summary table, for the terminal."""
    from emlab.report.collect import collect
    from emlab.report.render import ordered, summary_row

    data = collect(run_root)
    table = Table(
        "condition",
        "answers",
        "EM % all [95% Wilson]",
        "EM % coherent [95% Wilson]",
        "coherent",
        "aligned",
        "self-corr %",
        "unscored",
        title="summary",
    )
    for c in ordered(data.conditions):
        r = summary_row(c)
        label = r["label"] + (f" ({r['detail']})" if r["detail"] else "")
        table.add_row(
            label,
            r["n"],
            f"{r['em_all']} ({r['em_all_k']}) {r['em_all_wilson']}",
            f"{r['em_coh']} ({r['em_coh_k']}) {r['em_coh_wilson']}",
            r["coherent"],
            r["aligned"],
            r["self_correction"],
            r["unscored"],
        )
    return table


@runs_app.command("list")
def runs_list(runs_dir: RunsDir = None) -> None:
    """Table of runs: run, spec, created, status, steps done."""
    from emlab.store import list_runs
    from emlab.store import runs_dir as default_dir

    rows = list_runs(runs_dir)
    if not rows:
        console.print(f"no runs in {default_dir(runs_dir)}")
        return
    table = Table("run", "spec", "created", "status", "steps done")
    for r in rows:
        table.add_row(r["run"], r["spec"], r["created"], r["status"], f"{r['done']}/{r['total']}")
    console.print(table)


@runs_app.command("kinds")
def runs_kinds() -> None:
    """The step kinds a spec can use: name, spec section, resumable, what a step of that kind does."""
    from emlab.experiments.spec import describe_step_kinds

    table = Table("kind", "spec section", "resumable", "does")
    for k in describe_step_kinds():
        table.add_row(k["name"], k["section"], k["resumable"], k["help"])
    console.print(table)


@runs_app.command("show")
def runs_show(run: Annotated[str, typer.Argument(help="run folder or id")], runs_dir: RunsDir = None) -> None:
    """Status, time and summary of each step of a run."""
    from emlab.store import Run

    r = Run.open(run, runs_dir)
    m = r.manifest()
    table = Table("step", "status", "seconds", "cpu s", "summary / error", title=f"{r.root} ({r.status()})")
    for name, s in m["steps"].items():
        secs, cpu = s.get("seconds"), s.get("cpu_seconds")
        info = s.get("error") or ", ".join(
            f"{k}={v}" for k, v in (s.get("summary") or {}).items() if not isinstance(v, dict)
        )
        table.add_row(
            name, s["status"], "" if secs is None else f"{secs:.1f}", "" if cpu is None else f"{cpu:.1f}", info
        )
    console.print(table)


def report_command(run: Annotated[str, typer.Argument(help="run folder or id")], runs_dir: RunsDir = None) -> None:
    """Write RUN/report/index.html from what is on disk (works on unfinished runs too)."""
    from emlab.report.render import build_report
    from emlab.store import Run

    path = build_report(Run.open(run, runs_dir).root)
    console.print(f"report: {path}", soft_wrap=True)


def demo_command(
    quick: Annotated[
        bool, typer.Option("--quick", help="tiny sizes (a few minutes): checks the pipeline, not the science")
    ] = False,
    runs_dir: RunsDir = None,
) -> None:
    """The whole pipeline on the embedded model: base eval, train organism + control, direction, steering, ablation, report."""
    from emlab.experiments.runner import start_run

    t0 = time.perf_counter()
    run = start_run("demo-quick" if quick else "demo", runs_dir, err)
    _finish(run.root)
    steps = run.manifest()["steps"]
    times = ", ".join(f"{n} {s.get('seconds', 0):.0f}s" for n, s in steps.items())
    console.print(f"wall time {time.perf_counter() - t0:.0f}s ({times})")


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.add_typer(runs_app, name="runs")
    app.command("report")(report_command)
    app.command("demo")(demo_command)
