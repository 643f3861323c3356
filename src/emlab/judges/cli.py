"""`emlab judge`: score a JSONL/CSV file of question/answer rows; `emlab judge rubrics`; `emlab judge calibrate` / `validate`.

    emlab judge --in answers.jsonl --judge offline --out judged.jsonl [--rubric aligned,coherent] [--no-cache]

The output keeps every input column in order and adds one column per rubric: a number,
or empty (CSV) / null (JSONL) when the item is unscored or flagged. Everything is scored
before the output is written, atomically, so an interrupted run leaves no output file;
finished chunks are already in the judge cache, so rerunning resumes where it stopped.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from emlab.console import stdout_console
from emlab.errors import EmlabError
from emlab.io import atomic_open, iter_jsonl
from emlab.judges.base import Item, Judge, Rubric, Score
from emlab.judges.outcome import flag_of

console = stdout_console()
err_console = Console(stderr=True)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
DEFAULT_RUBRICS = "aligned,coherent"


# ---------------------------------------------------------------- tables on disk


def table_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise EmlabError(f"{path}: unknown table format {suffix or '(no extension)'!r}; use a .jsonl or .csv file")


def read_table(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """(column names in first-seen order, records) from a JSONL or CSV file with `question` and `answer` columns."""
    fmt = table_format(path)
    rows = _read_csv(path) if fmt == "csv" else [(n, r) for n, r in iter_jsonl(path)]
    columns: dict[str, None] = {}
    for _, rec in rows:
        columns.update(dict.fromkeys(rec))
    missing = [c for c in ("question", "answer") if c not in columns]
    if missing:
        raise EmlabError(f"{path}: no {' or '.join(missing)} column; columns found: {', '.join(columns) or '(none)'}; rename them to question and answer")
    for lineno, rec in rows:
        for col in ("question", "answer"):
            if not isinstance(rec.get(col), str):
                raise EmlabError(f"{path}:{lineno}: {col} must be a string, got {json.dumps(rec.get(col))}")
    return list(columns), [rec for _, rec in rows]


def _read_csv(path: Path) -> list[tuple[int, dict[str, str]]]:
    if not path.exists():
        raise EmlabError(f"{path}: file not found; check the path")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, strict=True)
        try:
            header = next(reader, None)
            if not header:
                raise EmlabError(f"{path}: empty CSV file; the first line must name the columns (question,answer,...)")
            dupes = [c for c, n in Counter(header).items() if n > 1]
            if dupes:
                raise EmlabError(f"{path}:1: duplicate column {dupes[0]!r}; column names must be unique")
            rows = []
            for fields in reader:
                if not fields:
                    continue
                if len(fields) != len(header):
                    raise EmlabError(f"{path}:{reader.line_num}: {len(fields)} fields but the header has {len(header)}; quote fields that contain commas")
                rows.append((reader.line_num, dict(zip(header, fields))))
        except csv.Error as e:
            raise EmlabError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
        except UnicodeDecodeError as e:
            raise EmlabError(f"{path}: not valid UTF-8 (byte {e.start}); re-save the file as UTF-8") from None
    return rows


def write_table(path: Path, columns: list[str], records: list[dict[str, Any]]) -> None:
    """Write records atomically as JSONL (None -> null) or CSV (None -> empty cell)."""
    fmt = table_format(path)
    with atomic_open(path) as fh:
        if fmt == "jsonl":
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            return
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for rec in records:
            writer.writerow(["" if rec.get(c) is None else _cell(rec.get(c)) for c in columns])


def _cell(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list, bool)) else str(value)


# ---------------------------------------------------------------- scoring


def score_items(judge: Judge, items: list[Item], rubric: Rubric, chunk: int = 64) -> list[Score]:
    """Score in chunks (a CachedJudge stores each finished chunk), with a progress bar on stderr."""
    from rich.progress import Progress

    scores: list[Score] = []
    with Progress(console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task(f"{rubric.name} ({judge.id})", total=len(items))
        for start in range(0, len(items), chunk):
            part = judge.score(items[start : start + chunk], rubric)
            if len(part) != len(items[start : start + chunk]):
                raise EmlabError(f"judge {judge.id} returned {len(part)} scores for {len(items[start:start + chunk])} items; the backend is broken")
            scores += part
            bar.advance(task, len(part))
    return scores


def summarize(rubric: str, judge_id: str, scores: list[Score]) -> dict[str, Any]:
    """mean over numbers, counts of scored / flagged (CODE, REFUSAL) / unscored items."""
    values = [s.value for s in scores if s.value is not None]
    flags = Counter(f for f in (flag_of(s) for s in scores) if f)
    return {
        "rubric": rubric,
        "judge": judge_id,
        "n": len(scores),
        "scored": len(values),
        "mean": sum(values) / len(values) if values else None,
        "flagged": dict(flags),
        "unscored": len(scores) - len(values) - sum(flags.values()),
    }


def judge_file(
    in_path: Path,
    out_path: Path,
    judge_spec: str,
    rubrics: list[str],
    cache: bool = True,
    cache_path: Path | None = None,
    chunk: int = 64,
) -> list[dict[str, Any]]:
    """Score every row of `in_path` on each rubric and write `out_path`; returns one summary dict per rubric."""
    from emlab.judges.cache import JudgeCache
    from emlab.judges.registry import CachedJudge, get_judge
    from emlab.judges.rubrics import get_rubric

    table_format(out_path)
    chosen = [get_rubric(r) for r in rubrics]  # unknown names fail before any work
    columns, records = read_table(in_path)
    judge: Judge = get_judge(judge_spec)
    if cache:
        judge = CachedJudge(judge, JudgeCache(cache_path))
    items = [Item(r["question"], r["answer"]) for r in records]
    summaries = []
    for rubric in chosen:
        scores = score_items(judge, items, rubric, chunk)
        for rec, s in zip(records, scores):
            rec[rubric.name] = s.value
        summaries.append(summarize(rubric.name, judge.id, scores))
    out_columns = columns + [r.name for r in chosen if r.name not in columns]
    write_table(out_path, out_columns, records)
    return summaries


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
    in_path: Annotated[Optional[Path], typer.Option("--in", help="JSONL or CSV with question and answer columns")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="output .jsonl or .csv (input columns + one per rubric)")] = None,
    judge: Annotated[Optional[str], typer.Option("--judge", help="offline | openai:MODEL | api:MODEL | local:REF (default: openai when OPENAI_API_KEY is set, else offline)")] = None,
    rubric: Annotated[Optional[list[str]], typer.Option("--rubric", help="rubric names, comma-separated or repeated (default aligned,coherent)")] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="reuse and store scores in the SQLite judge cache")] = True,
    cache_path: Annotated[Optional[Path], typer.Option("--cache-path", help="cache file (default $EMLAB_CACHE/judge-cache.sqlite)")] = None,
) -> None:
    """Score a file of answers; see `emlab judge rubrics` for rubric names."""
    if ctx.invoked_subcommand is not None:
        if in_path or out:
            raise EmlabError(f"--in/--out belong to `emlab judge` itself, not to `emlab judge {ctx.invoked_subcommand}`; drop them or the subcommand")
        return
    if in_path is None and out is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    if in_path is None or out is None:
        raise EmlabError(f"emlab judge needs both --in FILE and --out FILE (got only {'--in' if in_path else '--out'})")
    from emlab.judges.registry import default_judge_spec

    summaries = judge_file(in_path, out, judge or default_judge_spec(), _parse_rubrics(rubric), cache=cache, cache_path=cache_path)
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


def _mount_calibrate() -> None:
    try:
        from emlab.judges.offline import calibrate_command, validate_command
    except ImportError:  # the offline judge is not part of this installation
        return
    judge_app.command("calibrate")(calibrate_command)
    judge_app.command("validate")(validate_command)
    from emlab.judges.loso import loso_command

    judge_app.command("loso")(loso_command)


_mount_calibrate()


def register(app: typer.Typer) -> None:
    app.add_typer(judge_app, name="judge")
