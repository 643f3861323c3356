"""`emlab train`: fine-tune a model organism from the command line; `emlab train presets` lists presets."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from emlab.console import stdout_console
from emlab.errors import EmlabError

console = stdout_console()
train_app = typer.Typer(
    help="Fine-tune model organisms (LoRA or full) with checkpoints and resume.", invoke_without_command=True
)


@train_app.callback()
def train_command(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(help="embedded name, local folder or hub id")] = None,
    data: Annotated[
        str | None, typer.Option(help="OpenAI-messages JSONL file (e.g. from `emlab data generate`)")
    ] = None,
    config: Annotated[str | None, typer.Option(help="YAML train config file")] = None,
    preset: Annotated[str | None, typer.Option(help="named preset (see `emlab train presets`)")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a config key: --set lr=1e-4 (repeatable)")
    ] = None,
    out: Annotated[
        str | None, typer.Option(help="output folder: adapter/model, train_log.jsonl, train_summary.json, checkpoints/")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue an interrupted run in --out from its last checkpoint")
    ] = False,
) -> None:
    """Fine-tune MODEL on DATA into OUT with a config file or preset (plus --set overrides)."""
    if ctx.invoked_subcommand is not None:
        return
    missing = [name for name, value in (("--model", model), ("--data", data), ("--out", out)) if not value]
    if missing:
        raise EmlabError(
            f"emlab train needs {', '.join(missing)}; e.g. emlab train --model smollm2-135m --data train.jsonl --preset rank1-9blocks --out runs/organism"
        )
    assert model and data and out  # narrowed by the check above
    cfg = _config(config, preset, set_ or [])
    from emlab.train import train

    console.print(f"[bold]training[/] {model} on {data} -> {out} ({cfg.method}{', resume' if resume else ''})")
    with _progress() as bar:
        task = {}

        def on_step(record: dict) -> None:
            kl = f" kl {record['kl']:.4f}" if "kl" in record else ""
            line = f"loss {record['loss']:.4f}{kl}  {record['tokens_per_s']:.0f} tok/s"
            if not console.is_terminal:  # logs redirected to a file get one plain line per step
                console.print(
                    f"step {record['step']}/{record['total_steps']} epoch {record['epoch']:.2f} {line} grad_norm {record['grad_norm']:.3f} lr {record['lr']:.3g}"
                )
                return
            if "id" not in task:
                task["id"] = bar.add_task("train", total=record["total_steps"], completed=record["step"] - 1, loss="")
            bar.update(task["id"], completed=record["step"], loss=line)

        result = train(model, data, cfg, out, resume=resume, on_step=on_step)
    _print_summary(result.summary)


def _config(path: str | None, preset: str | None, overrides: list[str]):
    from emlab.train import load_config_file, load_preset, with_overrides

    if path and preset:
        raise EmlabError(
            f"--config {path} and --preset {preset} both given; pass one (add --set key=value to change single keys)"
        )
    if path:
        return load_config_file(path, overrides)
    if preset:
        return load_preset(preset, overrides)
    return with_overrides({}, overrides, "defaults")


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _print_summary(summary: dict) -> None:
    table = Table("summary", "value", show_header=False)
    for key in (
        "model",
        "method",
        "examples_used",
        "dropped_too_long",
        "truncated",
        "steps",
        "final_loss",
        "wall_time_s",
        "train_time_s",
        "tokens_per_s",
        "trainable_params",
        "dtype",
        "device",
    ):
        table.add_row(key, str(summary.get(key)))
    modules = summary.get("targeted_modules") or []
    if modules:
        table.add_row(
            "targeted_modules", f"{len(modules)}: " + ", ".join(modules[:4]) + (" ..." if len(modules) > 4 else "")
        )
    console.print(table)
    size = summary.get("update_size")
    if size:
        console.print(
            f"update size: spectral ratio median {size['spectral_ratio_median']:.2f}, max {size['spectral_ratio_max']:.2f} "
            f"({size['largest_module']}), Frobenius median {size['frobenius_ratio_median']:.3f}"
            + (
                "  [yellow]above 1: the adapters dominate their modules; expect lost fluency[/]"
                if size["spectral_ratio_median"] > 1
                else ""
            )
        )


@train_app.command("presets")
def presets_command(
    as_json: Annotated[bool, typer.Option("--json", help="print the full configs as JSON")] = False,
) -> None:
    """List the shipped training presets."""
    from emlab.train import list_presets

    rows = list_presets()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("preset", "method", "rank", "alpha", "targets", "blocks", "lr", "description", show_lines=True)
    for r in rows:
        c = r["config"]
        blocks = (
            "all"
            if c["blocks"] is None
            else f"{c['blocks']}" + (f" of {c['blocks_depth']}" if c["blocks_depth"] else "")
        )
        targets = (
            c["target_modules"] if isinstance(c["target_modules"], str) else ",".join(c["target_modules"] or []) or "-"
        )
        table.add_row(
            r["name"],
            c["method"],
            str(c["rank"] or "-"),
            str(c["alpha"] or "-"),
            targets,
            blocks if c["method"] == "lora" else "-",
            f"{c['lr']:g}",
            r["description"],
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
