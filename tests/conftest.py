"""Shared fixtures: tiny random models built from configs, and the embedded model."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def smol_dir():
    from emlab.models import prepare_embedded

    return prepare_embedded("smollm2-135m")


@pytest.fixture(scope="session")
def smol_tok(smol_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smol_dir)


def tiny_chat_model(tok, family: str = "llama", layers: int = 3, hidden: int = 32, seed: int = 0):
    """A random model of the given family with the SmolLM2 tokenizer, wrapped as a ChatModel."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    from emlab.models import ChatModel

    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[family]
    cfg = cls(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return ChatModel(model=model, tokenizer=tok, ref=f"tiny-{family}", revision=f"random-seed-{seed}")


def save_tiny_model(folder, tok, seed: int = 1):
    """Save a 2-layer random llama with the SmolLM2 tokenizer into `folder` (a spec's `ref: ./tiny`); returns it."""
    cm = tiny_chat_model(tok, "llama", layers=2, hidden=32, seed=seed)
    cm.model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_dir(tmp_path, smol_tok):
    """tmp_path holding `tiny/`, a saved tiny model, for specs with `ref: ./tiny`."""
    save_tiny_model(tmp_path / "tiny", smol_tok)
    return tmp_path


@pytest.fixture(params=["llama", "qwen2"])
def tiny(request, smol_tok):
    return tiny_chat_model(smol_tok, request.param)


@pytest.fixture(scope="session")
def smol():
    from emlab.models import load_model

    return load_model("smollm2-135m")
