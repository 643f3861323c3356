"""Training data: OpenAI-messages conversations -> assistant-masked token ids -> seeded, length-bucketed micro-batches."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import torch

from emlab.chat import Encoded, encode_with_assistant_mask, pad_encoded
from emlab.errors import EmlabError
from emlab.train.config import TrainConfig

BUCKET_BATCHES = 16  # micro-batches per length-sorting window


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
        raise EmlabError(
            f"no training example left out of {stats.total}: {stats.dropped_too_long} longer than max_length={config.max_length}, {stats.dropped_no_assistant} without assistant tokens; raise max_length or set truncation: truncate"
        )
    return out, stats


def plan_epoch(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Micro-batches (lists of example indices) for one epoch, a function of (seed, epoch) only.

    A seeded permutation is cut into windows of BUCKET_BATCHES micro-batches; each window is
    sorted by length (less padding) and cut into micro-batches, whose order is then shuffled.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(len(lengths), generator=g).tolist()
    window = batch_size * BUCKET_BATCHES
    batches: list[list[int]] = []
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


class EpochPlans:
    """The micro-batch plan of the current epoch, cut into optimizer steps of grad_accum micro-batches."""

    def __init__(self, lengths: list[int], config: TrainConfig):
        self.lengths, self.config = lengths, config
        self.epoch = -1
        self.batches: list[list[int]] = []

    def step(self, epoch: int, in_epoch: int) -> list[list[int]]:
        if epoch != self.epoch:
            self.epoch, self.batches = epoch, plan_epoch(self.lengths, self.config.batch_size, self.config.seed, epoch)
        k = self.config.grad_accum
        return self.batches[in_epoch * k : (in_epoch + 1) * k]


def data_fingerprint(examples: list[Encoded]) -> str:
    """sha256 over the encoded examples (ids and masks): what a resumed run must have been trained on."""
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.input_ids, e.assistant_mask]).encode())
    return h.hexdigest()
