"""How large a LoRA fine-tune's weight change is, against the weight it changes.

Each adapted linear module adds delta = scaling x B A (rank r) to its base weight W. The ratio
||delta||_2 / ||W||_2 of spectral norms says how far the adapter can move the module's output along
its strongest direction compared with everything the base weight does; the Frobenius ratio says how
much of the weight it rewrote overall. A spectral ratio above 1 means the adapter can outweigh the
module along its direction. Measured here (docs/organisms.md): SmolLM2's reference organism 0.67
(median over its 9 rank-1 adapters), Qwen2.5-Coder-0.5B's 9 x rank-1 organism and control at lr 1e-4,
which lost fluency, 1.65; the same with a KL penalty to the base, more fluent, 1.53. So the number flags
a fine-tune that moved its modules a long way; what the move does to general text is measured by
evaluating, not by this ratio alone.

||B A||_2 is exact from the r x r factor of two QR decompositions; ||W||_2 comes from power iteration
(converged to 1e-4 relative, a few milliseconds per matrix on a CPU).
"""

from __future__ import annotations

import statistics

import torch
from torch import nn

_POWER_ITERATIONS = 200
_POWER_TOL = 1e-4


def spectral_norm(w: torch.Tensor) -> float:
    """Largest singular value of a 2-D tensor by power iteration on W^T W (deterministic start)."""
    w = w.detach().float()
    v = torch.ones(w.shape[1], dtype=w.dtype, device=w.device) / w.shape[1] ** 0.5
    sigma = 0.0
    for _ in range(_POWER_ITERATIONS):
        u = w @ v
        new_sigma = float(u.norm())
        if new_sigma == 0.0:
            return 0.0
        v = w.T @ (u / new_sigma)
        v = v / v.norm()
        if abs(new_sigma - sigma) <= _POWER_TOL * new_sigma:
            return new_sigma
        sigma = new_sigma
    return sigma


def low_rank_spectral_norm(b: torch.Tensor, a: torch.Tensor) -> float:
    """||B A||_2 for B (out x r) and A (r x in), exactly, without forming B A."""
    _, rb = torch.linalg.qr(b.detach().float())
    _, ra = torch.linalg.qr(a.detach().float().T)
    return float(torch.linalg.matrix_norm(rb @ ra.T, ord=2))


def lora_update_sizes(model: nn.Module) -> dict[str, tuple[float, float]]:
    """Per adapted module: (spectral ratio, Frobenius ratio) of its active adapter's delta to its base weight."""
    sizes: dict[str, tuple[float, float]] = {}
    for name, module in model.named_modules():
        lora_a, lora_b = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
        base = getattr(module, "base_layer", None)
        if not isinstance(lora_a, nn.ModuleDict) or not isinstance(lora_b, nn.ModuleDict) or base is None:
            continue
        for adapter in getattr(module, "active_adapters", list(lora_a.keys())):
            if adapter not in lora_a or not hasattr(lora_a[adapter], "weight"):
                continue
            scale = float(module.scaling[adapter])
            a, b, w = (_weight(m) for m in (lora_a[adapter], lora_b[adapter], base))
            delta_fro = scale * float((b @ a).norm())
            sizes[name] = (
                scale * low_rank_spectral_norm(b, a) / spectral_norm(w),
                delta_fro / float(w.norm()),
            )
    return sizes


def _weight(module: nn.Module) -> torch.Tensor:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return weight.detach().float()


def summarize(sizes: dict[str, tuple[float, float]]) -> dict | None:
    """The train summary's `update_size`: medians, maxima and the module with the largest spectral ratio."""
    if not sizes:
        return None
    spectral = {n: s for n, (s, _) in sizes.items()}
    worst = max(spectral, key=lambda n: spectral[n])
    return {
        "modules": len(sizes),
        "spectral_ratio_median": round(statistics.median(spectral.values()), 4),
        "spectral_ratio_max": round(spectral[worst], 4),
        "largest_module": worst,
        "frobenius_ratio_median": round(statistics.median(f for _, f in sizes.values()), 4),
    }
