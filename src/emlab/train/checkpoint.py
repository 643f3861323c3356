"""The run folder of a training: artifact names and readers, checkpoints (save, load, resume), final weights.

This module owns the names of what `train` writes into its out dir:

  TRAIN_CONFIG  train_config.json   model + revision, config, resolved blocks, dtype, data sha256 (what a resume must match)
  TRAIN_LOG     train_log.jsonl     one record per optimizer step
  TRAIN_SUMMARY train_summary.json  what the finished run did (its presence marks the run finished)
  CHECKPOINTS   checkpoints/step-XXXXX/  weights, optimizer.safetensors + .json, rng_state.safetensors, trainer_state.json

Read them through `read_train_config`, `read_train_log`, `read_train_summary`, `latest_checkpoint`.
A checkpoint folder is built under a temporary name and renamed when complete; nothing is pickled.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch

from emlab.chat import Encoded
from emlab.errors import EmlabError
from emlab.io import iter_jsonl, read_json, write_json
from emlab.train.callbacks import Callback, TrainState
from emlab.train.config import TrainConfig
from emlab.train.data import data_fingerprint
from emlab.train.prepare import TrainSetup

if TYPE_CHECKING:
    from torch.nn.modules.module import _IncompatibleKeys
    from transformers import PreTrainedModel

TRAIN_CONFIG = "train_config.json"
TRAIN_LOG = "train_log.jsonl"
TRAIN_SUMMARY = "train_summary.json"
CHECKPOINTS = "checkpoints"
TRAINER_STATE = "trainer_state.json"  # inside a checkpoint: {"progress": {...}, "total_steps": n}


def checkpoint_name(step: int) -> str:
    """The folder name of the checkpoint after `step` optimizer steps: step-00005."""
    return f"step-{step:05d}"


def checkpoint_step(folder: str | os.PathLike) -> int:
    """The step a checkpoint folder (step-00005) holds."""
    return int(Path(folder).name.split("-")[1])


# ----------------------------------------------------------------------------- readers


def read_train_config(folder: str | os.PathLike) -> dict:
    """train_config.json of a run folder: {model, revision, config, resolved_blocks, dtype, data_sha256}."""
    return read_json(Path(folder) / TRAIN_CONFIG)


def read_train_summary(folder: str | os.PathLike) -> dict:
    """train_summary.json of a finished run (see loop.summary for the keys)."""
    return read_json(Path(folder) / TRAIN_SUMMARY)


def read_train_log(folder: str | os.PathLike) -> list[dict]:
    """train_log.jsonl of a run folder: one record per optimizer step, in step order."""
    return [rec for _, rec in iter_jsonl(Path(folder) / TRAIN_LOG)]


# ----------------------------------------------------------------------------- checkpoints


def _save_weights(setup: TrainSetup, folder: Path) -> None:
    """Adapter (peft, safetensors) or full model + tokenizer (save_pretrained, safetensors)."""
    cast("PreTrainedModel", setup.model).save_pretrained(folder, safe_serialization=True)  # HF or peft model
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


def _load_weights(setup: TrainSetup, folder: Path) -> None:
    from safetensors.torch import load_file

    if setup.plan is not None:
        from peft import set_peft_model_state_dict

        # peft annotates the result as a bare `namedtuple`; it is torch's load_state_dict result
        result = cast(
            "_IncompatibleKeys",
            set_peft_model_state_dict(setup.model, load_file(str(folder / "adapter_model.safetensors"))),
        )
        bad = [k for k in result.unexpected_keys if "lora_" in k]
        if bad:
            raise EmlabError(
                f"checkpoint {folder}: adapter tensors {bad[:3]} do not fit this run's adapters; resume with the config it was trained with"
            )
        return
    state = load_file(str(folder / "model.safetensors"))
    missing, unexpected = setup.model.load_state_dict(state, strict=False)
    tied = set(getattr(setup.model, "_tied_weights_keys", None) or {})
    if unexpected or any(k not in tied and not k.endswith("lm_head.weight") for k in missing):
        raise EmlabError(
            f"checkpoint {folder}: weights do not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]}); resume with the same model"
        )


@contextlib.contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
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


def save_checkpoint(setup: TrainSetup, opt: torch.optim.Optimizer, folder: Path, state: dict) -> None:
    with atomic_dir(folder) as tmp:
        _save_weights(setup, tmp)
        _save_optimizer(opt, tmp)
        _save_rng(tmp, setup.device)
        write_json(tmp / TRAINER_STATE, state)


def load_checkpoint(setup: TrainSetup, opt: torch.optim.Optimizer, folder: Path) -> dict:
    """Restore weights, optimizer and RNG state from a checkpoint; returns its progress counters."""
    _load_weights(setup, folder)
    _load_optimizer(opt, folder)
    _load_rng(folder, setup.device)
    return read_json(folder / TRAINER_STATE)["progress"]


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the highest step in out_dir/checkpoints, if any."""
    root = Path(out_dir) / CHECKPOINTS
    done = [p for p in root.glob("step-*") if (p / TRAINER_STATE).exists()] if root.exists() else []
    return max(done, key=checkpoint_step, default=None)


