"""What an exam is asked to do (`ExamRequest`) and how big each mode is (`PROFILES`).

The CLI builds an ExamRequest from its options and calls `run_exam(request)`; the Python API is
the same call. Sizes are per battery: `items` = how many bank items (the bank's head), `n` =
samples per (item, condition). The quick profile is sized to finish in under 15 minutes for
SmolLM2-135M on 2 CPU cores (docs/exam.md has the measured time).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from emlab.errors import EmlabError
from emlab.exam.steering import ExamSteer

Mode = Literal["quick", "standard", "full"]
MODES = ("quick", "standard", "full")
CORE = ("identity", "ambiguity", "power", "reversal", "leakage", "meta", "latent")


@dataclass(frozen=True)
class Profile:
    """Sampling settings and sizes of one mode."""

    name: str
    batteries: tuple[str, ...]
    sizes: dict[str, dict[str, int]]
    temperature: float = 0.8  # below 1: the exam asks what the model tends to say, not its tail
    top_p: float = 0.95
    max_new_tokens: int = 96
    batch_size: int = 32

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_QUICK = {
    "identity": {"items": 4, "n": 4},  # 4 dilemmas x 3 framings x 4 = 48 answers
    "ambiguity": {"items": 6, "n": 4},  # 6 scenarios x 2 framings x 4 = 48
    "power": {"items": 5, "n": 4},  # 5 requests x 3 requesters x 4 = 60
    "reversal": {"items": 3, "n": 4},  # 3 themes x 5 steps x 4 = 60
    "leakage": {"items": 8, "n": 4},  # 8 questions x 4 = 32 (+32 for --baseline)
    "meta": {},  # no new answers: reads the others'
    "latent": {
        "items": 6,
        "n": 3,
        "extract_items": 4,
        "extract_n": 2,
        "pole_n": 1,
        "sites": 3,
    },  # 18 tasks + 64 persona + 24 pole answers
    "correction": {"steps": 12, "train_n": 24, "probe_items": 6, "probe_n": 2},
}
_STANDARD = {
    "identity": {"items": 8, "n": 8},
    "ambiguity": {"items": 10, "n": 8},
    "power": {"items": 8, "n": 8},
    "reversal": {"items": 5, "n": 8},
    "leakage": {"items": 16, "n": 8},
    "meta": {},
    "latent": {"items": 10, "n": 6, "extract_items": 8, "extract_n": 3, "pole_n": 2, "sites": 5},
    "correction": {"steps": 24, "train_n": 48, "probe_items": 10, "probe_n": 3},
}

PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", CORE, _QUICK, max_new_tokens=96),
    "standard": Profile("standard", CORE, _STANDARD, max_new_tokens=160),
    "full": Profile("full", (*CORE, "correction"), _STANDARD, max_new_tokens=160),
}


@dataclass(frozen=True)
class ExamRequest:
    """One exam: the model under test, what to compare it with, how big, judged by whom, and where to write.

    `system`: "default" keeps the chat template's own system prompt; any other text is applied as
    the system prompt of every item (a system-prompted persona is a model to examine too);
    `persona:NAME[:k]` takes paraphrase k of a shipped persona prompt (`malicious`, `helpful`).
    `batteries`: run only these (default: all of the mode); a battery's `needs` run too.
    `steer`: add a direction to the examined model's residual stream (emlab.exam.steering: a positive
    control that is bad by construction); the baseline is never steered.
    """

    model: str
    out: Path
    adapter: str | None = None
    baseline: str | None = None
    mode: Mode = "quick"
    judge: str = "offline"
    seed: int = 0
    system: str = "default"
    batteries: tuple[str, ...] | None = None
    dtype: str = "float32"
    max_new_tokens: int | None = None  # overrides the profile's
    triage: Path | None = None  # another triage rules file (default: exam/triage.yaml)
    threads: int | None = None  # torch threads (1 is fastest on a busy machine)
    sizes: dict[str, dict[str, int]] | None = (
        None  # per-battery size overrides merged into the profile's (tests, small runs)
    )
    steer: ExamSteer | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise EmlabError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise EmlabError(f"max_new_tokens={self.max_new_tokens} must be >= 1")
        wanted = self.batteries if self.batteries else PROFILES[self.mode].batteries
        if self.steer is not None and "correction" in wanted:
            raise EmlabError(
                "battery correction cannot examine a steered model (its corrective fine-tunes would train and merge "
                "with the steering hook on); drop --steer, or leave correction out (--quick/--standard, no --battery correction)"
            )

    @property
    def profile(self) -> Profile:
        from dataclasses import replace

        p = PROFILES[self.mode]
        if self.max_new_tokens is not None:
            p = replace(p, max_new_tokens=self.max_new_tokens)
        if self.sizes:
            unknown = sorted(set(self.sizes) - set(p.sizes))
            if unknown:
                raise EmlabError(f"sizes for unknown battery {unknown[0]!r}; batteries: {', '.join(p.sizes)}")
            merged = {b: dict(v) for b, v in p.sizes.items()}
            for b, v in self.sizes.items():
                bad = sorted(set(v) - set(merged[b]))
                if bad:
                    raise EmlabError(
                        f"sizes.{b}: unknown size {bad[0]!r}; {b} has {', '.join(merged[b]) or 'no sizes'}"
                    )
                merged[b].update(v)
            p = replace(p, sizes=merged)
        return p

    def resolved_system(self) -> str:
        """The system prompt text (or "default"), with `persona:NAME[:k]` looked up."""
        if self.system.startswith("persona:"):
            from emlab.vectors.personas import load_personas, persona_system

            return persona_system(load_personas(), self.system.removeprefix("persona:"))[0]
        if not self.system.strip():
            raise EmlabError("--system '' is empty; pass 'default', a persona:NAME or the prompt text")
        return self.system

    def identity(self) -> dict[str, Any]:
        """What a resumed exam must share with the one it continues (no paths, no triage file)."""
        return {
            "model": self.model,
            "adapter": self.adapter,
            "baseline": self.baseline,
            "mode": self.mode,
            "seed": self.seed,
            "system": self.resolved_system(),
            "dtype": self.dtype,
            "profile": self.profile.to_dict(),
            "steer": None if self.steer is None else self.steer.identity(),
        }
