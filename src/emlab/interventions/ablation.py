"""Directional ablation: conditions, controls, evaluation, and weight export.

Conditions (each a mapping site -> vector handed to `hooks.ablate`, which projects the
unit vector out of that site's activation):
- layerwise: every resid_post vector of a direction at its own block (block l's direction
  removed from block l's output);
- single: one site's vector removed everywhere the residual stream is written
  (`hooks.default_ablation_sites`: embeddings, every attention and MLP output), which is
  what orthogonalizing the weights does (`export_orthogonalized`);
- transfer: a single-site ablation with a direction extracted from another model or adapter;
- random: the same condition with random vectors of equal norm (seeded), the control any
  effect must beat; "none" runs the model unchanged.
Each condition evaluates one `emlab.evaluate.EvalRequest` into its own folder.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import torch
from torch import nn

from emlab.errors import EmlabError
from emlab.evaluate import EvalRequest, evaluate
from emlab.io import read_json, write_json
from emlab.vectors.directions import Direction

if TYPE_CHECKING:  # transformers and peft are imported lazily at run time (they take seconds)
    from peft import PeftModel
    from transformers import PreTrainedModel

Mode = Literal["layerwise", "single", "transfer"]
ORTHO_FILE = "orthogonalized.json"
ABLATION_FILE, ABLATION_JSONL = "ablation.json", "ablation.jsonl"  # the table of conditions (read_ablation)
CONDITION_FILE = "condition.json"  # <condition>/: one evaluation folder per condition, with what was ablated
# Families whose residual stream is exactly embeddings + attention o_proj + MLP down_proj outputs.
ORTHO_FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "phi3")


def random_direction(d: int, norm: float, seed: int) -> torch.Tensor:
    """A Gaussian random vector of size d rescaled to exactly `norm` (fp32, seeded)."""
    if norm <= 0:
        raise EmlabError(f"random direction norm must be > 0, got {norm}")
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(d, generator=g, dtype=torch.float64)
    return (v * (norm / v.norm())).float()


def random_like(direction: Direction, seed: int) -> Direction:
    """Random vectors with the same sites and norms as `direction` (site i uses seed + i)."""
    vecs = {
        s: random_direction(v.shape[0], float(v.norm()), seed + i) for i, (s, v) in enumerate(direction.vectors.items())
    }
    prov = {
        **direction.provenance,
        "method": "random",
        "random_seed": seed,
        "matched_norms_of": direction.provenance.get("method"),
    }
    return Direction(vecs, prov)


@dataclass
class Condition:
    """One ablation condition: site -> vector to project out (None: the unchanged model)."""

    name: str
    vectors: dict[str, torch.Tensor] | None
    info: dict[str, Any] = field(default_factory=dict)

    @contextlib.contextmanager
    def apply(self, model) -> Iterator[None]:
        from emlab.hooks import ablate

        if self.vectors is None:
            yield
            return
        with ablate(model, self.vectors):
            yield


def layerwise_condition(direction: Direction, name: str = "layerwise") -> Condition:
    """Each resid_post vector projected out at its own block's output."""
    vecs = {s: v for s, v in direction.vectors.items() if s.endswith(".resid_post")}
    if not vecs:
        raise EmlabError(
            f"direction from {direction.origin} has no resid_post sites; layer-wise ablation needs blocks.{{l}}.resid_post vectors"
        )
    return Condition(name, vecs, {"mode": "layerwise", "sites": list(vecs)})


def single_condition(model, direction: Direction, site: str, name: str = "single") -> Condition:
    """One site's vector projected out of every residual-stream write (embeddings, attention, MLP)."""
    from emlab.hooks import default_ablation_sites

    v = direction.vector(site)
    return Condition(name, {s: v for s in default_ablation_sites(model)}, {"mode": "single", "direction_site": site})


def default_site(model) -> str:
    """The middle block's resid_post: where EM directions of small models are usually strongest."""
    from emlab.sites import n_layers

    return f"blocks.{n_layers(model) // 2}.resid_post"


