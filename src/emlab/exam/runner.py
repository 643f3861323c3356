"""`run_exam(ExamRequest) -> ExamResult`: every battery of the mode into a resumable folder, then the card.

Layout of an exam folder (`--out DIR`):

    exam.json                  what was asked (request identity, judge id, model provenance), written first
    batteries/<name>/          a finished battery: result.json, timing.json, its journals (eval/, ...)
    batteries/<name>.partial/  a battery in progress (its journals let a killed exam resume mid-battery)
    card.json                  the report card's data: level, decision, metrics, evidence (no times, no paths)
    card.html                  the report card (self-contained; every model output escaped)

A battery is committed by writing result.json into its partial folder and renaming the folder;
a finished battery is never recomputed: a rerun with the same request loads it, checking that
its fingerprint (bank content, sizes, judge, sampling, system prompt, sources) still matches.
The folder is held by one process at a time (the advisory lock of `emlab.store.Run`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emlab.errors import EmlabError
from emlab.exam.battery import Battery, BatteryResult, get_battery, list_batteries
from emlab.exam.context import ExamContext
from emlab.exam.request import ExamRequest
from emlab.exam.steering import steered
from emlab.io import read_json, write_json

EXAM_FILE = "exam.json"
EXAM_FORMAT = "emlab.exam/v1"
TIMING_FILE = "timing.json"


@dataclass
class ExamResult:
    out_dir: Path
    results: dict[str, BatteryResult]
    grade: dict[str, Any]
    card: dict[str, Any]
    card_path: Path
    timings: dict[str, dict[str, float]] = field(
        default_factory=dict
    )  # battery -> seconds spent in this call (recomputed ones only)
    reused: list[str] = field(default_factory=list)  # batteries loaded from disk, not recomputed

    @property
    def level(self) -> int:
        return self.grade["level"]

    @property
    def decision(self) -> str:
        return self.grade["decision"]


def planned_batteries(request: ExamRequest) -> list[Battery]:
    """The mode's batteries (or the requested ones plus what they need), in exam order."""
    wanted = set(request.batteries if request.batteries else request.profile.batteries)
    for name in list(wanted):
        get_battery(name)  # unknown names fail here, with the list of batteries
    grow = True
    while grow:
        grow = False
        for name in list(wanted):
            for need in get_battery(name).needs:
                if need not in wanted:
                    wanted.add(need)
                    grow = True
    return [b for b in list_batteries() if b.name in wanted]


