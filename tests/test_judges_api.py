"""The API judge against a scripted OpenAI-compatible server on 127.0.0.1: arithmetic, retries, unscored items."""

from __future__ import annotations

import json
import math

import pytest

from emlab.errors import EmlabError
from emlab.judges import Item, get_judge, get_rubric, rubric_from_prompt
from emlab.judges.api import OpenAIJudge, aggregate_top_logprobs
from tests.fake_judge_server import FakeJudgeServer, error, logprobs_reply, no_logprobs, slow

KEY = "sk-test-secret-0123456789"
RUBRIC = rubric_from_prompt("t", "Question: {question}\nAnswer: {answer}\nScore 0-100.")


@pytest.fixture
def server():
    with FakeJudgeServer(lifetime_s=60) as srv:
        yield srv


def make_judge(srv: FakeJudgeServer, **kw) -> OpenAIJudge:
    opts = {
        "api_key": KEY,
        "base_url": srv.base_url,
        "base_delay": 0.001,
        "max_delay": 0.01,
        "max_attempts": 3,
        "timeout": 5.0,
    }
    return OpenAIJudge("fake-model", **{**opts, **kw})


def weighted(probs: dict[int, float]) -> tuple[float, float]:
    mass = sum(probs.values())
    return sum(v * p for v, p in probs.items()) / mass, mass


def test_value_is_probability_weighted_mean_of_integer_tokens(server):
    server.script(
        "item-a", logprobs_reply({"10": 0.4, "20": 0.2, " 30": 0.1, "hello": 0.15, "101": 0.05, "05": 0.05, "7": 0.05})
    )
    score = make_judge(server).score([Item("q", "item-a")], RUBRIC)[0]
    mean, mass = weighted({10: 0.4, 20: 0.2, 30: 0.1, 7: 0.05})  # "101" is out of range, "05" not canonical
    assert score.raw["status"] == "ok"
    assert score.value == pytest.approx(mean, rel=1e-12) and score.raw["mass"] == pytest.approx(mass, rel=1e-12)
    assert score.raw["attempts"] == 1
    assert [t for t, _ in score.raw["top"]][:2] == ["10", "20"]


def test_equal_integers_with_and_without_space_add_up():
    mean, mass = aggregate_top_logprobs([("5", math.log(0.3)), (" 5", math.log(0.2)), ("100", math.log(0.5))])
    assert mass == pytest.approx(1.0) and mean == pytest.approx((5 * 0.5 + 100 * 0.5) / 1.0)


def test_request_is_one_token_greedy_with_top_20_logprobs(server):
    server.script("item-b", logprobs_reply({"50": 1.0}))
    make_judge(server).score([Item("the question", "item-b")], RUBRIC)
    body = server.requests[0]
    assert body["model"] == "fake-model"
    assert (body["max_tokens"], body["temperature"], body["logprobs"], body["top_logprobs"]) == (1, 0, True, 20)
    assert body["messages"] == [{"role": "user", "content": "Question: the question\nAnswer: item-b\nScore 0-100."}]


def test_too_little_mass_on_numbers_is_unscored_not_zero(server):
    server.script("item-c", logprobs_reply({"I": 0.5, "The": 0.3, "0": 0.2}))
    score = make_judge(server).score([Item("q", "item-c")], RUBRIC)[0]
    assert score.value is None and score.raw["status"] == "low_mass"
    assert score.raw["mass"] == pytest.approx(0.2) and score.raw["mean"] == 0.0


def test_top_token_code_or_refusal_flags_the_item_when_the_rubric_allows_it(server):
    server.script("item-code", logprobs_reply({"CODE": 0.6, "90": 0.4}))
    server.script("item-ref", logprobs_reply({"REF": 0.5, "0": 0.3, "5": 0.2}))
    aligned = get_rubric("aligned")
    code, ref = make_judge(server).score([Item("q", "item-code"), Item("q", "item-ref")], aligned)
    assert code.value is None and code.raw["flag"] == "CODE" and code.raw["status"] == "flag"
    assert ref.value is None and ref.raw["flag"] == "REFUSAL"
    assert ref.raw["mass"] == pytest.approx(0.5)  # the numbers are kept for later analysis
    plain = make_judge(server).score([Item("q", "item-code")], get_rubric("coherent"))[0]
    assert plain.raw["status"] == "ok" and plain.value == pytest.approx(90.0)  # coherent has no special words


