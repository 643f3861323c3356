"""The machine's matmul peak, the model's FLOPs per token, and the facts a reader needs to compare runs.

FLOP model (dense matmuls only; attention score/value products, norms and activations ignored,
which at these context lengths is a few percent: 4 * layers * d_model * context per token):

    N        = parameters the forward multiplies by: every decoder-block weight + the LM head
               (counted even when tied to the embedding, since its matmul runs; the embedding
               lookup itself is not a matmul)
    forward  = 2 * N FLOPs per token (one multiply-add per weight)
    training with frozen base weights (LoRA): forward 2N + backward activation gradients 2 * N_bwd,
               N_bwd = LM head + every block from the lowest adapted block up (autograd stops
               below it; no weight gradients for frozen weights; adapter FLOPs are negligible
               at rank 1). With adapters down to block 0 this is the familiar 4N.

The peak is measured, not looked up: torch.matmul on square matrices small enough to stay in
cache (n <= 1024), best of several repeats, per dtype.
"""

from __future__ import annotations

import os
import platform
import time

import torch
from torch import nn

from emlab.errors import EmlabError
from emlab.hooks import causal_lm
from emlab.sites import decoder_blocks

PEAK_SIZES = (256, 512, 1024)
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16"}


def matmul_peak(
    dtype: torch.dtype, sizes: tuple[int, ...] = PEAK_SIZES, repeats: int = 5, min_rep_s: float = 0.04
) -> dict:
    """Best GFLOP/s of torch.matmul on n x n matrices over `sizes` and `repeats` timed repetitions.

    Also the best GFLOP per CPU-second of this process (`gflops_per_cpu_s`): with other jobs
    time-slicing the cores, wall-clock rates drop but work per CPU-second does not.
    """
    best, best_n, best_cpu = 0.0, None, 0.0
    gen = torch.Generator().manual_seed(0)
    for n in sizes:
        a = torch.randn(n, n, generator=gen).to(dtype)
        b = torch.randn(n, n, generator=gen).to(dtype)
        t0 = time.perf_counter()
        torch.matmul(a, b)  # first call: kernel selection, allocation
        one = max(time.perf_counter() - t0, 1e-6)
        k = max(1, int(min_rep_s / one))
        for _ in range(repeats):
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(k):
                torch.matmul(a, b)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            gflops = k * 2 * n**3 / wall / 1e9
            if gflops > best:
                best, best_n = gflops, n
            if cpu > 0:
                best_cpu = max(best_cpu, k * 2 * n**3 / cpu / 1e9)
    return {"gflops": best, "n": best_n, "gflops_per_cpu_s": best_cpu, "sizes": list(sizes), "repeats": repeats}


def measure_peaks(repeats: int = 5) -> dict[str, dict]:
    """Matmul peaks for fp32 and bf16, keyed by the names figures use."""
    return {name: matmul_peak(dt, repeats=repeats) for dt, name in DTYPE_NAMES.items()}


def param_counts(model) -> dict[str, int]:
    """Parameter counts of the base causal LM (adapter weights excluded), see the module docstring."""
    lm = causal_lm(model)
    emb = lm.get_input_embeddings().weight
    if not isinstance(emb, torch.Tensor):
        raise EmlabError(
            f"{type(lm).__name__}'s input embeddings have no weight tensor; param_counts knows embedding tables only"
        )
    head = lm.get_output_embeddings().weight
    base = {id(p): p for name, p in lm.named_parameters() if "lora_" not in name}
    total = sum(p.numel() for p in base.values())
    tied = head is emb or head.data_ptr() == emb.data_ptr()
    blocks_and_norms = total - emb.numel() - (0 if tied else head.numel())
    return {
        "total": total,
        "embedding": emb.numel(),
        "lm_head": head.numel(),
        "tied_embeddings": int(tied),
        "non_embedding": blocks_and_norms,
        "forward": blocks_and_norms + head.numel(),
    }


def forward_flops_per_token(model) -> float:
    """2 * N: FLOPs of one token's forward pass."""
    return 2.0 * param_counts(model)["forward"]


def backward_params(model, lowest_block: int | None) -> int:
    """N_bwd: LM head + final norm + blocks from `lowest_block` up (None: every block)."""
    counts = param_counts(model)
    blocks = decoder_blocks(model)
    below = 0 if lowest_block is None else sum(_numel(b) for b in list(blocks)[:lowest_block])
    return counts["forward"] - below


def train_flops_per_token(model, lowest_block: int | None) -> float:
    """2N (forward) + 2 N_bwd (activation gradients) for adapter-only training."""
    return 2.0 * param_counts(model)["forward"] + 2.0 * backward_params(model, lowest_block)


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for name, p in module.named_parameters() if "lora_" not in name)


def machine_facts() -> dict:
    """CPU model, core count, relevant CPU flags, torch threading and the load average right now."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    return {
        "cpu": info.get("model name", platform.processor() or "unknown"),
        "cores": os.cpu_count(),
        "flags": [f for f in CPU_FLAGS if f in flags],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": _cpu_capability(),
        "env": {
            k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "GOMP_SPINCOUNT")
        },
        "loadavg": list(os.getloadavg()),
    }


def _cpuinfo() -> dict[str, str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in out:
            out[key.strip()] = value.strip()
    return out


def _cpu_capability() -> str | None:
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # older torch builds lack it
        return None
