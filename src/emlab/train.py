"""Fine-tuning model organisms: LoRA or full, assistant-only loss, checkpoints, exact resume.

The core, checkable in one sitting (`train` -> `_optimizer_step`):
  1. Every conversation is rendered with the chat template and tokenized; the labels are the
     assistant tokens plus each assistant turn's end-of-turn token, everything else is -100.
     The mask comes from `encode_with_assistant_mask`, never from the pad id: in SmolLM2
     pad == eos == `<|im_end|>`, and the end-of-turn token must be learnt.
  2. Each epoch's order is a permutation drawn from (seed, epoch) alone; examples are sorted by
     length inside windows of `BUCKET_BATCHES` micro-batches (less padding), micro-batches are
     right-padded with an attention mask, and the batch order is shuffled again.
  3. One optimizer step = `grad_accum` micro-batches; the loss is the summed token cross-entropy
     divided by the number of label tokens in the whole step (a token-level mean, the same
     whatever the micro-batch split).
  4. AdamW; the learning rate is a pure function of the step (`lr_at`); gradients clipped.
  5. Every `checkpoint_every` steps the trainable weights (peft adapter or save_pretrained
     folder), the optimizer state (safetensors + JSON) and the RNG state (safetensors) are
     written to `checkpoints/step-XXXXX/` atomically. A resumed run reloads them and skips the
     steps already taken, so it ends with the same weights as an uninterrupted run.

Why a plain loop rather than TRL's SFTTrainer: see docs/training.md (measured on the same data).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import hashlib
import inspect
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from torch import nn

from emlab.chat import Encoded, encode_with_assistant_mask, pad_encoded
from emlab.errors import EmlabError
from emlab.hooks import contiguous_lm_head_input
from emlab.io import iter_jsonl, read_json, write_json, write_jsonl
from emlab.models import ChatModel, load_model
from emlab.sites import decoder_blocks
from emlab.strict_yaml import parse_yaml as strict_yaml

BUCKET_BATCHES = 16  # micro-batches per length-sorting window
LORA_DEFAULTS: dict[str, Any] = {"rank": 8, "alpha": 16.0, "use_rslora": False, "dropout": 0.0, "target_modules": "all-linear"}
LORA_FIELDS = ("rank", "alpha", "use_rslora", "dropout", "target_modules", "blocks", "blocks_depth")


# ----------------------------------------------------------------------------- config


class TrainConfig(BaseModel):
    """A flat fine-tuning config; unknown keys are rejected by name (see `parse_config`).

    LoRA fields left unset take `LORA_DEFAULTS` when method is 'lora' and must stay unset
    when method is 'full'.
    """

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = Field(1, description="schema version, so renamed keys fail loudly instead of silently")
    description: str = Field("", description="one line on what this config is for (shown by `emlab train presets`)")
    method: Literal["lora", "full"] = Field("lora", description="lora trains low-rank adapters on a frozen model; full trains every weight")
    rank: int | None = Field(None, ge=1, description="LoRA rank r: width of each adapter's bottleneck")
    alpha: float | None = Field(None, gt=0, description="LoRA alpha: adapter output is scaled by alpha/r (alpha/sqrt(r) with rsLoRA)")
    use_rslora: bool | None = Field(None, description="rank-stabilised scaling alpha/sqrt(r), which keeps update size stable across ranks")
    dropout: float | None = Field(None, ge=0, lt=1, description="dropout on the adapter input during training (regularises)")
    target_modules: list[str] | Literal["all-linear"] | None = Field(
        None, description="module names inside each block to adapt ('down_proj', 'mlp.down_proj') or 'all-linear'"
    )
    blocks: list[int] | None = Field(None, description="decoder blocks (0-based) that get adapters; null = every block")
    blocks_depth: int | None = Field(
        None, ge=1, description="depth of the model `blocks` were chosen for; set it to place blocks at the same relative depths in any model"
    )
    lr: float = Field(1e-4, gt=0, description="peak learning rate of AdamW")
    epochs: int = Field(1, ge=1, description="passes over the training set")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (also sets the schedule's length)")
    batch_size: int = Field(8, ge=1, description="conversations per micro-batch (memory)")
    grad_accum: int = Field(2, ge=1, description="micro-batches per optimizer step; effective batch = batch_size * grad_accum")
    seed: int = Field(0, description="seeds adapter init, data order and dropout, so runs reproduce")
    max_length: int = Field(1024, ge=8, description="longest tokenized conversation kept (memory and time bound)")
    truncation: Literal["drop", "truncate"] = Field("drop", description="what happens to longer conversations: dropped, or cut to max_length")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="fraction of steps over which the lr ramps up linearly (stabilises Adam early)")
    lr_schedule: Literal["linear", "cosine", "constant"] = Field("linear", description="lr decay after warmup")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay")
    max_grad_norm: float | None = Field(1.0, gt=0, description="clip the global gradient norm to this (null: no clipping; the norm is still logged)")
    checkpoint_every: int | None = Field(None, ge=1, description="save a resumable checkpoint every N steps (kept for training-dynamics analysis)")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="compute dtype; auto = bfloat16 where the CPU has avx512_bf16/AMX or the GPU supports it, else float32"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where to train; auto = cuda when available")
    system: str | None = Field("default", description="system prompt when encoding: 'default' keeps the template's, null drops it, text replaces it")

    @field_validator("target_modules", mode="before")
    @classmethod
    def _one_module_is_a_list(cls, v: Any) -> Any:
        if isinstance(v, str) and v != "all-linear":
            return [v]
        return v

    @field_validator("target_modules")
    @classmethod
    def _modules_nonempty(cls, v: Any) -> Any:
        if isinstance(v, list) and (not v or any(not m.strip() for m in v)):
            raise ValueError(f"target_modules={v!r} must name at least one module, e.g. [down_proj] or all-linear")
        return v

    @field_validator("blocks")
    @classmethod
    def _blocks_distinct(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("blocks=[] selects no block; list block indices or use null for every block")
        if len(set(v)) != len(v) or min(v) < 0:
            raise ValueError(f"blocks={v} must be distinct non-negative block indices")
        return sorted(v)

    @model_validator(mode="after")
    def _method_fields(self) -> TrainConfig:
        if self.method == "full":
            for name in LORA_FIELDS:
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"{name}={getattr(self, name)!r} is set but method='full'; LoRA settings apply only to method 'lora': remove {name} or set method: lora"
                    )
            return self
        for name, default in LORA_DEFAULTS.items():
            if getattr(self, name) is None:
                setattr(self, name, default)
        if self.blocks_depth is not None:
            if self.blocks is None:
                raise ValueError(f"blocks_depth={self.blocks_depth} is set but blocks is null; blocks_depth says which depth `blocks` refer to: set blocks or drop blocks_depth")
            if max(self.blocks) >= self.blocks_depth:
                raise ValueError(f"blocks={self.blocks} go beyond blocks_depth={self.blocks_depth} (valid 0..{self.blocks_depth - 1}); fix blocks or blocks_depth")
        return self


def parse_config(data: dict, source: str = "config") -> TrainConfig:
    """Validate a dict into a TrainConfig; any problem becomes one EmlabError line naming `source`."""
    if not isinstance(data, dict):
        raise EmlabError(f"train config {source}: expected a mapping of keys to values, got {type(data).__name__}")
    try:
        return TrainConfig(**data)
    except ValidationError as e:
        raise EmlabError(f"train config {source}: " + "; ".join(_explain(err) for err in e.errors())) from None


def _explain(err: dict) -> str:
    loc = ".".join(str(x) for x in err["loc"])
    fields = list(TrainConfig.model_fields)
    if err["type"] == "extra_forbidden":
        key = str(err["loc"][0])
        close = difflib.get_close_matches(key, fields, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown key {key!r}{hint}; valid keys: {', '.join(fields)}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if not loc:
        return msg
    return f"{loc}={err.get('input')!r}: {msg}"


def load_config_file(path: str | os.PathLike, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML train config and apply `key=value` overrides."""
    p = Path(path)
    if not p.exists():
        raise EmlabError(f"train config {p}: file not found; pass a YAML file or use --preset (see `emlab train presets`)")
    data = strict_yaml(p.read_text(encoding="utf-8"), str(p)) or {}
    return with_overrides(data, overrides, str(p))


