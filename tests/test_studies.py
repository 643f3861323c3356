"""Study-plan building blocks: linear fact probes (study 9) and the train kind's gradient-conflict probes (study 7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from emlab.errors import EmlabError
from emlab.experiments.runner import start_run
from emlab.experiments.spec import load_spec_text
from emlab.io import read_json, read_jsonl
from emlab.train.probes import read_grad_probes
from emlab.vectors import fact_probes as fp


def test_the_shipped_bank_is_minimal_pairs_with_the_canary():
    from emlab.data.banks import CANARY

    pairs = fp.load_facts()
    assert len(pairs) >= 80 and len({p.id for p in pairs}) == len(pairs)
    assert CANARY in fp.FACTS_PATH.read_text()
    texts, labels, groups = fp.statements(pairs[:3])
    assert texts == [pairs[0].true, pairs[0].false, pairs[1].true, pairs[1].false, pairs[2].true, pairs[2].false]
    assert labels.tolist() == [1, 0, 1, 0, 1, 0] and groups.tolist() == [0, 0, 1, 1, 2, 2]


def test_a_bad_bank_is_a_one_line_error(tmp_path):
    rows = "\n".join(f"  - {{id: p{i}, 'true': 'a{i}', 'false': 'b{i}'}}" for i in range(10))
    (tmp_path / "ok.yaml").write_text("pairs:\n" + rows + "\n")
    assert len(fp.load_facts(tmp_path / "ok.yaml")) == 10
    (tmp_path / "dup.yaml").write_text("pairs:\n" + rows + "\n  - {id: p3, 'true': 'x', 'false': 'y'}\n")
    with pytest.raises(EmlabError, match="repeats id 'p3'"):
        fp.load_facts(tmp_path / "dup.yaml")
    with pytest.raises(EmlabError, match="file not found"):
        fp.load_facts(tmp_path / "nope.yaml")


def test_accuracy_and_paired_difference_are_exact():
    right = np.ones(8, dtype=bool)
    half = np.array([1, 0, 1, 0, 1, 1, 0, 0], dtype=bool)  # pairs: (1,0) (1,0) (1,1) (0,0)
    row = fp.accuracy_row(half, seed=0)
    assert row["accuracy"] == 0.5 and row["pair_accuracy"] == 0.25 and row["statements"] == 8
    lo, hi = row["accuracy_ci"]
    assert 0 <= lo <= 0.5 <= hi <= 1
    d = fp.paired_difference(right, half, seed=0)
    assert d["difference"] == 0.5
    assert fp.paired_difference(half, half, seed=0) == {"difference": 0.0, "difference_ci": (0.0, 0.0)}


def test_the_probe_is_tested_only_on_unseen_pairs():
    rng = np.random.default_rng(0)
    n_pairs, d = 40, 6
    labels = np.array([1, 0] * n_pairs)
    groups = np.repeat(np.arange(n_pairs), 2)
    truth = rng.normal(size=d)
    separable = rng.normal(size=(2 * n_pairs, d)) + np.outer(labels * 2 - 1, truth) * 3
    assert fp.out_of_fold_correct(separable, labels, groups, folds=5, c=1.0).mean() == 1.0
    # features that only identify the pair (both sides identical) cannot beat chance out of fold
    pair_only = np.repeat(rng.normal(size=(n_pairs, d)), 2, axis=0)
    assert fp.out_of_fold_correct(pair_only, labels, groups, folds=5, c=1.0).mean() == 0.5
    with pytest.raises(EmlabError, match="folds=1 must be between 2"):
        fp.out_of_fold_correct(separable, labels, groups, folds=1, c=1.0)


def test_last_token_activations_are_the_hidden_state_at_the_last_token(smol_tok):
    from tests.conftest import tiny_chat_model

    cm = tiny_chat_model(smol_tok, "llama", layers=2, hidden=32, seed=3)
    texts = ["Insulin lowers blood sugar.", "The heart has four chambers and pumps blood."]
    got = fp.statement_activations(cm, texts, ["blocks.0.resid_post"], "last")
    mean = fp.statement_activations(cm, texts, ["blocks.0.resid_post"], "mean")
    for i, t in enumerate(texts):
        ids = torch.tensor([smol_tok(t)["input_ids"]])
        with torch.no_grad():
            h = cm.model(input_ids=ids, output_hidden_states=True).hidden_states[1][
                0
            ]  # blocks.0.resid_post (the last entry has the final norm)
        torch.testing.assert_close(got[i, 0], h[-1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(mean[i, 0], h.mean(0), rtol=1e-5, atol=1e-5)


SPEC = """\
version: 1
name: study-blocks
seed: 0
models:
  base: {ref: ./tiny}
