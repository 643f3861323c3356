"""Residual-stream sites named as places.

A site is a string such as `blocks.3.resid_post`. Block indices are 0-based and
`blocks.{l}.resid_post` is the output of decoder block l, i.e. HF `hidden_states[l+1]`
(except for the last block: HF applies the final norm to its last hidden state, we
do not). Note that HF records `hidden_states` before any forward hook edits a block's
output, so read steered activations through `capture`, not `output_hidden_states`.

| site                              | module hooked                 | hook   |
|-----------------------------------|-------------------------------|--------|
| blocks.{l}.resid_pre              | decoder block l (its input)   | pre    |
| blocks.{l}.resid_post             | decoder block l (its output)  | post   |
| blocks.{l}.attn.out               | block l's self-attention      | post   |
| blocks.{l}.mlp.out                | block l's MLP                 | post   |
| blocks.{l}.mlp.down_proj.in       | block l's MLP down projection | pre    |
| blocks.{l}.mlp.down_proj.lora_scalar | the `lora_A` of block l's down_proj LoRA adapter (A·x, [.., r]) | post |

The decoder blocks are found by looking for the ModuleList with one entry per
layer, so any HF causal LM (llama, qwen2, gemma, mistral, peft-wrapped) works.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

from torch import nn

from emlab.errors import EmlabError

if TYPE_CHECKING:  # transformers is imported lazily at run time (it takes seconds)
    from transformers import PreTrainedConfig

KINDS = ("resid_pre", "resid_post", "attn.out", "mlp.out", "mlp.down_proj.in", "mlp.down_proj.lora_scalar")
_SITE_RE = re.compile(r"^blocks\.(-?\d+)\.(.+)$")


@dataclass(frozen=True)
class Site:
    layer: int
    kind: str

    def __str__(self) -> str:
        return f"blocks.{self.layer}.{self.kind}"


def unwrap(model) -> nn.Module:
    """The nn.Module behind a ChatModel (or the module itself)."""
    return getattr(model, "model", model) if not isinstance(model, nn.Module) else model


def hf_config(model) -> PreTrainedConfig:
    """The HF config of a ChatModel, an HF model or its peft wrapper.

    The cast is the one place that tells the type checker what torch's `Module.__getattr__`
    cannot: `.config` of an HF module (peft forwards it to the wrapped model) is its config.
    """
    return cast("PreTrainedConfig", unwrap(model).config)


def n_layers(model) -> int:
    return int(hf_config(model).num_hidden_layers)


def parse_site(name: str, n_blocks: int | None = None, source: str = "site") -> Site:
    """Parse and validate a site name; errors list the valid forms and layer range."""
    m = _SITE_RE.match(name)
    if not m or m.group(2) not in KINDS:
        forms = ", ".join(f"blocks.{{l}}.{k}" for k in KINDS)
        raise EmlabError(f"unknown site {name!r} ({source}); valid sites: {forms}")
    layer = int(m.group(1))
    if n_blocks is not None and not 0 <= layer < n_blocks:
        raise EmlabError(
            f"site {name!r} ({source}): block {layer} out of range; this model has blocks 0..{n_blocks - 1}"
        )
    return Site(layer, m.group(2))


def decoder_blocks(model) -> nn.ModuleList:
    """Find the decoder's ModuleList: the one with exactly num_hidden_layers entries."""
    module = unwrap(model)
    n = n_layers(module)
    candidates = [m for _, m in module.named_modules() if isinstance(m, nn.ModuleList) and len(m) == n]
    candidates = [c for c in candidates if _looks_like_block(c[0])]
    if not candidates:
        raise EmlabError(
            f"could not find the decoder blocks of {type(module).__name__} (no ModuleList of {n} blocks with attention and MLP)"
        )
    return candidates[0]


def _looks_like_block(block: nn.Module) -> bool:
    return (
        _child(block, ("self_attn", "attn", "attention"), "Attention") is not None
        and _child(block, ("mlp", "feed_forward", "ffn"), "MLP") is not None
    )


def _child(parent: nn.Module, names: tuple[str, ...], class_hint: str) -> nn.Module | None:
    for name in names:
        if hasattr(parent, name) and isinstance(getattr(parent, name), nn.Module):
            return getattr(parent, name)
    for child in parent.children():
        if class_hint.lower() in type(child).__name__.lower():
            return child
    return None


def _down_proj(mlp: nn.Module) -> nn.Module:
    for name in ("down_proj", "c_proj", "fc2", "w2", "dense_4h_to_h"):
        if hasattr(mlp, name):
            return getattr(mlp, name)
    raise EmlabError(
        f"could not find the down projection of {type(mlp).__name__}; name it down_proj, c_proj, fc2 or w2"
    )


def resolve(model, site: str | Site) -> tuple[nn.Module, Literal["pre", "post"]]:
    """The module to hook for a site and whether the hook reads its input (pre) or output (post)."""
    blocks = decoder_blocks(model)
    s = site if isinstance(site, Site) else parse_site(site, len(blocks))
    if not 0 <= s.layer < len(blocks):
        raise EmlabError(f"site {s}: block {s.layer} out of range; this model has blocks 0..{len(blocks) - 1}")
    block = blocks[s.layer]
    if s.kind == "resid_pre":
        return block, "pre"
    if s.kind == "resid_post":
        return block, "post"
    if s.kind == "attn.out":
        return _part(block, ("self_attn", "attn", "attention"), "Attention", s), "post"
    mlp = _part(block, ("mlp", "feed_forward", "ffn"), "MLP", s)
    if s.kind == "mlp.out":
        return mlp, "post"
    if s.kind == "mlp.down_proj.lora_scalar":
        return lora_A_module(_down_proj(mlp), str(s)), "post"
    return _down_proj(mlp), "pre"


def _part(block: nn.Module, names: tuple[str, ...], class_hint: str, site: Site) -> nn.Module:
    """`_child`, or an error naming what was looked for (decoder_blocks only checks the first block)."""
    found = _child(block, names, class_hint)
    if found is None:
        raise EmlabError(
            f"site {site}: block {site.layer} ({type(block).__name__}) has no {class_hint} module; looked for {', '.join(names)} or a child class named *{class_hint}*"
        )
    return found


def lora_A_module(layer: nn.Module, where: str) -> nn.Module:
    """The `lora_A` linear of a peft LoRA layer's active adapter (its output is A·x)."""
    lora_a = getattr(layer, "lora_A", None)
    active = [a for a in getattr(layer, "active_adapters", []) if lora_a is not None and a in lora_a]
    if lora_a is None or not active:
        raise EmlabError(
            f"site {where}: this module has no active LoRA adapter; load the model with its peft adapter (--adapter)"
        )
    if len(active) > 1:
        raise EmlabError(
            f"site {where}: {len(active)} active LoRA adapters ({', '.join(active)}); activate one with model.set_adapter(name)"
        )
    return lora_a[active[0]]


def all_sites(model, kind: str = "resid_post") -> list[str]:
    return [f"blocks.{l}.{kind}" for l in range(n_layers(model))]
