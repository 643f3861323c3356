"""Model references, the embedded-model cache and adapter checks."""

from __future__ import annotations

import os
import time

import pytest
import torch

from emlab import models
from emlab.errors import EmlabError


def test_embedded_listed_and_loads_fast(smol_dir):
    names = [r["name"] for r in models.list_models()]
    assert "smollm2-135m" in names
    t0 = time.perf_counter()
    cm = models.load_model("smollm2-135m")
    elapsed = time.perf_counter() - t0
    assert cm.n_layers == 30 and cm.d_model == 576
    assert cm.tokenizer.pad_token_id == cm.tokenizer.eos_token_id == 2
    assert cm.revision.startswith("gguf-sha256:")
    assert elapsed < 30  # generous bound for a loaded CI machine; the README reports the measured ~3 s


def test_hub_id_offline_error_names_variable(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EmlabError, match="HF_HUB_OFFLINE=1.*smollm2-135m"):
        models.load_model("some-org/some-model-that-is-not-cached")


def test_bad_refs_and_dtype(tmp_path):
    with pytest.raises(EmlabError, match="neither an embedded model"):
        models.load_model("not-a-model")
    with pytest.raises(EmlabError, match="has no config.json"):
        models.load_model(str(tmp_path))
    with pytest.raises(EmlabError, match="unknown dtype 'float8'"):
        models.load_model("smollm2-135m", dtype="float8")


def test_interrupted_conversion_leaves_nothing(tmp_path, monkeypatch, smol_tok):
    """Weights are half written when the conversion is interrupted: no folder may remain."""
    import transformers

    from tests.conftest import tiny_chat_model

    monkeypatch.setenv("EMLAB_CACHE", str(tmp_path))
    tiny = tiny_chat_model(smol_tok, "llama", layers=1, hidden=16).model
    written = []

    class FakeAuto:
        @staticmethod
        def from_pretrained(*a, **k):
            return tiny

    def interrupted_tokenizer(*a, **k):
        written.extend(p.name for p in (tmp_path / "models").rglob("*.safetensors"))
        raise KeyboardInterrupt

    monkeypatch.setattr(transformers, "AutoModelForCausalLM", FakeAuto)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", interrupted_tokenizer)
    monkeypatch.setattr(type(tiny), "save_pretrained", lambda self, d, **k: (d / "model.safetensors").write_bytes(b"partial"))
    with pytest.raises(KeyboardInterrupt):
        models.prepare_embedded("smollm2-135m")
    assert written == ["model.safetensors"]  # the interruption really came mid-write
    assert os.listdir(tmp_path / "models") == []


def test_adapter_for_other_base_model_is_rejected(smol_tok, tmp_path):
    from peft import LoraConfig, get_peft_model

    from tests.conftest import tiny_chat_model

    small = tiny_chat_model(smol_tok, "llama", layers=2, hidden=32)
    get_peft_model(small.model, LoraConfig(r=1, target_modules=["down_proj"])).save_pretrained(tmp_path / "ad")
    other = tiny_chat_model(smol_tok, "llama", layers=2, hidden=48).model
    with pytest.raises(EmlabError, match="saved for a different base model"):
        models.attach_adapter(other, tmp_path / "ad")
    ok = tiny_chat_model(smol_tok, "llama", layers=2, hidden=32).model
    wrapped = models.attach_adapter(ok, tmp_path / "ad")
    assert isinstance(wrapped(torch.tensor([[1, 2, 3]])).logits, torch.Tensor)
