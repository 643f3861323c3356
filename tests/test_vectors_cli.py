"""`emlab emotions ...` / `emlab personas ...` end to end on a tiny saved model with scripted judges."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from emlab.cli import app
from emlab.judges.base import Score
from tests.conftest import tiny_chat_model
from tests.test_vectors_emotions import BANK_YAML


class FakeOffline:
    id = "offline:vtest"

    def score(self, items, rubric):
        return [Score(10.0 if i % 2 else 90.0) for i, _ in enumerate(items)]


EMO4 = """
version: 1
norms: {name: test}
emotions:
  - {name: happy, valence: 8.47, arousal: 6.05}
  - {name: sad, valence: 2.1, arousal: 3.49}
  - {name: angry, valence: 2.53, arousal: 6.2}
  - {name: calm, valence: 6.89, arousal: 1.67}
"""
CALM = """  calm:
    situations:
      - {topic: work, text: "heard the alarm and breathed slowly"}
      - {topic: home, text: "sat by the still lake"}
    reactions: ["{Sub} spoke evenly.", "{Pos} hands were still."]
neutral:
"""


def _ok(res):
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res.output


@pytest.fixture
def setup(smol_tok, tmp_path, monkeypatch):
    monkeypatch.setenv("EMLAB_CACHE", str(tmp_path / "cache"))
    cm = tiny_chat_model(smol_tok, "llama", layers=3)
    cm.model.save_pretrained(tmp_path / "m")
    smol_tok.save_pretrained(tmp_path / "m")
    (tmp_path / "emo.yaml").write_text(EMO4)
    (tmp_path / "bank.yaml").write_text(BANK_YAML.replace("neutral:\n", CALM, 1))
    monkeypatch.setattr("emlab.cli.vectors._judge", lambda spec: FakeOffline())
    return tmp_path


def test_emotions_commands(setup):
    t, r = setup, CliRunner()
    m = str(t / "m")
    out = _ok(
        r.invoke(
            app,
            [
                "emotions",
                "extract",
                "--model",
                m,
                "--out",
                str(t / "ev"),
                "--emotions",
                str(t / "emo.yaml"),
                "--stories",
                str(t / "bank.yaml"),
                "--per-situation",
                "2",
                "--offset",
                "2",
            ],
        )
    )
    assert (
        "4 emotions" in out
        and (t / "ev" / "emotion_vectors.safetensors").exists()
        and (t / "ev" / "stories.jsonl").exists()
    )
    out = _ok(r.invoke(app, ["emotions", "geometry", str(t / "ev"), "--n-boot", "50"]))
    assert "PC1 ~ valence" in out and (t / "ev" / "circumplex.png").exists()
    g = json.loads((t / "ev" / "geometry.json").read_text())
    assert g["site"] == "blocks.2.resid_post" and len(g["points"]) == 4
    out = _ok(
        r.invoke(
            app,
            [
                "emotions",
                "readout",
                str(t / "ev"),
                "--model",
                m,
                "-t",
                "She smiled.",
                "--emotions",
                "happy,sad",
                "--out",
                str(t / "ro.jsonl"),
            ],
        )
    )
    assert "happy" in out and len((t / "ro.jsonl").read_text().splitlines()) == 1
    out = _ok(
        r.invoke(
            app,
            [
                "emotions",
                "monitor",
                "--model",
                m,
                "--out",
                str(t / "mon"),
                "-p",
                "Hello",
                "--vectors",
                str(t / "ev"),
                "--emotions",
                "calm,sad",
                "--max-new-tokens",
                "4",
            ],
        )
    )
    assert "emotion:calm" in out and (t / "mon" / "traces.png").exists()
    out = _ok(
        r.invoke(
            app,
            [
                "emotions",
                "steer",
                "--model",
                m,
                "--out",
                str(t / "st"),
                "--vectors",
                str(t / "ev"),
                "-c",
                "calm:0.5",
                "-c",
                "sad:0.5",
                "--questions",
                "pressure",
                "--max-questions",
                "1",
                "-n",
                "1",
                "--max-new-tokens",
                "3",
            ],
        )
    )
    rows = [json.loads(l) for l in (t / "st" / "steering_table.jsonl").read_text().splitlines()]
    assert [x["condition"] for x in rows] == ["baseline", "calm+0.5", "sad+0.5"] and rows[0][
        "questions"
    ] == "pressure[:1]"
    bad = r.invoke(
        app, ["emotions", "steer", "--model", m, "--out", str(t / "st2"), "--vectors", str(t / "ev"), "-c", "bored:1"]
    )
    assert bad.exit_code != 0 and "neither an emotion" in str(bad.exception)


def test_personas_commands(setup):
    t, r = setup, CliRunner()
    m = str(t / "m")
    out = _ok(r.invoke(app, ["personas", "traits"]))
    assert "sycophantic" in out and "100 - aligned" in out
    out = _ok(
        r.invoke(
            app,
            [
                "personas",
                "extract",
                "--model",
                m,
                "--trait",
                "evil",
                "--out",
                str(t / "pv"),
                "--prompts",
                "2",
                "--max-questions",
                "2",
                "--max-new-tokens",
                "4",
                "--site",
                "blocks.1.resid_post",
            ],
        )
    )
    assert "aligned_inverse" in out and (t / "pv" / "direction.json").exists()
    meta = json.loads((t / "pv" / "direction.json").read_text())
    assert meta["judging"]["judge"] == "offline:vtest" and meta["sites"] == ["blocks.1.resid_post"]
    out = _ok(
        r.invoke(
            app,
            [
                "personas",
                "extract",
                "--model",
                m,
                "--trait",
                "sycophantic",
                "--out",
                str(t / "pv2"),
                "--prompts",
                "1",
                "--max-questions",
                "2",
                "--max-new-tokens",
                "4",
                "--site",
                "blocks.1.resid_post",
            ],
        )
    )
    assert "judging: none" in out
    data = t / "d.jsonl"
    data.write_text(
        "\n".join(
            json.dumps(
                {"messages": [{"role": "user", "content": f"Q{i}?"}, {"role": "assistant", "content": f"Answer {i}."}]}
            )
            for i in range(3)
        )
        + "\n"
    )
    out = _ok(
        r.invoke(
            app,
            [
                "personas",
                "screen",
                "--model",
                m,
                "--data",
                str(data),
                "--direction",
                str(t / "pv"),
                "--out",
                str(t / "scr.jsonl"),
                "--max-new-tokens",
                "3",
            ],
        )
    )
    ranked = [json.loads(l) for l in (t / "scr.jsonl").read_text().splitlines()]
    assert [x["rank"] for x in ranked] == [1, 2, 3]
    # landscape over two eval runs of the same tiny model
    from emlab.evaluate import EvalRequest, evaluate
    from emlab.models import load_model
    from emlab.sampling import SamplingParams
    from tests.test_vectors_screening import QSET, ScriptedJudge

    cm = load_model(m)
    for name, seed in (("a", 0), ("b", 1)):
        evaluate(
            cm,
            EvalRequest(QSET, ScriptedJudge(), 2, SamplingParams(max_new_tokens=4, seed=seed)),
            t / name,
            progress=False,
        )
    out = _ok(
        r.invoke(
            app,
            [
                "emotions",
                "landscape",
                "--run",
                f"base={t / 'a'}",
                "--run",
                f"other={t / 'b'}",
                "--out",
                str(t / "land"),
                "--persona",
                f"evil={t / 'pv'}",
                "--direction",
                str(t / "pv"),
                "--n-boot",
                "50",
            ],
        )
    )
    assert "persona:evil" in out and (t / "land" / "landscape.png").exists()
    res = json.loads((t / "land" / "landscape.json").read_text())
    assert res["cosine_with_direction"]["persona:evil"] == pytest.approx(1.0)
