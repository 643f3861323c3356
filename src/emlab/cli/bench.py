"""`emlab bench --quick|--full [--out FILE]`: run the benchmarks, write one JSON file, print a table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from emlab.console import stdout_console
from emlab.errors import EmlabError

console = stdout_console()
err = Console(stderr=True)


def format_table(result: dict[str, Any]) -> Table:
    """One row per figure: value, baseline, ratio, achieved GFLOP/s and fraction of the matmul peak."""
    peak = result["peak"]
    m = result["machine"]
    title = (
        f"emlab bench {result['mode']}: peak fp32 {peak['fp32']['gflops']:.1f} / bf16 {peak['bf16']['gflops']:.1f} GFLOP/s, "
        f"{m['cores']} cores, {m['torch_threads']} threads, OMP_WAIT_POLICY={m['env'].get('OMP_WAIT_POLICY') or 'unset'}, "
        f"load {m['loadavg'][0]:.1f} -> {m.get('loadavg_end', [float('nan')])[0]:.1f}"
    )
    table = Table("figure", "value", "baseline", "ratio", "GFLOP/s", "% peak", "% peak/cpu-s", "target", title=title)
    table.columns[0].no_wrap = True
    for f in result["figures"]:
        target = ""
        if f["target"]:
            met = f["target"]["met"]
            target = (
                "[green]met[/]" if met else "[red]not met[/]" if met is not None else "?"
            ) + f" ({f['target']['text']})"
        table.add_row(
            f["name"],
            f"{_num(f['value'])} {f['unit']}",
            _num(f["baseline"]),
            "" if f["ratio"] is None else f"{f['ratio']:.2f}x",
            _num(f["gflops"]),
            "" if f["peak_fraction"] is None else f"{100 * f['peak_fraction']:.0f}% {f['dtype']}",
            "" if f.get("cpu_peak_fraction") is None else f"{100 * f['cpu_peak_fraction']:.0f}%",
            target,
        )
    for s in result["skipped"]:
        reason = s["reason"] if len(s["reason"]) <= 90 else s["reason"][:87] + "..."
        table.add_row(f"[yellow]{s['section']}[/]", "[yellow]skipped[/]", "", "", "", "", "", reason)
    return table


def _num(x: float | None) -> str:
    if x is None:
        return ""
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def bench_command(
    quick: Annotated[bool, typer.Option("--quick", help="small sizes, a few minutes (the default)")] = False,
    full: Annotated[
        bool, typer.Option("--full", help="larger sizes and repeats; also runs `emlab demo --quick` for step times")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="result JSON (default bench-results/bench-<timestamp>.json)")
    ] = None,
    section: Annotated[
        list[str] | None,
        typer.Option(
            "--section",
            help="run only this section (repeatable): threads, sampling, hooks, capture, training, judging, demo",
        ),
    ] = None,
    model: Annotated[
        str, typer.Option("--model", help="model to benchmark (embedded name, folder or hub id)")
    ] = "smollm2-135m",
    runs_dir: Annotated[
        Path | None, typer.Option("--runs-dir", help="where to look for a demo run (default: $EMLAB_RUNS or ./runs)")
    ] = None,
) -> None:
    """Benchmark sampling, hooks, capture, training, judges and the demo against baselines from the same run."""
    if quick and full:
        raise EmlabError("pass --quick or --full, not both")
    from emlab.bench.threads import prefer_passive_wait

    prefer_passive_wait()  # before torch loads: PASSIVE on a busy machine; see docs/performance.md (OMP_WAIT_POLICY=... overrides)
    from emlab.bench.runner import default_out, preset, run_bench, with_sections, write_result
    from emlab.models import load_model

    config = with_sections(preset("full" if full else "quick"), section)
    path = out or default_out()
    result = run_bench(
        load_model(model), config, log=lambda s: err.print(f"[dim]bench:[/] {s}", highlight=False), runs_dir=runs_dir
    )
    write_result(result, path)
    console.print(format_table(result))
    console.print(f"results: {path} ({result['wall_s']:.0f}s)")


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_command)
