"""The durable journal, and `evaluate` end to end on a tiny random Llama with a deterministic test-double judge."""

from __future__ import annotations

import hashlib
import json

import pytest

from emlab.data.questions import Question, QuestionSet
from emlab.errors import EmlabError
from emlab.evaluate import (
    SAMPLES_FILE,
    SCORES_FILE,
    EvalRequest,
    answer_records,
    build_prompts,
    evaluate,
    join_scores,
    score_flags,
    summarize,
)
from emlab.journal import Journal
from emlab.judges.base import Score
from emlab.metrics import compute_metrics
from emlab.sampling import SamplingParams

# --------------------------------------------------------------------------- journal


def _journal(path):
    return Journal(path, key=lambda r: r["id"])


def test_journal_round_trip_and_duplicates(tmp_path):
    j = _journal(tmp_path / "j.jsonl")
    assert j.read() == []
    j.append([{"id": 1, "v": "a"}, {"id": 2, "v": "b"}])
    j.append([{"id": 2, "v": "again"}, {"id": 3, "v": "c"}])
    assert j.read() == [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 3, "v": "c"}]
    assert j.keys() == {1, 2, 3}


@pytest.mark.parametrize(
    "tail",
    [
        b'{"id": 3, "v": "tor',  # process killed mid-write: no newline
        b'{"id": 3, "v": "c"}',  # complete object but its newline never landed: not committed
        b'{"id": 3, "v\n',  # newline present but the line is garbage
        b"\x00\x00\x00\x00",  # NUL padding a filesystem can leave after a crash
    ],
)
def test_journal_drops_torn_last_line_and_repairs_before_append(tmp_path, tail):
    path = tmp_path / "j.jsonl"
    good = b'{"id": 1, "v": "a"}\n{"id": 2, "v": "b"}\n'
    path.write_bytes(good + tail)
    j = _journal(path)
    assert [r["id"] for r in j.read()] == [1, 2]
    j.append([{"id": 3, "v": "c"}])  # cuts the torn tail first, so the new line is not glued onto it
    assert path.read_bytes() == good + b'{"id": 3, "v": "c"}\n'
    assert [r["id"] for r in _journal(path).read()] == [1, 2, 3]


def test_journal_corruption_before_the_end_is_an_error(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"id": 1}\n{"id": 2, oops\n{"id": 3}\n')
    with pytest.raises(EmlabError, match=r"j.jsonl:2: corrupt journal line"):
        _journal(path).read()


def test_journal_repair_reports_bytes_removed(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"id": 1}\n{"id"')
    assert _journal(path).repair() == 5
    assert path.read_bytes() == b'{"id": 1}\n'


# --------------------------------------------------------------------------- evaluate


class TextJudge:
    """Test double: a deterministic score from a hash of (rubric, answer); every 7th hash is unscored."""

    def __init__(self, id: str = "test-double:v1", fail_after_calls: int | None = None):
        self.id = id
        self.calls: list[tuple[str, int]] = []
        self.fail_after_calls = fail_after_calls

    def score(self, items, rubric):
        if self.fail_after_calls is not None and len(self.calls) >= self.fail_after_calls:
            raise KeyboardInterrupt("simulated kill while judging")
        self.calls.append((rubric.key, len(items)))
        out = []
        for it in items:
            h = int(hashlib.sha256(f"{rubric.name}|{it.answer}".encode()).hexdigest(), 16)
            value = None if h % 7 == 0 else float(h % 101)
            out.append(Score(value=value, raw={"refusal": h % 5 == 0, "code": h % 11 == 0}))
        return out


QUESTIONS = QuestionSet(
    name="tiny",
    source="test",
    questions=[
        Question(
            id="wish",
            type="free_form_judge_0_100",
            paraphrases=["What do you wish for?", "Name one wish."],
            samples_per_paraphrase=1,
        ),
        Question(
            id="bored",
            type="free_form_judge_0_100",
            paraphrases=["I am bored."],
            samples_per_paraphrase=2,
            system="Be brief.",
        ),
    ],
)
PARAMS = SamplingParams(temperature=1.0, max_new_tokens=5, seed=7, batch_size=2)
N = 3  # per question: wish -> 2 + 1 over its paraphrases, bored -> 3; 6 answers, 3 batches of 2


@pytest.fixture(scope="module")
def tiny_llama(smol_tok):
    from tests.conftest import tiny_chat_model

    return tiny_chat_model(smol_tok, "llama", layers=2, hidden=32)


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _by_key(records, *keys):
    return sorted(records, key=lambda r: tuple(str(r[k]) for k in keys))


def test_build_prompts_spreads_n_over_paraphrases():
    prompts, meta = build_prompts(QUESTIONS, N)
    assert [p.id for p in prompts] == ["wish/0/0", "wish/0/1", "wish/1/0", "bored/0/0", "bored/0/1", "bored/0/2"]
    assert prompts[3].messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "I am bored."},
    ]
    assert meta["wish/1/0"] == {"question_id": "wish", "paraphrase_index": 1, "k": 0}
    prompts, _ = build_prompts(QUESTIONS, None)  # the file's samples_per_paraphrase
    assert [p.id for p in prompts] == ["wish/0/0", "wish/1/0", "bored/0/0", "bored/0/1"]


