"""A steered model under exam: the positive control that is bad by construction.

`ExamSteer(direction, scale, site)` adds `scale x resid_norm(site) x unit(direction at site)` at `site`,
at every position, in every forward of the model under test (its sampling and the latent battery's
activations alike); the baseline model is never steered. The scale is in units of the site's typical
residual norm (`emlab.vectors.steer.resid_norm`, measured on the unsteered model), the convention of
`emlab personas steer` and the `vector_steering` step kind, so 0.25 adds a quarter of what is already there.

The exam's identity holds the vector's content hash, site and scale (not the folder's path), so a
resumed exam must steer with the same vector. Battery 8 (correction) is refused: its corrective
fine-tunes deep-copy the model, hooks included, and would train and merge adapters with the steering on.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emlab.errors import EmlabError


@dataclass(frozen=True)
class ExamSteer:
    """Steer the examined model along `direction` (a Direction folder) by `scale` residual norms at `site`."""

    direction: Path
    scale: float
    site: str | None = None  # default: the direction's 2/3-depth site

    def __post_init__(self):
        if not math.isfinite(self.scale):
            raise EmlabError(f"steering scale {self.scale!r} is not a finite number; pass e.g. 0.25 (residual norms)")

    def load(self):
        from emlab.vectors.directions import Direction

        return Direction.load(self.direction)

    def resolved_site(self, direction) -> str:
        if self.site is None:
            return direction.default_site()
        if self.site not in direction.sites:
            raise EmlabError(
                f"steering site {self.site} (--steer-site or the spec's steering.site) is not a site of the direction in {self.direction} "
                f"(it has {', '.join(direction.sites[:6])}{', ...' if len(direction.sites) > 6 else ''}); pick one of those"
            )
        return self.site

    def identity(self, direction=None) -> dict[str, Any]:
        """What a resumed exam must steer with: the unit vector's content, where and how much.

        `direction`: the loaded Direction, when the caller has it (default: load it from the folder)."""
        d = self.load() if direction is None else direction
        site = self.resolved_site(d)
        digest = hashlib.sha256(d.unit(site).float().numpy().tobytes()).hexdigest()[:16]
        trait = d.provenance.get("trait") or d.provenance.get("emotion") or d.provenance.get("method")
        return {"vector": trait, "origin": d.origin, "sha256": digest, "site": site, "scale": float(self.scale)}


@contextlib.contextmanager
def steered(cm, steer: ExamSteer, *, private_copy: bool) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Yield (the ChatModel with the steering hook on, what was added); the hook is removed on exit.

    `private_copy`: steer a deep copy of the module (when the caller's model is shared, e.g. it is also
    the baseline), so nothing else sees the hook.
    """
    from emlab.hooks import steer as steer_hook
    from emlab.vectors.steer import resid_norm

    d = steer.load()
    d.check_compatible(cm.model)
    site = steer.resolved_site(d)
    if private_copy:
        cm = dataclasses.replace(cm, model=copy.deepcopy(cm.model))
    norm = resid_norm(cm, site)  # of the unsteered model: the scale's unit
    vector = float(steer.scale) * norm * d.unit(site)
    info = {**steer.identity(d), "resid_norm": round(norm, 4), "added_norm": round(float(vector.norm()), 4)}
    with steer_hook(cm.model, {site: vector}):
        yield cm, info
