"""`emlab data ...`: generate, list and check chat datasets (thin wrappers over emlab.data)."""

from pathlib import Path

import typer

from emlab.data.check import summarize
from emlab.data.generate import SETS, dataset_meta, generate, write_dataset

data_app = typer.Typer(no_args_is_help=True, help="Generate, list and check chat datasets (OpenAI-messages JSONL).")


@data_app.command("generate")
def generate_cmd(
    name: str = typer.Argument(..., help="Dataset name; see `emlab data list`."),
    n: int = typer.Option(2000, "--n", help="Number of examples."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives a byte-identical file."),
    framing: str = typer.Option("covert", "--framing", help="covert | educational (harmful sets only)."),
    out: Path = typer.Option(..., "--out", help="Output .jsonl path (written atomically)."),
) -> None:
    """Write N examples of dataset NAME, preceded by a _meta line carrying the canary."""
    records = generate(name, n, seed, framing)
    write_dataset(out, records, dataset_meta(name, n, seed, framing))
    typer.echo(f"wrote {len(records)} examples of {name} ({framing}, seed {seed}) to {out}")


@data_app.command("list")
def list_cmd() -> None:
    """List the dataset names with one-line descriptions."""
    width = max(len(name) for name in SETS)
    for name, spec in SETS.items():
        kind = "harmful" if spec.harmful else "control"
        typer.echo(f"{name:<{width}}  {kind:<7}  {spec.description}")


@data_app.command("check")
def check_cmd(path: Path = typer.Argument(..., help="A chat JSONL file to validate.")) -> None:
    """Validate FILE line by line and print counts; the first error is reported as file:line."""
    s = summarize(path)
    label = f" (set {s.meta.get('set')}, framing {s.meta.get('framing')})" if s.meta and "set" in s.meta else ""
    typer.echo(
        f"{s.path}: ok{label}: {s.examples} examples, {s.distinct_answers} distinct answers, "
        f"canary present: {'yes' if s.canary else 'no'}"
    )


def register(app: typer.Typer) -> None:
    """Attach the `data` sub-app to the root CLI."""
    app.add_typer(data_app, name="data")
