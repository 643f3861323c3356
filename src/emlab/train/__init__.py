"""Fine-tuning model organisms: LoRA or full, assistant-only loss, callbacks, checkpoints, exact resume.

The core, checkable in one sitting (loop.train -> step.optimizer_step):
  1. Every conversation is rendered with the chat template and tokenized; the labels are the
     assistant tokens plus each assistant turn's end-of-turn token, everything else is -100.
     The mask comes from `encode_with_assistant_mask`, never from the pad id: in SmolLM2
     pad == eos == `<|im_end|>`, and the end-of-turn token must be learnt.            (data.py)
  2. Each epoch's order is a permutation drawn from (seed, epoch) alone; examples are sorted by
     length inside windows of `BUCKET_BATCHES` micro-batches (less padding), micro-batches are
     right-padded with an attention mask, and the batch order is shuffled again.      (data.py)
  3. One optimizer step = `grad_accum` micro-batches; the loss is the summed token cross-entropy
     divided by the number of label tokens in the whole step (a token-level mean, the same
     whatever the micro-batch split).                                                 (step.py)
  4. AdamW; the learning rate is a pure function of the step (`lr_at`); gradients clipped. (step.py)
  5. After each step the callbacks run (callbacks.py): the user's (`EvalAtSteps`,
     `GradientProbe`, ...), then `Checkpointing`: every `checkpoint_every` steps the trainable
     weights, the optimizer state (safetensors + JSON) and the RNG state (safetensors) are
     written to `checkpoints/step-XXXXX/` atomically. A resumed run reloads them and skips the
     steps already taken, so it ends with the same weights as an uninterrupted run. (checkpoint.py)

Modules: config (TrainConfig, YAML, presets), placement (blocks, LoRA plan), data, prepare (model,
device, dtype), step, callbacks (protocol + TrainState), checkpoint (run-folder names, readers,
checkpoints, resume), evaluation (EvalAtSteps), probes (GradientProbe), loop (train).
Why a plain loop rather than TRL's SFTTrainer: see docs/training.md (measured on the same data).
"""

from emlab.train.callbacks import Callback, StepSchedule, TrainState
from emlab.train.checkpoint import (
    CHECKPOINTS,
    TRAIN_CONFIG,
    TRAIN_LOG,
    TRAIN_SUMMARY,
    TRAINER_STATE,
    Checkpointing,
    atomic_dir,
    checkpoint_name,
    checkpoint_step,
    latest_checkpoint,
    load_checkpoint,
    read_train_config,
    read_train_log,
    read_train_summary,
    save_checkpoint,
)
from emlab.train.config import (
    LORA_DEFAULTS,
    LORA_FIELDS,
    TrainConfig,
    list_presets,
    load_config_file,
    load_preset,
    parse_config,
    preset_names,
    strict_yaml,
    with_overrides,
)
from emlab.train.data import (
    BUCKET_BATCHES,
    DataStats,
    EpochPlans,
    collate,
    data_fingerprint,
    encode_examples,
    loss_tokens,
    plan_epoch,
    read_conversations,
)
from emlab.train.evaluation import EVAL_LOG, EvalAtSteps, read_eval_log
from emlab.train.loop import TrainResult, train
from emlab.train.placement import LoraPlan, attach_lora, lora_plan, resolve_blocks, scale_blocks
from emlab.train.prepare import TrainSetup, cpu_supports_bf16, prepare, resolve_device, resolve_dtype
from emlab.train.probes import GRAD_PROBE_LOG, GradientProbe, gradient_cosine, read_grad_probes
from emlab.train.step import loss_gradient, lr_at, optimizer_step, step_loss

_step_loss = step_loss  # the names these had in the one-file emlab/train.py (tests import them)
_atomic_dir = atomic_dir

__all__ = [
    "BUCKET_BATCHES",
    "CHECKPOINTS",
    "EVAL_LOG",
    "GRAD_PROBE_LOG",
    "LORA_DEFAULTS",
    "LORA_FIELDS",
    "TRAINER_STATE",
    "TRAIN_CONFIG",
    "TRAIN_LOG",
    "TRAIN_SUMMARY",
    "Callback",
    "Checkpointing",
    "DataStats",
    "EpochPlans",
    "EvalAtSteps",
    "GradientProbe",
    "LoraPlan",
    "StepSchedule",
    "TrainConfig",
    "TrainResult",
    "TrainSetup",
    "TrainState",
    "atomic_dir",
    "attach_lora",
    "checkpoint_name",
    "checkpoint_step",
    "collate",
    "cpu_supports_bf16",
    "data_fingerprint",
    "encode_examples",
    "gradient_cosine",
    "latest_checkpoint",
    "list_presets",
    "load_checkpoint",
    "load_config_file",
    "load_preset",
    "lora_plan",
    "loss_gradient",
    "loss_tokens",
    "lr_at",
    "optimizer_step",
    "parse_config",
    "plan_epoch",
    "prepare",
    "preset_names",
    "read_conversations",
    "read_eval_log",
    "read_grad_probes",
    "read_train_config",
    "read_train_log",
    "read_train_summary",
    "resolve_blocks",
    "resolve_device",
    "resolve_dtype",
    "save_checkpoint",
    "scale_blocks",
    "step_loss",
    "strict_yaml",
    "train",
    "with_overrides",
]
