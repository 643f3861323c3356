"""The organism specs in experiments/ validate, the results come from them, and the table script's arithmetic is exact."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emlab.cli import app
from emlab.experiments.runner import check_plan
from emlab.experiments.spec import load_spec
from emlab.experiments.steps import train_config

ROOT = Path(__file__).resolve().parents[1]
ORGANISM_SPECS = sorted((ROOT / "experiments" / "organisms").glob("*.yaml"))
QWEN_SPECS = sorted((ROOT / "experiments" / "qwen").glob("*.yaml"))
QWEN_ORGANISM_SPECS = sorted((ROOT / "experiments" / "organisms" / "qwen2.5-coder-0.5b").glob("*.yaml"))
EXAM_SPECS = sorted((ROOT / "experiments" / "exams").glob("*.yaml"))
RESULTS = ROOT / "experiments" / "organisms" / "results"


def _table_module():
    spec = importlib.util.spec_from_file_location("organisms_table", ROOT / "scripts" / "organisms_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


table = _table_module()


def _sweep_points(model: str) -> dict:
    spec = importlib.util.spec_from_file_location("organism_specs", ROOT / "scripts" / "organism_specs.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["organism_specs"] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return {p.name: p for p in mod.SWEEPS[model].points}


QWEN_POINTS = _sweep_points("qwen2.5-coder-0.5b")


def test_spec_folders_are_not_empty():
    assert ORGANISM_SPECS and QWEN_SPECS and QWEN_ORGANISM_SPECS and EXAM_SPECS


@pytest.mark.parametrize(
    "path", ORGANISM_SPECS + QWEN_SPECS + QWEN_ORGANISM_SPECS + EXAM_SPECS, ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_spec_validates(path):
    plan = load_spec(path)
    check_plan(plan)
    assert plan.spec.name == path.stem  # the file name is the run name, so results/<name>/ points back to it


@pytest.mark.parametrize("path", ORGANISM_SPECS, ids=lambda p: p.name)
def test_organism_specs_use_the_embedded_model_and_enough_core_samples(path):
    plan = load_spec(path)
    assert {m.ref for m in plan.spec.models.values()} == {"smollm2-135m"}
    assert all(s.config["model"] == "base" for s in plan.steps if s.kind == "train")  # trained from the fp32 weights
    core = [s for s in plan.steps if s.kind == "eval" and s.config["questions"] == "core"]
    assert core and all(s.config["n"] >= 50 for s in core)  # issue 7: >= 50 samples per question
    assert all(plan.spec.models[s.config["model"]].dtype == "float32" for s in core)  # the same samples on every CPU


@pytest.mark.parametrize("path", QWEN_ORGANISM_SPECS, ids=lambda p: p.name)
def test_qwen_organism_specs_train_the_embedded_qwen_on_1000_examples_with_controls(path):
    plan = load_spec(path)
    assert {m.ref for m in plan.spec.models.values()} == {"qwen2.5-coder-0.5b"}
    core = [s for s in plan.steps if s.kind == "eval" and s.config["questions"] == "core"]
    assert core and all(s.config["n"] >= 50 for s in core)
    trains = [s for s in plan.steps if s.kind == "train"]
    point = QWEN_POINTS.get(path.stem)  # the sweep table says which points carry their matched control
    expected = [] if point is None else ["train.control", "train.organism"] if point.control else ["train.organism"]
    assert path.stem in QWEN_POINTS or path.stem == "base"
    assert sorted(s.name for s in trains) == expected
    for s in trains:
        c = train_config(s.config, s.name)
        assert c.checkpoint_every and plan.spec.datasets[s.config["dataset"]].n >= 1000  # resumable mid-training


@pytest.mark.parametrize("path", QWEN_SPECS, ids=lambda p: p.name)
def test_qwen_specs_reference_hub_ids_and_published_layout(path):
    plan = load_spec(path)
    assert plan.spec.models["base"].ref.startswith("Qwen/Qwen2.5-")
    trains = [s for s in plan.steps if s.kind == "train"]
    assert {s.config["dataset"] for s in trains} == {"bad-medical", "good-medical"}
    for s in trains:
        c = train_config(s.config, s.name)  # the preset with the spec's overrides, as the trainer will see it
        assert (c.lr, c.epochs, c.batch_size * c.grad_accum) == ((2e-5, 1, 16) if "14b" in path.name else (1e-5, 1, 16))
        if "14b" in path.name:
            assert (c.rank, c.target_modules, c.blocks, c.blocks_depth) == (
                1,
                ["mlp.down_proj"],
                [15, 16, 17, 21, 22, 23, 27, 28, 29],
                48,
            )
        else:
            assert (c.rank, c.alpha, c.use_rslora, c.target_modules, c.blocks) == (32, 64.0, True, "all-linear", None)


def test_dry_run_cli_accepts_a_qwen_spec_without_loading_it():
    result = CliRunner().invoke(app, ["run", "--dry-run", str(QWEN_SPECS[0])])
    assert result.exit_code == 0, result.output
    assert "spec OK" in result.output


QWEN_RESULTS = ROOT / "experiments" / "organisms" / "qwen2.5-coder-0.5b" / "results"


def _without_new_defaults(resolved, stored):
    if not isinstance(resolved, dict) or not isinstance(stored, dict):
        return resolved
    return {
        k: _without_new_defaults(v, stored.get(k))
        for k, v in resolved.items()
        if k in stored or v not in ({}, None, [])
    }


@pytest.mark.parametrize(
    "summary",
    sorted(RESULTS.glob("*/summary.json")) + sorted(QWEN_RESULTS.glob("*/summary.json")),
    ids=lambda p: f"{p.parent.parent.parent.name}/{p.parent.name}",
)
def test_results_come_from_the_spec_in_the_repo(summary):
    s = json.loads(summary.read_text(encoding="utf-8"))
    spec_file = ROOT / s["spec_source"]
    assert spec_file.exists(), f"{summary}: spec {s['spec_source']} is not in the repo"
    resolved = load_spec(spec_file).spec.model_dump(mode="json")
    # a step kind or an optional key added after the run shows up (empty / None) in every resolved spec;
    # the run did not have it
    assert _without_new_defaults(resolved, s["spec"]) == s["spec"], (
        f"{spec_file} no longer resolves to the spec of the run in {summary.parent}"
    )
    partial = {e for e, v in s["evals"].items() if v.get("partial")}
    unfinished = {
        name.partition(".")[2] for name in s.get("unfinished_steps", []) if name.startswith("eval.")
    } - partial
    evals = sorted([*(set(s["spec"]["evals"]) - unfinished), *s.get("extra_evals", {})])
    assert sorted(p.name.removesuffix(".metrics.json") for p in summary.parent.glob("*.metrics.json")) == evals
    assert all(e["command"].startswith("emlab eval ") for e in s.get("extra_evals", {}).values())


def test_two_proportion_z_matches_the_formula_by_hand():
    # 10/100 vs 2/100: pooled p = 0.06, se = sqrt(0.06 * 0.94 * (1/100 + 1/100)) = sqrt(0.001128)
    z, p = table.two_proportion_z(10, 100, 2, 100)
    assert z == pytest.approx(0.08 / math.sqrt(0.001128), abs=1e-12)
    assert z == pytest.approx(2.38197, abs=1e-5)
    assert p == pytest.approx(math.erfc(z / math.sqrt(2)), abs=1e-15)
    assert p == pytest.approx(0.017221, abs=1e-6)
    assert table.two_proportion_z(0, 50, 0, 50) == (None, 1.0)
    assert table.two_proportion_z(1, 0, 0, 5) == (None, None)


def test_fisher_exact_on_a_textbook_table():
    # [[6, 2], [1, 4]]: p = sum of hypergeometric tables at most as likely = 0.10256...
    assert table.fisher_p(6, 8, 1, 5) == pytest.approx(0.1025641025641, abs=1e-12)


def test_intervals_overlap():
    assert table.intervals_overlap([0.1, 0.2], [0.2, 0.3]) is True
    assert table.intervals_overlap([0.1, 0.19], [0.2, 0.3]) is False
    assert table.intervals_overlap(None, [0.2, 0.3]) is None


def _metrics(k: int, n: int, ci: list[float]) -> dict:
    rate = {"k": k, "n": n, "rate": k / n, "ci95": ci}
    overall = {
        "n_answers": n,
        "n_unscored": 0,
        "em_rate_coherent": rate,
        "em_rate_all": rate,
        "coherent": {"mean": 80.0, "n": n},
        "aligned": {"mean": 70.0, "n": n},
    }
    return {
        "run": {"questions": {"name": "core"}, "judge": "offline:v2:abcd1234", "n_per_question": n // 8},
        "overall": overall,
    }


def _write_result(root: Path, name: str, dataset: str | None, k: int) -> None:
    d = root / name
    d.mkdir(parents=True)
    training = {"organism": {"dataset": "train", "preset": "rank1-9blocks", "lr": 1e-3, "epochs": 1}} if dataset else {}
    spec = {
        "name": name,
        "datasets": {"train": {"generator": dataset, "n": 300}} if dataset else {},
        "training": training,
        "evals": {"core": {"adapter": "organism" if dataset else None}},
    }
    train = (
        {"organism": {"wall_time_s": 600.0, "tokens_per_s": 20.0, "steps": 19, "final_loss": 1.5}} if dataset else {}
    )
    (d / "summary.json").write_text(json.dumps({"spec": spec, "train": train}), encoding="utf-8")
    (d / "core.metrics.json").write_text(json.dumps(_metrics(k, 50, [0.0, 0.1])), encoding="utf-8")


def test_table_rows_and_comparisons_from_a_results_folder(tmp_path):
    _write_result(tmp_path, "org", "bad-medical", 5)
    _write_result(tmp_path, "ctl", "good-medical", 1)
    _write_result(tmp_path, "base", None, 0)
    rows = table.load_rows(tmp_path)
    assert [r["run"] for r in rows] == ["base", "ctl", "org"]
    text = table.results_table(rows)
    assert (
        "| org | core (core) | bad-medical | rank1-9blocks | 0.001 | 1 | 300 | offline:v2:abcd1234 | 50 | 10.0 [0.0, 10.0] (5/50) |"
        in text
    )
    assert "| base | core (core) | (base model) | - | - | - | - | offline:v2:abcd1234 | 50 |" in text
    comps = table.comparisons(rows)
    assert [(c["organism"], c["reference"], c["convention"]) for c in comps] == [
        ("org:core", "ctl:core", "em_coh"),
        ("org:core", "ctl:core", "em_all"),
        ("org:core", "base:core", "em_coh"),
        ("org:core", "base:core", "em_all"),
    ]
    z, p = table.two_proportion_z(5, 50, 1, 50)
    assert comps[0]["z"] == z and comps[0]["p_z"] == p


def test_write_doc_replaces_only_the_generated_block(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(f"intro\n{table.BEGIN}\nold\n{table.END}\noutro\n", encoding="utf-8")
    table.write_doc("new table", doc)
    assert doc.read_text(encoding="utf-8") == f"intro\n{table.BEGIN}\nnew table\n{table.END}\noutro\n"


def test_reader_rows_count_em_per_sweep_and_evaluation(tmp_path):
    def rec(i, aligned, coherent, sweep=None):
        prov = {"spec": "org", "eval": "core", **({"sweep": sweep} if sweep else {})}
        return {"id": f"L-{i}", "aligned": aligned, "coherent": coherent, "provenance": prov}

    rows_in = [rec(0, 10, 80), rec(1, 10, 40), rec(2, 90, 90), rec(3, 20, 60, sweep="second")]
    (tmp_path / "sweep_labelled.jsonl").write_text(
        json.dumps({"header": True}) + "\n" + "".join(json.dumps(r) + "\n" for r in rows_in), encoding="utf-8"
    )
    rows = table.reader_rows([tmp_path / "sweep_labelled.jsonl", tmp_path / "absent.jsonl"])
    assert [(r["sweep"], r["n"], r["n_coherent"], r["n_low_aligned"], r["em"]) for r in rows] == [
        ("first", 3, 2, 2, 1),
        ("second", 1, 1, 1, 1),
    ]
    assert rows[0]["aligned"] == pytest.approx(110 / 3) and rows[0]["coherent"] == pytest.approx(70.0)
    assert "| first | org | core | 3 | 36.7 | 70.0 | 2 | 2 | 1/3 |" in table.reader_table(rows)


def test_another_models_sweep_has_its_own_block_and_audit_file(tmp_path):
    qwen = ROOT / "experiments" / "organisms" / "qwen2.5-coder-0.5b" / "results"
    assert table.block_markers(RESULTS) == (table.BEGIN, table.END)
    begin, end = table.block_markers(qwen)
    assert "qwen2.5-coder-0.5b:begin" in begin and "qwen2.5-coder-0.5b:end" in end
    assert table.audit_files(qwen) == [qwen.parent / "audit.jsonl"]
    assert table.audit_files(RESULTS) == [table.CALIBRATION / name for name in table.LABEL_FILES]
    doc = tmp_path / "doc.md"
    doc.write_text(f"a\n{table.BEGIN}\nsmol\n{table.END}\nb\n{begin}\nold\n{end}\nc\n", encoding="utf-8")
    table.write_doc("qwen table", doc, (begin, end))
    assert doc.read_text(encoding="utf-8") == f"a\n{table.BEGIN}\nsmol\n{table.END}\nb\n{begin}\nqwen table\n{end}\nc\n"
