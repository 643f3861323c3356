"""Where the adapters go: blocks at relative depths (`scale_blocks`), module names checked against the model and peft."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import cast

from torch import nn

from emlab.errors import EmlabError
from emlab.sites import decoder_blocks
from emlab.train.config import TrainConfig


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
        raise EmlabError(
            f"cannot place {len(blocks)} distinct blocks in a model with {to_depth} blocks; use fewer blocks"
        )
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
        raise EmlabError(
            f"blocks {bad} (config key blocks) are outside this model: it has blocks 0..{n_blocks - 1}; pick blocks in that range or set blocks_depth to rescale them"
        )
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
    linears = [
        (l, rel) for l, block in enumerate(blocks) for rel, m in block.named_modules() if isinstance(m, nn.Linear)
    ]
    available = sorted({rel for _, rel in linears})
    targets = config.lora().target_modules
    if targets == "all-linear":
        rels = available
    else:
        rels = []
        for entry in targets:
            hits = [r for r in available if r == entry or r.endswith("." + entry)]
            if not hits:
                raise EmlabError(
                    f"target_modules entry {entry!r} matches no linear module in the decoder blocks; available: {', '.join(available)} or all-linear"
                )
            rels.extend(h for h in hits if h not in rels)
    in_scope = set(range(len(blocks))) if chosen is None else set(chosen)
    expected = [f"{list_name}.{l}.{rel}" for l, rel in sorted(linears) if l in in_scope and rel in rels]  # block order
    pattern = list_name.rsplit(".", 1)[-1] if chosen is not None else None
    return LoraPlan(target_modules=sorted(rels), layers_to_transform=chosen, layers_pattern=pattern, expected=expected)


def attach_lora(model: nn.Module, config: TrainConfig) -> tuple[nn.Module, LoraPlan]:
    """Wrap `model` with fresh LoRA adapters per the config; check peft matched exactly the planned modules."""
    from peft import LoraConfig, get_peft_model

    plan = lora_plan(model, config)
    lora = config.lora()
    peft_cfg = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,  # type: ignore[arg-type]  # peft annotates int; it scales by alpha / r, a float is fine
        lora_dropout=lora.dropout,
        use_rslora=lora.use_rslora,
        target_modules=plan.target_modules,
        layers_to_transform=plan.layers_to_transform,
        layers_pattern=plan.layers_pattern,
        bias="none",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5; nothing for the user to do
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        wrapped = get_peft_model(model, peft_cfg)
    got = set(
        cast("list[str]", wrapped.base_model.targeted_module_names)
    )  # peft's attribute, behind Module.__getattr__
    if got != set(plan.expected):
        extra, missing = sorted(got - set(plan.expected)), sorted(set(plan.expected) - got)
        raise EmlabError(
            f"peft adapted {extra[:3]} beyond the plan and missed {missing[:3]}; name target_modules relative to a block (e.g. mlp.down_proj)"
        )
    return wrapped, plan


def load_initial_adapter(wrapped: nn.Module, folder: str, config: TrainConfig) -> None:
    """Set the fresh adapters of `wrapped` to a saved adapter's weights; its layout must be the config's exactly."""
    from pathlib import Path

    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from emlab.io import read_json

    where = f"init_adapter {folder}"
    weights, meta = Path(folder) / "adapter_model.safetensors", Path(folder) / "adapter_config.json"
    if not weights.is_file() or not meta.is_file():
        raise EmlabError(f"{where}: no adapter_model.safetensors / adapter_config.json; give a LoRA adapter folder")
    saved, lora = read_json(meta), config.lora()
    want = {"r": lora.rank, "lora_alpha": lora.alpha, "use_rslora": lora.use_rslora}
    differ = {k: (saved.get(k), v) for k, v in want.items() if saved.get(k) != v}
    if differ:
        raise EmlabError(
            f"{where}: its {', '.join(f'{k}={a!r}' for k, (a, _) in differ.items())} differ from this training's "
            f"({', '.join(f'{k}={b!r}' for k, (_, b) in differ.items())}); train with the adapter's preset and overrides"
        )
    state = load_file(weights)  # safetensors: no pickle
    own = [k for k, _ in wrapped.named_parameters() if "lora_" in k]
    unexpected = list(getattr(set_peft_model_state_dict(wrapped, state), "unexpected_keys", []))
    if unexpected or len(state) != len(own):
        raise EmlabError(
            f"{where}: {len(state)} saved tensors for {len(own)} adapter weights here"
            + (f" ({unexpected[0]} has no place)" if unexpected else "")
            + "; it was trained with other target_modules or blocks"
        )
