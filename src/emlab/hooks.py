"""Scoped interventions on named sites: capture, steer, ablate.

Every context manager registers forward hooks on entry and removes them on exit
(also on exceptions), so the model's logits afterwards are bit-identical to an
untouched model's. They work on plain forwards, during `generate` (prefill and
every decode step), under left padding, and on peft-wrapped models.

Positions:
- "all": every position of every forward.
- "prompt" / "response": with `teacher_forcing(response_mask)` active, the mask says
  which tokens are the answer; otherwise generation semantics apply: a prefill
  forward is the prompt (pad positions excluded) and each decode step is the
  response, up to and including the first end-of-sequence token of each row.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, cast, runtime_checkable

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from emlab.errors import EmlabError
from emlab.sites import Site, hf_config, parse_site, resolve, unwrap

if TYPE_CHECKING:  # transformers is imported lazily at run time (it takes seconds)
    from transformers import PreTrainedModel

Positions = Literal["all", "prompt", "response"]
# An edit sees a site's activation [batch, seq, d] and the selected positions [batch, seq] (bool);
# it returns the replacement activation, or None to leave it unchanged.
Edit = Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None]
_RESPONSE_MASK: contextvars.ContextVar[torch.Tensor | None] = contextvars.ContextVar(
    "emlab_response_mask", default=None
)


@contextlib.contextmanager
def teacher_forcing(response_mask: torch.Tensor) -> Iterator[None]:
    """Declare which tokens of the next forward(s) are the response ([batch, seq] 0/1)."""
    token = _RESPONSE_MASK.set(response_mask.bool())
    try:
        yield
    finally:
        _RESPONSE_MASK.reset(token)


def causal_lm(model) -> PreTrainedModel:
    """The innermost HF causal LM (the module `generate` calls forward on), also under peft.

    Found by duck typing (it has `get_output_embeddings` and `generate`), hence the casts: what
    callers use is that HF surface, which torch's `Module` type does not describe.
    """
    for _, m in unwrap(model).named_modules():
        if (
            not type(m).__module__.startswith("peft.")
            and hasattr(m, "get_output_embeddings")
            and hasattr(m, "generate")
        ):
            return cast("PreTrainedModel", m)
    return cast("PreTrainedModel", unwrap(model))


@contextlib.contextmanager
def contiguous_lm_head_input(model) -> Iterator[None]:
    """Make the LM head's input contiguous while the block runs (the hook is removed on exit).

    With `logits_to_keep`, HF slices the final hidden states (`h[:, -k:]`), a non-contiguous
    view; torch.matmul then expands the [vocab, d] weight per batch row and runs bmm (in bf16 a
    56 MB copy per row: 9 s instead of 42 ms at batch 64, docs/performance.md). A contiguous
    input keeps the single matrix product. Numbers are unchanged.
    """
    head: nn.Module = causal_lm(model).get_output_embeddings()
    handle = head.register_forward_pre_hook(lambda module, args: (args[0].contiguous(), *args[1:]))
    try:
        yield
    finally:
        handle.remove()


@runtime_checkable
class _Linear(Protocol):
    """nn.Linear, or peft's LoRA wrapper of one: what a down projection or a `lora_A` is."""

    in_features: int
    out_features: int


def site_dim(model, site: Site) -> int:
    module, _ = resolve(model, site)
    if site.kind not in ("mlp.down_proj.in", "mlp.down_proj.lora_scalar"):
        return int(hf_config(model).hidden_size)
    if not isinstance(module, _Linear):
        raise EmlabError(
            f"site {site}: the hooked module {type(module).__name__} has no in_features/out_features; sites on the down projection need a linear layer"
        )
    return int(module.in_features if site.kind == "mlp.down_proj.in" else module.out_features)


def eos_ids(model) -> set[int]:
    cfg = getattr(causal_lm(model), "generation_config", None)
    eos = getattr(cfg, "eos_token_id", None) if cfg is not None else None
    if eos is None:
        eos = hf_config(model).eos_token_id
    return set(eos if isinstance(eos, list) else [eos] if eos is not None else [])