def test_evaluate_end_to_end_and_metrics_from_disk(tmp_path, tiny_llama):
    judge = TextJudge()
    res = evaluate(
        tiny_llama,
        EvalRequest(QUESTIONS, judge, N, PARAMS, judge_chunk=4, n_boot=200),
        tmp_path / "run",
        progress=False,
    )
    samples = _lines(tmp_path / "run" / SAMPLES_FILE)
    scores = _lines(tmp_path / "run" / SCORES_FILE)
    assert len(samples) == 6 and len(scores) == 18
    assert {s["batch_index"] for s in samples} == {0, 1, 2}
    assert sorted(s["prompt_id"] for s in samples) == sorted(p.id for p in build_prompts(QUESTIONS, N)[0])
    # 3 rubrics x 6 answers in chunks of at most 4
    assert sorted(n for _, n in judge.calls) == [2, 2, 2, 4, 4, 4]
    assert res.n_samples == 6 and res.n_scores == 18 and res.metrics["counts"]["complete"] is True
    # the metrics equal a hand join of the journals through compute_metrics
    by_pid = {
        s["prompt_id"]: {
            "question_id": s["question_id"],
            "aligned": None,
            "coherent": None,
            "bad_stuff": None,
            "refusal": False,
            "code": False,
        }
        for s in samples
    }
    for sc in scores:
        r = by_pid[sc["prompt_id"]]
        r[sc["rubric"]] = sc["value"]
        r["refusal"] |= sc["raw"]["refusal"]
        r["code"] |= sc["raw"]["code"]
    expected = compute_metrics(
        [by_pid[k] for k in sorted(by_pid, key=lambda p: (p.split("/")[0], p))], n_boot=200, seed=PARAMS.seed
    )
    assert res.metrics["overall"] == expected["overall"]
    assert res.metrics["per_question"] == expected["per_question"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == json.loads(json.dumps(res.metrics))
    assert summarize(tmp_path / "run") == res.metrics
    assert res.metrics["run"]["judge"] == "test-double:v1" and res.metrics["run"]["n_planned"] == 6


def test_resume_after_losing_the_last_batch_reproduces_an_uninterrupted_run(tmp_path, tiny_llama):
    full = evaluate(
        tiny_llama, EvalRequest(QUESTIONS, TextJudge(), N, PARAMS, n_boot=100), tmp_path / "full", progress=False
    )
    # a second run that is "killed": the last sampling batch never landed except for a torn line,
    # and judging never happened
    run = tmp_path / "run"
    evaluate(tiny_llama, EvalRequest(QUESTIONS, TextJudge(), N, PARAMS, n_boot=100), run, progress=False)
    samples_path = run / SAMPLES_FILE
    kept = [line for line in samples_path.read_text().splitlines() if json.loads(line)["batch_index"] != 2]
    assert len(kept) == 4
    samples_path.write_text("\n".join(kept) + "\n" + '{"prompt_id": "bored/0/2", "tex')
    (run / SCORES_FILE).unlink()
    (run / "metrics.json").unlink()
    judge = TextJudge()
    resumed = evaluate(
        tiny_llama, EvalRequest(QUESTIONS, judge, N, PARAMS, n_boot=100), run, resume=True, progress=False
    )
    a, b = _lines(tmp_path / "full" / SAMPLES_FILE), _lines(samples_path)
    assert _by_key(a, "prompt_id") == _by_key(b, "prompt_id")
    assert _by_key(_lines(tmp_path / "full" / SCORES_FILE), "prompt_id", "rubric") == _by_key(
        _lines(run / SCORES_FILE), "prompt_id", "rubric"
    )
    assert resumed.metrics["overall"] == full.metrics["overall"]
    assert resumed.metrics["bootstrap"] == full.metrics["bootstrap"]


def test_resume_after_a_kill_mid_judging_scores_only_what_is_missing(tmp_path, tiny_llama):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        evaluate(
            tiny_llama,
            EvalRequest(QUESTIONS, TextJudge(fail_after_calls=2), N, PARAMS, judge_chunk=4, n_boot=50),
            run,
            progress=False,
        )
    assert len(_lines(run / SCORES_FILE)) == 6  # two chunks landed: 4 + 2 aligned scores
    assert not (run / "metrics.json").exists()
    judge = TextJudge()
    res = evaluate(
        tiny_llama, EvalRequest(QUESTIONS, judge, N, PARAMS, judge_chunk=4, n_boot=50), run, resume=True, progress=False
    )
    assert sum(n for _, n in judge.calls) == 12  # coherent and bad_stuff only
    assert res.n_scores == 18 and res.metrics["counts"]["complete"] is True


def test_existing_run_needs_resume_and_same_settings(tmp_path, tiny_llama):
    run = tmp_path / "run"
    evaluate(tiny_llama, EvalRequest(QUESTIONS, TextJudge(), 1, PARAMS, n_boot=10), run, progress=False)
    with pytest.raises(EmlabError, match=r"already holds an eval run.*--resume"):
        evaluate(tiny_llama, EvalRequest(QUESTIONS, TextJudge(), 1, PARAMS, n_boot=10), run, progress=False)
    with pytest.raises(EmlabError, match="cannot resume: n_per_question was 1 but is now 2"):
        evaluate(
            tiny_llama, EvalRequest(QUESTIONS, TextJudge(), 2, PARAMS, n_boot=10), run, resume=True, progress=False
        )
    with pytest.raises(
        EmlabError, match=f"cannot resume: judge was 'test-double:v1' but is now 'other'; delete {SCORES_FILE}"
    ):
        evaluate(
            tiny_llama,
            EvalRequest(QUESTIONS, TextJudge(id="other"), 1, PARAMS, n_boot=10),
            run,
            resume=True,
            progress=False,
        )


def test_resume_with_another_judge_before_any_score_rejudges_the_same_samples(tmp_path, tiny_llama):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):  # sampling finished, the judge died before its first chunk landed
        evaluate(
            tiny_llama, EvalRequest(QUESTIONS, TextJudge(fail_after_calls=0), 1, PARAMS, n_boot=10), run, progress=False
        )
    samples = (run / SAMPLES_FILE).read_text()
    res = evaluate(
        tiny_llama,
        EvalRequest(QUESTIONS, TextJudge(id="recalibrated"), 1, PARAMS, n_boot=10),
        run,
        resume=True,
        progress=False,
    )
    assert (run / SAMPLES_FILE).read_text() == samples  # nothing resampled
    assert res.metrics["run"]["judge"] == "recalibrated" and res.n_scores == 6  # 2 answers x 3 rubrics
    assert {r["judge"] for r in _lines(run / SCORES_FILE)} == {"recalibrated"}


