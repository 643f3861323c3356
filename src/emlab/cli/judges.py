"""`emlab judge`: score a JSONL/CSV file of question/answer rows; `emlab judge rubrics`; `emlab judge calibrate` / `validate`.

    emlab judge --in answers.jsonl --judge offline --out judged.jsonl [--rubric aligned,coherent] [--no-cache]

Scoring and the table formats live in emlab.judges.files; the offline judge's fitting in emlab.judges.offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from emlab.console import stdout_console
from emlab.errors import EmlabError
from emlab.judges.files import judge_file

console = stdout_console()
DEFAULT_RUBRICS = "aligned,coherent"


def _parse_rubrics(values: list[str] | None) -> list[str]:
    names = [n.strip() for v in (values or [DEFAULT_RUBRICS]) for n in v.split(",") if n.strip()]
    return list(dict.fromkeys(names))


def print_summary(summaries: list[dict[str, Any]], out_path: Path) -> None:
    table = Table("rubric", "judge", "n", "mean", "scored", "flagged", "unscored", title=f"wrote {out_path}")
    for s in summaries:
        mean = "-" if s["mean"] is None else f"{s['mean']:.1f}"
        flagged = ", ".join(f"{k} {v}" for k, v in sorted(s["flagged"].items())) or "0"
        table.add_row(s["rubric"], s["judge"], str(s["n"]), mean, str(s["scored"]), flagged, str(s["unscored"]))
    console.print(table)


# ---------------------------------------------------------------- commands

judge_app = typer.Typer(
    invoke_without_command=True,
    help="Score question/answer files with a judge (emlab judge --in FILE --judge SPEC --out FILE), list rubrics, calibrate the offline judge.",
)


@judge_app.callback()
def judge_command(
    ctx: typer.Context,
    in_path: Annotated[Path | None, typer.Option("--in", help="JSONL or CSV with question and answer columns")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="output .jsonl or .csv (input columns + one per rubric)")
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(
            "--judge",
            help="offline | openai:MODEL | api:MODEL | local:REF (default: openai when OPENAI_API_KEY is set, else offline)",
        ),
    ] = None,
    rubric: Annotated[
        list[str] | None,
        typer.Option("--rubric", help="rubric names, comma-separated or repeated (default aligned,coherent)"),
    ] = None,
    cache: Annotated[
        bool, typer.Option("--cache/--no-cache", help="reuse and store scores in the SQLite judge cache")
    ] = True,
    cache_path: Annotated[
        Path | None, typer.Option("--cache-path", help="cache file (default $EMLAB_CACHE/judge-cache.sqlite)")
    ] = None,
) -> None:
    """Score a file of answers; see `emlab judge rubrics` for rubric names."""
    if ctx.invoked_subcommand is not None:
        if in_path or out:
            raise EmlabError(
                f"--in/--out belong to `emlab judge` itself, not to `emlab judge {ctx.invoked_subcommand}`; drop them or the subcommand"
            )
        return
    if in_path is None and out is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    if in_path is None or out is None:
        raise EmlabError(f"emlab judge needs both --in FILE and --out FILE (got only {'--in' if in_path else '--out'})")
    from emlab.judges.registry import default_judge_spec

    summaries = judge_file(
        in_path, out, judge or default_judge_spec(), _parse_rubrics(rubric), cache=cache, cache_path=cache_path
    )
    print_summary(summaries, out)


@judge_app.command("rubrics")
def rubrics_command() -> None:
    """List the shipped rubrics (name, version, description) and the available judges."""
    from emlab.judges.registry import available_judges
    from emlab.judges.rubrics import describe_rubrics

    table = Table("rubric", "key", "description")
    for row in describe_rubrics():
        table.add_row(row["name"], row["key"], row["description"])
    console.print(table)
    console.print("judges: " + ", ".join(available_judges()), highlight=False)


@judge_app.command("calibrate")
def calibrate_command(
    corpus: Annotated[
        Path | None, typer.Option("--corpus", help="labelled JSONL (default: the shipped calibration corpus)")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="folder for weights.safetensors + weights.json (default: the package's)"),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="seed for the fits and CV fold assignment")] = 0,
) -> None:
    """Refit the offline judge's weights from a labelled JSONL corpus and print its cross-validated metrics.

    Mounted by the judges CLI as `emlab judge calibrate [--corpus FILE] [--out DIR] [--seed N]`.
    """
    from emlab.judges.offline import CALIBRATION_DIR, WEIGHTS_NAME, calibrate

    meta = calibrate(corpus_path=corpus, out_dir=out, seed=seed)
    typer.echo(
        f"wrote {(out or CALIBRATION_DIR) / WEIGHTS_NAME} (n={meta['corpus']['n']}, sha256 {meta['weights_sha256'][:12]})"
    )
    for name, m in meta["metrics"].items():
        typer.echo(
            f"{name}: n={m['n']} aligned AUROC {m['aligned_auroc']} | coherent Spearman {m['coherent_spearman']} | "
            f"bad_stuff AUROC {m['bad_stuff_auroc']}"
        )


@judge_app.command("validate")
def validate_command(
    labelled: Annotated[
        Path, typer.Argument(help="JSONL of question/answer rows labelled 0-100 for aligned, coherent and bad_stuff")
    ],
    weights: Annotated[
        Path | None,
        typer.Option("--weights", help="folder of weights.safetensors + weights.json (default: the package's)"),
    ] = None,
) -> None:
    """Score labelled answers with the offline judge and print how well it ranks them (nothing is fitted).

    Mounted by the judges CLI as `emlab judge validate FILE [--weights DIR]`.
    """
    from emlab.judges.offline import WEIGHTS_NAME, validate

    if not labelled.exists():
        raise EmlabError(
            f"emlab judge validate: {labelled} does not exist; pass a labelled JSONL file (format: docs/judges-offline.md)"
        )
    if weights is not None and not (weights / WEIGHTS_NAME).exists():
        raise EmlabError(
            f"emlab judge validate --weights {weights}: no {WEIGHTS_NAME} there; pass the folder `emlab judge calibrate --out` wrote"
        )
    typer.echo(json.dumps(validate(labelled, weights), indent=1))


@judge_app.command("loso")
def loso_command(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="write the full result (per source, summaries, reliability bins) as JSON"),
    ] = None,
    judges: Annotated[
        str,
        typer.Option(
            "--judges", help="comma-separated: v2 (shipped), v3 (refit per fold), local (local:qwen2.5-coder-0.5b)"
        ),
    ] = "v2,v3",
    local_per_source: Annotated[
        int, typer.Option("--local-per-source", help="answers per source for the local judge (slow: seconds each)")
    ] = 10,
) -> None:
    """Leave-one-source-out validation of the offline judge on externally judged answers (prints a table)."""
    from emlab.judges.loso import run_loso

    run_loso(tuple(j.strip() for j in judges.split(",") if j.strip()), local_per_source, out, echo=typer.echo)


def register(app: typer.Typer) -> None:
    app.add_typer(judge_app, name="judge")
