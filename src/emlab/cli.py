"""The `emlab` command line: a thin typer app over the Python API.

Each area registers its own sub-app below. User-facing failures raise
EmlabError and are printed as one red line (exit status 2), never a traceback.
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
    from emlab.cli_core import register as core

    core(app)
    from emlab.run_cli import register as run_commands; run_commands(app)  # run, runs, report, demo
    from emlab.eval_cli import register as eval_commands; eval_commands(app)  # eval, questions
    from emlab.data.cli import register as data_commands; data_commands(app)  # data generate/list/check
    from emlab.repr_cli import register as repr_commands; repr_commands(app)  # directions, steer, ablate, probe
    from emlab.train_cli import register as train_commands; train_commands(app)  # train, train presets
    from emlab.bench.cli import register as bench_commands; bench_commands(app)  # bench
    from emlab.judges.cli import register as judge_commands; judge_commands(app)  # judge, judge rubrics, judge calibrate
    from emlab.vectors.cli import register as vector_commands; vector_commands(app)  # personas, emotions


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
    except Exception as e:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Exit):
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()
