"""The SQLite judge cache and the CachedJudge wrapper: keys, WAL, what is and is not cached."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from emlab.judges import CachedJudge, Item, JudgeCache, Score, get_rubric, rubric_from_prompt
from emlab.judges.api import OpenAIJudge
from emlab.judges.cache import default_cache_path
from emlab.judges.outcome import error_score, numeric_score
from tests.fake_judge_server import FakeJudgeServer, error, logprobs_reply

RUBRIC = rubric_from_prompt("t", "Q: {question}\nA: {answer}\nScore.")


class CountingJudge:
    """A test double: scores len(answer), or a scripted outcome for answers listed in `outcomes`."""

    id = "counting:v1"

    def __init__(self, outcomes: dict[str, Score] | None = None):
        self.outcomes = outcomes or {}
        self.seen: list[str] = []

    def score(self, items: list[Item], rubric) -> list[Score]:
        self.seen += [i.answer for i in items]
        return [self.outcomes.get(i.answer, Score(float(len(i.answer)), {"status": "ok"})) for i in items]


def test_put_then_get_round_trips_value_and_raw(tmp_path):
    cache = JudgeCache(tmp_path / "c.sqlite")
    items = [Item("q1", "a1"), Item("q2", "a2")]
    cache.put_many(
        "j",
        "aligned@1",
        items,
        [Score(12.5, {"top": [["12", 0.5]], "status": "ok"}), Score(None, {"status": "flag", "flag": "CODE"})],
    )
    got = cache.get_many("j", "aligned@1", [Item("q2", "a2"), Item("q3", "a3"), Item("q1", "a1")])
    assert got == [
        Score(None, {"status": "flag", "flag": "CODE"}),
        None,
        Score(12.5, {"top": [["12", 0.5]], "status": "ok"}),
    ]
    assert len(cache) == 2


def test_key_separates_judge_rubric_question_and_answer(tmp_path):
    cache = JudgeCache(tmp_path / "c.sqlite")
    cache.put_many("j", "aligned@1", [Item("q", "a")], [Score(1.0)])
    assert cache.get_many("j", "aligned@1", [Item("q", "a")])[0] == Score(1.0)
    for judge, rubric, item in [
        ("k", "aligned@1", Item("q", "a")),
        ("j", "aligned@2", Item("q", "a")),
        ("j", "aligned@1", Item("q", "b")),
        ("j", "aligned@1", Item("qq", "a")),
    ]:
        assert cache.get_many(judge, rubric, [item]) == [None]


def test_database_is_in_wal_mode_and_default_path_follows_emlab_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMLAB_CACHE", str(tmp_path / "root"))
    assert default_cache_path() == tmp_path / "root" / "judge-cache.sqlite"
    cache = JudgeCache()
    assert cache.path == default_cache_path() and cache.path.exists()
    with sqlite3.connect(cache.path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_concurrent_writers_lose_nothing(tmp_path):
    cache = JudgeCache(tmp_path / "c.sqlite")

    def write(k: int) -> None:
        for chunk in range(5):
            items = [Item(f"q{k}", f"a{chunk}-{i}") for i in range(20)]
            JudgeCache(cache.path).put_many("j", "r@1", items, [Score(float(i)) for i in range(20)])

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(cache) == 4 * 5 * 20


def test_cached_judge_sends_only_misses_and_keeps_order(tmp_path):
    inner = CountingJudge()
    judge = CachedJudge(inner, JudgeCache(tmp_path / "c.sqlite"))
    assert [s.value for s in judge.score([Item("q", "aa"), Item("q", "bbb")], RUBRIC)] == [2.0, 3.0]
    scores = judge.score([Item("q", "c"), Item("q", "bbb"), Item("q", "aa"), Item("q", "dddd")], RUBRIC)
    assert [s.value for s in scores] == [1.0, 3.0, 2.0, 4.0]
    assert inner.seen == ["aa", "bbb", "c", "dddd"]
    assert (judge.hits, judge.misses, judge.id) == (2, 4, "counting:v1")


def test_failed_items_are_not_cached_but_definite_non_numbers_are(tmp_path):
    outcomes = {
        "boom": error_score("HTTP 500", attempts=3),
        "code": numeric_score(None, 0.0, 0.25, flag="CODE"),
        "mumble": numeric_score(40.0, 0.1, 0.25),
        "odd": Score(None, {}),  # a None without a definite status counts as a failure
    }
    inner = CountingJudge(outcomes)
    judge = CachedJudge(inner, JudgeCache(tmp_path / "c.sqlite"))
    items = [Item("q", a) for a in ("boom", "code", "mumble", "odd", "fine")]
    first = judge.score(items, RUBRIC)
    assert [s.value for s in first] == [None, None, None, None, 4.0]
    assert [s.raw.get("status") for s in first[:3]] == ["error", "flag", "low_mass"]
    second = judge.score(items, RUBRIC)
    assert inner.seen == ["boom", "code", "mumble", "odd", "fine", "boom", "odd"]
    assert [s.raw.get("status") for s in second] == ["error", "flag", "low_mass", None, "ok"]


def test_second_run_against_the_api_sends_zero_requests(tmp_path):
    with FakeJudgeServer() as srv:
        srv.script("ans-1", logprobs_reply({"10": 0.5, "30": 0.5}))
        srv.script("ans-2", logprobs_reply({"CODE": 0.9, "0": 0.1}))
        srv.script("ans-3", error(500))
        api = OpenAIJudge("m", api_key="k", base_url=srv.base_url, base_delay=0.001, max_attempts=2)
        items = [Item("q", "ans-1"), Item("q", "ans-2"), Item("q", "ans-3")]
        cache = JudgeCache(tmp_path / "c.sqlite")
        first = CachedJudge(api, cache).score(items, get_rubric("aligned"))
        assert srv.count() == 1 + 1 + 2
        again = CachedJudge(api, cache).score(items[:2], get_rubric("aligned"))
        assert srv.count() == 4  # nothing new was sent
        assert again == first[:2] and again[0].value == pytest.approx(20.0) and again[1].raw["flag"] == "CODE"
        CachedJudge(api, cache).score(items, get_rubric("aligned"))
        assert srv.count("ans-3") == 4 and srv.count() == 6  # only the failed item is retried
        CachedJudge(api, cache).score(items[:1], get_rubric("coherent"))
        assert srv.count() == 7  # another rubric is another key
