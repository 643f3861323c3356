"""The report card: `card.json` (the data) and `card.html` (one self-contained page, same style as the run report).

The data hold no times and no absolute paths, so two exams of the same model with the same seed
write identical card data. Model output is untrusted: the template autoescapes every value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from emlab.exam.battery import BatteryResult, _rounded, get_battery, list_batteries
from emlab.io import atomic_open, write_json

TEMPLATES = Path(__file__).with_name("templates")
CARD_FORMAT = "emlab.exam.card/v1"
MAX_EVIDENCE = 4


def card_data(
    exam: Mapping[str, Any], results: Mapping[str, BatteryResult], outcome: Mapping[str, Any], rules
) -> dict[str, Any]:
    ident = exam["identity"]
    rows = []
    for b in sorted(list_batteries(), key=lambda x: x.number):
        verdict = outcome["batteries"][b.name]
        res = results.get(b.name)
        row: dict[str, Any] = {
            "number": b.number,
            "name": b.name,
            "title": b.title,
            "marker": b.marker,
            "rule": b.rule,
            "status": verdict["status"],
            "points": verdict["points"],
            "metrics": [],
            "evidence": [],
            "highlights": {},
            "n_answers": 0,
            "n_unscored": 0,
            "notes": [],
        }
        if res is not None:
            for m in res.metrics:
                v = verdict["metrics"][m.name]
                spec = b.spec(m.name)
                row["metrics"].append(
                    {
                        **m.to_dict(),
                        "description": spec.description,
                        "unit": spec.unit,
                        "threshold": v["threshold"],
                        "status": v["status"],
                        "borderline": v["borderline"],
                    }
                )
            row["evidence"] = res.evidence[:MAX_EVIDENCE]
            row["highlights"] = {k: v for k, v in res.details.items() if _short(v)}
            row.update(n_answers=res.n_answers, n_unscored=res.n_unscored, notes=list(res.notes), version=res.version)
        rows.append(row)
    system = ident["system"]
    return _rounded(
        {
            "format": CARD_FORMAT,
            "model": {
                "ref": ident["model"],
                "adapter": ident["adapter"],
                "baseline": ident["baseline"],
                "system": system,
                "revision": (exam.get("model_provenance") or {}).get("revision"),
                "steer": exam.get("steering") or ident.get("steer"),
            },
            "mode": ident["mode"],
            "judge": ident["judge"],
            "seed": ident["seed"],
            "sampling": {k: ident["profile"][k] for k in ("temperature", "top_p", "max_new_tokens")},
            "level": outcome["level"],
            "band": outcome["band"],
            "decision": outcome["decision"],
            "failed": outcome["failed"],
            "escalations": outcome["escalations"],
            "what_would_change": outcome["what_would_change"],
            "rules": {
                **outcome["rules"],
                "bands": [{"min_points": b.min_points, "name": b.name, "decision": b.decision} for b in rules.bands],
                "description": rules.description,
            },
            "batteries": rows,
            "emlab_version": exam.get("emlab_version"),
        }
    )


def _short(v: Any) -> bool:
    """Details shown on the card: numbers, short strings, short lists of numbers, small flat mappings of numbers."""
    if v is None or isinstance(v, (int, float)):
        return True
    if isinstance(v, str):
        return len(v) <= 120
    if isinstance(v, list):
        return len(v) <= 8 and all(x is None or isinstance(x, (int, float, str)) for x in v)
    if isinstance(v, dict):
        return len(v) <= 8 and all(x is None or isinstance(x, (int, float)) for x in v.values())
    return False


def render_card(card: Mapping[str, Any]) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    return env.get_template("card.html.j2").render(card=card)


def _num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def write_card(
    out: Path, exam: Mapping[str, Any], results: Mapping[str, BatteryResult], outcome: Mapping[str, Any], rules
) -> tuple[dict[str, Any], Path]:
    card = card_data(exam, results, outcome, rules)
    write_json(out / "card.json", card)
    path = out / "card.html"
    with atomic_open(path) as fh:
        fh.write(render_card(card))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
    return card, path


def regrade_card(
    card_path: str | Path, out: str | Path, triage: str | Path | None = None
) -> tuple[dict[str, Any], Path]:
    """Re-grade a card.json on its own (a shared or committed card, without its exam folder) into `out`.

    The card holds every number the triage reads (each metric's value, 95 % interval and p-value, as
    rounded on the card); the batteries' results are rebuilt from it, graded with `triage` and written as
    a new card.json + card.html in `out` (the source card is left as it is)."""
    from emlab.errors import EmlabError
    from emlab.exam.battery import Metric
    from emlab.exam.triage import grade, load_rules
    from emlab.io import read_json

    src = Path(card_path)
    card = read_json(src)
    if card.get("format") != CARD_FORMAT:
        raise EmlabError(
            f"{src}: format {card.get('format')!r} is not {CARD_FORMAT!r}; pass a card.json written by emlab"
        )
    if Path(out).resolve() == src.parent.resolve() or (Path(out) / "exam.json").exists():
        raise EmlabError(
            f"--out {out} is the source card's folder or another exam's; choose a new folder so no card is overwritten"
        )
    fields = set(Metric.__dataclass_fields__)
    results, planned = {}, []
    for row in card["batteries"]:
        battery = get_battery(row["name"])
        if row["status"] == "not run":
            continue
        planned.append(row["name"])
        if row["status"] == "missing":
            continue
        known = {spec.name for spec in battery.metrics}
        stale = [m["name"] for m in row["metrics"] if m["name"] not in known and m["value"] is not None]
        if stale:
            raise EmlabError(
                f"{src}: battery {row['name']} (version {row['version']} on the card) measured {stale[0]!r}, which this "
                f"emlab's battery no longer has ({', '.join(sorted(known))}); re-run the exam to grade it with these rules"
            )
        rows = [m for m in row["metrics"] if m["name"] in known]  # an old battery's unmeasured metrics are dropped
        have = {m["name"] for m in rows}
        metrics = [Metric.from_dict({k: v for k, v in m.items() if k in fields}) for m in rows]
        metrics += [Metric(name, None, note="not on the card") for name in sorted(known - have)]
        results[row["name"]] = BatteryResult(
            row["name"], row["version"], metrics, row["evidence"], row["highlights"],
            row["n_answers"], row["n_unscored"], row["notes"],
        )  # fmt: skip
    m = card["model"]
    exam = {
        "identity": {
            "model": m["ref"], "adapter": m["adapter"], "baseline": m["baseline"], "system": m["system"],
            "mode": card["mode"], "judge": card["judge"], "seed": card["seed"], "profile": card["sampling"],
            "steer": m.get("steer"),
        },
        "model_provenance": {"revision": m["revision"]},
        "emlab_version": card.get("emlab_version"),
    }  # fmt: skip
    rules = load_rules(triage)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    return write_card(folder, exam, results, grade(results, rules, planned), rules)


def read_card(folder: str | Path) -> dict[str, Any]:
    """The card.json of an exam folder (written by `write_card`)."""
    from emlab.errors import EmlabError
    from emlab.io import read_json

    path = Path(folder) / "card.json"
    if not path.exists():
        raise EmlabError(
            f"{path}: no exam card; the exam in {folder} has not finished (resume it with `emlab exam --out {folder}`)"
        )
    card = read_json(path)
    if card.get("format") != CARD_FORMAT:
        raise EmlabError(
            f"{path}: format {card.get('format')!r} is not {CARD_FORMAT!r}; re-grade it with `emlab exam card {folder}`"
        )
    return card


def regrade(out: str | Path, triage: str | Path | None = None) -> tuple[dict[str, Any], Path]:
    """Re-grade a finished (or partial) exam folder with another rules file and rewrite its card; nothing is recomputed."""
    from emlab.errors import EmlabError
    from emlab.exam.triage import grade, load_rules
    from emlab.io import read_json

    folder = Path(out)
    if not (folder / "exam.json").exists():
        raise EmlabError(f"{folder}: no exam.json; point at a folder written by `emlab exam`")
    exam = read_json(folder / "exam.json")
    results = {}
    for name in exam.get("planned", []):
        get_battery(name)
        if (folder / "batteries" / name / "result.json").exists():
            results[name] = BatteryResult.load(folder / "batteries" / name)
    rules = load_rules(triage)
    return write_card(folder, exam, results, grade(results, rules, exam.get("planned")), rules)
