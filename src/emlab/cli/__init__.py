"""The `emlab` command line: a thin typer app over the Python API.

One module per command group (core, runs, eval, data, representations, train, bench, judges),
each registering its own commands below; typer is imported in this package and nowhere else in
emlab (tests/test_cli_layout.py). User-facing failures raise EmlabError and are printed as one
red line (exit status 2), never a traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from emlab.errors import EmlabError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="emlab: an open lab for emergent misalignment.")
err_console = Console(stderr=True)


def _register() -> None:
    # One line per area; each module owns its commands.
    from emlab.cli import bench, core, data, eval, exam, judges, representations, runs, train, vectors

    core.register(app)  # models, sample
    runs.register(app)  # run, runs, report, demo
    eval.register(app)  # eval, questions
    data.register(app)  # data generate/list/check
    representations.register(app)  # directions, steer, ablate, probe
    train.register(app)  # train, train presets
    bench.register(app)  # bench
    judges.register(app)  # judge, judge rubrics, judge calibrate, judge validate
    exam.register(app)  # exam, exam card, exam batteries
    vectors.register(app)  # personas, emotions


_register()


def main() -> None:
    try:
        app(standalone_mode=False)
    except EmlabError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # usage errors arrive here in non-standalone mode (typer vendors its own click)
        import click

        if isinstance(e, (click.exceptions.ClickException, typer.exceptions.TyperException)) and hasattr(e, "show"):
            e.show()
            sys.exit(getattr(e, "exit_code", 2))
        if isinstance(e, click.exceptions.Exit):
            sys.exit(e.exit_code)
        raise