def save_final(setup: TrainSetup, out_dir: Path) -> list[str]:
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


# ----------------------------------------------------------------------------- resume


def run_identity(setup: TrainSetup, config: TrainConfig, examples: list[Encoded]) -> dict:
    """What a resumed run must share with the run it continues (written as train_config.json)."""
    blocks = setup.plan.layers_to_transform if setup.plan else None
    cfg = config.model_dump(exclude={"description"})
    dtype = str(setup.dtype).removeprefix("torch.")
    return {
        "model": setup.ref,
        "revision": setup.revision,
        "config": cfg,
        "resolved_blocks": blocks,
        "dtype": dtype,
        "data_sha256": data_fingerprint(examples),
    }


def _check_resume(out_dir: Path, identity: dict) -> None:
    saved = read_json(out_dir / TRAIN_CONFIG)
    diff = [k for k in identity if saved.get(k) != identity[k]]
    if "config" in diff:
        keys = [k for k in identity["config"] if saved.get("config", {}).get(k) != identity["config"][k]]
        diff = [d for d in diff if d != "config"] + [f"config.{k}" for k in keys]
    if diff:
        raise EmlabError(
            f"cannot resume {out_dir}: {', '.join(diff)} differ from the interrupted run; resume with the same model, data and config, or train into a new --out"
        )


def start_run(out_dir: Path, identity: dict, resume: bool) -> Path | None:
    """Check the out dir and return the checkpoint to resume from (None: start at step 0)."""
    if (out_dir / TRAIN_SUMMARY).exists():
        raise EmlabError(f"{out_dir} already holds a finished run ({TRAIN_SUMMARY}); choose another --out")
    has_run = (out_dir / TRAIN_CONFIG).exists()
    if has_run and not resume:
        raise EmlabError(
            f"{out_dir} holds an unfinished run; pass --resume (resume=True) to continue it, or choose another --out"
        )
    if resume and has_run:
        _check_resume(out_dir, identity)
        return latest_checkpoint(out_dir)
    return None


class Checkpointing(Callback):
    """Save a resumable checkpoint every `every` steps into out_dir/checkpoints/step-XXXXX/.

    Not at the last step (the final weights are written anyway). The loop runs it after the
    user's callbacks, so a checkpoint at step k means every callback has finished step k; a
    resume (load_checkpoint, in the loop) continues from the newest complete one.
    """

    def __init__(self, every: int | None):
        self.every = every

    def on_step_end(self, state: TrainState) -> None:
        step = state.step
        if self.every and step % self.every == 0 and step < state.total_steps:
            state.progress["checkpoints"] = [*state.progress["checkpoints"], checkpoint_name(step)]
            save_checkpoint(
                state.setup,
                state.optimizer,
                state.out_dir / CHECKPOINTS / checkpoint_name(step),
                {"progress": state.progress, "total_steps": state.total_steps},
            )
