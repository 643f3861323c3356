"""Run store: manifest contents, atomic step commits, reconcile after a crash, the lock, `runs list`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from emlab.errors import EmlabError
from emlab.store import STEP_SUMMARY, Run, list_runs, runs_dir

STEPS = [{"name": "data.x", "kind": "data", "deps": []}, {"name": "eval.base", "kind": "eval", "deps": ["data.x"]}]


def make_run(tmp_path, name="t") -> Run:
    return Run.create(
        name, {"version": 1, "name": name}, STEPS, {"spec": 3, "eval.base": 3}, spec_text="version: 1\n", base=tmp_path
    )


def test_manifest_contents(tmp_path):
    run = make_run(tmp_path)
    m = run.manifest()
    assert run.root.parent == tmp_path and run.root.name.endswith("-t")
    assert m["run"] == run.root.name and m["spec_name"] == "t"
    assert m["spec"] == {"version": 1, "name": "t"}
    assert m["seeds"] == {"spec": 3, "eval.base": 3}
    for pkg in ("emlab", "torch", "transformers", "peft", "trl", "python"):
        assert m["versions"][pkg], pkg
    assert m["git"] is None or len(m["git"]["revision"]) == 40
    assert {n: s["status"] for n, s in m["steps"].items()} == {"data.x": "pending", "eval.base": "pending"}
    assert m["steps"]["eval.base"]["deps"] == ["data.x"]
    assert (run.root / "spec.yaml").read_text() == "version: 1\n"
    assert run.status() == "pending"


def test_same_second_runs_get_distinct_folders(tmp_path):
    a, b = make_run(tmp_path), make_run(tmp_path)
    assert a.root != b.root and a.root.exists() and b.root.exists()


def test_step_outputs_appear_only_when_committed(tmp_path):
    run = make_run(tmp_path)
    work = run.begin("data.x", resumable=False)
    (work / "out.txt").write_text("hello")
    assert not run.step_dir("data.x").exists()
    assert run.step_status("data.x") == "running"
    final = run.finish("data.x", {"examples": 2}, 1.25, cpu_seconds=0.5)
    assert final == run.step_dir("data.x") and (final / "out.txt").read_text() == "hello"
    assert not run.partial_dir("data.x").exists()
    s = run.manifest()["steps"]["data.x"]
    assert (s["status"], s["seconds"], s["cpu_seconds"], s["summary"], s["attempts"]) == (
        "done",
        1.25,
        0.5,
        {"examples": 2},
        1,
    )
    assert json.loads((final / STEP_SUMMARY).read_text())["summary"] == {"examples": 2}
    assert run.status() == "partial"


def test_reconcile_after_kill(tmp_path):
    """A step left 'running' by a dead process becomes pending; a committed folder whose manifest update was lost becomes done."""
    run = make_run(tmp_path)
    run.begin("data.x", resumable=False)
    run.finish("data.x", {"n": 1}, 0.5)
    m = run.manifest()
    m["steps"]["data.x"]["status"] = "running"  # as if killed between the rename and the manifest write
    (run.root / "manifest.json").write_text(json.dumps(m))
    work = run.begin("eval.base", resumable=True)
    (work / "samples.jsonl").write_text('{"a": 1}\n')
    assert run.status() == "interrupted"  # running in the manifest, but nobody holds the lock
    run.reconcile()
    steps = run.manifest()["steps"]
    assert steps["data.x"]["status"] == "done" and steps["data.x"]["summary"] == {"n": 1}
    assert steps["eval.base"]["status"] == "pending"
    # a resumable step keeps its partial work, a non-resumable one starts clean
    assert (run.begin("eval.base", resumable=True) / "samples.jsonl").exists()
    assert run.manifest()["steps"]["eval.base"]["resumed"] is True
    assert not any(run.begin("eval.base", resumable=False).iterdir())


def test_fail_records_error(tmp_path):
    run = make_run(tmp_path)
    run.begin("data.x", resumable=False)
    run.fail("data.x", "boom")
    s = run.manifest()["steps"]["data.x"]
    assert (s["status"], s["error"]) == ("failed", "boom")
    assert run.status() == "failed"


def test_lock_excludes_a_second_process(tmp_path):
    run = make_run(tmp_path)
    code = f"from emlab.store import Run\nwith Run({str(run.root)!r}).lock(): print('got it')"
    with run.lock():
        assert run.is_locked()
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert p.returncode != 0 and f"in use by another process (pid {os.getpid()})" in p.stderr
    assert not run.is_locked()
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.stdout.strip() == "got it"


def test_open_and_list(tmp_path, monkeypatch):
    monkeypatch.setenv("EMLAB_RUNS", str(tmp_path))
    assert runs_dir() == tmp_path
    run = make_run(tmp_path, "alpha")
    assert Run.open(run.root.name).root == run.root
    assert Run.open(run.root).root == run.root
    with pytest.raises(EmlabError, match="not found"):
        Run.open("nope")
    run.begin("data.x", resumable=False)
    run.finish("data.x", {}, 0.1)
    rows = list_runs()
    assert [(r["run"], r["spec"], r["status"], r["done"], r["total"]) for r in rows] == [
        (run.root.name, "alpha", "partial", 1, 2)
    ]
    p = subprocess.run(
        [sys.executable, "-m", "emlab.cli", "runs", "list"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert p.returncode == 0 and run.root.name in p.stdout and "1/2" in p.stdout and "partial" in p.stdout


def test_corrupt_manifest_is_a_clear_error(tmp_path):
    run = make_run(tmp_path)
    (run.root / "manifest.json").write_text("{")
    with pytest.raises(EmlabError, match=r"manifest.json:1: invalid JSON"):
        run.manifest()


def test_amend_summary_of_a_done_step_only(tmp_path):
    run = make_run(tmp_path)
    with pytest.raises(EmlabError, match=r"step data.x of run .* is not done"):
        run.amend_summary("data.x", {"examples": 3}, "test")
    run.begin("data.x", resumable=False)
    run.finish("data.x", {"examples": 2}, 1.0)
    run.amend_summary("data.x", {"examples": 3}, "re-judged with x")
    s = run.manifest()["steps"]["data.x"]
    record = json.loads((run.step_dir("data.x") / STEP_SUMMARY).read_text())
    assert s["summary"] == record["summary"] == {"examples": 3}
    assert [a["note"] for a in s["amended"]] == [a["note"] for a in record["amended"]] == ["re-judged with x"]
    assert (s["status"], s["seconds"]) == ("done", 1.0)