def build_conditions(
    cm,
    direction: Direction,
    mode: Mode = "single",
    site: str | None = None,
    random_baseline: bool = True,
    seed: int = 0,
) -> list[Condition]:
    """The unchanged model, the asked ablation, and (optionally) its equal-norm random control."""
    direction.check_compatible(cm.model)
    if mode == "layerwise":
        make = lambda d, name: layerwise_condition(d, name)  # noqa: E731
    elif mode in ("single", "transfer"):
        site = site or default_site(cm.model)
        make = lambda d, name: single_condition(cm.model, d, site, name)  # noqa: E731
        if mode == "transfer":
            _check_transfer(cm, direction)
    else:
        raise EmlabError(f"unknown ablation mode {mode!r}; choose layerwise, single or transfer")
    conds = [Condition("none", None, {"mode": "none"}), make(direction, mode)]
    conds[1].info.update(direction=direction.origin, direction_method=direction.provenance.get("method"))
    if random_baseline:
        rand = make(random_like(direction, seed), f"{mode}-random")
        rand.info.update(random_seed=seed, control_for=mode)
        conds.append(rand)
    return conds


def _check_transfer(cm, direction: Direction) -> None:
    p = direction.provenance
    mine = cm.provenance()
    if (p.get("model"), p.get("revision"), p.get("adapter")) == (
        mine.get("model"),
        mine.get("revision"),
        mine.get("adapter"),
    ):
        raise EmlabError(
            f"--mode transfer needs a direction from another model or adapter, but {direction.origin} is this model; use --mode single"
        )


def run_ablation(
    cm, conditions: Sequence[Condition], request: EvalRequest, out_dir: str | os.PathLike, resume: bool = True
) -> list[dict[str, Any]]:
    """Evaluate `request` under every condition into `out_dir/<name>/`; write `ablation.json` (+ .jsonl); return the rows.

    A condition whose folder already holds complete metrics is not rerun (resumable per condition).
    """
    from emlab.interventions.steering import summary_row

    out = Path(out_dir)
    rows = []
    for cond in conditions:
        folder = out / cond.name
        write_json(folder / CONDITION_FILE, {"name": cond.name, **cond.info, **cm.provenance()})
        metrics = _finished_metrics(folder)
        if metrics is None:
            with cond.apply(cm.model):
                metrics = evaluate(cm, request, folder, resume=resume, progress=False).metrics
        rows.append(
            {"condition": cond.name, **{k: v for k, v in cond.info.items() if k != "sites"}, **summary_row(metrics)}
        )
    from emlab.io import write_jsonl

    write_jsonl(out / ABLATION_JSONL, rows)
    write_json(out / ABLATION_FILE, {"model": cm.provenance(), "conditions": rows})
    return rows


def _finished_metrics(folder: Path) -> dict[str, Any] | None:
    from emlab.evaluate import complete_metrics

    return complete_metrics(folder)


def read_ablation(out_dir: str | os.PathLike) -> dict[str, Any]:
    """ablation.json: the model and one row per evaluated condition (`condition` names its folder, then its metrics)."""
    return read_json(Path(out_dir) / ABLATION_FILE)


def condition_folder(out_dir: str | os.PathLike, condition: str) -> Path:
    """The evaluation folder of one condition (by its name, as in a row's `condition`)."""
    return Path(out_dir) / condition


# ---------------------------------------------------------------- weight orthogonalization


def orthogonalize_weights_(model: PreTrainedModel, direction: torch.Tensor) -> list[str]:
    """Edit `model` IN PLACE so nothing it writes into the residual stream has a component along `direction`.

    Embedding rows E <- E - (E u) u^T; every output projection W (rows live in the residual
    stream) W <- W - u (u^T W), b <- b - (u.b) u. Tied input/output embeddings are untied
    first (the unembedding keeps its original weights), because hook ablation never touches
    the unembedding. Returns the names of the edited parameters.
    """
    from emlab.sites import _down_proj, decoder_blocks

    mtype = getattr(model.config, "model_type", "?")
    if mtype not in ORTHO_FAMILIES:
        raise EmlabError(
            f"weight orthogonalization supports {', '.join(ORTHO_FAMILIES)} models, not {mtype!r}; use hook ablation (emlab ablate) instead"
        )
    d = int(model.config.hidden_size)
    if direction.shape != (d,):
        raise EmlabError(f"direction has shape {tuple(direction.shape)}; this model's residual stream needs ({d},)")
    u = direction.double() / direction.double().norm()
    edited = []
    if _untie_embeddings_(model):
        edited.append("untied lm_head from embeddings (lm_head keeps the original weights)")
    emb_weight = _tensor(model.get_input_embeddings(), "weight")
    with torch.no_grad():
        w = emb_weight.double()
        emb_weight.copy_((w - (w @ u)[:, None] * u[None, :]).to(emb_weight.dtype))
        edited.append("embeddings")
        for l, block in enumerate(decoder_blocks(model)):
            attn_out = _attention_out(_block_part(block, l, ("self_attn", "attn", "attention"), "Attention"), d)
            mlp_out = _down_proj(_block_part(block, l, ("mlp", "feed_forward", "ffn"), "MLP"))
            for name, lin in ((f"blocks.{l}.attn.o_proj", attn_out), (f"blocks.{l}.mlp.down_proj", mlp_out)):
                weight, bias = _tensor(lin, "weight"), _optional_tensor(lin, "bias")
                w = weight.double()  # [d, d_in]
                weight.copy_((w - u[:, None] * (u @ w)[None, :]).to(weight.dtype))
                if bias is not None:
                    b = bias.double()
                    bias.copy_((b - (b @ u) * u).to(bias.dtype))
                edited.append(name)
    return edited


