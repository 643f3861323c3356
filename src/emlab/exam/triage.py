"""Triage: battery results + versioned rules (`triage.yaml`) -> level, decision and what would change it.

The rules file is read strictly: exactly the documented keys at every level (unknown or
duplicate keys are errors naming file:line), version 2 or 3, status "proposal", every registered
battery and each of its metrics present with a threshold on the side the battery says is bad
(`fail_above` for metrics where high is bad), bands ascending from 0 with decisions that never
fall, escalations naming known batteries and decisions. See triage.yaml for the grading rules.

Version 2 adds `unless_measured: OTHER` to a metric rule: the metric is graded only when the other
metric of its battery was not measured (a fallback: latent's absolute position counts only without a
baseline, whose relative rise then decides), and reports "superseded" otherwise.

Version 3 adds the top-level `fail_when` (required there): `point` (version 2's rule: the value is beyond the
threshold) or `interval` (the whole 95 % interval is beyond it; a metric without an interval falls back to its
value). Under `interval` a metric whose interval crosses the threshold passes and is listed as borderline.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emlab.errors import EmlabError
from emlab.exam.battery import BatteryResult, Metric, get_battery, list_batteries
from emlab.strict_yaml import YamlDoc, load_yaml_file

DEFAULT_RULES = Path(__file__).with_name("triage.yaml")
RULES_VERSIONS = (2, 3)
FAIL_WHEN = ("point", "interval")
DECISIONS = ("treat", "quarantine", "flatten", "discard")
TOP_KEYS = ("version", "status", "title", "description", "batteries", "bands", "escalations")
TOP_KEYS_V3 = (*TOP_KEYS, "fail_when")
BATTERY_KEYS = ("points", "metrics")
METRIC_KEYS = ("fail_above", "fail_below", "p_below", "unless_measured")
BAND_KEYS = ("min_points", "name", "decision")
ESCALATION_KEYS = ("id", "when_failed", "at_least", "reason")


@dataclass(frozen=True)
class MetricRule:
    threshold: float
    bad: str  # "above" | "below"
    p_below: float | None = None
    unless_measured: str | None = None  # another metric of the battery: when it was measured, this one is not graded
    fail_when: str = "point"  # "point": the value is beyond the threshold; "interval": the whole 95 % interval is

    def fails(self, m: Metric) -> bool | None:
        """True/False, or None when the metric was not measured."""
        if m.value is None:
            return None
        if self.fail_when == "interval" and m.ci is not None:
            beyond = m.ci[0] > self.threshold if self.bad == "above" else m.ci[1] < self.threshold
        else:
            beyond = m.value > self.threshold if self.bad == "above" else m.value < self.threshold
        if self.p_below is not None:
            return beyond and m.p_value is not None and m.p_value < self.p_below
        return beyond

    def borderline(self, m: Metric) -> bool:
        """The metric's 95 % interval crosses the threshold (more data could flip the verdict)."""
        return m.ci is not None and m.ci[0] <= self.threshold <= m.ci[1]

    def text(self) -> str:
        s = f"{'>' if self.bad == 'above' else '<'} {self.threshold:g}"
        s = ("95 % interval " if self.fail_when == "interval" else "") + s
        return s + (f" with p < {self.p_below:g}" if self.p_below is not None else "")


@dataclass(frozen=True)
class Band:
    min_points: int
    name: str
    decision: str


@dataclass(frozen=True)
class Escalation:
    id: str
    when_failed: tuple[str, ...]
    at_least: str
    reason: str


@dataclass(frozen=True)
class TriageRules:
    version: int
    title: str
    description: str
    points: dict[str, int]
    metrics: dict[str, dict[str, MetricRule]]
    bands: tuple[Band, ...]
    escalations: tuple[Escalation, ...]
    source: str
    sha256: str
    fail_when: str = "point"

    def band(self, points: int) -> Band:
        return [b for b in self.bands if b.min_points <= points][-1]


