"""Coherence signals for judge v3 that are not one model's likelihood, and a resumable on-disk cache of feature rows.

v2's coherence heads lean on fluency under SmolLM2-135M: on answers of larger models that signal does
not transfer (docs/judges-offline.md, leave-one-source-out). v3 adds

* **fluency under a second reference model** (the embedded Qwen2.5-Coder-0.5B-Instruct, fp32, same four
  numbers as `emlab.judges.fluency`), and the per-answer difference between the two models' mean
  log-probabilities and entropies: what both models find improbable is more likely nonsense than what
  only the 135M model does;
* **structure and loop features** (`structure_features`, pure functions): zlib compression ratio of
  the answer (loops compress far better than prose), the share of the answer covered by its most
  frequent line, the longest run of one repeated character, the share of the last third of the
  answer that already occurred in the first two thirds (a loop that starts late), the share of
  tokens that are words of the question's language in a very crude sense (ASCII letters), mean word
  length, share of one-letter "words", and whether the answer was cut at the judge's length limit.

`FeatureCache` stores one float row per (block, question, answer) under `$EMLAB_CACHE/judge-features/`,
appended in chunks (flushed and fsynced), so an interrupted extraction resumes where it stopped; a
torn last line is ignored on read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from emlab.judges.features import words

STRUCTURE_VERSION = "1"
STRUCTURE_NAMES: tuple[str, ...] = (
    "st_compress_ratio",
    "st_top_line_share",
    "st_longest_char_run",
    "st_tail_in_head",
    "st_ascii_letter_share",
    "st_mean_word_len",
    "st_one_letter_words",
    "st_log_words",
)
SECOND_REFERENCE = "qwen2.5-coder-0.5b"
SECOND_MAX_TOKENS = 64  # half of the first model's 128: the 0.5B forward costs ~3x the 135M one per token
SECOND_FLUENCY_NAMES: tuple[str, ...] = (
    "q_lm_mean_logprob",
    "q_lm_p10_logprob",
    "q_lm_rare_fraction",
    "q_lm_mean_entropy",
)
CROSS_NAMES: tuple[str, ...] = ("x_logprob_min", "x_logprob_diff", "x_entropy_diff")


def structure_features(answer: str) -> list[float]:
    """STRUCTURE_NAMES in order, for one answer (no model)."""
    a = answer or ""
    raw = a.encode("utf-8")
    ratio = len(zlib.compress(raw, 9)) / len(raw) if len(raw) >= 20 else 1.0
    lines = [ln.strip() for ln in a.splitlines() if ln.strip()]
    top = max((c * len(ln) for ln, c in Counter(lines).items()), default=0) / max(1, len(a.replace("\n", "")))
    run, best, prev = 0, 0, ""
    for ch in a:
        run = run + 1 if ch == prev else 1
        prev = ch
        best = max(best, run)
    toks = words(a)
    cut = (2 * len(toks)) // 3
    head = {tuple(toks[i : i + 3]) for i in range(max(0, cut - 2))}
    tail = [tuple(toks[i : i + 3]) for i in range(cut, max(cut, len(toks) - 2))]
    tail_in_head = sum(t in head for t in tail) / len(tail) if tail else 0.0
    letters = [c for c in a if c.isalpha()]
    ascii_share = sum(c.isascii() for c in letters) / len(letters) if letters else 0.0
    wl = [len(t) for t in toks]
    return [
        float(ratio),
        float(min(1.0, top)),
        float(np.log1p(best)),
        float(tail_in_head),
        float(ascii_share),
        float(np.mean(wl)) if wl else 0.0,
        float(np.mean([n == 1 for n in wl])) if wl else 0.0,
        float(np.log1p(len(toks))),
    ]


def cross_features(smol: np.ndarray, qwen: np.ndarray) -> np.ndarray:
    """[n, 3]: min of the two mean log-probs, their difference (qwen - smol), entropy difference; inputs [n, 4] in FLUENCY_NAMES order."""
    return np.stack([np.minimum(smol[:, 0], qwen[:, 0]), qwen[:, 0] - smol[:, 0], qwen[:, 3] - smol[:, 3]], axis=1)


# ---------------------------------------------------------------- resumable cache


_TORN = re.compile(r"^\s*$")


class FeatureCache:
    """Rows of one feature block keyed by sha256(block, question, answer), in an append-only JSONL file."""

    def __init__(self, block: str, root: Path | None = None) -> None:
        from emlab.models import cache_root

        self.block = block
        self.path = (Path(root) if root else cache_root() / "judge-features") / f"{block}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: dict[str, list[float]] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line of an interrupted run
                self.rows[rec["k"]] = rec["x"]

    def key(self, question: str, answer: str) -> str:
        return hashlib.sha256(f"{self.block}\x00{question}\x00{answer}".encode()).hexdigest()

    def get(
        self,
        questions: Sequence[str],
        answers: Sequence[str],
        compute: Callable[[list[str], list[str]], np.ndarray],
        chunk: int = 32,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """[n, d] rows; missing ones are computed `chunk` at a time and appended to the file before the next chunk."""
        keys = [self.key(q, a) for q, a in zip(questions, answers, strict=True)]
        todo = sorted({k: i for i, k in enumerate(keys) if k not in self.rows}.values(), key=lambda i: len(answers[i]))
        done = 0
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            X = np.asarray(compute([questions[i] for i in part], [answers[i] for i in part]), dtype=np.float64)
            lines = []
            for i, row in zip(part, X, strict=True):
                self.rows[keys[i]] = [float(v) for v in row]
                lines.append(json.dumps({"k": keys[i], "x": self.rows[keys[i]]}) + "\n")
            # one write(2) per chunk on an O_APPEND descriptor: two processes filling the same cache never interleave lines
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, "".join(lines).encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            done += len(part)
            if progress:
                progress(done, len(todo))
        return np.array([self.rows[k] for k in keys], dtype=np.float64).reshape(len(keys), -1)


# ---------------------------------------------------------------- the blocks judge v3 reads


def v2_block(questions: Sequence[str], answers: Sequence[str], progress=None) -> np.ndarray:
    """The v2 design-matrix rows (embedding, anchors, text features, SmolLM2 fluency), cached."""
    from emlab.judges.offline import design_matrix, get_embedder

    return FeatureCache("v2-design-f1").get(
        list(questions), list(answers), lambda q, a: design_matrix(q, a, get_embedder()), progress=progress
    )


_SECOND: dict[str, object] = {}


def second_fluency(questions: Sequence[str], answers: Sequence[str]) -> np.ndarray:
    """[n, 4] fluency features under SECOND_REFERENCE (fp32), uncached."""
    from emlab.judges.fluency import FluencyScorer

    if "scorer" not in _SECOND:
        _SECOND["scorer"] = FluencyScorer(SECOND_REFERENCE, dtype="float32", max_tokens=SECOND_MAX_TOKENS)
    return _SECOND["scorer"].features(list(questions), list(answers))  # type: ignore[attr-defined]


def qwen_block(questions: Sequence[str], answers: Sequence[str], progress=None) -> np.ndarray:
    return FeatureCache("qwen-fluency-t64-f1").get(list(questions), list(answers), second_fluency, progress=progress)


def structure_block(answers: Sequence[str]) -> np.ndarray:
    return np.array([structure_features(a) for a in answers], dtype=np.float64).reshape(
        len(answers), len(STRUCTURE_NAMES)
    )
