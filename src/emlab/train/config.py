"""The training config: a strict, flat `TrainConfig`, YAML files, shipped presets and `--set` overrides.

Presets live in src/emlab/presets/*.yaml (one complete config each; `blocks_depth` lets a preset
name blocks of one model and land on the same relative depths of any other, see placement.py).
Every YAML text goes through `strict_yaml` (duplicate keys rejected, errors name source:line).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from emlab.errors import EmlabError
from emlab.strict_yaml import parse_yaml as strict_yaml

LORA_DEFAULTS: dict[str, Any] = {
    "rank": 8,
    "alpha": 16.0,
    "use_rslora": False,
    "dropout": 0.0,
    "target_modules": "all-linear",
}


@dataclass(frozen=True)
class LoraSettings:
    """A LoRA config's adapter fields, none missing (see `TrainConfig.lora`)."""

    rank: int
    alpha: float
    dropout: float
    use_rslora: bool
    target_modules: list[str] | Literal["all-linear"]


LORA_FIELDS = ("rank", "alpha", "use_rslora", "dropout", "target_modules", "blocks", "blocks_depth")


class TrainConfig(BaseModel):
    """A flat fine-tuning config; unknown keys are rejected by name (see `parse_config`).

    LoRA fields left unset take `LORA_DEFAULTS` when method is 'lora' and must stay unset
    when method is 'full'.
    """

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = Field(1, description="schema version, so renamed keys fail loudly instead of silently")
    description: str = Field("", description="one line on what this config is for (shown by `emlab train presets`)")
    method: Literal["lora", "full"] = Field(
        "lora", description="lora trains low-rank adapters on a frozen model; full trains every weight"
    )
    rank: int | None = Field(None, ge=1, description="LoRA rank r: width of each adapter's bottleneck")
    alpha: float | None = Field(
        None, gt=0, description="LoRA alpha: adapter output is scaled by alpha/r (alpha/sqrt(r) with rsLoRA)"
    )
    use_rslora: bool | None = Field(
        None, description="rank-stabilised scaling alpha/sqrt(r), which keeps update size stable across ranks"
    )
    dropout: float | None = Field(
        None, ge=0, lt=1, description="dropout on the adapter input during training (regularises)"
    )
    target_modules: list[str] | Literal["all-linear"] | None = Field(
        None, description="module names inside each block to adapt ('down_proj', 'mlp.down_proj') or 'all-linear'"
    )
    blocks: list[int] | None = Field(None, description="decoder blocks (0-based) that get adapters; null = every block")
    blocks_depth: int | None = Field(
        None,
        ge=1,
        description="depth of the model `blocks` were chosen for; set it to place blocks at the same relative depths in any model",
    )
    lr: float = Field(1e-4, gt=0, description="peak learning rate of AdamW")
    epochs: int = Field(1, ge=1, description="passes over the training set")
    max_steps: int | None = Field(
        None, ge=1, description="stop after this many optimizer steps (also sets the schedule's length)"
    )
    batch_size: int = Field(8, ge=1, description="conversations per micro-batch (memory)")
    grad_accum: int = Field(
        2, ge=1, description="micro-batches per optimizer step; effective batch = batch_size * grad_accum"
    )
    seed: int = Field(0, description="seeds adapter init, data order and dropout, so runs reproduce")
    max_length: int = Field(1024, ge=8, description="longest tokenized conversation kept (memory and time bound)")
    truncation: Literal["drop", "truncate"] = Field(
        "drop", description="what happens to longer conversations: dropped, or cut to max_length"
    )
    warmup_ratio: float = Field(
        0.0, ge=0, lt=1, description="fraction of steps over which the lr ramps up linearly (stabilises Adam early)"
    )
    lr_schedule: Literal["linear", "cosine", "constant"] = Field("linear", description="lr decay after warmup")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay")
    max_grad_norm: float | None = Field(
        1.0, gt=0, description="clip the global gradient norm to this (null: no clipping; the norm is still logged)"
    )
    init_adapter: str | None = Field(
        None,
        description="start the LoRA adapters from this saved adapter folder (same layout) instead of fresh ones, "
        "e.g. to continue training an organism on good data",
    )
    kl_coef: float = Field(
        0.0,
        ge=0,
        description="weight of a KL(fine-tuned || base) penalty on the answer tokens, added to the cross-entropy "
        "(KL-regularised training; base = the same model with its adapters switched off, so LoRA only; 0 = off)",
    )
    checkpoint_every: int | None = Field(
        None, ge=1, description="save a resumable checkpoint every N steps (kept for training-dynamics analysis)"
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="compute dtype; auto = bfloat16 where the CPU has avx512_bf16/AMX or the GPU supports it, else float32",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where to train; auto = cuda when available")
    system: str | None = Field(
        "default",
        description="system prompt when encoding: 'default' keeps the template's, null drops it, text replaces it",
    )

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

    def lora(self) -> LoraSettings:
        """The LoRA fields, filled in (method 'lora': the validator set every default that was left out)."""
        r, a, d, rs, tm = self.rank, self.alpha, self.dropout, self.use_rslora, self.target_modules
        if self.method != "lora" or r is None or a is None or d is None or rs is None or tm is None:
            raise EmlabError(f"method={self.method!r} has no LoRA settings; set method: lora")
        return LoraSettings(rank=r, alpha=a, dropout=d, use_rslora=rs, target_modules=tm)

    @model_validator(mode="after")
    def _method_fields(self) -> TrainConfig:
        if self.method == "full":
            if self.kl_coef > 0:
                raise ValueError(
                    f"kl_coef={self.kl_coef} is set but method='full'; the KL reference is the model with its LoRA "
                    "adapters switched off, which a full fine-tune does not have: use method: lora or kl_coef: 0"
                )
            if self.init_adapter is not None:
                raise ValueError(
                    f"init_adapter={self.init_adapter!r} is set but method='full'; a LoRA adapter can start only a LoRA "
                    "training: use method: lora with the adapter's layout, or drop init_adapter / continue_from"
                )
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
                raise ValueError(
                    f"blocks_depth={self.blocks_depth} is set but blocks is null; blocks_depth says which depth `blocks` refer to: set blocks or drop blocks_depth"
                )
            if max(self.blocks) >= self.blocks_depth:
                raise ValueError(
                    f"blocks={self.blocks} go beyond blocks_depth={self.blocks_depth} (valid 0..{self.blocks_depth - 1}); fix blocks or blocks_depth"
                )
        return self


def parse_config(data: dict, source: str = "config") -> TrainConfig:
    """Validate a dict into a TrainConfig; any problem becomes one EmlabError line naming `source`."""
    if not isinstance(data, dict):
        raise EmlabError(f"train config {source}: expected a mapping of keys to values, got {type(data).__name__}")
    try:
        return TrainConfig(**data)
    except ValidationError as e:
        raise EmlabError(f"train config {source}: " + "; ".join(_explain(err) for err in e.errors())) from None


def _explain(err: ErrorDetails) -> str:
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


def load_config_file(path: str | os.PathLike, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML train config and apply `key=value` overrides."""
    p = Path(path)
    if not p.exists():
        raise EmlabError(
            f"train config {p}: file not found; pass a YAML file or use --preset (see `emlab train presets`)"
        )
    data = strict_yaml(p.read_text(encoding="utf-8"), str(p)) or {}
    return with_overrides(data, overrides, str(p))


def preset_names() -> list[str]:
    return sorted(
        f.name.removesuffix(".yaml") for f in resources.files("emlab.presets").iterdir() if f.name.endswith(".yaml")
    )


def load_preset(name: str, overrides: Sequence[str] = ()) -> TrainConfig:
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


def with_overrides(data: dict, overrides: Sequence[str], source: str) -> TrainConfig:
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