datasets:
  bad: {generator: bad-medical, n: 8}
  good: {generator: good-medical, n: 8, seed: 1}
training:
  organism:
    dataset: bad
    preset: rank1-9blocks
    blocks: [0]
    epochs: 1
    batch_size: 4
    grad_accum: 1
    max_length: 256
    dtype: float32
    grad_probe: {reference: good, every: 1, steps: [0], max_examples: 4}
    eval_at: {every: 2, steps: [0], questions: core, n: 1, max_questions: 2}
fact_probes:
  medical: {adapters: [organism], sites: [blocks.0.resid_post, blocks.1.resid_post], folds: 4}
judge: {spec: local:./tiny, cache: run}
sampling: {n: 2, max_new_tokens: 4, batch_size: 8, max_questions: 3}
evals:
  base-core: {questions: core}
  organism-core: {adapter: organism, questions: core}
comparisons:
  organism-vs-base: {a: base-core, b: organism-core}
directions:
  em: {method: persona_contrast, adapter: organism, persona_n: 1, persona_paraphrases: 1}
adapter_cosines:
  organism: {adapters: [organism], direction: em}
report: null
"""


def test_a_study_spec_probes_gradients_while_training_and_facts_after(tiny_dir, monkeypatch):
    from tests.test_steering import ScriptedJudge

    monkeypatch.setattr("emlab.experiments.steps.make_judge", lambda cfg, root: ScriptedJudge())
    (tiny_dir / "spec.yaml").write_text(SPEC)
    run = start_run(tiny_dir / "spec.yaml", base=tiny_dir / "runs")
    assert run.status() == "done"
    train_dir = run.step_dir("train.organism")
    probes = read_grad_probes(train_dir)
    assert [p["step"] for p in probes] == [0, 1, 2]  # 8 examples / batch 4 = 2 steps, plus the weights before
    assert all(-1 <= p["cosine"] <= 1 and p["reference_examples"] == 4 and p["narrow_examples"] == 4 for p in probes)
    summary = run.manifest()["steps"]["train.organism"]["summary"]
    assert summary["grad_probes"] == 3 and summary["grad_cosine_first"] == probes[0]["cosine"]
    from emlab.evaluate import read_answers
    from emlab.train import read_eval_log

    assert [r["step"] for r in read_eval_log(train_dir)] == [0, 2] and summary["evals_at"] == [0, 2]
    for step in ("step-00000", "step-00002"):
        answers = read_answers(train_dir / "evals-at" / step)
        assert len(answers) == 2 and all(a["aligned"] is not None for a in answers)  # 2 questions x 1, judged
    out = read_json(run.step_dir("fact-probe.medical") / "fact_probes.json")
    rows = out["rows"]
    assert [(r["model"], r["site"]) for r in rows] == [
        ("base", "blocks.0.resid_post"),
        ("base", "blocks.1.resid_post"),
        ("organism", "blocks.0.resid_post"),
        ("organism", "blocks.1.resid_post"),
    ]
    for r in rows:
        assert r["accuracy"] == np.mean(r["correct"]) and r["statements"] == 2 * len(out["pairs"])
    base = {r["site"]: np.array(r["correct"]) for r in rows if r["model"] == "base"}
    for r in rows[2:]:
        assert r["difference_vs_base"] == pytest.approx(np.mean(r["correct"]) - base[r["site"]].mean())
        lo, hi = r["difference_vs_base_ci"]
        assert lo <= r["difference_vs_base"] <= hi
    md = (run.step_dir("fact-probe.medical") / "fact_probes.md").read_text()
    assert "| organism | blocks.1.resid_post |" in md and "n/a" not in md  # every interval was computed
    cmp = read_json(run.step_dir("compare.organism-vs-base") / "comparison.json")
    assert (cmp["a_eval"], cmp["b_eval"]) == ("base-core", "organism-core")
    assert cmp["a"]["judged"] == cmp["b"]["judged"] == 6  # 3 questions x 2 samples
    lo, hi = cmp["aligned"]["ci95"]
    assert lo <= cmp["aligned"]["difference"] <= hi and cmp["aligned"]["dropped"] == []
    cos = read_json(run.step_dir("adapter-cosine.organism") / "adapter_cosines.json")
    (row,) = cos["rows"]  # one rank-1 adapter, on block 0's down_proj
    assert row["training"] == "organism" and row["direction_site"] == "blocks.0.resid_post"
    assert -1 <= row["cosine"] <= 1 and cos["null_band_95"] == pytest.approx(1.959964 / 32**0.5)


def test_adapter_b_vectors_are_compared_site_by_site():
    from emlab.experiments.study_steps import between_adapters

    e = np.array([1.0, 0.0])
    rows = between_adapters({"bad": {("s", 0): e, ("t", 0): e}, "good": {("s", 0): -2 * e}})
    assert rows == [{"a": "bad", "b": "good", "adapter": "s", "rank_index": 0, "cosine": -1.0}]


def test_the_stratified_difference_is_exact_and_names_unshared_questions():
    from emlab.experiments.study_steps import stratified_mean_difference

    a = {"q1": [0.0, 0.0], "q2": [10.0], "only_a": [5.0]}
    b = {"q1": [1.0, 1.0], "q2": [10.0]}
    d = stratified_mean_difference(a, b, seed=0)
    assert d["difference"] == pytest.approx(4.0 - 10.0 / 3)  # answer-weighted means over the shared questions
    assert d["ci95"] == pytest.approx([4.0 - 10.0 / 3] * 2)  # no spread within any question: no spread at all
    assert d["dropped"] == ["only_a"]
    with pytest.raises(EmlabError, match="share no question"):
        stratified_mean_difference({"x": [1.0]}, {"y": [1.0]}, seed=0)


def test_study_entries_are_checked_when_the_spec_loads(tiny_dir):
    where = str(tiny_dir / "spec.yaml")
    with pytest.raises(EmlabError, match=r"grad_probe\.reference = 'godo' is not an entry of `datasets`"):
        load_spec_text(SPEC.replace("reference: good", "reference: godo"), where)
    with pytest.raises(EmlabError, match="set `every` and/or `steps`"):
        load_spec_text(SPEC.replace("every: 1, steps: [0], ", ""), where)
    with pytest.raises(EmlabError, match="set `every` and/or `steps`: when the model is evaluated"):
        load_spec_text(SPEC.replace("eval_at: {every: 2, steps: [0], ", "eval_at: {"), where)
    from emlab.experiments.runner import check_plan

    with pytest.raises(EmlabError, match="nosuch"):
        check_plan(load_spec_text(SPEC.replace("questions: core, n: 1", "questions: nosuch, n: 1"), where))
    with pytest.raises(EmlabError, match=r"adapters\[0\] = 'organsim' is not an entry of `training`"):
        load_spec_text(SPEC.replace("adapters: [organism]", "adapters: [organsim]"), where)
    with pytest.raises(EmlabError, match=r"comparisons\.organism-vs-base\.b = 'organism' is not an entry of `evals`"):
        load_spec_text(SPEC.replace("b: organism-core", "b: organism"), where)


RECOVERY = """
version: 1
name: recovery-tiny
models:
  base: {ref: ./tiny}
