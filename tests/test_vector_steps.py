"""The persona / emotion vector step kinds (emlab.experiments.vector_steps) end to end on a tiny saved model."""

from __future__ import annotations

import numpy as np
import pytest

from emlab.errors import EmlabError
from emlab.experiments.kinds import Step
from emlab.experiments.runner import start_run
from emlab.experiments.spec import dependency_order, load_spec_text
from emlab.io import read_json, read_jsonl
from tests.test_vectors_cli import CALM, EMO4, FakeOffline
from tests.test_vectors_emotions import BANK_YAML

SITES = "[blocks.0.resid_post, blocks.1.resid_post]"
SPEC = f"""
version: 1
name: vectors
seed: 0
models:
  base: {{ref: ./tiny}}
datasets:
  bad: {{generator: bad-medical, n: 6, mix: {{generator: good-medical, n: 4}}}}
emotion_vectors:
  emo: {{emotions: emo.yaml, stories: bank.yaml, per_situation: 1, offset: 2, sites: {SITES}, n_boot: 50}}
persona_vectors:
  evil: {{trait: evil, prompts: 2, max_questions: 2, max_new_tokens: 4, sites: {SITES}}}
training:
  steered:
    dataset: bad
    preset: rank1-9blocks
    blocks: [0]
    epochs: 1
    batch_size: 4
    grad_accum: 1
    max_length: 256
    dtype: float32
    steering: {{persona: evil, scale: 2.0}}
judge: {{spec: offline, cache: none}}
sampling: {{n: 2, max_new_tokens: 4, batch_size: 8, max_questions: 2}}
evals:
  base-core: {{questions: core}}
  steered-core: {{adapter: steered, questions: core}}
landscapes:
  organism: {{evals: [base-core, steered-core], emotion_vectors: emo, personas: [evil], n_boot: 50}}
vector_steering:
  calm: {{emotion_vectors: emo, personas: [evil], conditions: ["calm:0.5", "evil:-0.5"], questions: [core, pressure], max_questions: 1, n: 1}}
vector_monitors:
  talk: {{emotion_vectors: emo, emotions: [calm, sad], prompts: ["How are you?"], questions: null, n: 1}}
data_screens:
  bad: {{dataset: bad, persona: evil, max_new_tokens: 3}}
"""


@pytest.fixture
def vec_dir(tiny_dir, monkeypatch):
    (tiny_dir / "emo.yaml").write_text(EMO4)
    (tiny_dir / "bank.yaml").write_text(BANK_YAML.replace("neutral:\n", CALM, 1))
    monkeypatch.setattr("emlab.experiments.steps.make_judge", lambda cfg, root: FakeOffline())
    return tiny_dir


def test_every_vector_kind_runs_from_one_spec(vec_dir):
    (vec_dir / "spec.yaml").write_text(SPEC)
    run = start_run(vec_dir / "spec.yaml", base=vec_dir / "runs")
    assert run.status() == "done"
    order = list(run.manifest()["steps"])
    assert order.index("persona-vector.evil") < order.index("train.steered")  # moved before the training it steers

    emo = run.step_dir("emotion-vectors.emo")
    geo = read_json(emo / "geometry.json")
    assert geo["site"] == "blocks.1.resid_post" and (emo / "circumplex.png").exists()
    assert len(read_jsonl(emo / "stories.jsonl")) == 7  # 2 + 2 + 1 + 2 situations x 1 story

    steered = read_json(run.step_dir("train.steered") / "preventative_steering.json")
    assert steered["sites"] == ["blocks.1.resid_post"] and steered["scale"] == 2.0 and steered["trait"] == "evil"
    assert run.manifest()["steps"]["train.steered"]["summary"]["steered"]["scale"] == 2.0

    land = run.step_dir("landscape.organism")
    res = read_json(land / "landscape.json")
    assert [r["vector"] for r in res["table"]] == [f"emotion:{e}" for e in ("happy", "sad", "angry", "calm")] + [
        "persona:evil"
    ]
    assert res["runs"]["steered-core"]["n_answers"] == 4  # 2 questions x 2 samples
    for label in ("base-core", "steered-core"):
        proj = read_jsonl(land / f"projections.{label}.jsonl")
        for row in res["table"]:
            assert row[label]["mean"] == pytest.approx(np.mean([p[row["vector"]] for p in proj]))
    diff = res["table"][0]["steered-core-base-core"]
    assert diff["diff"] == pytest.approx(res["table"][0]["steered-core"]["mean"] - res["table"][0]["base-core"]["mean"])

    table = read_json(run.step_dir("vector-steer.calm") / "steering_table.json")["rows"]
    assert [(r["questions"].split("[")[0], r["condition"]) for r in table] == [
        (q, c) for q in ("core", "pressure") for c in ("baseline", "calm+0.5", "evil-0.5")
    ]
    assert all(r["site"] == "blocks.1.resid_post" for r in table)

    traces = read_jsonl(run.step_dir("vector-monitor.talk") / "traces.jsonl")
    assert len(traces) == 1 and set(traces[0]["projections"]) == {"emotion:calm", "emotion:sad"}

    from emlab.vectors.screening import screening_auroc

    scr = run.step_dir("data-screen.bad")
    rows = read_jsonl(scr / "screen.jsonl")
    assert [r["rank"] for r in rows] == list(range(1, 11)) and sum(r["own_generator"] for r in rows) == 6
    assert read_json(scr / "screen.json")["auroc_own_vs_mixed"] == screening_auroc(
        rows, [r["own_generator"] for r in rows]
    )

    html = (run.root / "report" / "index.html").read_text()
    for section in ("emotion_geometry", "persona_vectors", "landscapes", "vector_steering", "vector_monitors"):
        assert f'id="section-{section}"' in html, section
    assert 'id="section-data_screens"' in html and 'href="../steps/emotion-vectors.emo/circumplex.png"' in html
    assert html.count("<td>calm+0.5</td>") == 2 and html.count("<td>baseline</td>") == 2  # a row per cell


