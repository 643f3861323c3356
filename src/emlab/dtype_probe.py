"""Choose the compute dtype by measuring this machine once, not by reading its flag names.

bf16 is ~2x faster than fp32 on CPUs with avx512_bf16/AMX and several times *slower* where it is
emulated (avx2-only CPUs, avx512 without bf16). `dtype: auto` resolves through `choose_dtype`: a
micro-probe times the training-shaped matmuls (forward and both backward products of a linear layer)
in each dtype, keeps bf16 only when it is at least `MIN_SPEEDUP` times faster, and caches the
verdict per machine (CPU model, flags, core count, torch version) under `$EMLAB_CACHE/probe/`.
The verdict (with its timings) is recorded in the manifests of the steps that used it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from emlab.io import write_json

PROBE_VERSION = 1
MIN_SPEEDUP = 1.15  # bf16 must beat fp32 by this factor: rounding costs accuracy, so a tie goes to fp32
SHAPE = (512, 896, 2432)  # tokens x d_model x d_ff: the MLP of a 0.5B model on one batch
_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


@dataclass(frozen=True)
class DtypeChoice:
    dtype: str  # "float32" or "bfloat16"
    reason: str
    seconds: dict[str, float]  # median seconds per probe step, per dtype
    machine: str  # what the cache is keyed on
    probe_version: int = PROBE_VERSION

    @property
    def torch_dtype(self) -> torch.dtype:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16}[self.dtype]


def machine_key() -> str:
    """CPU model, the flags that matter for dtype speed, cores and torch version."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name") and model in ("", platform.machine()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    have = ",".join(f for f in _FLAGS if f in flags)
    return f"{model}|{have}|cores={os.cpu_count()}|torch={torch.__version__}"


def _time_step(dtype: torch.dtype, reps: int, shape: tuple[int, int, int]) -> float:
    n, d, f = shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g).to(dtype)
    w = torch.randn(d, f, generator=g).to(dtype)
    dy = torch.randn(n, f, generator=g).to(dtype)
    times = []
    for _ in range(reps + 1):  # the first round warms the kernels up and is dropped
        t0 = time.perf_counter()
        x @ w  # forward
        dy @ w.T  # gradient wrt the input
        x.T @ dy  # gradient wrt the weight
        times.append(time.perf_counter() - t0)
    return sorted(times[1:])[len(times[1:]) // 2]


def decide(seconds: dict[str, float], bf16_native: bool, machine: str) -> DtypeChoice:
    """The verdict from measured seconds per step (pure: tested on made-up timings)."""
    speedup = seconds["float32"] / seconds["bfloat16"]
    if speedup >= MIN_SPEEDUP:
        return DtypeChoice(
            "bfloat16", f"bf16 measured {speedup:.2f}x faster than fp32 (>= {MIN_SPEEDUP})", seconds, machine
        )
    kind = "native" if bf16_native else "emulated"
    return DtypeChoice(
        "float32", f"bf16 ({kind}) measured {speedup:.2f}x fp32's speed (< {MIN_SPEEDUP})", seconds, machine
    )


def _probe_path(key: str) -> Path:
    from emlab.models import cache_root

    return cache_root() / "probe" / f"dtype-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def choose_dtype(device: str = "cpu", reps: int = 3, refresh: bool = False) -> DtypeChoice:
    """bf16 or fp32 for `device`, measured once per machine and cached."""
    if device == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return DtypeChoice(
            "bfloat16" if ok else "float32", f"cuda bf16 supported: {ok}", {}, torch.cuda.get_device_name()
        )
    key = machine_key()
    path = _probe_path(key)
    if path.exists() and not refresh:
        try:
            data = json.loads(path.read_text())
            if data.get("probe_version") == PROBE_VERSION and data.get("machine") == key:
                return DtypeChoice(**data)
        except (ValueError, TypeError):
            pass  # a damaged cache entry is measured again and overwritten
    seconds = {
        name: _time_step(dt, reps, SHAPE) for name, dt in (("float32", torch.float32), ("bfloat16", torch.bfloat16))
    }
    cpu = torch.backends.cpu
    native = any(
        bool(getattr(cpu, n, lambda: False)()) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    )
    choice = decide(seconds, native, key)
    write_json(path, asdict(choice))
    return choice