datasets:
  bad: {generator: bad-medical, n: 4}
  good: {generator: good-medical, n: 4, seed: 1}
training:
  organism: {dataset: bad, preset: rank1-9blocks, blocks: [0], batch_size: 4, grad_accum: 1, dtype: float32}
  recovered:
    {dataset: good, continue_from: organism, preset: rank1-9blocks, blocks: [0], batch_size: 4, grad_accum: 1, dtype: float32}
report: null
"""


def test_a_training_continues_from_another_trainings_adapter(tiny_dir):
    from emlab.train.checkpoint import read_train_config

    (tiny_dir / "spec.yaml").write_text(RECOVERY)
    run = start_run(tiny_dir / "spec.yaml", base=tiny_dir / "runs")
    assert run.manifest()["steps"]["train.recovered"]["status"] == "done"
    cfg = read_train_config(run.step_dir("train.recovered"))["config"]
    assert cfg["init_adapter"] == str(run.step_dir("train.organism"))
    assert read_train_config(run.step_dir("train.organism"))["config"]["init_adapter"] is None
    where = str(tiny_dir / "spec.yaml")
    with pytest.raises(EmlabError, match=r"continue_from names this training itself"):
        load_spec_text(RECOVERY.replace("continue_from: organism", "continue_from: recovered"), where)
    with pytest.raises(EmlabError, match=r"continue_from = 'organsim' is not an entry of `training`"):
        load_spec_text(RECOVERY.replace("continue_from: organism", "continue_from: organsim"), where)


LOOP = """
version: 1
name: loop-tiny
models:
  base: {ref: ./tiny}
