"""Spec strictness: unknown keys, duplicate keys, version, references, and the step plan."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from emlab.errors import EmlabError
from emlab.experiments.spec import builtin_specs, load_spec, load_spec_text

BASE = textwrap.dedent(
    """\
    version: 1
    name: t
    models:
      base: {ref: smollm2-135m}
    datasets:
      bad-medical: {generator: bad-medical, n: 10}
    training:
      organism:
        dataset: bad-medical
        lr: 0.001
    evals:
      base: {questions: core, n: 2}
      organism: {adapter: organism, n: 3}
    directions:
      main: {eval: organism}
    interventions:
      steering:
        sweep: {direction: main, sites: [blocks.3.resid_post], lambdas: [0, 4]}
      ablation:
        organism: {adapter: organism, direction: main}
        random: {adapter: organism, direction: main, random: true}
    """
)


def err(text: str) -> str:
    with pytest.raises(EmlabError) as e:
        load_spec_text(text, "spec.yaml")
    return str(e.value)


def test_plan_names_and_dependencies():
    plan = load_spec_text(BASE, "spec.yaml")
    deps = {s.name: s.deps for s in plan.steps}
    assert list(deps) == [
        "data.bad-medical",
        "train.organism",
        "eval.base",
        "eval.organism",
        "direction.main",
        "steer.sweep",
        "ablate.organism",
        "ablate.random",
        "report",
    ]
    assert deps["train.organism"] == ("data.bad-medical",)
    assert deps["eval.base"] == ()
    assert deps["eval.organism"] == ("train.organism",)
    assert deps["direction.main"] == ("eval.organism", "train.organism")  # the eval's adapter is the direction's model
    assert deps["ablate.random"] == ("direction.main", "train.organism")
    assert set(deps["report"]) == set(deps) - {"report"}


def test_sampling_defaults_are_resolved_per_entry():
    plan = load_spec_text(
        BASE.replace("version: 1\n", "version: 1\nseed: 7\nsampling: {n: 5, max_new_tokens: 40}\n"), "spec.yaml"
    )
    base, org = plan.step("eval.base").config, plan.step("eval.organism").config
    assert (base["n"], base["max_new_tokens"], base["seed"]) == (2, 40, 7)  # own n wins, the rest inherits
    assert (org["n"], org["max_new_tokens"]) == (3, 40)
    assert plan.step("ablate.random").config["random_seed"] == 7
    assert plan.seeds()["eval.base"] == 7


def test_misspelt_key_names_path_and_closest_key():
    msg = err(BASE.replace("lr: 0.001", "lr_rate: 0.001"))
    assert "spec.yaml:10" in msg
    assert "'training.organism.lr_rate'" in msg
    assert "did you mean 'lr'?" in msg


def test_misspelt_top_level_and_nested_keys():
    assert "did you mean 'evals'?" in err(BASE.replace("evals:", "eval:"))
    msg = err(BASE.replace("{direction: main, sites", "{directon: main, sites"))
    assert "'interventions.steering.sweep.directon'" in msg and "did you mean 'direction'?" in msg


def test_duplicate_key_names_line_and_path():
    msg = err(BASE.replace("    lr: 0.001\n", "    lr: 0.001\n    lr: 0.01\n"))
    assert "spec.yaml:11" in msg and "duplicate key 'training.organism.lr'" in msg and "line 10" in msg


def test_duplicate_entry_names():
    msg = err(BASE + "evals:\n  x: {}\n")
    assert "duplicate key 'evals'" in msg


def test_missing_and_wrong_version():
    assert "missing required key 'version'" in err(BASE.replace("version: 1\n", ""))
    assert "unsupported spec version 2" in err(BASE.replace("version: 1", "version: 2"))


def test_unknown_reference_suggests_entry():
    msg = err(BASE.replace("organism: {adapter: organism, n: 3}", "organism: {adapter: organsim, n: 3}"))
    assert "evals.organism.adapter = 'organsim'" in msg and "did you mean 'organism'?" in msg


def test_bad_values_name_the_path():
    assert "evals.base.n" in err(BASE.replace("{questions: core, n: 2}", "{questions: core, n: 0}"))
    # training values are checked by the trainer's own schema when the plan is checked (still before any work)
    from emlab.experiments.runner import check_plan

    with pytest.raises(EmlabError, match=r"training\.organism.*lr=-1"):
        check_plan(load_spec_text(BASE.replace("lr: 0.001", "lr: -1"), "spec.yaml"))
    with pytest.raises(EmlabError, match="unknown preset 'rank2'"):
        check_plan(load_spec_text(BASE.replace("lr: 0.001", "preset: rank2"), "spec.yaml"))
    with pytest.raises(EmlabError, match=r"judge.spec = 'ofline'"):
        check_plan(load_spec_text(BASE + "judge: {spec: ofline}\n", "spec.yaml"))
    with pytest.raises(EmlabError, match="question set 'cor'"):
        check_plan(load_spec_text(BASE.replace("questions: core", "questions: cor"), "spec.yaml"))
    assert "unknown site" in err(BASE.replace("blocks.3.resid_post", "layer3"))
    assert "exactly one of" in err(BASE.replace("{generator: bad-medical, n: 10}", "{n: 10}"))


def test_yaml_syntax_error_has_line():
    assert "spec.yaml:3" in err("version: 1\nname: t\nseed: a: b\n")


def test_local_model_path_resolved_against_spec_folder(tmp_path):
    (tmp_path / "spec.yaml").write_text("version: 1\nname: t\nmodels:\n  base: {ref: ./tiny}\n")
    plan = load_spec(tmp_path / "spec.yaml")
    assert plan.spec.models["base"].ref == str((tmp_path / "tiny").resolve())


@pytest.mark.parametrize("name", builtin_specs())
def test_builtin_specs_are_valid(name):
    plan = load_spec(name)
    assert plan.steps[-1].name == "report"


def test_dry_run_fails_before_any_work(tmp_path):
    """A misspelt key stops `emlab run` with exit 2 and creates no run folder."""
    spec = tmp_path / "bad.yaml"
    spec.write_text(BASE.replace("lr: 0.001", "lr_rate: 0.001"))
    runs = tmp_path / "runs"
    for args in (["run", str(spec), "--runs-dir", str(runs)], ["run", "--dry-run", str(spec)]):
        p = subprocess.run([sys.executable, "-m", "emlab.cli", *args], capture_output=True, text=True)
        assert p.returncode == 2, p.stderr
        assert "lr_rate" in p.stderr and "did you mean 'lr'?" in p.stderr
    assert not runs.exists()


def test_dry_run_prints_plan(tmp_path):
    spec = tmp_path / "ok.yaml"
    spec.write_text(BASE)
    p = subprocess.run(
        [sys.executable, "-m", "emlab.cli", "run", "--dry-run", str(spec)], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    for name in ("data.bad-medical", "train.organism", "steer.sweep", "ablate.random", "spec OK"):
        assert name in p.stdout