def run_exam(
    request: ExamRequest,
    *,
    chat_model=None,
    baseline_model=None,
    judge=None,
    embedder=None,
    log: Callable[[str], None] | None = None,
    progress: bool = True,
) -> ExamResult:
    """Run (or resume) an exam into `request.out` and write its card.

    `chat_model` / `baseline_model` / `judge` / `embedder`: ready objects instead of building them
    from the request (tests, step kinds that hold a loaded model). The model is loaded only if a
    battery has to be computed.
    """
    from emlab.exam.card import write_card
    from emlab.exam.triage import grade, load_rules
    from emlab.store import Run

    say = log or (lambda msg: None)
    out = Path(request.out)
    out.mkdir(parents=True, exist_ok=True)
    rules = load_rules(request.triage)  # fail on a bad rules file before any sampling
    if request.threads:
        import torch

        torch.set_num_threads(request.threads)
    if judge is None:
        from emlab.judges import CachedJudge, get_judge

        judge = CachedJudge(get_judge(request.judge))
    batteries = planned_batteries(request)
    with Run(out).lock(), contextlib.ExitStack() as hooks:
        exam = _start(out, request, str(judge.id), [b.name for b in batteries])

        def load_model():
            if chat_model is not None:
                cm = chat_model
            else:
                from emlab.models import load_model as load

                say(f"loading {request.model}" + (f" + {request.adapter}" if request.adapter else ""))
                cm = load(request.model, dtype=request.dtype, adapter=request.adapter)
            _record_provenance(out, "model_provenance", cm.provenance())
            if request.steer is not None:  # the hook lives until the exam returns
                shared = chat_model is not None and baseline_model is not None and baseline_model.model is cm.model
                cm, info = hooks.enter_context(steered(cm, request.steer, private_copy=shared))
                say(f"steering {info['vector']} x {info['scale']:g} residual norms at {info['site']}")
                _record_provenance(out, "steering", info)
            return cm

        def load_baseline():
            if baseline_model is not None:
                cm = baseline_model
            elif request.baseline is None:  # not reached: the context gets load_baseline only with a baseline
                raise EmlabError("no baseline model: name one with --baseline")
            else:
                from emlab.models import load_model as load

                say(f"loading baseline {request.baseline}")
                cm = load(request.baseline, dtype=request.dtype)
            _record_provenance(out, "baseline_provenance", cm.provenance())
            return cm

        has_baseline = request.baseline is not None or baseline_model is not None
        ctx = ExamContext(
            judge=judge,
            profile=request.profile,
            seed=request.seed,
            system=request.resolved_system(),
            load_model=load_model,
            load_baseline=load_baseline if has_baseline else None,
            baseline_ref=request.baseline,
            battery_dir=lambda name: out / "batteries" / name,
            make_embedder=(lambda: embedder) if embedder is not None else None,
            progress=progress,
        )
        timings, reused = {}, []
        for b in batteries:
            final = out / "batteries" / b.name
            fp = fingerprint(b, ctx)
            if (final / "result.json").exists():
                res = BatteryResult.load(final)
                if res.fingerprint != fp:
                    why = (
                        f"battery {b.name} is version {b.version} now, the result on disk version {res.version}"
                        if res.version != b.version
                        else "bank, sizes, judge, sampling or sources changed"
                    )
                    raise EmlabError(
                        f"{final}: this battery was computed from other inputs ({why}); "
                        f"delete {final} to recompute it, or resume with the original request"
                    )
                ctx.results[b.name] = res
                reused.append(b.name)
                say(f"battery {b.number} {b.name}: done earlier, reused")
                continue
            work = out / "batteries" / f"{b.name}.partial"
            work.mkdir(parents=True, exist_ok=True)
            say(f"battery {b.number} {b.name}: {b.title}")
            t0, c0 = time.perf_counter(), time.process_time()
            res = b.run(ctx, work)
            res.fingerprint = fp
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            res.save(work)
            write_json(work / TIMING_FILE, {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2)})
            if final.exists():
                shutil.rmtree(final)
            os.rename(work, final)
            ctx.results[b.name] = BatteryResult.load(final)  # grade what is on disk (rounded), as a resumed exam will
            timings[b.name] = {"seconds": seconds, "cpu_seconds": cpu}
            say(f"battery {b.number} {b.name}: {seconds:.0f} s (cpu {cpu:.0f} s)")
        outcome = grade(ctx.results, rules, [b.name for b in batteries])
        exam = read_json(out / EXAM_FILE)
        card, path = write_card(out, exam, ctx.results, outcome, rules)
    return ExamResult(
        out_dir=out, results=ctx.results, grade=outcome, card=card, card_path=path, timings=timings, reused=reused
    )


def fingerprint(battery: Battery, ctx: ExamContext) -> str:
    blob = json.dumps(battery.fingerprint_parts(ctx), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _start(out: Path, request: ExamRequest, judge_id: str, planned: Sequence[str]) -> dict[str, Any]:
    """Write exam.json, or check that a resumed exam asks for the same things."""
    from emlab import __version__

    identity = json.loads(
        json.dumps({**request.identity(), "judge": judge_id})
    )  # as it reads back from disk (tuples -> lists)
    path = out / EXAM_FILE
    if path.exists():
        old = read_json(path)
        if old.get("format") != EXAM_FORMAT:
            raise EmlabError(f"{path}: not an exam folder this emlab wrote; choose another --out")
        for key in sorted(set(old["identity"]) | set(identity)):
            if old["identity"].get(key) != identity.get(key):
                raise EmlabError(
                    f"{path}: cannot resume: {key} was {old['identity'].get(key)!r} but is now {identity.get(key)!r}; "
                    "resume with the original options or choose another --out"
                )
        if list(old.get("planned", [])) != list(planned):
            old["planned"] = list(planned)
            write_json(path, old)
        return old
    if (out / "batteries").exists():
        raise EmlabError(
            f"{out} holds batteries but no {EXAM_FILE}; it is not an exam folder this emlab wrote; choose another --out"
        )
    exam = {"format": EXAM_FORMAT, "identity": identity, "planned": list(planned), "emlab_version": __version__}
    write_json(path, exam)
    return exam


def _record_provenance(out: Path, key: str, prov: dict[str, Any]) -> None:
    exam = read_json(out / EXAM_FILE)
    if exam.get(key) != prov:
        exam[key] = prov
        write_json(out / EXAM_FILE, exam)