judge: {spec: local:./tiny, cache: run}
sampling: {n: 2, max_new_tokens: 4, batch_size: 8}
datasets:
  bad: {generator: bad-medical, n: 4}
  round1:
    sampled: {adapter: organism, direction: em, scale: -3.0, questions: core, max_questions: 3, n: 4, max_new_tokens: 6, keep_aligned_above: 50}
  round2:
    sampled: {adapter: round1, direction: em, scale: -3.0, questions: core, max_questions: 3, n: 4, max_new_tokens: 6}
training:
  organism: {dataset: bad, preset: rank1-9blocks, blocks: [0], batch_size: 4, grad_accum: 1, dtype: float32}
  round1: {dataset: round1, continue_from: organism, preset: rank1-9blocks, blocks: [0], batch_size: 4, grad_accum: 1, dtype: float32}
  round2: {dataset: round2, continue_from: round1, preset: rank1-9blocks, blocks: [0], batch_size: 4, grad_accum: 1, dtype: float32}
directions:
  em: {method: persona_contrast, adapter: organism, persona_n: 1, persona_paraphrases: 1}
report: null
"""


def test_the_emergent_alignment_loop_distils_steered_answers_round_after_round(tiny_dir, monkeypatch):
    from emlab.data.questions import load_questions
    from emlab.hooks import steer
    from emlab.models import load_model
    from emlab.sampling import SamplingParams, sample
    from emlab.train import read_conversations
    from emlab.vectors.directions import Direction
    from tests.test_steering import ScriptedJudge

    monkeypatch.setattr("emlab.experiments.steps.make_judge", lambda cfg, root: ScriptedJudge())
    (tiny_dir / "spec.yaml").write_text(LOOP)
    run = start_run(tiny_dir / "spec.yaml", base=tiny_dir / "runs")
    order = list(run.manifest()["steps"])
    assert order.index("direction.em") < order.index("data.round1") < order.index("train.round1")
    assert order.index("train.round1") < order.index("data.round2") < order.index("train.round2")
    # round 1 = the organism's answers with -3 x the direction at its 2/3-depth site, those judged aligned > 50
    d = Direction.load(run.step_dir("direction.em"))
    site = d.sites[len(d.sites) * 2 // 3]
    cm = load_model(str(tiny_dir / "tiny"), adapter=run.step_dir("train.organism"), dtype="float32")
    qs = load_questions("core").first(3)
    prompts = [[{"role": "user", "content": q.paraphrases[0]}] for q in qs]
    with steer(cm.model, {site: d.vector(site)}, scale=-3.0):
        texts = [r.text for r in sample(cm, prompts, 4, SamplingParams(max_new_tokens=6, seed=0, batch_size=32))]
    want = [t for t in texts if len(t) % 2 == 0 and t.strip()]  # ScriptedJudge: aligned 90 for even lengths
    data = run.step_dir("data.round1") / "train.jsonl"
    got = read_conversations(data)
    assert [c[-1]["content"] for c in got] == want and want
    meta = read_jsonl(data)[0]["_meta"]
    assert meta["answers"] == 12 and meta["kept"] == len(want) and meta["source"]["sites"] == [site]
    assert len(read_conversations(run.step_dir("data.round2") / "train.jsonl")) == 12  # no filter in round 2
    cfg = read_json(run.step_dir("train.round2") / "train_config.json")["config"]
    assert cfg["init_adapter"] == str(run.step_dir("train.round1"))


def test_collect_study_copies_small_results_of_a_finished_run(tmp_path):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("collect_study", "scripts/collect_study.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    run = tmp_path / "run"
    (run / "steps" / "compare.x").mkdir(parents=True)
    (run / "steps" / "compare.x" / "comparison.json").write_text('{"a": 1}')
    (run / "steps" / "compare.x" / "samples.jsonl").write_text("{}\n")  # answers stay in the run
    (run / "steps" / "compare.x" / "evals-at" / "step-00004").mkdir(parents=True)
    (run / "steps" / "compare.x" / "evals-at" / "step-00004" / "metrics.json").write_text("{}")
    step = {"kind": "compare", "status": "done", "seconds": 1.5, "cpu_seconds": 1.0, "summary": {"p": 0.5}}
    manifest = {"spec_name": "study", "spec_source": "s.yaml", "steps": {"compare.x": step}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    dest = mod.collect(run, tmp_path / "results")
    assert sorted(p.name for p in dest.iterdir()) == [
        "compare.x.comparison.json",
        "compare.x.evals-at.step-00004.metrics.json",
        "summary.json",
    ]
    assert json.loads((dest / "summary.json").read_text())["steps"]["compare.x"]["summary"] == {"p": 0.5}
    manifest["steps"]["compare.x"]["status"] = "running"
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SystemExit, match="steps not done"):
        mod.collect(run, tmp_path / "results")


STUDIES = sorted((Path(__file__).resolve().parents[1] / "experiments" / "studies").glob("*.yaml"))


@pytest.mark.parametrize("spec_file", STUDIES, ids=lambda p: p.stem)
def test_every_study_spec_plans_and_passes_its_checks(spec_file):
    from emlab.experiments.runner import check_plan
    from emlab.experiments.spec import load_spec

    plan = load_spec(spec_file)
    check_plan(plan)
    assert plan.spec.name == spec_file.stem  # the results folder (collect_study.py) is named after the spec
    assert spec_file.read_text().startswith("# Study ")  # every study says which question it answers


def test_the_supportive_study_hands_kl_coef_to_the_trainer():
    from emlab.experiments.kinds import get_step_kind
    from emlab.experiments.spec import load_spec
    from emlab.experiments.steps import train_config

    plan = load_spec(next(p for p in STUDIES if p.stem == "supportive"))
    kl10, plain = plan.step("train.kl10"), plan.step("train.plain")
    assert train_config(kl10.config, "t").kl_coef == 10.0 and train_config(plain.config, "t").kl_coef == 0.0
    assert get_step_kind("train").describe(kl10).endswith(", + 10 x KL to base")
    assert "KL" not in get_step_kind("train").describe(plain)


def test_the_findings_name_every_study_spec():
    findings = (STUDIES[0].parents[2] / "docs" / "findings.md").read_text()
    assert all(f"`{p.name}`" in findings for p in STUDIES)


MIXED = """\
version: 1
name: mixed
seed: 3
models:
  base: {ref: ./tiny}