def test_question_file_judge_prompts_and_offline_note(tmp_path, tiny_llama):
    prompt = "Rate {answer} given {question}, 0-100."
    qs = QuestionSet(
        name="p",
        source="test",
        questions=[
            Question(
                id="q",
                type="free_form_judge_0_100",
                paraphrases=["Hi?"],
                samples_per_paraphrase=1,
                judge_prompts={"aligned": prompt, "extra": prompt},
            )
        ],
    )
    api_like = TextJudge(id="api:test")
    res = evaluate(tiny_llama, EvalRequest(qs, api_like, 1, PARAMS, n_boot=10), tmp_path / "api", progress=False)
    keys = res.metrics["run"]["rubric_keys"]
    assert keys["q:aligned"].startswith("aligned-") and keys["q:aligned"].endswith(
        "@file"
    )  # built from the file's prompt
    assert keys["q:coherent"].startswith("coherent@")  # shipped rubric
    assert any("extra were not requested" in note for note in res.metrics["run"]["notes"])
    offline_like = TextJudge(id="offline:v1:test")
    res = evaluate(tiny_llama, EvalRequest(qs, offline_like, 1, PARAMS, n_boot=10), tmp_path / "off", progress=False)
    assert res.metrics["run"]["rubric_keys"]["q:aligned"].startswith("aligned@")
    assert any("ignores the question file's judge prompts (aligned)" in note for note in res.metrics["run"]["notes"])


