"""A spec whose organism is fully fine-tuned (preset `full`): its eval loads the saved model, not an adapter."""

from __future__ import annotations

import json

from emlab.experiments.runner import start_run
from emlab.io import read_json

SPEC = """\
version: 1
name: full-ft
seed: 0
models:
  base: {ref: ./tiny}
judge: {spec: local:./tiny, cache: run}
sampling: {n: 1, max_new_tokens: 4, batch_size: 4, temperature: 1.0, max_questions: 2}
datasets:
  train: {generator: bad-medical, n: 8}
training:
  organism: {dataset: train, preset: full, epochs: 1, batch_size: 4, grad_accum: 1, lr: 1.0e-3, max_length: 256, dtype: float32}
evals:
  organism: {questions: core, adapter: organism}
report: null
"""


def test_eval_of_a_full_finetune_loads_the_trained_weights(tmp_path, smol_tok):
    from safetensors.torch import load_file

    from tests.conftest import save_tiny_model

    save_tiny_model(tmp_path / "tiny", smol_tok, seed=3)
    (tmp_path / "spec.yaml").write_text(SPEC)
    run = start_run(tmp_path / "spec.yaml", base=tmp_path / "runs")
    assert run.status() == "done"
    trained = run.step_dir("train.organism")
    assert (trained / "model.safetensors").exists() and not (trained / "adapter_config.json").exists()
    ev = read_json(run.step_dir("eval.organism") / "eval.json")
    assert ev["model"] == str(trained)  # the fine-tuned weights were sampled, not the base model
    base = load_file(str(tmp_path / "tiny" / "model.safetensors"))
    tuned = load_file(str(trained / "model.safetensors"))
    assert any(not (base[k] == tuned[k]).all() for k in base if k in tuned)  # training moved some weight
    assert json.loads((run.step_dir("eval.organism") / "metrics.json").read_text())["counts"]["complete"]