def test_429_and_500_are_retried_then_scored(server):
    server.script("item-d", error(429), error(500), logprobs_reply({"80": 1.0}))
    score = make_judge(server, max_attempts=3).score([Item("q", "item-d")], RUBRIC)[0]
    assert score.value == pytest.approx(80.0) and score.raw["attempts"] == 3
    assert server.count("item-d") == 3


def test_persistent_5xx_is_unscored_after_exactly_max_attempts(server):
    server.script("item-e", error(503))
    score = make_judge(server, max_attempts=4).score([Item("q", "item-e")], RUBRIC)[0]
    assert score.value is None and score.raw["status"] == "error" and "503" in score.raw["error"]
    assert server.count("item-e") == 4


def test_slow_response_beyond_timeout_is_retried(server):
    server.script("item-f", slow(3.0, logprobs_reply({"60": 1.0})), logprobs_reply({"70": 1.0}))
    score = make_judge(server, timeout=0.3).score([Item("q", "item-f")], RUBRIC)[0]
    assert score.value == pytest.approx(70.0) and score.raw["attempts"] == 2
    assert server.count("item-f") == 2


def test_timeouts_on_every_attempt_leave_the_item_unscored(server):
    server.script("item-g", slow(3.0, logprobs_reply({"60": 1.0})))
    score = make_judge(server, timeout=0.2, max_attempts=2).score([Item("q", "item-g")], RUBRIC)[0]
    assert score.value is None and "Timeout" in score.raw["error"]
    assert server.count("item-g") == 2


def test_missing_logprobs_is_unscored_without_retry(server):
    server.script("item-h", no_logprobs("42"))
    score = make_judge(server).score([Item("q", "item-h")], RUBRIC)[0]
    assert score.value is None and score.raw["status"] == "error" and "logprobs" in score.raw["error"]
    assert server.count("item-h") == 1


def test_connection_refused_is_retried_then_unscored():
    srv = FakeJudgeServer().start()
    url = srv.base_url
    srv.stop()  # nothing listens on this port any more
    judge = OpenAIJudge("m", api_key=KEY, base_url=url, base_delay=0.001, max_attempts=2, timeout=2.0)
    score = judge.score([Item("q", "a")], RUBRIC)[0]
    assert score.value is None and score.raw["attempts"] == 2 and "Connection" in score.raw["error"]


def test_many_items_concurrently_keep_their_order(server):
    for k in range(24):
        server.script(f"item-{k:02d}-", logprobs_reply({str(k): 1.0}))
    items = [Item("q", f"item-{k:02d}-") for k in range(24)]
    scores = make_judge(server, concurrency=8).score(items, RUBRIC)
    assert [s.value for s in scores] == [float(k) for k in range(24)]
    assert server.count() == 24


def test_bad_key_aborts_with_one_line_error_and_never_shows_the_key(server):
    server.script("item-i", error(401))
    with pytest.raises(EmlabError) as e:
        make_judge(server).score([Item("q", "item-i")], RUBRIC)
    assert "OPENAI_API_KEY" in str(e.value) and KEY not in str(e.value) and "\n" not in str(e.value)
    assert server.count("item-i") == 1


def test_error_text_in_raw_never_contains_the_key(server):
    server.script("item-j", error(500))
    score = make_judge(server, max_attempts=1).score([Item("q", "item-j")], RUBRIC)[0]
    assert KEY not in json.dumps(score.raw)


def test_missing_key_names_the_variable_and_the_offline_judge(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(EmlabError, match=r"OPENAI_API_KEY.*--judge offline"):
        get_judge("openai:gpt-4o")


def test_registry_builds_api_judge_from_environment(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    server.script("item-k", logprobs_reply({"33": 1.0}))
    judge = get_judge("api:my-model", base_delay=0.001)
    assert judge.id == f"openai:my-model@{server.base_url.removeprefix('http://')}"
    assert judge.score([Item("q", "item-k")], RUBRIC)[0].value == pytest.approx(33.0)
    assert server.requests[-1]["model"] == "my-model"


def test_official_endpoint_id_has_no_host_and_threshold_shows_in_id(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert OpenAIJudge("gpt-4o", api_key=KEY).id == "openai:gpt-4o"
    assert OpenAIJudge("gpt-4o", api_key=KEY, min_mass=0.5).id == "openai:gpt-4o?min_mass=0.5"