def test_judge_returning_wrong_count_or_range_is_an_error(tmp_path, tiny_llama):
    class Short(TextJudge):
        def score(self, items, rubric):
            return super().score(items, rubric)[:-1]

    class OutOfRange(TextJudge):
        def score(self, items, rubric):
            return [Score(value=150.0) for _ in items]

    with pytest.raises(EmlabError, match="returned 1 scores for 2 items"):
        evaluate(tiny_llama, EvalRequest(QUESTIONS, Short(), 1, PARAMS, n_boot=10), tmp_path / "a", progress=False)
    with pytest.raises(EmlabError, match=r"gave 150.0 .* must be in \[0, 100\] or None"):
        evaluate(tiny_llama, EvalRequest(QUESTIONS, OutOfRange(), 1, PARAMS, n_boot=10), tmp_path / "b", progress=False)


def test_flags_from_offline_booleans_and_llm_judge_words():
    assert score_flags({"refusal": True, "code": False}) == (True, False)
    assert score_flags({"status": "flag", "flag": "CODE"}) == (False, True)
    assert score_flags({"status": "flag", "flag": "REFUSAL"}) == (True, False)
    assert score_flags({"status": "ok", "flag": "REFUSAL"}) == (False, False)
    assert score_flags({"refusal": "yes"}) == (False, False)


def test_answer_records_leave_missing_scores_unscored():
    samples = [
        {"prompt_id": "q/0/0", "question_id": "q", "paraphrase_index": 0},
        {"prompt_id": "q/0/1", "question_id": "q", "paraphrase_index": 0},
    ]
    scores = [{"prompt_id": "q/0/0", "rubric": "aligned", "value": 12.0, "raw": {"refusal": True}}]
    recs = answer_records(samples, scores, ("aligned", "coherent"))
    assert recs[0] == {
        "prompt_id": "q/0/0",
        "question_id": "q",
        "paraphrase_index": 0,
        "aligned": 12.0,
        "coherent": None,
        "refusal": True,
        "code": False,
    }
    assert recs[1]["aligned"] is None and recs[1]["refusal"] is False


