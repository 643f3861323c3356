"""Core commands: `emlab models list|prepare` and `emlab sample`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from emlab.console import stdout_console

console = stdout_console()
models_app = typer.Typer(no_args_is_help=True, help="Embedded and local models.")


@models_app.command("list")
def models_list() -> None:
    """List the embedded models and whether their safetensors cache is prepared."""
    from emlab.models import list_models

    table = Table("name", "description", "source", "prepared", "cache")
    for row in list_models():
        table.add_row(row["name"], row["description"], row["source"], "yes" if row["prepared"] else "no", row["cache"])
    console.print(table)


@models_app.command("prepare")
def models_prepare(
    name: Annotated[list[str] | None, typer.Argument(help="embedded model names (default: all)")] = None,
) -> None:
    """Convert embedded GGUF models into the safetensors cache (once)."""
    from emlab.models import EMBEDDED, prepare_embedded

    for n in name or list(EMBEDDED):
        console.print(f"{n}: {prepare_embedded(n)}")


def sample_command(
    prompt: Annotated[list[str], typer.Option("--prompt", "-p", help="user message (repeatable)")],
    model: Annotated[str, typer.Option(help="embedded name, local folder or hub id")] = "smollm2-135m",
    n: Annotated[int, typer.Option("-n", help="samples per prompt")] = 1,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 128,
    seed: int = 0,
    adapter: Annotated[str | None, typer.Option(help="peft adapter folder")] = None,
    dtype: str = "float32",
    system: Annotated[str | None, typer.Option(help="system prompt: 'default', 'none' or text")] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON lines instead of a table")] = False,
) -> None:
    """Sample chat answers from a model."""
    from emlab.models import load_model
    from emlab.sampling import SamplingParams, sample

    cm = load_model(model, dtype=dtype, adapter=adapter)
    params = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
    records = sample(cm, list(prompt), n=n, params=params, system=None if system == "none" else system)
    if as_json:
        for r in records:
            print(json.dumps(r.to_dict(), ensure_ascii=False))
        return
    table = Table("prompt", "#", "answer", "tokens", "finish", show_lines=True)
    for r in records:
        table.add_row(r.question, str(r.sample_index), r.text, str(r.completion_tokens), r.finish_reason)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
    app.command("sample")(sample_command)