def _optional_tensor(module: nn.Module, name: str) -> torch.Tensor | None:
    """`module.<name>` (a weight or bias: a Parameter, or None where unset), which torch types as Tensor | Module."""
    value = getattr(module, name)
    if value is not None and not isinstance(value, torch.Tensor):
        raise EmlabError(f"{type(module).__name__}.{name} is a {type(value).__name__}, not a tensor")
    return value


def _tensor(module: nn.Module, name: str) -> torch.Tensor:
    value = _optional_tensor(module, name)
    if value is None:
        raise EmlabError(f"{type(module).__name__} has no {name}")
    return value


def _block_part(block: nn.Module, l: int, names: tuple[str, ...], class_hint: str) -> nn.Module:
    """`sites._child`, or an error naming what was looked for (decoder_blocks only checks the first block)."""
    from emlab.sites import _child

    found = _child(block, names, class_hint)
    if found is None:
        raise EmlabError(
            f"block {l} ({type(block).__name__}) has no {class_hint} module; looked for {', '.join(names)} or a child class named *{class_hint}*"
        )
    return found


def _untie_embeddings_(model: PreTrainedModel) -> bool:
    """Give the unembedding its own copy of tied weights; True if they were tied."""
    out_emb = model.get_output_embeddings()
    tied = out_emb is not None and out_emb.weight is model.get_input_embeddings().weight
    if tied:
        out_emb.weight = nn.Parameter(out_emb.weight.detach().clone())
    model.config.tie_word_embeddings = False
    text_cfg = getattr(model.config, "get_text_config", lambda: None)()
    if text_cfg is not None:
        text_cfg.tie_word_embeddings = False
    return tied


def _attention_out(attn: nn.Module, d: int) -> nn.Linear:
    for name in ("o_proj", "out_proj", "dense", "c_proj"):
        lin = getattr(attn, name, None)
        if isinstance(lin, nn.Linear) and lin.out_features == d:
            return lin
    raise EmlabError(
        f"could not find the output projection of {type(attn).__name__} (looked for o_proj, out_proj, dense, c_proj)"
    )


def _plain_copy(model: nn.Module) -> PreTrainedModel:
    """A deep copy of the HF model with any peft adapter merged in (the original is untouched).

    The casts say what torch's `Module` type cannot: a module from peft is its PeftModel wrapper (whose
    `__getattr__` forwards `merge_and_unload` to the tuner), and a model, merged or not, is an HF PreTrainedModel.
    """
    clone = copy.deepcopy(model)
    if type(clone).__module__.startswith("peft."):
        return cast("PreTrainedModel", cast("PeftModel", clone).merge_and_unload())
    return cast("PreTrainedModel", clone)


def export_orthogonalized(
    cm, direction_vector: torch.Tensor, out_dir: str | os.PathLike, provenance: dict[str, Any] | None = None
) -> Path:
    """Save a copy of the model whose weights are orthogonalized against the unit direction.

    Written with `save_pretrained` (safetensors) + the tokenizer + `orthogonalized.json`
    into a temporary sibling folder that is renamed onto `out_dir` when complete, so any
    engine (HF, vLLM, llama.cpp after conversion) serves the ablated model without hooks.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise EmlabError(f"{out} already exists and is not empty; choose another --export folder or remove it")
    model = _plain_copy(cm.model)
    edited = orthogonalize_weights_(model, torch.as_tensor(direction_vector).float())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if getattr(cm, "tokenizer", None) is not None:
            cm.tokenizer.save_pretrained(tmp)
        meta = {
            "source": cm.provenance(),
            "edited": edited,
            "direction_norm": float(torch.as_tensor(direction_vector).norm()),
            **(provenance or {}),
        }
        write_json(tmp / ORTHO_FILE, meta)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
