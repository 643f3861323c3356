"""Atomic writes and line-numbered readers for artifacts on disk.

Every artifact is written to a temporary file in the destination folder and
renamed into place, so an interrupted process never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from emlab.errors import EmlabError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` on success, delete it on failure."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces `path` only when the block completes."""
    if "b" in mode:
        encoding = None
    with atomic_path(path) as tmp, open(tmp, mode, encoding=encoding) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_open(path) as fh:
        json.dump(obj, fh, indent=2, sort_keys=False, default=str)
        fh.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EmlabError(f"{p}: file not found") from None
    except json.JSONDecodeError as e:
        raise EmlabError(f"{p}:{e.lineno}: invalid JSON ({e.msg}); fix or regenerate the file") from None


def write_jsonl(path: str | os.PathLike, records: list[dict]) -> None:
    with atomic_open(path) as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) for each non-blank line; errors name file:line."""
    p = Path(path)
    if not p.exists():
        raise EmlabError(f"{p}: file not found; check the path")
    with open(p, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise EmlabError(f"{p}:{lineno}: not valid UTF-8 (byte {e.start}); re-save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise EmlabError(
                    f"{p}:{lineno}: invalid JSON at column {e.colno} ({e.msg}); one JSON object per line"
                ) from None
            if not isinstance(rec, dict):
                raise EmlabError(f"{p}:{lineno}: expected a JSON object, got {type(rec).__name__}")
            yield lineno, rec


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    return [rec for _, rec in iter_jsonl(path)]