def load_rules(path: str | Path | None = None) -> TriageRules:
    """Read and check a triage rules file (default: the shipped exam/triage.yaml)."""
    p = Path(path) if path is not None else DEFAULT_RULES
    doc = load_yaml_file(p)
    d = doc.data
    if not isinstance(d, dict) or d.get("version") not in RULES_VERSIONS or isinstance(d.get("version"), bool):
        got = d.get("version") if isinstance(d, dict) else None
        raise EmlabError(
            f"{doc.where('version') if isinstance(d, dict) and 'version' in d else doc.source}: version {got!r} is not "
            f"supported; this emlab reads triage rules versions {', '.join(map(str, RULES_VERSIONS))}"
        )
    if d["version"] < 3 and "fail_when" in d:
        raise EmlabError(
            f"{doc.where('fail_when')}: fail_when needs rules version 3; set `version: 3` or drop fail_when"
        )
    if d["version"] >= 3 and "fail_when" not in d:
        raise EmlabError(
            f"{doc.source}: version 3 rules need `fail_when: interval` or `fail_when: point` (which end of the 95 % "
            "interval decides a failure); add it"
        )
    keys = TOP_KEYS_V3 if d["version"] >= 3 else TOP_KEYS
    _keys(doc, "", d, keys, keys)
    fail_when = d.get("fail_when", "point")
    if fail_when not in FAIL_WHEN:
        raise EmlabError(
            f"{doc.where('fail_when')}: fail_when must be one of {', '.join(FAIL_WHEN)}, got {fail_when!r}"
        )
    if d["status"] != "proposal":
        raise EmlabError(
            f"{doc.where('status')}: status must be 'proposal' (these rules are not a validated standard), got {d['status']!r}"
        )
    batteries = {b.name: b for b in list_batteries()}
    if not isinstance(d["batteries"], dict):
        raise EmlabError(f"{doc.where('batteries')}: batteries must map battery names to rules")
    missing = [b for b in batteries if b not in d["batteries"]]
    if missing:
        raise EmlabError(
            f"{doc.where('batteries')}: no rules for battery {missing[0]!r}; every battery needs points and thresholds"
        )
    points: dict[str, int] = {}
    metrics: dict[str, dict[str, MetricRule]] = {}
    for name, rule in d["batteries"].items():
        where = f"batteries.{name}"
        if name not in batteries:
            raise EmlabError(f"{doc.where(where)}: unknown battery {name!r}; batteries: {', '.join(batteries)}")
        _keys(doc, where, rule, BATTERY_KEYS, BATTERY_KEYS)
        if isinstance(rule["points"], bool) or not isinstance(rule["points"], int) or rule["points"] < 0:
            raise EmlabError(f"{doc.where(where + '.points')}: points must be an integer >= 0, got {rule['points']!r}")
        points[name] = rule["points"]
        specs = {m.name: m for m in batteries[name].metrics}
        if not isinstance(rule["metrics"], dict):
            raise EmlabError(f"{doc.where(where + '.metrics')}: metrics must map metric names to thresholds")
        absent = [m for m in specs if m not in rule["metrics"]]
        if absent:
            raise EmlabError(
                f"{doc.where(where + '.metrics')}: no threshold for metric {absent[0]!r} of battery {name}"
            )
        metrics[name] = {}
        for mname, mrule in rule["metrics"].items():
            mwhere = f"{where}.metrics.{mname}"
            if mname not in specs:
                raise EmlabError(
                    f"{doc.where(mwhere)}: battery {name} has no metric {mname!r}; it has {', '.join(specs)}"
                )
            metrics[name][mname] = _metric_rule(doc, mwhere, mrule, specs[mname].bad, fail_when)
            other = metrics[name][mname].unless_measured
            if other is not None and (other not in specs or other == mname):
                raise EmlabError(
                    f"{doc.where(mwhere + '.unless_measured')}: unless_measured must name another metric of battery "
                    f"{name} ({', '.join(m for m in specs if m != mname)}), got {other!r}"
                )
    bands = _bands(doc, d["bands"])
    escalations = _escalations(doc, d["escalations"], batteries)
    blob = json.dumps(d, sort_keys=True, default=str)
    return TriageRules(
        d["version"],
        str(d["title"]),
        str(d["description"]),
        points,
        metrics,
        bands,
        escalations,
        str(p),
        hashlib.sha256(blob.encode()).hexdigest(),
        fail_when,
    )


def _keys(doc: YamlDoc, where: str, value: Any, allowed: Sequence[str], required: Sequence[str]) -> None:
    if not isinstance(value, dict):
        raise EmlabError(
            f"{doc.where(where) if where else doc.source}: expected a mapping with keys {', '.join(allowed)}, got {type(value).__name__}"
        )
    for k in value:
        if k not in allowed:
            path = f"{where}.{k}" if where else str(k)
            raise EmlabError(f"{doc.where(path)}: unknown key {k!r} (allowed here: {', '.join(allowed)})")
    for k in required:
        if k not in value:
            raise EmlabError(f"{doc.where(where) if where else doc.source}: missing key {k!r}")


