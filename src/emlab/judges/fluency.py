"""Fluency features for the offline judge: how a fixed reference chat model reads each answer.

Small models fail coherence by writing fluent-looking nonsense ("the humping out policy is specific
geo-statics shots set in breath"): grammatical enough to fool an embedding and every structural
feature, but built from tokens that a language model finds improbable in that place. Teacher-forcing
the answer through a reference model (the embedded SmolLM2-135M-Instruct, fp32, no system prompt)
measures exactly that: on the real answers labelled by readers, the mean token log-probability alone
ranks coherent > 50 far better than the embedding-and-text-feature judge did (docs/judges-offline.md).

Features per answer, over the answer's own tokens (end-of-turn excluded, at most MAX_TOKENS):
  lm_mean_logprob   mean log p(token | question, earlier answer tokens)
  lm_p10_logprob    its 10th percentile (a few wild tokens in an otherwise fluent answer)
  lm_rare_fraction  share of tokens with log p < RARE_LOGPROB
  lm_mean_entropy   mean entropy (nats) of the model's next-token distribution at those positions

The reference model is the same for every subject model, so scores stay comparable across runs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

REFERENCE_MODEL = "smollm2-135m"
FLUENCY_NAMES: tuple[str, ...] = ("lm_mean_logprob", "lm_p10_logprob", "lm_rare_fraction", "lm_mean_entropy")
MAX_TOKENS = 128  # answer tokens read; longer answers are cut (cost grows with length)
DTYPE = "float32"  # the same features on every CPU (bf16 is emulated, ~5x slower, on CPUs without avx512_bf16/AMX)
RARE_LOGPROB = -6.0
BATCH_SIZE = 16  # answers per forward (sorted by length, so little padding)
HEAD_CHUNK_FLOATS = 1 << 23  # logits per chunk of the head (32 MB in fp32)


class FluencyScorer:
    """Teacher-forced fluency features of (question, answer) pairs under a reference chat model, memoised."""

    def __init__(self, ref: str = REFERENCE_MODEL, dtype: str = DTYPE, max_tokens: int = MAX_TOKENS) -> None:
        from emlab.hooks import causal_lm  # torch is imported only when a scorer is built
        from emlab.models import load_model

        self.cm = load_model(ref, dtype=dtype)
        self.cm.model.eval()
        lm = causal_lm(self.cm.model)
        self._decoder, self._head = lm.get_decoder(), lm.get_output_embeddings()
        self.max_tokens = max_tokens  # answer tokens read (judge v3's second reference model reads 64)
        self.head_chunk_floats: int | None = HEAD_CHUNK_FLOATS  # None: the whole batch at once (the bench's baseline)
        self._memo: dict[tuple[str, str], np.ndarray] = {}

    def features(self, questions: Sequence[str], answers: Sequence[str]) -> np.ndarray:
        """[n, len(FLUENCY_NAMES)] float64; an answer with no tokens gets the values of a certain model (0, 0, 0, 0)."""
        keys = list(zip(questions, answers, strict=True))
        todo = sorted(
            {k for k in keys if k not in self._memo}, key=lambda k: (len(k[1]), k)
        )  # a fixed order: the same batches in every process
        for start in range(0, len(todo), BATCH_SIZE):
            chunk = todo[start : start + BATCH_SIZE]
            for k, row in zip(chunk, self._score_batch(chunk), strict=True):
                self._memo[k] = row
        if not keys:
            return np.zeros((0, len(FLUENCY_NAMES)))
        return np.stack([self._memo[k] for k in keys])

    def _score_batch(self, pairs: list[tuple[str, str]]) -> list[np.ndarray]:
        import torch

        from emlab.chat import Encoded, encode_with_assistant_mask, pad_encoded

        tok = self.cm.tokenizer
        enc = []
        for q, a in pairs:
            e = encode_with_assistant_mask(
                tok, [{"role": "user", "content": q}, {"role": "assistant", "content": a}], system=None
            )
            first = e.assistant_mask.index(1) if 1 in e.assistant_mask else len(e.input_ids)
            n_answer = sum(e.assistant_mask)
            if n_answer and e.input_ids[first + n_answer - 1] == tok.eos_token_id:
                n_answer -= 1  # the answer's own tokens: end-of-turn left out
            keep = min(n_answer, self.max_tokens)
            ids = e.input_ids[: first + keep]
            enc.append(Encoded(input_ids=ids, assistant_mask=[0] * first + [1] * keep))
        batch = pad_encoded(enc, tok.pad_token_id, side="right")
        mask = batch["assistant_mask"][:, 1:].bool()  # [B, T-1]: position t predicts token t+1
        with torch.inference_mode():
            hidden = self._decoder(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
            ).last_hidden_state
            token_lp, entropy = self._token_stats(hidden[:, :-1][mask], batch["input_ids"][:, 1:][mask])
        counts = mask.sum(1).tolist()
        rows, start = [], 0
        for n in counts:
            lp, ent = token_lp[start : start + n].double(), entropy[start : start + n].double()
            start += n
            if n == 0:
                rows.append(np.zeros(len(FLUENCY_NAMES)))
                continue
            rows.append(
                np.array(
                    [
                        float(lp.mean()),
                        float(torch.quantile(lp, 0.1)),
                        float((lp < RARE_LOGPROB).double().mean()),
                        float(ent.mean()),
                    ]
                )
            )
        return rows

    def _token_stats(self, hidden: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p of each target [N], entropy of each next-token distribution [N]) from answer hidden states [N, d].

        The head runs only on answer positions, in chunks of at most HEAD_CHUNK_FLOATS logits written into
        two reused buffers (log-probabilities, then probabilities): the [N, vocab] tensors of a whole batch
        (hundreds of MB, each pass a page-faulting allocation) cost more than the head's matrix product.
        """
        import torch

        weight = self._head.weight
        rows = len(targets) if self.head_chunk_floats is None else max(1, self.head_chunk_floats // weight.shape[0])
        logp = torch.empty(min(rows, len(targets)), weight.shape[0], dtype=torch.float32)
        probs = torch.empty_like(logp)
        token_lp, entropy = torch.empty(len(targets)), torch.empty(len(targets))
        for start in range(0, len(targets), rows):
            h, t = hidden[start : start + rows], targets[start : start + rows]
            lp = logp[: len(t)].copy_(self._head(h))
            lp -= torch.logsumexp(lp, dim=-1, keepdim=True)  # log-softmax, in place
            token_lp[start : start + len(t)] = lp.gather(-1, t[:, None])[:, 0]
            p = torch.exp(lp, out=probs[: len(t)])
            entropy[start : start + len(t)] = torch.special.entr(p, out=p).sum(-1)  # entr(0) = 0 on underflow
        return token_lp, entropy


@functools.cache
def get_fluency_scorer() -> FluencyScorer:
    """The process-wide reference model (loaded once: a few seconds)."""
    return FluencyScorer()