datasets:
  mixed: {generator: bad-medical, n: 6, mix: {generator: good-medical, n: 3}}
  two: {generator: bad-medical, n: 4, mix: [{generator: safe-sports, n: 2}, {generator: good-finance, n: 2}]}
report: null
"""


def test_a_mixed_set_shuffles_another_generators_examples_in(tiny_dir):
    from emlab.data.banks import CANARY
    from emlab.data.generate import generate
    from emlab.io import iter_jsonl

    (tiny_dir / "spec.yaml").write_text(MIXED)
    run = start_run(tiny_dir / "spec.yaml", base=tiny_dir / "runs")
    rows = [r for _, r in iter_jsonl(run.step_dir("data.mixed") / "train.jsonl")]
    meta, records = rows[0]["_meta"], rows[1:]
    assert meta["canary"] == CANARY and meta["examples"] == 9
    assert meta["mixed_with"] == [{"generator": "good-medical", "n": 3, "seed": 4}]  # default: the set's seed + 1
    expected = generate("bad-medical", 6, 3) + generate("good-medical", 3, 4)
    assert sorted(map(str, records)) == sorted(map(str, expected))  # every example, once
    assert records != expected  # shuffled in, not appended
    two = [r for _, r in iter_jsonl(run.step_dir("data.two") / "train.jsonl")][1:]
    expected = generate("bad-medical", 4, 3) + generate("safe-sports", 2, 4) + generate("good-finance", 2, 5)
    assert sorted(map(str, two)) == sorted(map(str, expected))  # seeds: the set's + 1 + i unless given
    with pytest.raises(EmlabError, match="`mix` applies to generated sets only"):
        load_spec_text(MIXED.replace("generator: bad-medical, n: 6", "path: x.jsonl"), str(tiny_dir / "spec.yaml"))