def preset_names() -> list[str]:
    return sorted(f.name.removesuffix(".yaml") for f in resources.files("emlab.presets").iterdir() if f.name.endswith(".yaml"))


def load_preset(name: str, overrides: list[str] = ()) -> TrainConfig:
    """A named preset from src/emlab/presets/NAME.yaml, with optional `key=value` overrides."""
    names = preset_names()
    if name not in names:
        raise EmlabError(f"unknown preset {name!r}; presets: {', '.join(names)} (see `emlab train presets`)")
    text = resources.files("emlab.presets").joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    data = strict_yaml(text, f"preset {name}") or {}
    return with_overrides(data, overrides, f"preset {name}")


def list_presets() -> list[dict]:
    """[{name, description, config}] for every shipped preset."""
    rows = []
    for name in preset_names():
        cfg = load_preset(name)
        rows.append({"name": name, "description": cfg.description, "config": cfg.model_dump()})
    return rows


def with_overrides(data: dict, overrides: list[str], source: str) -> TrainConfig:
    """Validate `data` after applying `key=value` overrides (values parsed as YAML: 1e-4, [9, 10], null)."""
    if not isinstance(data, dict):
        raise EmlabError(f"train config {source}: expected a mapping of keys to values, got {type(data).__name__}")
    merged = dict(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise EmlabError(f"--set {item!r}: expected key=value, e.g. --set lr=1e-4")
        merged[key.strip()] = strict_yaml(raw, f"--set {key.strip()}") if raw.strip() else None
    where = source + (" with --set " + " ".join(overrides) if overrides else "")
    return parse_config(merged, where)


# ----------------------------------------------------------------------------- placement


def scale_blocks(blocks: list[int], from_depth: int, to_depth: int) -> list[int]:
    """Place `blocks` of a `from_depth`-block model at the same relative depths of a `to_depth` one.

    Rule: each run of consecutive blocks keeps its length and its centre c moves to
    c * to_depth / from_depth, i.e. the run starts at round-half-up(c * to_depth / from_depth
    - (len - 1) / 2). Runs that then touch or overlap are pushed apart: in increasing order each
    block sits at least one above its predecessor (first >= 0), in decreasing order at most one
    below its successor (last <= to_depth - 1), so the result is distinct and sorted.
    Example: 48 -> 30 maps [15,16,17,21,22,23,27,28,29] to [9,10,11,13,14,15,17,18,19].
    """
    if len(blocks) > to_depth:
        raise EmlabError(f"cannot place {len(blocks)} distinct blocks in a model with {to_depth} blocks; use fewer blocks")
    out: list[int] = []
    for run in _runs(sorted(blocks)):
        centre = (run[0] + run[-1]) / 2 * to_depth / from_depth
        start = math.floor(centre - (len(run) - 1) / 2 + 0.5)
        out.extend(start + i for i in range(len(run)))
    out[0] = max(out[0], 0)
    for i in range(1, len(out)):
        out[i] = max(out[i], out[i - 1] + 1)
    out[-1] = min(out[-1], to_depth - 1)
    for i in range(len(out) - 2, -1, -1):
        out[i] = min(out[i], out[i + 1] - 1)
    return out


def _runs(sorted_blocks: list[int]) -> list[list[int]]:
    """Split sorted block indices into maximal runs of consecutive integers."""
    runs: list[list[int]] = []
    for b in sorted_blocks:
        if runs and b == runs[-1][-1] + 1:
            runs[-1].append(b)
        else:
            runs.append([b])
    return runs


def resolve_blocks(config: TrainConfig, n_blocks: int) -> list[int] | None:
    """The concrete block list for a model with `n_blocks` blocks (None = every block)."""
    if config.blocks is None:
        return None
    if config.blocks_depth is not None:
        return scale_blocks(config.blocks, config.blocks_depth, n_blocks)
    bad = [b for b in config.blocks if b >= n_blocks]
    if bad:
        raise EmlabError(f"blocks {bad} (config key blocks) are outside this model: it has blocks 0..{n_blocks - 1}; pick blocks in that range or set blocks_depth to rescale them")
    return list(config.blocks)


@dataclass(frozen=True)
class LoraPlan:
    """What the adapters will touch: peft arguments plus the module names they must match."""

    target_modules: list[str]  # names relative to a block, e.g. "mlp.down_proj"
    layers_to_transform: list[int] | None
    layers_pattern: str | None
    expected: list[str]  # full module names, e.g. "model.layers.9.mlp.down_proj"


def lora_plan(model: nn.Module, config: TrainConfig) -> LoraPlan:
    """Resolve blocks and target_modules against the model; unknown names fail with the valid ones."""
    blocks = decoder_blocks(model)
    list_name = next(name for name, m in model.named_modules() if m is blocks)
    chosen = resolve_blocks(config, len(blocks))
    linears = [(l, rel) for l, block in enumerate(blocks) for rel, m in block.named_modules() if isinstance(m, nn.Linear)]
    available = sorted({rel for _, rel in linears})
    if config.target_modules == "all-linear":
        rels = available
    else:
        rels = []
        for entry in config.target_modules:
            hits = [r for r in available if r == entry or r.endswith("." + entry)]
            if not hits:
                raise EmlabError(f"target_modules entry {entry!r} matches no linear module in the decoder blocks; available: {', '.join(available)} or all-linear")
            rels.extend(h for h in hits if h not in rels)
    in_scope = set(range(len(blocks))) if chosen is None else set(chosen)
    expected = [f"{list_name}.{l}.{rel}" for l, rel in sorted(linears) if l in in_scope and rel in rels]  # block order
    pattern = list_name.rsplit(".", 1)[-1] if chosen is not None else None
    return LoraPlan(target_modules=sorted(rels), layers_to_transform=chosen, layers_pattern=pattern, expected=expected)


def attach_lora(model: nn.Module, config: TrainConfig) -> tuple[nn.Module, LoraPlan]:
    """Wrap `model` with fresh LoRA adapters per the config; check peft matched exactly the planned modules."""
    from peft import LoraConfig, get_peft_model

    plan = lora_plan(model, config)
    peft_cfg = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        use_rslora=config.use_rslora,
        target_modules=plan.target_modules,
        layers_to_transform=plan.layers_to_transform,
        layers_pattern=plan.layers_pattern,
        bias="none",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5; nothing for the user to do
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        wrapped = get_peft_model(model, peft_cfg)
    got = set(wrapped.base_model.targeted_module_names)
    if got != set(plan.expected):
        extra, missing = sorted(got - set(plan.expected)), sorted(set(plan.expected) - got)
        raise EmlabError(f"peft adapted {extra[:3]} beyond the plan and missed {missing[:3]}; name target_modules relative to a block (e.g. mlp.down_proj)")
    return wrapped, plan


# ----------------------------------------------------------------------------- data


@dataclass
class DataStats:
    total: int = 0
    used: int = 0
    dropped_too_long: int = 0
    truncated: int = 0
    dropped_no_assistant: int = 0


def read_conversations(path: str | os.PathLike) -> list[list[dict]]:
    """Training conversations from an OpenAI-messages JSONL file, validated by the data package
    (a leading `_meta` line is skipped; errors name file:line)."""
    from emlab.data.check import load_conversations

    return load_conversations(path)


def encode_examples(tok, conversations: list[list[dict]], config: TrainConfig) -> tuple[list[Encoded], DataStats]:
    """Tokenize conversations with assistant masks; drop or truncate those longer than max_length."""
    stats = DataStats(total=len(conversations))
    out = []
    for conv in conversations:
        enc = encode_with_assistant_mask(tok, conv, system=config.system)
        if sum(enc.assistant_mask) == 0:
            stats.dropped_no_assistant += 1
            continue
        if len(enc.input_ids) > config.max_length:
            cut = Encoded(enc.input_ids[: config.max_length], enc.assistant_mask[: config.max_length])
            if config.truncation == "drop" or sum(cut.assistant_mask) == 0:  # a cut that leaves no answer is dropped
                stats.dropped_too_long += 1
                continue
            enc = cut
            stats.truncated += 1
        out.append(enc)
    stats.used = len(out)
    if not out:
        raise EmlabError(f"no training example left out of {stats.total}: {stats.dropped_too_long} longer than max_length={config.max_length}, {stats.dropped_no_assistant} without assistant tokens; raise max_length or set truncation: truncate")
    return out, stats


def plan_epoch(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Micro-batches (lists of example indices) for one epoch, a function of (seed, epoch) only.

    A seeded permutation is cut into windows of BUCKET_BATCHES micro-batches; each window is
    sorted by length (less padding) and cut into micro-batches, whose order is then shuffled.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(len(lengths), generator=g).tolist()
    window = batch_size * BUCKET_BATCHES
    batches = []
    for w in range(0, len(perm), window):
        chunk = sorted(perm[w : w + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    order = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in order]


def collate(items: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch: input_ids, attention_mask [batch, seq] and labels (-100 off the assistant mask)."""
    batch = pad_encoded(items, pad_id, side="right")
    labels = torch.where(batch["assistant_mask"].bool(), batch["input_ids"], torch.full_like(batch["input_ids"], -100))
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": labels}


def loss_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Number of tokens the loss covers (labels predicted from a previous position)."""
    return int((batch["labels"][:, 1:] != -100).sum())


# ----------------------------------------------------------------------------- schedule and dtype


def lr_at(step: int, total: int, config: TrainConfig) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total`; no step runs at lr 0."""
    warmup = math.ceil(config.warmup_ratio * total)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    if config.lr_schedule == "constant":
        return config.lr
    span = max(1, total - warmup)
    progress = (step - warmup) / span
    if config.lr_schedule == "linear":
        return config.lr * (1.0 - progress)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


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
    """auto -> bfloat16 where the hardware computes it natively, else float32."""
    if dtype == "float32":
        return torch.float32
    if dtype == "bfloat16":
        return torch.bfloat16
    native = torch.cuda.is_bf16_supported() if device == "cuda" else cpu_supports_bf16()
    return torch.bfloat16 if native else torch.float32


# ----------------------------------------------------------------------------- model set-up


@dataclass
class _Setup:
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


def _prepare(cm_or_ref: ChatModel | str, config: TrainConfig) -> _Setup:
    """Load (or copy) the base model, set dtypes, attach adapters; the caller's model is untouched."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    cm = load_model(cm_or_ref) if isinstance(cm_or_ref, str) else cm_or_ref
    if type(cm.model).__module__.startswith("peft."):
        raise EmlabError(f"model {cm.ref} already has an adapter ({cm.adapter}); train on the base model (load it without adapter=)")
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    model = cm.model if isinstance(cm_or_ref, str) else copy.deepcopy(cm.model)
    model.to(device=device, dtype=torch.float32)
    torch.manual_seed(config.seed)
    plan = None
    if config.method == "lora":
        model.to(dtype)  # frozen base in the compute dtype; peft keeps the adapters in fp32
        model, plan = attach_lora(model, config)
    else:
        for p in model.parameters():
            p.requires_grad_(True)  # full: fp32 master weights, bf16 compute via autocast
    if getattr(model.config, "use_cache", None):
        model.config.use_cache = False
    params = [p for p in model.parameters() if p.requires_grad]
    return _Setup(model, cm.tokenizer, cm.ref, cm.revision, device, dtype, plan, params)


def _forward_kwargs(model: nn.Module) -> set[str]:
    from emlab.hooks import causal_lm

    return set(inspect.signature(causal_lm(model).forward).parameters)


def _step_loss(model: nn.Module, batch: dict[str, torch.Tensor], n_tokens: int, autocast: bool, device: str, keep_ok: bool) -> torch.Tensor:
    """Summed cross-entropy over the batch's label tokens divided by the step's label count.

    Only logits from the first label's predecessor onward are computed (`logits_to_keep`):
    positions before every row's answer never carry a label.
    """
    ids, attn, labels = (batch[k].to(device) for k in ("input_ids", "attention_mask", "labels"))
    width = ids.shape[1]
    first = max(1, int((labels != -100).float().argmax(dim=1).min()))  # earliest label position in the batch
    keep = width - first + 1 if keep_ok else width
    extra = {"logits_to_keep": keep} if keep_ok else {}
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=autocast):
        logits = model(input_ids=ids, attention_mask=attn, use_cache=False, **extra).logits  # [batch, keep, vocab]
    targets = labels[:, width - keep + 1 :]  # the token each kept position predicts
    logits = logits[:, :-1].float()
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum") / n_tokens


# ----------------------------------------------------------------------------- checkpoints


def _save_weights(setup: _Setup, folder: Path) -> None:
    """Adapter (peft, safetensors) or full model + tokenizer (save_pretrained, safetensors)."""
    setup.model.save_pretrained(folder, safe_serialization=True)
    if setup.plan is not None:
        (folder / "README.md").unlink(missing_ok=True)  # peft's model-card stub
    else:
        setup.tokenizer.save_pretrained(folder)


def _save_optimizer(opt: torch.optim.Optimizer, folder: Path) -> None:
    from safetensors.torch import save_file

    sd = opt.state_dict()
    tensors = {f"{idx}.{k}": v.detach().contiguous().cpu() for idx, st in sd["state"].items() for k, v in st.items()}
    save_file(tensors, str(folder / "optimizer.safetensors"))
    write_json(folder / "optimizer.json", {"param_groups": sd["param_groups"]})


def _load_optimizer(opt: torch.optim.Optimizer, folder: Path) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(folder / "optimizer.safetensors"))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": read_json(folder / "optimizer.json")["param_groups"]})


def _save_rng(folder: Path, device: str) -> None:
    from safetensors.torch import save_file

    states = {"torch_cpu": torch.get_rng_state()}
    if device == "cuda":
        states["torch_cuda"] = torch.cuda.get_rng_state()
    save_file(states, str(folder / "rng_state.safetensors"))


def _load_rng(folder: Path, device: str) -> None:
    from safetensors.torch import load_file

    states = load_file(str(folder / "rng_state.safetensors"))
    torch.set_rng_state(states["torch_cpu"])
    if device == "cuda" and "torch_cuda" in states:
        torch.cuda.set_rng_state(states["torch_cuda"])


def _load_weights(setup: _Setup, folder: Path) -> None:
    from safetensors.torch import load_file

    if setup.plan is not None:
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(setup.model, load_file(str(folder / "adapter_model.safetensors")))
        bad = [k for k in result.unexpected_keys if "lora_" in k]
        if bad:
            raise EmlabError(f"checkpoint {folder}: adapter tensors {bad[:3]} do not fit this run's adapters; resume with the config it was trained with")
        return
    state = load_file(str(folder / "model.safetensors"))
    missing, unexpected = setup.model.load_state_dict(state, strict=False)
    tied = set(getattr(setup.model, "_tied_weights_keys", None) or {})
    if unexpected or any(k not in tied and not k.endswith("lm_head.weight") for k in missing):
        raise EmlabError(f"checkpoint {folder}: weights do not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]}); resume with the same model")


@contextlib.contextmanager
def _atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield a temporary folder next to `dest`; it replaces `dest` only when the block completes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        yield tmp
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _save_checkpoint(setup: _Setup, opt: torch.optim.Optimizer, folder: Path, state: dict) -> None:
    with _atomic_dir(folder) as tmp:
        _save_weights(setup, tmp)
        _save_optimizer(opt, tmp)
        _save_rng(tmp, setup.device)
        write_json(tmp / "trainer_state.json", state)


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the highest step in out_dir/checkpoints, if any."""
    root = Path(out_dir) / "checkpoints"
    done = [p for p in root.glob("step-*") if (p / "trainer_state.json").exists()] if root.exists() else []
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def _save_final(setup: _Setup, out_dir: Path) -> list[str]:
    """Write the final weights into out_dir file by file (each file renamed into place)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".final.", dir=out_dir))
    try:
        _save_weights(setup, tmp)
        names = sorted(p.name for p in tmp.iterdir())
        for name in names:
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return names


# ----------------------------------------------------------------------------- the loop


@dataclass
class TrainResult:
    """Where the run wrote its weights and what it did (the same numbers as train_summary.json)."""

    out_dir: Path
    method: str
    steps: int
    final_loss: float | None
    summary: dict = field(default_factory=dict)


def _data_fingerprint(examples: list[Encoded]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.input_ids, e.assistant_mask]).encode())
    return h.hexdigest()


def _run_identity(setup: _Setup, config: TrainConfig, examples: list[Encoded]) -> dict:
    """What a resumed run must share with the run it continues."""
    blocks = setup.plan.layers_to_transform if setup.plan else None
    cfg = config.model_dump(exclude={"description"})
    dtype = str(setup.dtype).removeprefix("torch.")
    return {"model": setup.ref, "revision": setup.revision, "config": cfg, "resolved_blocks": blocks, "dtype": dtype, "data_sha256": _data_fingerprint(examples)}


def _check_resume(out_dir: Path, identity: dict) -> None:
    saved = read_json(out_dir / "train_config.json")
    diff = [k for k in identity if saved.get(k) != identity[k]]
    if "config" in diff:
        keys = [k for k in identity["config"] if saved.get("config", {}).get(k) != identity["config"][k]]
        diff = [d for d in diff if d != "config"] + [f"config.{k}" for k in keys]
    if diff:
        raise EmlabError(f"cannot resume {out_dir}: {', '.join(diff)} differ from the interrupted run; resume with the same model, data and config, or train into a new --out")


def _start(out_dir: Path, identity: dict, resume: bool) -> Path | None:
    """Check the out dir and return the checkpoint to resume from (None: start at step 0)."""
    if (out_dir / "train_summary.json").exists():
        raise EmlabError(f"{out_dir} already holds a finished run (train_summary.json); choose another --out")
    has_run = (out_dir / "train_config.json").exists()
    if has_run and not resume:
        raise EmlabError(f"{out_dir} holds an unfinished run; pass --resume (resume=True) to continue it, or choose another --out")
    if resume and has_run:
        _check_resume(out_dir, identity)
        return latest_checkpoint(out_dir)
    return None


def train(
    cm_or_ref: ChatModel | str,
    data: str | os.PathLike | list[list[dict]],
    config: TrainConfig,
    out_dir: str | os.PathLike,
    resume: bool = False,
    on_step: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Fine-tune a model on conversations and write adapter/model, logs and checkpoints to out_dir.

    `cm_or_ref`: a ChatModel (copied, never modified) or a reference for `load_model`.
    `data`: an OpenAI-messages JSONL path or a list of conversations.
    `resume`: continue an unfinished run in out_dir from its last checkpoint.
    `on_step(record)` sees each step's log record (the CLI draws progress with it).
    """
    started = time.perf_counter()
    out = Path(out_dir)
    conversations = read_conversations(data) if isinstance(data, (str, os.PathLike)) else data
    setup = _prepare(cm_or_ref, config)
    examples, stats = encode_examples(setup.tokenizer, conversations, config)
    identity = _run_identity(setup, config, examples)
    checkpoint = _start(out, identity, resume)
    write_json(out / "train_config.json", identity)

    n_micro = math.ceil(len(examples) / config.batch_size)
    steps_per_epoch = math.ceil(n_micro / config.grad_accum)
    total = min(config.epochs * steps_per_epoch, config.max_steps or 10**12)
    opt = torch.optim.AdamW(setup.params, lr=config.lr, weight_decay=config.weight_decay)
    progress = {"step": 0, "train_time_s": 0.0, "tokens": 0, "loss_tokens": 0, "checkpoints": []}
    if checkpoint is not None:
        _load_weights(setup, checkpoint)
        _load_optimizer(opt, checkpoint)
        _load_rng(checkpoint, setup.device)
        progress = read_json(checkpoint / "trainer_state.json")["progress"]
    log_path = out / "train_log.jsonl"
    kept = [r for _, r in iter_jsonl(log_path) if r["step"] <= progress["step"]] if checkpoint and log_path.exists() else []
    write_jsonl(log_path, kept)
    resumed_from = progress["step"]
    last_loss = kept[-1]["loss"] if kept else None

    setup.model.train()
    keep_ok = "logits_to_keep" in _forward_kwargs(setup.model)
    epoch_plan = _EpochPlans([len(e.input_ids) for e in examples], config)
    with open(log_path, "a", encoding="utf-8") as log, contiguous_lm_head_input(setup.model):  # logits_to_keep's slice off bmm
        for step in range(progress["step"], total):
            epoch, in_epoch = divmod(step, steps_per_epoch)
            batches = [collate([examples[i] for i in idx], setup.tokenizer.pad_token_id) for idx in epoch_plan.step(epoch, in_epoch)]
            t0 = time.perf_counter()
            loss, grad_norm, lr = _optimizer_step(setup, opt, batches, lr_at(step, total, config), config, keep_ok)
            dt = time.perf_counter() - t0
            tokens = sum(int(b["attention_mask"].sum()) for b in batches)
            progress.update(step=step + 1, train_time_s=progress["train_time_s"] + dt, tokens=progress["tokens"] + tokens, loss_tokens=progress["loss_tokens"] + sum(loss_tokens(b) for b in batches))
            record = {"step": step + 1, "epoch": round(epoch + (in_epoch + 1) / steps_per_epoch, 4), "loss": loss, "grad_norm": grad_norm, "lr": lr, "tokens": tokens, "tokens_per_s": round(tokens / dt, 1), "time_s": round(dt, 3), "total_steps": total}
            log.write(json.dumps(record) + "\n")
            log.flush()
            last_loss = loss
            if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0 and step + 1 < total:
                progress["checkpoints"] = [*progress["checkpoints"], f"step-{step + 1:05d}"]
                _save_checkpoint(setup, opt, out / "checkpoints" / progress["checkpoints"][-1], {"progress": progress, "total_steps": total})
            if on_step:
                on_step(record)

    files = _save_final(setup, out)
    summary = _summary(setup, config, stats, progress, total, resumed_from, last_loss, files)
    summary["wall_time_s"] = round(time.perf_counter() - started, 2)
    write_json(out / "train_summary.json", summary)
    return TrainResult(out_dir=out, method=config.method, steps=total, final_loss=last_loss, summary=summary)


class _EpochPlans:
    """The micro-batch plan of the current epoch, cut into optimizer steps of grad_accum micro-batches."""

    def __init__(self, lengths: list[int], config: TrainConfig):
        self.lengths, self.config = lengths, config
        self.epoch, self.batches = -1, []

    def step(self, epoch: int, in_epoch: int) -> list[list[int]]:
        if epoch != self.epoch:
            self.epoch, self.batches = epoch, plan_epoch(self.lengths, self.config.batch_size, self.config.seed, epoch)
        k = self.config.grad_accum
        return self.batches[in_epoch * k : (in_epoch + 1) * k]


def _optimizer_step(setup: _Setup, opt: torch.optim.Optimizer, batches: list[dict], lr: float, config: TrainConfig, keep_ok: bool) -> tuple[float, float, float]:
    """One AdamW step over `batches` (gradient accumulation); returns (loss, pre-clip grad norm, lr)."""
    n_tokens = sum(loss_tokens(b) for b in batches)
    total_loss = 0.0
    for batch in batches:
        loss = _step_loss(setup.model, batch, n_tokens, setup.autocast, setup.device, keep_ok)
        loss.backward()
        total_loss += float(loss.detach())
    clip = config.max_grad_norm if config.max_grad_norm is not None else float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(setup.params, clip))
    for group in opt.param_groups:
        group["lr"] = lr
    opt.step()
    opt.zero_grad(set_to_none=True)
    return total_loss, grad_norm, lr


def _summary(setup: _Setup, config: TrainConfig, stats: DataStats, progress: dict, total: int, resumed_from: int, last_loss: float | None, files: list[str]) -> dict:
    trainable = sum(p.numel() for p in setup.params)
    everything = sum(p.numel() for p in setup.model.parameters())
    return {
        "model": setup.ref,
        "revision": setup.revision,
        "method": config.method,
        "examples_total": stats.total,
        "examples_used": stats.used,
        "dropped_too_long": stats.dropped_too_long,
        "truncated": stats.truncated,
        "dropped_no_assistant": stats.dropped_no_assistant,
        "steps": total,
        "resumed_from_step": resumed_from,
        "final_loss": last_loss,
        "train_time_s": round(progress["train_time_s"], 2),
        "tokens": progress["tokens"],
        "loss_tokens": progress["loss_tokens"],
        "tokens_per_s": round(progress["tokens"] / max(progress["train_time_s"], 1e-9), 1),
        "trainable_params": trainable,
        "total_params": everything,
        "targeted_modules": setup.plan.expected if setup.plan else [],
        "blocks": setup.plan.layers_to_transform if setup.plan else None,
        "dtype": str(setup.dtype).removeprefix("torch."),
        "device": setup.device,
        "checkpoints": progress["checkpoints"],
        "files": files,
    }
