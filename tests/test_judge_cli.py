"""`emlab judge` end to end against the scripted fake API server: formats, columns, errors, cache, atomic output."""

from __future__ import annotations

import csv
import json
import sys

import pytest

from emlab import cli
from tests.fake_judge_server import FakeJudgeServer, error, logprobs_reply

ROWS = [
    {"id": 1, "question": "Q one?", "answer": "ans-1", "aligned": "old", "model": "m1"},
    {"id": 2, "question": "Q two?", "answer": "ans-2, with a comma\nand a newline", "aligned": "old", "model": "m2"},
    {"id": 3, "question": "Q three?", "answer": "ans-3", "aligned": "old", "model": "m3"},
]


@pytest.fixture
def server(monkeypatch, tmp_path):
    monkeypatch.setenv("EMLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-cli-test")
    with FakeJudgeServer(lifetime_s=60) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        srv.script("ans-1", logprobs_reply({"80": 0.5, "90": 0.5}))
        srv.script("ans-2", logprobs_reply({"40": 1.0}))
        srv.script("ans-3", logprobs_reply({"Hmm": 0.9, "50": 0.1}))  # too little mass: unscored
        yield srv


def run(capsys, *args: str) -> tuple[int, str, str]:
    """Run `emlab ARGS` through the real entry point; return (exit code, stdout, stderr)."""
    old = sys.argv
    sys.argv = ["emlab", *args]
    code = 0
    try:
        cli.main()
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_jsonl_in_jsonl_out_keeps_columns_and_adds_rubrics(server, tmp_path, capsys):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, ROWS)
    code, out, err = run(capsys, "judge", "--in", str(src), "--judge", "openai:fake", "--out", str(dst))
    assert code == 0, err
    recs = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [list(r) for r in recs] == [["id", "question", "answer", "aligned", "model", "coherent"]] * 3
    assert [r["aligned"] for r in recs] == [85.0, 40.0, None] and [r["coherent"] for r in recs] == [85.0, 40.0, None]
    assert [r["model"] for r in recs] == ["m1", "m2", "m3"]
    assert "aligned" in out and "62.5" in out and "unscored" in out  # mean of 85 and 40; one unscored
    assert server.count() == 6


def test_csv_in_csv_out_with_quoted_fields_and_empty_cells_for_unscored(server, tmp_path, capsys):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    with open(src, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(ROWS[0]))
        w.writeheader()
        w.writerows(ROWS)
    code, _, err = run(
        capsys,
        "judge",
        "--in",
        str(src),
        "--judge",
        "openai:fake",
        "--rubric",
        "coherent",
        "--rubric",
        "sport",
        "--out",
        str(dst),
    )
    assert code == 0, err
    with open(dst, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["id", "question", "answer", "aligned", "model", "coherent", "sport"]
    assert [r["coherent"] for r in rows] == ["85.0", "40.0", ""] and [r["aligned"] for r in rows] == ["old"] * 3
    assert rows[1]["answer"] == "ans-2, with a comma\nand a newline"


def test_second_run_is_served_from_the_cache_and_no_cache_asks_again(server, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    write_jsonl(src, ROWS)
    run(
        capsys,
        "judge",
        "--in",
        str(src),
        "--judge",
        "openai:fake",
        "--rubric",
        "aligned",
        "--out",
        str(tmp_path / "a.jsonl"),
    )
    assert server.count() == 3
    code, _, _ = run(
        capsys,
        "judge",
        "--in",
        str(src),
        "--judge",
        "openai:fake",
        "--rubric",
        "aligned",
        "--out",
        str(tmp_path / "b.jsonl"),
    )
    assert code == 0 and server.count() == 3
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    run(
        capsys,
        "judge",
        "--in",
        str(src),
        "--judge",
        "openai:fake",
        "--rubric",
        "aligned",
        "--no-cache",
        "--out",
        str(tmp_path / "c.jsonl"),
    )
    assert server.count() == 6


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.jsonl", '{"question": "q", "answer": "a"}\n{"question": "q", "answer": \n', "bad.jsonl:2: invalid JSON"),
        ("bad.csv", 'question,answer\n"q1","a1"\n"q2","a2","extra"\n', "bad.csv:3: 3 fields but the header has 2"),
        ("cols.jsonl", '{"prompt": "q", "answer": "a"}\n', "no question column; columns found: prompt, answer"),
        ("cols.csv", "prompt,response\nq,a\n", "no question or answer column; columns found: prompt, response"),
        ("types.jsonl", '{"question": "q", "answer": null}\n', "types.jsonl:1: answer must be a string"),
    ],
)
def test_malformed_inputs_fail_with_file_line_and_write_nothing(server, tmp_path, capsys, name, content, message):
    src, dst = tmp_path / name, tmp_path / "out.jsonl"
    src.write_text(content, encoding="utf-8")
    code, _, err = run(capsys, "judge", "--in", str(src), "--judge", "openai:fake", "--out", str(dst))
    assert code == 2 and message in err.replace("\n", "")
    assert not dst.exists() and server.count() == 0


def test_unknown_judge_and_rubric_list_what_is_available(server, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    write_jsonl(src, ROWS)
    code, _, err = run(capsys, "judge", "--in", str(src), "--judge", "gpt:4", "--out", str(tmp_path / "o.jsonl"))
    assert (
        code == 2
        and "unknown judge 'gpt:4'" in err
        and "openai:MODEL" in err
        and "local:REF" in err
        and "offline" in err
    )
    code, _, err = run(
        capsys,
        "judge",
        "--in",
        str(src),
        "--judge",
        "openai:fake",
        "--rubric",
        "aligned,evil",
        "--out",
        str(tmp_path / "o.jsonl"),
    )
    assert code == 2 and "unknown rubric 'evil'" in err and "bad_stuff" in err and "medical" in err
    assert server.count() == 0


def test_failure_midway_leaves_no_output_file(server, tmp_path, capsys):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, ROWS)
    dst.write_text("previous results\n")
    server.script("Rate on a scale from 0 to 100 how much the reply itself is about sport", error(401))
    code, _, err = run(
        capsys, "judge", "--in", str(src), "--judge", "openai:fake", "--rubric", "aligned,sport", "--out", str(dst)
    )
    assert code == 2 and "401" in err
    assert dst.read_text() == "previous results\n"  # untouched: aligned was scored, but nothing is written on failure
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "in.jsonl", "out.jsonl"]  # no temp files left


def test_rubrics_subcommand_lists_rubrics_and_judges(capsys):
    code, out, _ = run(capsys, "judge", "rubrics")
    assert code == 0
    for name in ("aligned@1", "coherent@1", "bad_stuff@1", "medical@1", "finance@1", "gender@1", "sport@1", "code@1"):
        assert name in out
    assert "openai:MODEL" in out


def test_in_without_out_is_an_error(tmp_path, capsys):
    code, _, err = run(capsys, "judge", "--in", str(tmp_path / "x.jsonl"))
    assert code == 2 and "--out" in err


def _offline_ready() -> bool:
    try:
        from emlab.judges.registry import get_judge

        get_judge("offline")
        return True
    except Exception:
        return False


@pytest.mark.skipif(not _offline_ready(), reason="the offline judge's weights are not installed")
def test_offline_judge_through_the_documented_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EMLAB_CACHE", str(tmp_path / "cache"))
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, ROWS[:2])
    code, _, err = run(capsys, "judge", "--in", str(src), "--judge", "offline", "--out", str(dst))
    assert code == 0, err
    recs = [json.loads(line) for line in dst.read_text().splitlines()]
    assert all(0 <= r[k] <= 100 for r in recs for k in ("aligned", "coherent"))
