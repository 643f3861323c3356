"""An append-only JSONL journal that survives `kill -9`.

Each `append` writes a whole batch with one write call, then flushes and fsyncs, so
after a crash at most the last line is incomplete. Reading back keeps only
committed lines: a final line without its newline, or one that does not parse
(torn write, NUL padding left by the filesystem), is dropped; any earlier bad line
is real corruption and an error. Records whose key was already seen are dropped
too, so a step that redoes a half-written batch never double counts.
Before the first append the torn tail is cut off, so new lines never glue onto it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from emlab.errors import EmlabError

KeyFn = Callable[[dict[str, Any]], Hashable]


class Journal:
    """JSONL records keyed by `key(record)`; `read()` returns committed, de-duplicated records in order."""

    def __init__(self, path: str | os.PathLike, key: KeyFn):
        self.path = Path(path)
        self.key = key
        self._repaired = False

    def read(self) -> list[dict[str, Any]]:
        records, _ = self._scan()
        seen: set[Hashable] = set()
        out = []
        for rec in records:
            k = self.key(rec)
            if k not in seen:
                seen.add(k)
                out.append(rec)
        return out

    def keys(self) -> set[Hashable]:
        return {self.key(r) for r in self.read()}

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append records durably: one write, flush, fsync."""
        if not records:
            return
        if not self._repaired:
            self.repair()
        blob = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())

    def repair(self) -> int:
        """Cut a torn final line off the file; return how many bytes were removed."""
        self._repaired = True
        if not self.path.exists():
            return 0
        _, good_end = self._scan()
        size = self.path.stat().st_size
        if good_end < size:
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
                fh.flush()
                os.fsync(fh.fileno())
        return size - good_end

    def _scan(self) -> tuple[list[dict[str, Any]], int]:
        """Committed records and the byte offset where the committed part of the file ends."""
        if not self.path.exists():
            return [], 0
        data = self.path.read_bytes()
        lines = data.split(b"\n")  # the last element is b"" when the file ends with a newline
        records: list[dict[str, Any]] = []
        offset = 0
        for lineno, raw in enumerate(lines, start=1):
            last = lineno == len(lines) or (lineno == len(lines) - 1 and lines[-1] == b"")
            terminated = lineno < len(lines)
            rec = _parse(raw) if raw.strip() else None
            if raw.strip() and (rec is None or not terminated):
                if last:
                    break  # torn write: drop it
                raise EmlabError(
                    f"{self.path}:{lineno}: corrupt journal line (not a JSON object) before the end of the file; restore the file or start a fresh run"
                )
            if rec is not None:
                records.append(rec)
            if terminated:
                offset += len(raw) + 1
        return records, offset


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        rec = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) else None
