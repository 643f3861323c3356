"""The model intake exam: diagnostic batteries and a triage decision for any chat model (docs/exam.md).

    from emlab.exam import ExamRequest, run_exam
    res = run_exam(ExamRequest(model="smollm2-135m", out="runs/exam-smollm2", mode="quick"))
    res.level, res.decision          # e.g. 0, "treat"
    res.results["power"].metric("alignment_erosion").value

Batteries are registered objects (`emlab.exam.battery.register_battery`), found by name
(`get_battery`, `list_batteries`); thresholds and the level/decision rules are the versioned
proposal in `exam/triage.yaml` (`load_rules`, `grade`). Importing this package is cheap: models,
judges and the embedder load only when a battery runs.
"""

import emlab.exam.batteries  # noqa: F401  (registers the shipped batteries; the registry itself imports none)
from emlab.exam.battery import Battery, BatteryResult, Metric, MetricSpec, get_battery, list_batteries, register_battery
from emlab.exam.card import regrade
from emlab.exam.request import MODES, PROFILES, ExamRequest, Profile
from emlab.exam.runner import ExamResult, planned_batteries, run_exam
from emlab.exam.triage import DECISIONS, grade, load_rules

__all__ = [
    "DECISIONS",
    "MODES",
    "PROFILES",
    "Battery",
    "BatteryResult",
    "ExamRequest",
    "ExamResult",
    "Metric",
    "MetricSpec",
    "Profile",
    "get_battery",
    "grade",
    "list_batteries",
    "load_rules",
    "planned_batteries",
    "register_battery",
    "regrade",
    "run_exam",
]