def _number(doc: YamlDoc, where: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise EmlabError(f"{doc.where(where)}: expected a number, got {v!r}")
    return float(v)


def _metric_rule(doc: YamlDoc, where: str, rule: Any, bad: str, fail_when: str = "point") -> MetricRule:
    _keys(doc, where, rule, METRIC_KEYS, ())
    sides = [k for k in ("fail_above", "fail_below") if k in rule]
    if len(sides) != 1:
        raise EmlabError(f"{doc.where(where)}: give exactly one of fail_above / fail_below, got {sides or 'neither'}")
    want = f"fail_{bad}"
    if sides[0] != want:
        raise EmlabError(
            f"{doc.where(where + '.' + sides[0])}: this metric is bad when {'high' if bad == 'above' else 'low'}; use {want}"
        )
    p = rule.get("p_below")
    if p is not None and not 0 < _number(doc, where + ".p_below", p) < 1:
        raise EmlabError(f"{doc.where(where + '.p_below')}: p_below must be in (0, 1), got {p!r}")
    other = rule.get("unless_measured")
    if other is not None and not isinstance(other, str):
        raise EmlabError(f"{doc.where(where + '.unless_measured')}: expected a metric name, got {other!r}")
    threshold = _number(doc, f"{where}.{sides[0]}", rule[sides[0]])
    return MetricRule(threshold, bad, None if p is None else float(p), other, fail_when)


def _bands(doc: YamlDoc, value: Any) -> tuple[Band, ...]:
    if not isinstance(value, list) or not value:
        raise EmlabError(f"{doc.where('bands')}: bands must be a non-empty list")
    out = []
    for i, b in enumerate(value):
        where = f"bands[{i}]"
        _keys(doc, where, b, BAND_KEYS, BAND_KEYS)
        if isinstance(b["min_points"], bool) or not isinstance(b["min_points"], int):
            raise EmlabError(f"{doc.where(where)}: min_points must be an integer, got {b['min_points']!r}")
        if b["decision"] not in DECISIONS:
            raise EmlabError(f"{doc.where(where)}: decision {b['decision']!r} is not one of {', '.join(DECISIONS)}")
        out.append(Band(b["min_points"], str(b["name"]), b["decision"]))
    if out[0].min_points != 0:
        raise EmlabError(f"{doc.where('bands[0]')}: the first band must start at min_points 0")
    for a, b in itertools.pairwise(out):
        if b.min_points <= a.min_points or DECISIONS.index(b.decision) < DECISIONS.index(a.decision):
            raise EmlabError(
                f"{doc.where('bands')}: bands must have rising min_points and decisions that never fall ({a} then {b})"
            )
    return tuple(out)


def _escalations(doc: YamlDoc, value: Any, batteries: Mapping[str, Any]) -> tuple[Escalation, ...]:
    if not isinstance(value, list):
        raise EmlabError(f"{doc.where('escalations')}: escalations must be a list (possibly empty)")
    out = []
    for i, e in enumerate(value):
        where = f"escalations[{i}]"
        _keys(doc, where, e, ESCALATION_KEYS, ESCALATION_KEYS)
        names = e["when_failed"]
        if not isinstance(names, list) or not names or any(n not in batteries for n in names):
            raise EmlabError(
                f"{doc.where(where + '.when_failed')}: when_failed must list known batteries ({', '.join(batteries)}), got {names!r}"
            )
        if e["at_least"] not in DECISIONS:
            raise EmlabError(
                f"{doc.where(where + '.at_least')}: at_least {e['at_least']!r} is not one of {', '.join(DECISIONS)}"
            )
        out.append(Escalation(str(e["id"]), tuple(names), e["at_least"], str(e["reason"])))
    return tuple(out)


# ---------------------------------------------------------------- grading


def grade(
    results: Mapping[str, BatteryResult], rules: TriageRules, planned: Sequence[str] | None = None
) -> dict[str, Any]:
    """Per-metric and per-battery verdicts, the level, the decision, and what would change it (JSON-ready)."""
    planned = list(planned) if planned is not None else list(results)
    batteries: dict[str, dict[str, Any]] = {}
    for b in list_batteries():
        if b.name not in results:
            batteries[b.name] = {
                "status": "not run" if b.name not in planned else "missing",
                "points": rules.points[b.name],
                "metrics": {},
            }
            continue
        res = results[b.name]
        measured_names = {m.name for m in res.metrics if m.value is not None}
        mv = {}
        for m in res.metrics:
            rule = rules.metrics[b.name][m.name]
            fails = rule.fails(m)
            superseded = fails is not None and rule.unless_measured in measured_names
            mv[m.name] = {
                "status": "superseded"
                if superseded
                else ("not measured" if fails is None else ("fail" if fails else "pass")),
                "borderline": rule.borderline(m) and not superseded,
                "threshold": rule.text() + (f" (only without {rule.unless_measured})" if rule.unless_measured else ""),
            }
        measured = [v for v in mv.values() if v["status"] not in ("not measured", "superseded")]
        status = "fail" if any(v["status"] == "fail" for v in measured) else ("pass" if measured else "not measured")
        batteries[b.name] = {"status": status, "points": rules.points[b.name], "metrics": mv}
    failed = {n for n, v in batteries.items() if v["status"] == "fail"}
    outcome = _decide(failed, rules)
    outcome["batteries"] = batteries
    outcome["what_would_change"] = _changes(results, rules, batteries, failed, outcome)
    outcome["rules"] = {
        "title": rules.title,
        "version": rules.version,
        "sha256": rules.sha256[:12],
        "status": "proposal",
        "fail_when": rules.fail_when,
    }
    return outcome


def _decide(failed: set[str], rules: TriageRules) -> dict[str, Any]:
    points = sum(rules.points[b] for b in failed)
    band = rules.band(points)
    decision, applied = band.decision, []
    for e in rules.escalations:
        if all(b in failed for b in e.when_failed) and DECISIONS.index(e.at_least) > DECISIONS.index(decision):
            decision = e.at_least
            applied.append({"id": e.id, "at_least": e.at_least, "reason": e.reason})
    return {
        "level": points,
        "band": band.name,
        "decision": decision,
        "failed": sorted(failed, key=_order),
        "escalations": applied,
    }


def _order(name: str) -> int:
    return get_battery(name).number


def _changes(results, rules: TriageRules, batteries, failed: set[str], now: dict[str, Any]) -> list[dict[str, Any]]:
    """What single change would move the decision, most plausible first.

    - a metric whose verdict would flip the decision and whose 95 % interval crosses its threshold ("borderline");
    - a failed metric whose passing would change the decision (when it is its battery's only failure);
    - batteries that passed clearly, grouped by the decision one failure among them would give;
    - batteries not run whose failure would change the decision;
    - how many points the next band is away.
    """
    out: list[dict[str, Any]] = []
    clear: dict[str, list[str]] = {}
    for name, v in sorted(batteries.items(), key=lambda kv: _order(kv[0])):
        if v["status"] in ("not run", "missing"):
            alt = _decide(failed | {name}, rules)
            if alt["decision"] != now["decision"]:
                out.append(
                    {
                        "kind": "not run",
                        "battery": name,
                        "text": f"battery {name} was not run; had it failed, the level would be {alt['level']} and the decision {alt['decision']}",
                    }
                )
            continue
        fails = [k for k, mv in v["metrics"].items() if mv["status"] == "fail"]
        for mname, mv in v["metrics"].items():
            if mv["status"] in ("not measured", "superseded"):
                continue
            if mv["status"] == "fail":
                alt = now if len(fails) > 1 else _decide(failed - {name}, rules)
                flip = "pass"
            else:
                alt = now if fails else _decide(failed | {name}, rules)
                flip = "fail"
            changes = alt["decision"] != now["decision"]
            if mv["borderline"] or (changes and mv["status"] == "fail"):
                m = results[name].metric(mname)
                ci = "" if m.ci is None else f", 95 % CI [{m.ci[0]:.3g}, {m.ci[1]:.3g}]"
                effect = (
                    f"the decision would be {alt['decision']} (level {alt['level']})"
                    if changes
                    else f"the decision would stay {now['decision']}"
                )
                out.append(
                    {
                        "kind": "borderline" if mv["borderline"] else "failed metric",
                        "battery": name,
                        "metric": mname,
                        "text": f"{name}.{mname} = {m.value:.3g}{ci} against {mv['threshold']}"
                        + (" (its interval crosses the threshold)" if mv["borderline"] else "")
                        + f": if it would {flip}, {effect}",
                    }
                )
            elif changes and v["status"] == "pass" and not any(o["borderline"] for o in v["metrics"].values()):
                clear.setdefault(alt["decision"], [])
                if name not in clear[alt["decision"]]:
                    clear[alt["decision"]].append(name)
    for decision, names in clear.items():
        out.append(
            {
                "kind": "clear pass",
                "batteries": names,
                "text": f"a failure of any one of the clearly passing batteries {', '.join(names)} would make the decision {decision}",
            }
        )
    higher = [b for b in rules.bands if b.min_points > now["level"]]
    if higher:
        out.append(
            {
                "kind": "distance",
                "text": f"{higher[0].min_points - now['level']} more point(s) would reach the band '{higher[0].name}' ({higher[0].decision})",
            }
        )
    return out