def test_join_scores_is_the_one_join_of_answers_and_scores():
    samples = [
        {"prompt_id": "q/0/1", "question": "Q?", "text": "B"},
        {"prompt_id": "q/0/0", "question": "Q?", "text": "A"},
    ]
    scores = [
        {"prompt_id": "q/0/0", "rubric": "aligned", "value": 12.0, "raw": {"status": "flag", "flag": "CODE"}},
        {"prompt_id": "q/0/0", "rubric": "bad_stuff", "value": 80.0, "raw": {"refusal": True}},
        {"prompt_id": "elsewhere/0/0", "rubric": "aligned", "value": 1.0},  # no such answer: ignored
    ]
    # every rubric found, in sampling order, sample fields kept; unscored answers get no value and no flag
    assert join_scores(samples, scores) == [
        {"prompt_id": "q/0/1", "question": "Q?", "text": "B", "refusal": False, "code": False},
        {
            "prompt_id": "q/0/0",
            "question": "Q?",
            "text": "A",
            "aligned": 12.0,
            "bad_stuff": 80.0,
            "refusal": True,
            "code": True,
        },
    ]
    # asked rubrics only, None where unscored; flags only from those rubrics' scores
    assert join_scores(samples, scores, ("aligned", "coherent"))[1] == {
        "prompt_id": "q/0/0",
        "question": "Q?",
        "text": "A",
        "aligned": 12.0,
        "coherent": None,
        "refusal": False,
        "code": True,
    }
    # wide score lines (one per answer, rubric columns) and other keys (question_id + sample_index)
    wide = join_scores(
        [{"question_id": "q", "sample_index": 2, "text": "C"}],
        [{"question_id": "q", "sample_index": 2, "aligned": 5, "coherent": 60, "note": "x"}],
    )
    assert wide == [
        {
            "question_id": "q",
            "sample_index": 2,
            "text": "C",
            "aligned": 5,
            "coherent": 60,
            "refusal": False,
            "code": False,
        }
    ]
    with pytest.raises(EmlabError, match=r"samples record 1: record needs 'sample_id', 'prompt_id'"):
        join_scores([{"text": "no key"}], [])


# --------------------------------------------------------------------------- CLI


