"""`emlab exam`: the intake exam from the command line (a thin layer over `emlab.exam.run_exam`).

emlab exam --model smollm2-135m --quick --out runs/exam-smol
emlab exam --model smollm2-135m --system persona:malicious --out runs/exam-smol-malicious
emlab exam --model smollm2-135m --adapter runs/x/adapter --baseline smollm2-135m --full
emlab exam --model smollm2-135m --steer runs/vectors/evil --steer-scale 0.25 --baseline smollm2-135m
emlab exam card runs/exam-smol --triage my-triage.yaml    # re-grade without recomputing
emlab exam card shared/card.json --out runs/regraded       # re-grade a card on its own
emlab exam batteries                                       # what each battery measures
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from emlab.console import stdout_console
from emlab.errors import EmlabError

console = stdout_console()
err = Console(stderr=True)
exam_app = typer.Typer(
    no_args_is_help=False,
    invoke_without_command=True,
    help="The model intake exam: diagnostic batteries and a triage decision.",
)


@exam_app.callback(invoke_without_command=True)
def exam_command(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(help="embedded name, local folder or hub id")] = None,
    adapter: Annotated[str | None, typer.Option(help="peft adapter folder on the model")] = None,
    baseline: Annotated[str | None, typer.Option(help="the base model to compare with (batteries 5 and 7)")] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="small banks: under 15 min for a 135M model on 2 cores (the default)")
    ] = False,
    standard: Annotated[bool, typer.Option("--standard", help="full banks, more samples")] = False,
    full: Annotated[bool, typer.Option("--full", help="standard plus battery 8 (two corrective fine-tunes)")] = False,
    judge: Annotated[str, typer.Option(help="offline | openai:MODEL | local:REF")] = "offline",
    seed: int = 0,
    out: Annotated[
        Path | None, typer.Option(help="exam folder (default runs/exam-TIMESTAMP); rerun with the same --out to resume")
    ] = None,
    system: Annotated[
        str,
        typer.Option(help="system prompt for every item: 'default' (the template's), persona:NAME[:k], or the text"),
    ] = "default",
    battery: Annotated[
        list[str] | None, typer.Option("--battery", help="run only this battery (repeatable; its needs run too)")
    ] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="override the mode's answer length")] = None,
    triage: Annotated[Path | None, typer.Option(help="another triage rules file (default exam/triage.yaml)")] = None,
    threads: Annotated[int | None, typer.Option(help="torch threads (1 is fastest on a busy machine)")] = None,
    dtype: str = "float32",
    steer: Annotated[
        Path | None,
        typer.Option(help="a direction folder (e.g. `emlab personas extract`): steer the examined model along it"),
    ] = None,
    steer_scale: Annotated[
        float | None, typer.Option(help="with --steer: how far, in units of the site's mean residual norm (e.g. 0.25)")
    ] = None,
    steer_site: Annotated[
        str | None, typer.Option(help="with --steer: the site (default: the direction's 2/3 depth)")
    ] = None,
) -> None:
    """Examine a chat model: eight batteries, a level on the latent-persona-risk spectrum and a decision."""
    if ctx.invoked_subcommand is not None:
        if model:
            raise EmlabError(f"--model belongs to `emlab exam` itself, not to `emlab exam {ctx.invoked_subcommand}`")
        return
    if model is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    if quick + standard + full > 1:
        raise EmlabError("choose one of --quick, --standard, --full")
    from emlab.exam import ExamRequest, run_exam
    from emlab.exam.request import Mode
    from emlab.exam.steering import ExamSteer

    if (steer is None) != (steer_scale is None) or (steer_site is not None and steer is None):
        raise EmlabError(
            "--steer DIR and --steer-scale X go together (--steer-site only with them); pass both or neither"
        )

    mode: Mode = "full" if full else "standard" if standard else "quick"
    out_dir = out or Path("runs") / f"exam-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    req = ExamRequest(
        model=model,
        adapter=adapter,
        baseline=baseline,
        mode=mode,
        judge=judge,
        seed=seed,
        out=out_dir,
        system=system,
        batteries=tuple(battery) if battery else None,
        max_new_tokens=max_new_tokens,
        triage=triage,
        threads=threads,
        dtype=dtype,
        steer=None if steer is None else ExamSteer(steer, float(steer_scale), steer_site),  # type: ignore[arg-type]
    )
    t0 = time.perf_counter()
    res = run_exam(req, log=lambda m: err.print(m, highlight=False))
    print_grade(res.card)
    console.print(f"card: {res.card_path}", highlight=False)
    console.print(
        f"wall time: {time.perf_counter() - t0:.0f} s" + (f" (reused: {', '.join(res.reused)})" if res.reused else ""),
        highlight=False,
    )


def print_grade(card: dict) -> None:
    table = Table("#", "battery", "status", "metric", "value", "95% CI", "threshold")
    for b in card["batteries"]:
        for i, m in enumerate(b["metrics"] or [None]):
            if m is None:
                table.add_row(str(b["number"]), b["name"], b["status"], "", "", "", "")
                continue
            ci = "" if not m["ci"] else f"[{m['ci'][0]:.3g}, {m['ci'][1]:.3g}]"
            value = "–" if m["value"] is None else f"{m['value']:.3g}"
            table.add_row(
                str(b["number"]) if i == 0 else "",
                b["name"] if i == 0 else "",
                b["status"] if i == 0 else "",
                m["name"],
                value,
                ci,
                m["threshold"],
            )
    console.print(table)
    console.print(f"level {card['level']} ({card['band']}): decision [bold]{card['decision']}[/]", highlight=False)
    for c in card["what_would_change"]:
        console.print(f"  - {c['text']}", highlight=False)


@exam_app.command("card")
def card_command(
    folder: Annotated[Path, typer.Argument(help="an exam folder, or a card.json on its own (then --out)")],
    triage: Annotated[Path | None, typer.Option(help="another triage rules file")] = None,
    out: Annotated[Path | None, typer.Option(help="with a card.json: the folder for the re-graded card")] = None,
) -> None:
    """Re-grade an exam folder with (other) triage rules and rewrite its card; nothing is recomputed."""
    from emlab.exam import regrade
    from emlab.exam.card import regrade_card

    if folder.is_file():
        if out is None:
            raise EmlabError(f"{folder} is a card file: pass --out DIR for the re-graded card (the source is kept)")
        card, path = regrade_card(folder, out, triage)
    elif out is not None:
        raise EmlabError(f"--out is for re-grading a card.json; {folder} is an exam folder, re-graded in place")
    else:
        card, path = regrade(folder, triage)
    print_grade(card)
    console.print(f"card: {path}", highlight=False)


@exam_app.command("batteries")
def batteries_command() -> None:
    """List the batteries: what each measures and its pass/fail rule."""
    from emlab.exam import list_batteries

    table = Table("#", "name", "title", "metrics", "rule", show_lines=True)
    for b in sorted(list_batteries(), key=lambda x: x.number):
        table.add_row(str(b.number), b.name, b.title, ", ".join(m.name for m in b.metrics), b.rule)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(exam_app, name="exam")
