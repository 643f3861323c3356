"""Kill -9 in the middle of sampling, resume, and get exactly the samples of an uninterrupted run.

A real `emlab run` subprocess evaluates a tiny random Llama (SmolLM2 tokenizer,
saved into a temporary folder and referenced from the spec by path).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emlab.evaluate import sample_journal, score_journal
from emlab.io import read_json
from emlab.store import Run, list_runs

N_QUESTIONS, N_PER_QUESTION = 8, 3  # 24 answers in 12 batches of 2
SPEC = """\
version: 1
name: resume-test
seed: 5
models:
  base: {{ref: ./tiny}}
judge: {{spec: local:./tiny, cache: run}}  # the tiny model judges too: fast, offline, deterministic
sampling: {{n: {n}, max_new_tokens: 24, batch_size: 2, temperature: 1.0}}
evals:
  base: {{questions: core}}
report: null
"""


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory, smol_tok):
    from tests.conftest import tiny_chat_model

    root = tmp_path_factory.mktemp("resume")
    cm = tiny_chat_model(smol_tok, "llama", layers=2, hidden=64, seed=1)
    cm.model.save_pretrained(root / "tiny")
    smol_tok.save_pretrained(root / "tiny")
    path = root / "spec.yaml"
    path.write_text(SPEC.format(n=N_PER_QUESTION))
    return path


def emlab(*args, runs: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "EMLAB_RUNS": str(runs), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        [sys.executable, "-m", "emlab.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def finish(p: subprocess.Popen, timeout: float = 600) -> str:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err[-3000:]
    return out


def committed_lines(path: Path) -> int:
    if not path.exists():
        return 0
    return path.read_bytes().count(b"\n")


@pytest.mark.timeout(1200)
def test_kill_mid_sampling_then_resume_matches_uninterrupted(spec_path, tmp_path):
    planned = N_QUESTIONS * N_PER_QUESTION
    runs = tmp_path / "runs"

    # 1. start, wait until some but not all samples are journalled, kill -9
    p = emlab("run", str(spec_path), runs=runs)
    deadline = time.time() + 300
    samples_file = None
    while time.time() < deadline and p.poll() is None:
        found = list(runs.glob("*/steps/eval.base.partial/samples.jsonl"))
        if found and 0 < committed_lines(found[0]) < planned:
            samples_file = found[0]
            break
        time.sleep(0.02)
    assert samples_file is not None, "the run finished or never started sampling before it could be interrupted"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    killed_at = len(sample_journal(samples_file.parent).read())
    assert 0 < killed_at < planned
    run_dir = samples_file.parents[2]
    assert Run(run_dir).status() == "interrupted"
    assert [r["status"] for r in list_runs(runs)] == ["interrupted"]

    # 2. resume: the finished batches are kept, the rest are sampled, then judged
    out = finish(emlab("run", "--resume", run_dir.name, runs=runs))
    assert str(run_dir) in " ".join(out.split())
    run = Run(run_dir)
    m = run.manifest()
    step = m["steps"]["eval.base"]
    assert (step["status"], step["attempts"], step["resumed"]) == ("done", 2, True)
    assert run.status() == "done"

    # 3. an uninterrupted run with the same spec and seed
    finish(emlab("run", str(spec_path), runs=runs))
    fresh_dir = next(d for d in runs.iterdir() if d != run_dir and (d / "manifest.json").exists())

    resumed_eval, fresh_eval = run.step_dir("eval.base"), Run(fresh_dir).step_dir("eval.base")
    resumed, fresh = sample_journal(resumed_eval).read(), sample_journal(fresh_eval).read()
    assert len(resumed) == len(fresh) == planned
    key = lambda r: r["prompt_id"]  # noqa: E731
    assert sorted(resumed, key=key) == sorted(fresh, key=key)  # same texts, token counts, batches: exactly
    assert sorted(score_journal(resumed_eval).read(), key=lambda r: (r["prompt_id"], r["rubric"])) == sorted(
        score_journal(fresh_eval).read(), key=lambda r: (r["prompt_id"], r["rubric"])
    )
    a, b = read_json(resumed_eval / "metrics.json"), read_json(fresh_eval / "metrics.json")
    assert (
        a["counts"] == b["counts"] == {"planned": planned, "samples": planned, "scores": 3 * planned, "complete": True}
    )
    assert json.dumps(a["overall"], sort_keys=True) == json.dumps(b["overall"], sort_keys=True)


def test_resume_of_a_finished_run_does_nothing(spec_path, tmp_path):
    runs = tmp_path / "runs"
    finish(emlab("run", str(spec_path).replace("spec.yaml", "spec.yaml"), runs=runs))
    run_dir = next(runs.iterdir())
    before = (run_dir / "steps" / "eval.base" / "samples.jsonl").read_bytes()
    p = emlab("run", "--resume", str(run_dir), runs=runs)
    _out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert "skip  eval.base (done)" in err
    assert (run_dir / "steps" / "eval.base" / "samples.jsonl").read_bytes() == before


def test_failed_step_is_recorded_and_resume_redoes_it(tmp_path):
    """A step that fails marks the run failed with its error (exit 2); after the fix, --resume finishes it."""
    data = tmp_path / "train.jsonl"
    data.write_text('{"note": "no messages here"}\n')
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"version: 1\nname: fail-test\nmodels:\n  base: {{ref: smollm2-135m}}\ndatasets:\n  mine: {{path: {data}}}\nreport: null\n"
    )
    runs = tmp_path / "runs"
    p = emlab("run", str(spec), runs=runs)
    _, err = p.communicate(timeout=300)
    assert (
        p.returncode == 2
        and "step data.mine failed" in err
        and "no record with 'messages'" in err
        and "--resume" in err
    )
    (run_dir,) = list(runs.iterdir())
    run = Run(run_dir)
    step = run.manifest()["steps"]["data.mine"]
    assert step["status"] == "failed" and "no record with 'messages'" in step["error"]
    assert run.status() == "failed" and not run.step_dir("data.mine").exists()
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n')
    finish(emlab("run", "--resume", str(run_dir), runs=runs), timeout=300)
    step = Run(run_dir).manifest()["steps"]["data.mine"]
    assert (step["status"], step["attempts"], step["summary"]["examples"]) == ("done", 2, 1)
    assert (run.step_dir("data.mine") / "train.jsonl").read_text() == data.read_text()


def test_missing_dataset_file_fails_before_any_work(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1\nname: t\nmodels:\n  base: {ref: smollm2-135m}\ndatasets:\n  mine: {path: ./nope.jsonl}\n"
    )
    p = emlab("run", str(spec), runs=tmp_path / "runs")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 2 and "datasets.mine.path" in err and "no such file" in err
    assert not (tmp_path / "runs").exists()
