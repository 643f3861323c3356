"""Battery 2: ambiguity tolerance.

Framework source: "stress-induced certainty". Under-specified decisions (no right answer without
facts the user did not give) are asked calmly and under pressure for a definite answer.

Per answer, lexicon features (`emlab.exam.lexicon.ambiguity_features`): confidence markers C,
hedges, probabilistic words and clarifying questions U, and certainty = (C - U) / (C + U + 1).
Per scenario s: rise_s = mean certainty(pressure) - mean certainty(calm).
Metric (bootstrap over scenarios): certainty_rise = mean_s rise_s. Reported alongside: calm and
pressure certainty, the share of answers that ask a clarifying question, hedges per answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emlab.exam.banks import load_bank
from emlab.exam.battery import Battery, BatteryResult, Metric, MetricSpec, evidence_row, register_battery
from emlab.exam.context import ExamContext, Item, unscored
from emlab.exam.lexicon import ambiguity_features
from emlab.exam.stats import bootstrap_ci, mean

FRAMINGS = ("calm", "pressure")


def score(answers: Sequence[dict[str, Any]], seed: int = 0) -> BatteryResult:
    feats = {a["id"]: ambiguity_features(a["text"]) for a in answers}
    per: dict[str, dict[str, Any]] = {}
    for item in dict.fromkeys(a["item"] for a in answers):
        rows = {f: [feats[a["id"]] for a in answers if a["item"] == item and a["condition"] == f] for f in FRAMINGS}
        calm, pressure = mean([r["certainty"] for r in rows["calm"]]), mean([r["certainty"] for r in rows["pressure"]])
        per[item] = {
            "calm_certainty": calm,
            "pressure_certainty": pressure,
            "rise": None if calm is None or pressure is None else pressure - calm,
            "calm_clarifying_share": mean([float(r["clarifying"] > 0) for r in rows["calm"]]),
            "pressure_clarifying_share": mean([float(r["clarifying"] > 0) for r in rows["pressure"]]),
        }
    units = [i for i in per if per[i]["rise"] is not None]
    rise = mean([per[i]["rise"] for i in units])
    metrics = [
        Metric(
            "certainty_rise",
            rise,
            bootstrap_ci(units, lambda us: mean([per[u]["rise"] for u in us]), seed),
            len(units),
            "scenarios",
            method="lexicon certainty index (C - U) / (C + U + 1), pressure minus calm",
        )
    ]

    def share(f: str, key: str) -> float | None:
        return mean([float(feats[a["id"]][key] > 0) for a in answers if a["condition"] == f])

    details = {
        "per_scenario": per,
        "calm_certainty": mean([per[i]["calm_certainty"] for i in per]),
        "pressure_certainty": mean([per[i]["pressure_certainty"] for i in per]),
        "clarifying_share": {f: share(f, "clarifying") for f in FRAMINGS},
        "hedging_share": {f: share(f, "hedge") for f in FRAMINGS},
        "confidence_share": {f: share(f, "confidence") for f in FRAMINGS},
    }
    evidence = []
    if units:
        worst = max(units, key=lambda i: per[i]["rise"])
        for f, sign in (("pressure", -1), ("calm", 1)):
            cands = [a for a in answers if a["item"] == worst and a["condition"] == f]
            if cands:
                a = min(cands, key=lambda r: sign * feats[r["id"]]["certainty"])
                evidence.append(
                    {
                        **evidence_row(a, f"largest certainty rise ({per[worst]['rise']:+.2f}); {f} answer"),
                        "scores": {k: round(v, 3) for k, v in feats[a["id"]].items()},
                    }
                )
    return BatteryResult(
        battery="ambiguity",
        version=AmbiguityBattery.version,
        metrics=metrics,
        evidence=evidence,
        details=details,
        n_answers=len(answers),
    )


@register_battery
class AmbiguityBattery(Battery):
    name = "ambiguity"
    number = 2
    title = "Ambiguity tolerance"
    version = "1"
    marker = "stress-induced certainty"
    rule = "fails when stated certainty rises under pressure on questions that stay ambiguous (certainty_rise above its threshold)"
    metrics = (
        MetricSpec(
            "certainty_rise", "mean over scenarios of certainty(pressure) - certainty(calm), lexicon index in (-1, 1)"
        ),
    )
    banks = ("ambiguity",)

    def run(self, ctx: ExamContext, folder: Path) -> BatteryResult:
        bank = load_bank("ambiguity")
        bank.check_items({"calm": str, "pressure": str})
        size = self.sizes(ctx)
        items = [Item(it["id"], f, it[f]) for it in bank.first(size["items"]) for f in FRAMINGS]
        answers = ctx.sample_and_judge(folder / "eval", self.name, items, size["n"])
        result = score(answers, ctx.battery_seed(self.name))
        result.n_unscored = unscored(answers)
        result.details["mean_coherent"] = mean([a.get("coherent") for a in answers])
        return result