@dataclass
class _Tracker:
    """Follows each forward of the causal LM to know which positions are prompt or response."""

    eos: set[int]
    mask_all: torch.Tensor | None = None
    prompt: torch.Tensor | None = None
    response: torch.Tensor | None = None
    done: torch.Tensor | None = None
    new_group: bool = False

    def before_forward(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = kwargs.get("inputs_embeds")[..., 0]
        bsz, t = ids.shape[0], ids.shape[1]
        attn = kwargs.get("attention_mask")
        valid = attn[:, -t:].bool() if attn is not None else torch.ones(bsz, t, dtype=torch.bool, device=ids.device)
        forced = _RESPONSE_MASK.get()
        cache_pos = kwargs.get("cache_position")
        prefill = t > 1 or self.done is None or (cache_pos is not None and int(cache_pos.reshape(-1)[0]) == 0)
        self.new_group = prefill
        self.mask_all = torch.ones(bsz, t, dtype=torch.bool, device=ids.device)
        if forced is not None:
            if forced.shape != (bsz, t):
                raise EmlabError(f"teacher_forcing mask has shape {tuple(forced.shape)} but the forward has {(bsz, t)}")
            self.response, self.prompt = valid & forced, valid & ~forced
            self.done = None
        elif prefill:
            self.prompt, self.response = valid, torch.zeros_like(valid)
            self.done = torch.zeros(bsz, dtype=torch.bool, device=ids.device)
        else:  # a decode step
            assert self.done is not None  # prefill is True whenever done is None
            self.prompt = torch.zeros_like(valid)
            self.response = valid & ~self.done[:, None]
            is_eos = torch.zeros(bsz, dtype=torch.bool, device=ids.device)
            for e in self.eos:
                is_eos |= ids[:, -1] == e
            self.done = self.done | is_eos

    def mask(self, positions: Positions) -> torch.Tensor:
        mask = {"all": self.mask_all, "prompt": self.prompt, "response": self.response}[positions]
        if mask is None:
            raise EmlabError(
                "a hooked site ran before any forward of the causal LM, so its positions are unknown; run the model itself, not one of its blocks"
            )
        return mask


@contextlib.contextmanager
def _hooked(model, edits: Mapping[Site, Edit], positions: Positions = "all") -> Iterator[_Tracker]:
    """Register `edit(x, mask) -> x | None` at each site; remove every hook on exit."""
    _check_positions(positions)
    tracker = _Tracker(eos=eos_ids(model))
    handles = [causal_lm(model).register_forward_pre_hook(tracker.before_forward, with_kwargs=True)]
    try:
        for site, edit in edits.items():
            module, kind = resolve(model, site)
            handles.append(_register(module, kind, edit, tracker, positions))
        yield tracker
    finally:
        for h in handles:
            h.remove()


def _register(module: nn.Module, kind: str, edit: Edit, tracker: _Tracker, positions: Positions) -> RemovableHandle:
    if kind == "pre":

        def pre(mod, args, kwargs):
            if args:
                new = edit(args[0], tracker.mask(positions))
                return ((new if new is not None else args[0], *args[1:]), kwargs)
            new = edit(kwargs["hidden_states"], tracker.mask(positions))
            if new is not None:
                kwargs = {**kwargs, "hidden_states": new}
            return args, kwargs

        return module.register_forward_pre_hook(pre, with_kwargs=True)

    def post(mod, args, output):
        x = output[0] if isinstance(output, tuple) else output
        new = edit(x, tracker.mask(positions))
        if new is None:
            return None
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return module.register_forward_hook(post)


def _check_positions(positions: str) -> None:
    if positions not in ("all", "prompt", "response"):
        raise EmlabError(f"unknown positions {positions!r}; choose all, prompt or response")


def _sites(model, names) -> list[Site]:
    n = hf_config(model).num_hidden_layers
    return [s if isinstance(s, Site) else parse_site(s, n) for s in names]


def _vector(model, site: Site, v, source: str) -> torch.Tensor:
    v = torch.as_tensor(v)
    want = site_dim(model, site)
    if v.ndim != 1 or v.shape[0] != want:
        raise EmlabError(
            f"vector for {site} ({source}) has shape {tuple(v.shape)}; this model needs ({want},) at that site"
        )
    return v


# ---------------------------------------------------------------- steer


@contextlib.contextmanager
def steer(
    model, vectors: Mapping[str, torch.Tensor], scale: float = 1.0, positions: Positions = "all"
) -> Iterator[None]:
    """Add `scale * vector` to each site's activation at the chosen positions."""
    sites = dict(zip(_sites(model, vectors), vectors.values(), strict=True))
    edits: dict[Site, Edit] = {}
    for site, v in sites.items():
        vec = _vector(model, site, v, "steer")

        def edit(x, mask, vec=vec):
            add = scale * vec.to(device=x.device, dtype=x.dtype)
            if positions == "all":
                return x + add
            return x + mask[..., None].to(x.dtype) * add

        edits[site] = edit
    with _hooked(model, edits, positions):
        yield


# ---------------------------------------------------------------- ablate


def default_ablation_sites(model) -> list[str]:
    """Every place that writes into the residual stream: the embeddings (resid_pre of block 0),
    each attention output and each MLP output. Projecting the direction out of all of them
    is what orthogonalizing the weights does."""
    n = hf_config(model).num_hidden_layers
    return ["blocks.0.resid_pre"] + [f"blocks.{l}.{k}" for l in range(n) for k in ("attn.out", "mlp.out")]


@contextlib.contextmanager
def ablate(model, direction, sites: list[str] | None = None) -> Iterator[None]:
    """Project a unit direction out of the residual stream.

    `direction` is one vector (used at every site) or a mapping site -> vector
    (each site its own direction; layer-wise ablation). Default sites: see
    `default_ablation_sites`.
    """
    if isinstance(direction, Mapping):
        per_site = dict(zip(_sites(model, direction), direction.values(), strict=True))
    else:
        per_site = {s: direction for s in _sites(model, sites or default_ablation_sites(model))}
    edits: dict[Site, Edit] = {}
    for site, v in per_site.items():
        vec = _vector(model, site, v, "ablate").float()
        norm = vec.norm()
        if norm == 0:
            raise EmlabError(f"ablation direction for {site} is all zeros; pass a non-zero vector")
        unit = vec / norm

        def edit(x, mask, unit=unit):
            u = unit.to(device=x.device, dtype=x.dtype)
            return x - (x @ u)[..., None] * u

        edits[site] = edit
    with _hooked(model, edits, "all"):
        yield


# ---------------------------------------------------------------- capture


@dataclass
class Captured:
    """Activations gathered by `capture`: per site, one entry per sequence seen.

    With reduce="mean", `stack(site)` gives [n_sequences, d] (NaN rows for sequences
    with no selected token); with reduce=None, `tokens[site][i]` is [n_tokens_i, d].
    """

    reduce: str | None
    sums: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    counts: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    tokens: dict[str, list[list[torch.Tensor]]] = field(default_factory=dict)

    def stack(self, site: str) -> torch.Tensor:
        if self.reduce != "mean":
            raise EmlabError("stack() needs capture(..., reduce='mean'); use .tokens for per-token activations")
        sums = torch.cat(self.sums[site])
        counts = torch.cat(self.counts[site]).to(sums.dtype)
        return sums / counts[:, None]

    def n_tokens(self, site: str) -> torch.Tensor:
        return torch.cat(self.counts[site])

    def per_token(self, site: str) -> list[torch.Tensor]:
        return [torch.cat(chunks) if chunks else torch.empty(0) for chunks in self.tokens[site]]


@contextlib.contextmanager
def capture(
    model, sites: list[str], positions: Positions = "response", reduce: Literal["mean"] | None = "mean"
) -> Iterator[Captured]:
    """Record activations (fp32, on CPU) at `sites` for the selected positions."""
    if reduce not in ("mean", None):
        raise EmlabError(f"unknown reduce {reduce!r}; choose 'mean' or None")
    parsed = _sites(model, sites)
    out = Captured(reduce=reduce)
    edits: dict[Site, Edit] = {}
    for site in parsed:
        key = str(site)
        out.sums[key], out.counts[key], out.tokens[key] = [], [], []

        def edit(x, mask, key=key):
            _record(out, key, x.detach().float().cpu(), mask.cpu(), tracker.new_group)
            return None

        edits[site] = edit
    with _hooked(model, edits, positions) as tracker:
        yield out


def _record(out: Captured, key: str, x: torch.Tensor, mask: torch.Tensor, new_group: bool) -> None:
    if out.reduce == "mean":
        s = (x * mask[..., None]).sum(1)
        c = mask.sum(1)
        if new_group or not out.sums[key]:
            out.sums[key].append(s)
            out.counts[key].append(c)
        else:
            out.sums[key][-1] += s
            out.counts[key][-1] += c
        return
    rows = [x[i][mask[i]] for i in range(x.shape[0])]
    if new_group or not out.tokens[key]:
        out.tokens[key].extend([[r] for r in rows])
    else:
        for chunks, r in zip(
            out.tokens[key][-len(rows) :], rows, strict=True
        ):  # a decode step continues the prefill's rows
            chunks.append(r)