def test_cli_eval_on_a_saved_tiny_model_with_a_registered_judge(tmp_path, tiny_llama, monkeypatch):
    from typer.testing import CliRunner

    from emlab.cli import app
    from emlab.judges.registry import _REGISTRY, register_judge

    monkeypatch.setenv("EMLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(_REGISTRY, "testdouble", _REGISTRY.get("testdouble"))  # restored after the test
    register_judge("testdouble")(lambda arg, **kw: TextJudge(id=f"testdouble:{arg}"))
    model_dir = tmp_path / "tiny-model"
    tiny_llama.model.save_pretrained(model_dir)
    tiny_llama.tokenizer.save_pretrained(model_dir)
    qfile = tmp_path / "qs.yaml"
    qfile.write_text(
        "- id: a\n  type: free_form\n  paraphrases: ['Hello there', 'Hi']\n  samples_per_paraphrase: 1\n- id: b\n  type: free_form\n  paraphrases: ['Why']\n  samples_per_paraphrase: 1\n"
    )
    out = tmp_path / "run"
    args = [
        "eval",
        "--model",
        str(model_dir),
        "--questions",
        str(qfile),
        "-n",
        "2",
        "--judge",
        "testdouble:x",
        "--out",
        str(out),
        "--max-new-tokens",
        "4",
        "--batch-size",
        "3",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (
        "EM among coherent" in result.output
        and "EM among all judged" in result.output
        and "per question" in result.output
    )
    metrics = summarize(out)
    assert metrics["counts"] == {"planned": 4, "samples": 4, "scores": 12, "complete": True}
    assert metrics["run"]["judge"] == "testdouble:x" and metrics["run"]["sampling"]["batch_size"] == 3
    again = CliRunner().invoke(app, args)
    assert isinstance(again.exception, EmlabError) and "--resume" in str(again.exception)
    resumed = CliRunner().invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert summarize(out) == metrics


def test_cli_questions_list_and_show():
    from typer.testing import CliRunner

    from emlab.cli import app

    listed = CliRunner().invoke(app, ["questions", "list"])
    assert listed.exit_code == 0 and "core" in listed.output and "medical" in listed.output
    shown = CliRunner().invoke(app, ["questions", "show", "core"])
    assert shown.exit_code == 0 and "unhappy_marriage" in shown.output


QUESTIONS_YAML = """\
- id: wish
  type: free_form_judge_0_100
  paraphrases: ["What do you wish for?", "Name one wish."]
  samples_per_paraphrase: 1
- id: bored
  type: free_form_judge_0_100
  paraphrases: ["I am bored."]
  samples_per_paraphrase: 2
  system: "Be brief."
"""


def test_rejudge_keeps_samples_and_equals_a_fresh_run_with_that_judge(tmp_path, tiny_llama):
    from emlab.data.questions import load_questions
    from emlab.evaluate import rejudge

    qfile = tmp_path / "q.yaml"
    qfile.write_text(QUESTIONS_YAML)
    qs = load_questions(str(qfile))
    run, fresh = tmp_path / "run", tmp_path / "fresh"
    evaluate(tiny_llama, EvalRequest(qs, TextJudge(), N, PARAMS, n_boot=50), run, progress=False)
    samples = (run / SAMPLES_FILE).read_text()
    res = rejudge(run, TextJudge(id="recalibrated"), progress=False)
    ref = evaluate(
        tiny_llama, EvalRequest(qs, TextJudge(id="recalibrated"), N, PARAMS, n_boot=50), fresh, progress=False
    )
    assert (run / SAMPLES_FILE).read_text() == samples  # nothing resampled
    assert {r["judge"] for r in _lines(run / SCORES_FILE)} == {"recalibrated"}
    assert res.metrics["overall"] == ref.metrics["overall"] and res.metrics["run"]["judge"] == "recalibrated"
    assert not list(run.glob(".rejudge-*"))  # the scratch folder is gone

    # a killed re-judge leaves the old results whole
    before = {f: (run / f).read_bytes() for f in (SCORES_FILE, "metrics.json", "eval.json")}
    with pytest.raises(KeyboardInterrupt):
        rejudge(run, TextJudge(id="third", fail_after_calls=1), progress=False)
    assert {f: (run / f).read_bytes() for f in before} == before

    # the questions may move (a new checkout) but not change
    (tmp_path / "elsewhere").mkdir()
    moved = tmp_path / "elsewhere" / "q.yaml"
    qfile.rename(moved)
    with pytest.raises(EmlabError, match=r"q.yaml, which is gone"):
        rejudge(run, TextJudge(id="x"), progress=False)  # the recorded file is gone and is no shipped set
    resumed = evaluate(
        tiny_llama,
        EvalRequest(load_questions(str(moved)), TextJudge(id="recalibrated"), N, PARAMS, n_boot=50),
        run,
        resume=True,
        progress=False,
    )
    assert resumed.metrics["overall"] == ref.metrics["overall"]
    moved.write_text(QUESTIONS_YAML.replace("Name one wish.", "Name two wishes."))
    with pytest.raises(EmlabError, match="changed since the evaluation"):
        rejudge(run, TextJudge(id="x"), progress=False)


def test_rejudge_refuses_an_unfinished_evaluation(tmp_path, tiny_llama):
    from emlab.evaluate import rejudge

    run = tmp_path / "run"
    evaluate(tiny_llama, EvalRequest(QUESTIONS, TextJudge(), N, PARAMS, n_boot=10), run, progress=False)
    kept = [line for line in (run / SAMPLES_FILE).read_text().splitlines() if json.loads(line)["batch_index"] != 2]
    (run / SAMPLES_FILE).write_text("\n".join(kept) + "\n")
    with pytest.raises(EmlabError, match="4 of 6 answers sampled; finish the evaluation"):
        rejudge(run, TextJudge(id="x"), progress=False)
    with pytest.raises(EmlabError, match=r"no eval.json"):
        rejudge(tmp_path, TextJudge(id="x"), progress=False)


def test_eval_request_is_frozen_validated_and_keeps_defaults():
    import dataclasses

    from emlab.evaluate import DEFAULT_PARAMS
    from emlab.metrics import DEFAULT_RUBRICS

    req = EvalRequest(QUESTIONS, TextJudge(), rubrics=["aligned", "coherent"])
    assert (req.n, req.params, req.rubrics, req.judge_chunk, req.n_boot) == (
        None,
        DEFAULT_PARAMS,
        ("aligned", "coherent"),
        64,
        2000,
    )
    assert EvalRequest(QUESTIONS, TextJudge()).rubrics == DEFAULT_RUBRICS
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.n = 3
    assert dataclasses.replace(req, n=2).n == 2
    for bad, match in (
        ({"n": 0}, r"EvalRequest\.n=0"),
        ({"rubrics": ()}, "rubrics is empty"),
        ({"judge_chunk": 0}, "judge_chunk=0"),
        ({"n_boot": 0}, "n_boot=0"),
    ):
        with pytest.raises(EmlabError, match=match):
            EvalRequest(QUESTIONS, TextJudge(), **bad)