@pytest.mark.parametrize(
    "old,new,message",
    [
        ("steering: {persona: evil", "eval_at: {every: 1, n: 1}\n    steering: {persona: evil", "eval_at"),
        ("steering: {persona: evil", "steering: {persona: evill", "did you mean 'evil'"),
        ("n_boot: 50}\nvector_steering", "reference: base, n_boot: 50}\nvector_steering", "must be one of `evals`"),
        ("emotion_vectors: emo, emotions: [calm, sad]", "emotions: [calm, sad]", "name the vectors to read"),
        ("{dataset: bad, persona: evil, max", "{dataset: bad, persona: good, max", "persona_vectors"),
        ("calm: {emotion_vectors: emo,", "calm: {emotion_vectors: emoo,", "did you mean 'emo'"),
        ("talk: {emotion_vectors: emo,", "talk: {emotion_vectors: emoo,", "did you mean 'emo'"),
    ],
)
def test_vector_entries_are_checked_when_the_spec_loads(tiny_dir, old, new, message):
    assert old in SPEC
    with pytest.raises(EmlabError, match=message):
        load_spec_text(SPEC.replace(old, new), str(tiny_dir / "spec.yaml"), base_dir=tiny_dir)


@pytest.mark.parametrize(
    "old,new",
    [("emotions: [calm, sad]", "emotions: [calm, glad]"), ('"evil:-0.5"', '"glad:-0.5"')],
)
def test_emotion_names_are_checked_before_any_step_runs(vec_dir, old, new):
    from emlab.experiments.runner import check_plan

    plan = load_spec_text(SPEC.replace(old, new), str(vec_dir / "spec.yaml"), base_dir=vec_dir)
    with pytest.raises(EmlabError, match=r"'glad' is neither an emotion of emotion_vectors\.emo"):
        check_plan(plan)


def test_the_steering_site_defaults_to_the_vectors_own():
    from types import SimpleNamespace

    from emlab.experiments.vector_steps import _steer_site

    c = {"site": None, "emotion_site": None, "persona_site": None}
    import torch

    from emlab.vectors.directions import Direction

    d = Direction({f"blocks.{i}.resid_post": torch.ones(4) for i in range(6)})
    assert _steer_site(c, None, {"evil": d}) == "blocks.4.resid_post"  # the persona vector's 2/3-depth block
    assert _steer_site(c | {"persona_site": "blocks.1.resid_post"}, None, {"evil": d}) == "blocks.1.resid_post"
    ev = SimpleNamespace(default_site=lambda: "blocks.2.resid_post")
    assert _steer_site(c, ev, {"evil": d}) == "blocks.2.resid_post"
    assert _steer_site(c | {"site": "blocks.0.resid_post"}, ev, {}) == "blocks.0.resid_post"


def test_dependency_order_moves_a_step_after_what_it_needs_and_names_a_circle():
    a, b, c = Step("a", "k", "a", {}, ("c",)), Step("b", "k", "b", {}), Step("c", "k", "c", {})
    assert [s.name for s in dependency_order([a, b, c])] == ["c", "a", "b"]
    assert [s.name for s in dependency_order([b, c, a])] == ["b", "c", "a"]  # already in order: unchanged
    with pytest.raises(EmlabError, match="a -> c -> a"):
        dependency_order([a, b, Step("c", "k", "c", {}, ("a",))])
