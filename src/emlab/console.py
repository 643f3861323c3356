"""The console that command tables print to."""

from __future__ import annotations

import os

from rich.console import Console

PIPE_WIDTH = 160  # columns when stdout is a log or a pipe: rich's default 80 truncates the summary and metrics tables


def stdout_console() -> Console:
    """A console on stdout: the terminal's width (or $COLUMNS), else PIPE_WIDTH columns for logs and pipes."""
    console = Console()
    return console if console.is_terminal or os.environ.get("COLUMNS") else Console(width=PIPE_WIDTH)
