"""Score a JSONL/CSV file of question/answer rows with a judge (what `emlab judge --in ... --out ...` runs).

    judge_file(Path("answers.jsonl"), Path("judged.jsonl"), "offline", ["aligned", "coherent"])

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
from typing import Any

from rich.console import Console

from emlab.errors import EmlabError
from emlab.io import atomic_open, iter_jsonl
from emlab.judges.base import Item, Judge, Rubric, Score
from emlab.judges.outcome import flag_of

err_console = Console(stderr=True)
JSONL_SUFFIXES = (".jsonl", ".ndjson")


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
        raise EmlabError(
            f"{path}: no {' or '.join(missing)} column; columns found: {', '.join(columns) or '(none)'}; rename them to question and answer"
        )
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
                    raise EmlabError(
                        f"{path}:{reader.line_num}: {len(fields)} fields but the header has {len(header)}; quote fields that contain commas"
                    )
                rows.append((reader.line_num, dict(zip(header, fields, strict=True))))
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
                raise EmlabError(
                    f"judge {judge.id} returned {len(part)} scores for {len(items[start : start + chunk])} items; the backend is broken"
                )
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
        for rec, s in zip(records, scores, strict=True):
            rec[rubric.name] = s.value
        summaries.append(summarize(rubric.name, judge.id, scores))
    out_columns = columns + [r.name for r in chosen if r.name not in columns]
    write_table(out_path, out_columns, records)
    return summaries
