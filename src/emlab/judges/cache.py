"""A SQLite cache of judge scores, so no (judge, rubric, question, answer) is ever paid for twice.

Key: (judge id, rubric key `id@version`, sha256 of the question, sha256 of the answer).
Row: the value (NULL for a definite non-number such as a REFUSAL flag) and the raw JSON.
The database runs in WAL mode, so readers never block the one writer; each call
opens its own short-lived connection, which makes the cache safe to share between
threads and processes (concurrent writers wait on SQLite's lock, up to `timeout` s).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from emlab.errors import EmlabError
from emlab.judges.base import Item, Score

CACHE_FILE = "judge-cache.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    judge TEXT NOT NULL,
    rubric TEXT NOT NULL,
    question_sha256 TEXT NOT NULL,
    answer_sha256 TEXT NOT NULL,
    value REAL,
    raw TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (judge, rubric, question_sha256, answer_sha256)
) WITHOUT ROWID
"""


def default_cache_path() -> Path:
    """`$EMLAB_CACHE/judge-cache.sqlite` (EMLAB_CACHE defaults to ~/.cache/emlab)."""
    from emlab.models import cache_root

    return cache_root() / CACHE_FILE


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class JudgeCache:
    """Scores keyed by judge, rubric and content hashes, in one SQLite file."""

    def __init__(self, path: str | os.PathLike | None = None, timeout: float = 60.0):
        self.path = Path(path) if path is not None else default_cache_path()
        self.timeout = timeout
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as con:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise EmlabError(f"judge cache {self.path}: {e}; delete the file or pass --no-cache") from None
        except OSError as e:
            raise EmlabError(
                f"judge cache {self.path}: cannot create it ({e.strerror}); set EMLAB_CACHE to a writable folder or pass --no-cache"
            ) from None

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=self.timeout)
        try:
            con.execute("PRAGMA synchronous=NORMAL")
            with con:  # one transaction: commit on success, roll back on error
                yield con
        finally:
            con.close()

    def get_many(self, judge_id: str, rubric_key: str, items: list[Item]) -> list[Score | None]:
        """The cached score for each item, or None where there is none."""
        out: list[Score | None] = []
        with self._connect() as con:
            for item in items:
                row = con.execute(
                    "SELECT value, raw FROM scores WHERE judge=? AND rubric=? AND question_sha256=? AND answer_sha256=?",
                    (judge_id, rubric_key, text_sha256(item.question), text_sha256(item.answer)),
                ).fetchone()
                out.append(None if row is None else Score(value=row[0], raw=json.loads(row[1])))
        return out

    def put_many(self, judge_id: str, rubric_key: str, items: list[Item], scores: list[Score]) -> None:
        """Store (or replace) one score per item, in a single transaction."""
        if len(items) != len(scores):
            raise ValueError(f"put_many got {len(items)} items but {len(scores)} scores")
        now = time.time()
        rows = [
            (
                judge_id,
                rubric_key,
                text_sha256(i.question),
                text_sha256(i.answer),
                s.value,
                json.dumps(s.raw, ensure_ascii=False),
                now,
            )
            for i, s in zip(items, scores, strict=True)
        ]
        with self._connect() as con:
            con.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def __len__(self) -> int:
        with self._connect() as con:
            return int(con.execute("SELECT COUNT(*) FROM scores").fetchone()[0])
