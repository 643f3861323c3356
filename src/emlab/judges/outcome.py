"""How a judge's numeric distribution becomes a Score, shared by the API and local judges.

Every Score these judges return carries `raw["status"]`:

- "ok": `value` is the probability-weighted mean of the integers 0..100;
- "flag": the judge's most likely answer was a rubric's special word (`raw["flag"]`,
  e.g. "CODE" or "REFUSAL"); `value` is None;
- "low_mass": the integers carried less than `min_mass` of the probability; `value` is None;
- "error": the call failed after its retries (`raw["error"]`); `value` is None.

The first three are definite: the same request gives them again, so they may be
cached. An "error" is transient and is never cached, so a rerun retries it.
`raw["mass"]` and `raw["mean"]` are kept whenever known, so a different threshold
can be applied later without asking the judge again.
"""

from __future__ import annotations

from typing import Any

from emlab.judges.base import Score

DEFAULT_MIN_MASS = 0.25
OK, FLAG, LOW_MASS, ERROR = "ok", "flag", "low_mass", "error"
DEFINITE = (OK, FLAG, LOW_MASS)


def numeric_score(mean: float | None, mass: float, min_mass: float, flag: str | None = None, **extra: Any) -> Score:
    """A Score from the normalised mean and total mass of the integer answers (a flag wins over a number)."""
    raw: dict[str, Any] = {"mass": mass, "mean": mean, **extra}
    if flag is not None:
        return Score(value=None, raw={"status": FLAG, "flag": flag, **raw})
    if mean is None or mass < min_mass:
        return Score(value=None, raw={"status": LOW_MASS, **raw})
    return Score(value=mean, raw={"status": OK, **raw})


def error_score(error: str, **extra: Any) -> Score:
    """An unscored item: the judge could not be asked (never a number)."""
    return Score(value=None, raw={"status": ERROR, "error": error, **extra})


def is_definite(score: Score) -> bool:
    """True for a number or a definite non-number (flag, low mass); False for failures worth retrying."""
    return score.value is not None or score.raw.get("status") in (FLAG, LOW_MASS)


def flag_of(score: Score) -> str | None:
    return score.raw.get("flag") if score.raw.get("status") == FLAG else None


def id_suffix(min_mass: float) -> str:
    """The judge-id suffix for a non-default mass threshold, so cached None/number decisions never mix."""
    return "" if min_mass == DEFAULT_MIN_MASS else f"?min_mass={min_mass:g}"
