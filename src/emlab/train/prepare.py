"""The model being trained: device, dtype, a private copy of the base model, adapters attached, trainable parameters."""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from emlab.errors import EmlabError
from emlab.models import ChatModel, load_model
from emlab.sites import hf_config
from emlab.train.config import TrainConfig
from emlab.train.placement import LoraPlan, attach_lora, load_initial_adapter


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 matmul support (avx512_bf16 or AMX)."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise EmlabError("device=cuda (config key device) but torch sees no CUDA GPU; set device: cpu or auto")
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """auto -> what emlab.dtype_probe measured faster on this machine (cached per machine)."""
    if dtype == "float32":
        return torch.float32
    if dtype == "bfloat16":
        return torch.bfloat16
    from emlab.dtype_probe import choose_dtype

    return choose_dtype(device).torch_dtype


@dataclass
class TrainSetup:
    """The model being trained and what the loop needs to know about it."""

    model: nn.Module  # the module being trained (PeftModel for LoRA)
    tokenizer: Any
    ref: str
    revision: str
    device: str
    dtype: torch.dtype
    plan: LoraPlan | None
    params: list[nn.Parameter]

    @property
    def autocast(self) -> bool:
        """bf16 compute over fp32 weights: only full fine-tuning needs it (LoRA's frozen base is bf16 already)."""
        return self.dtype == torch.bfloat16 and self.plan is None


def prepare(cm_or_ref: ChatModel | str, config: TrainConfig) -> TrainSetup:
    """Load (or copy) the base model, set dtypes, attach adapters; the caller's model is untouched."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    cm = load_model(cm_or_ref) if isinstance(cm_or_ref, str) else cm_or_ref
    if type(cm.model).__module__.startswith("peft."):
        raise EmlabError(
            f"model {cm.ref} already has an adapter ({cm.adapter}); train on the base model (load it without adapter=)"
        )
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    model = cm.model if isinstance(cm_or_ref, str) else copy.deepcopy(cm.model)
    model.to(device=device, dtype=torch.float32)
    torch.manual_seed(config.seed)
    plan = None
    if config.method == "lora":
        model.to(dtype)  # frozen base in the compute dtype; peft keeps the adapters in fp32
        model, plan = attach_lora(model, config)
        if config.init_adapter is not None:
            load_initial_adapter(model, config.init_adapter, config)
    else:
        for p in model.parameters():
            p.requires_grad_(True)  # full: fp32 master weights, bf16 compute via autocast
    if getattr(hf_config(model), "use_cache", None):
        hf_config(model).use_cache = False
    params = [p for p in model.parameters() if p.requires_grad]
    return TrainSetup(model, cm.tokenizer, cm.ref, cm.revision, device, dtype, plan, params)


def forward_kwargs(model: nn.Module) -> set[str]:
    """The keyword arguments of the causal LM's forward (e.g. whether it takes logits_to_keep)."""
    from emlab.hooks import causal_lm

    return set(inspect.signature(causal_lm(model).forward).parameters)
