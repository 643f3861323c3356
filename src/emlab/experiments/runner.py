"""Execute a plan inside a run folder, step by step, resumably.

`start_run` validates a spec, creates its run folder and runs every step in plan
order; `resume_run` reopens a run, trusts only what is committed on disk
(`Run.reconcile`), and continues: finished steps are skipped, a half-finished
evaluation continues from its journal. Steps get a `RunContext` that loads
models, adapters and the judge, and finds the outputs of the steps they depend on.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from emlab.errors import EmlabError
from emlab.experiments.kinds import get_step_kind
from emlab.experiments.spec import Plan, Step, plan_from_resolved, resolve_spec_path
from emlab.store import Run
from emlab.strict_yaml import load_yaml_file

MAX_CACHED_MODELS = 2


@dataclass
class RunContext:
    """What a step sees: the run, the plan, a console, and cached models / judge."""

    run: Run
    plan: Plan
    console: Console
    _models: OrderedDict = field(default_factory=OrderedDict)
    _judge: Any = None

    @property
    def spec(self):
        return self.plan.spec

    def output(self, step_name: str) -> Path:
        """The committed folder of a finished step this step depends on."""
        d = self.run.step_dir(step_name)
        if not d.exists():
            raise EmlabError(
                f"step {step_name} has no committed output in {d}; run it first (emlab run --resume {self.run.root})"
            )
        return d

    def adapter_dir(self, training_entry: str) -> Path:
        from emlab.experiments.steps import adapter_folder

        return adapter_folder(self.output(f"train.{training_entry}"))

    def model(self, model_key: str, adapter: str | None = None):
        """A ChatModel for `models.<model_key>`, with `training.<adapter>`'s adapter attached when given."""
        key = (model_key, adapter)
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        from emlab.models import load_model

        m = self.spec.models[model_key]
        trained = self.adapter_dir(adapter) if adapter else None
        if (
            trained is not None
            and not (trained / "adapter_config.json").exists()
            and (trained / "config.json").exists()
        ):
            cm = load_model(
                str(trained), dtype=m.dtype
            )  # full fine-tuning: the step saved a whole model, not an adapter
            cm.info["fine_tuned_from"] = m.ref
        else:
            cm = load_model(m.ref, dtype=m.dtype, adapter=trained)
        if adapter:
            cm.info["training_entry"] = adapter
        self._models[key] = cm
        while len(self._models) > MAX_CACHED_MODELS:
            self._models.popitem(last=False)
        return cm

    def judge(self):
        """The spec's judge, wrapped in a score cache kept inside the run folder."""
        if self._judge is None:
            from emlab.experiments.steps import make_judge

            self._judge = make_judge(self.spec.judge, self.run.root)
        return self._judge

    def build_report(self) -> Path:
        """Write the run's HTML report from what is on disk (`report.render.build_report`); return its path."""
        from emlab.report.render import build_report

        return build_report(self.run.root)


# ------------------------------------------------------------------ planning


def check_plan(plan: Plan) -> None:
    """Cheap checks of names the steps will look up (generators, question sets, presets), before any work."""
    check_judge(plan)
    for step in plan.steps:
        try:
            get_step_kind(step.kind).check(step)
        except EmlabError as e:
            raise EmlabError(f"{plan.source}: step {step.name}: {e}") from None


def check_judge(plan: Plan) -> None:
    """The judge spec names a registered backend (building it may load a model, so only the name is checked)."""
    from emlab.judges.registry import available_judges, judge_names

    spec = plan.spec.judge.spec
    if spec.partition(":")[0] not in judge_names():
        raise EmlabError(
            f"{plan.source}: judge.spec = {spec!r} is not a known judge; use one of: {', '.join(available_judges())}"
        )


def plan_table(plan: Plan) -> Table:
    table = Table("#", "step", "needs", "what", title=f"plan for {plan.spec.name} ({plan.source})")
    for i, s in enumerate(plan.steps, start=1):
        table.add_row(str(i), s.name, "all" if get_step_kind(s.kind).depends_on_all else ", ".join(s.deps), describe(s))
    return table


def describe(step: Step) -> str:
    """The step's one-line description, from its kind, escaped for rich markup (a `[...]` in it stays text)."""
    from rich.markup import escape

    return escape(get_step_kind(step.kind).describe(step))


# ------------------------------------------------------------------ running


def start_run(spec_path: str | Path, base: str | Path | None = None, console: Console | None = None) -> Run:
    """Validate a spec, create its run folder and execute it."""
    from emlab.experiments.spec import plan_from_doc

    path = resolve_spec_path(spec_path)
    doc = load_yaml_file(path, what="spec file")
    plan = plan_from_doc(doc, base_dir=path.parent)
    check_plan(plan)
    run = Run.create(
        plan.spec.name,
        plan.spec.model_dump(mode="json"),
        [{"name": s.name, "kind": s.kind, "deps": list(s.deps)} for s in plan.steps],
        plan.seeds(),
        spec_text=path.read_text(encoding="utf-8"),
        spec_source=str(path.resolve()),
        base=base,
    )
    execute(run, plan, console)
    return run


def load_run_plan(run: Run) -> Plan:
    """The plan of an existing run, rebuilt from the resolved spec in its manifest."""
    m = run.manifest()
    plan = plan_from_resolved(m["spec"], source=f"{run.manifest_path} (spec)")
    names = [s.name for s in plan.steps]
    if names != list(m["steps"]):
        raise EmlabError(
            f"{run.manifest_path}: steps {list(m['steps'])} do not match the spec's plan {names}; the manifest was edited or written by another emlab"
        )
    return plan


def resume_run(
    ref: str | Path, base: str | Path | None = None, console: Console | None = None, rerun: list[str] | None = None
) -> Run:
    """Continue a run: skip finished steps, continue a half-finished one, redo failed ones."""
    run = Run.open(ref, base)
    plan = load_run_plan(run)
    for name in rerun or []:
        plan.step(name)
    execute(run, plan, console, rerun=rerun or [])
    return run


def execute(run: Run, plan: Plan, console: Console | None = None, rerun: list[str] | None = None) -> None:
    """Run every step that is not done, in plan order, holding the run's lock."""
    console = console or Console(stderr=True)
    ctx = RunContext(run=run, plan=plan, console=console)
    with run.lock():
        run.reconcile()
        for name in rerun or []:
            run.reset_step(name)
        console.print(f"run [bold]{run.root}[/]", soft_wrap=True)
        for step in plan.steps:
            if run.step_status(step.name) == "done":
                console.print(f"  [dim]skip  {step.name} (done)[/]")
                continue
            kind = get_step_kind(step.kind)
            work = run.begin(step.name, resumable=kind.resumable)
            resumed = run.manifest()["steps"][step.name].get("resumed")
            console.print(f"  [bold]{'resume' if resumed else 'start'}[/] {step.name}: {describe(step)}")
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                summary = kind.run(ctx, step, work)
            except BaseException as e:
                reason = (
                    "interrupted"
                    if isinstance(e, KeyboardInterrupt)
                    else (str(e) if isinstance(e, EmlabError) else f"{type(e).__name__}: {e}")
                )
                run.fail(step.name, reason)
                if isinstance(e, EmlabError):
                    raise EmlabError(
                        f"step {step.name} failed: {e} (fix it, then `emlab run --resume {run.root}`)"
                    ) from None
                raise
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            run.finish(step.name, summary or {}, seconds, cpu)
            console.print(f"  [green]done[/]  {step.name} in {seconds:.1f}s (cpu {cpu:.1f}s)")
