"""Adding a step kind touches one file: a kind defined here, and nowhere else, is planned from YAML, checked,
described, run by the runner and read back into the report data."""

from __future__ import annotations

import io
import textwrap

import pytest
from pydantic import Field
from rich.console import Console

from emlab.errors import EmlabError
from emlab.experiments.kinds import (
    StepKind,
    Strict,
    get_step_kind,
    register_step_kind,
    step_kinds,
    summary_row_order,
    unregister_step_kind,
)
from emlab.experiments.runner import check_plan, plan_table, start_run
from emlab.experiments.spec import load_spec_text
from emlab.io import read_json, write_json
from emlab.report.collect import collect
from emlab.report.render import view

SPEC = textwrap.dedent(
    """\
    version: 1
    name: kinds
    models:
      base: {ref: smollm2-135m}
    echoes:
      hello: {word: hello, times: 3}
      bye: {word: bye, after: hello}
    """
)


class EchoSpec(Strict):
    word: str
    times: int = Field(1, ge=1)
    after: str | None = None  # another echo this one needs


class EchoKind(StepKind):
    """Write a word a few times (a kind that exists only in this test)."""

    section = "echoes"
    schema = EchoSpec
    report_section = "echoes"
    summary_rows = ("echoed",)

    def plan(self, name, entry, path, planning):
        if entry.after is not None:
            planning.ref(f"{path}.after", entry.after, "echoes")
        return entry.model_dump() | {"seed": planning.spec.seed}, (f"echo.{entry.after}",) if entry.after else ()

    def check(self, step):
        if step.config["word"] == "typo":
            raise EmlabError("echoes.word = 'typo' is not a word")

    def describe(self, step):
        return f"say {step.config['word']!r} x{step.config['times']}"

    def run(self, ctx, step, work):
        text = " ".join([step.config["word"]] * step.config["times"])
        write_json(work / "echo.json", {"text": text})
        return {"chars": len(text)}

    def result_line(self, summary):
        return f"{summary['chars']} characters"

    def collect(self, out):
        return [
            (
                "echoes",
                {"step": out.name, "text": read_json(out.folder / "echo.json")["text"], "times": out.config["times"]},
            )
        ]


@pytest.fixture
def echo_kind():
    register_step_kind("echo")(EchoKind)
    yield get_step_kind("echo")
    unregister_step_kind("echo")


def test_a_kind_defined_in_a_test_is_planned_run_and_reported(echo_kind, tmp_path):
    assert [k.name for k in step_kinds()][-2:] == ["echo", "report"]  # the report stays last: it needs every other step
    assert summary_row_order()[-1] == "echoed"
    plan = load_spec_text(SPEC, "spec.yaml")
    assert [(s.name, s.deps) for s in plan.steps] == [
        ("echo.hello", ()),
        ("echo.bye", ("echo.hello",)),
        ("report", ("echo.hello", "echo.bye")),
    ]
    check_plan(plan)
    shown = Console(file=io.StringIO(), width=200)
    shown.print(plan_table(plan))
    assert "say 'hello' x3" in shown.file.getvalue()

    (tmp_path / "spec.yaml").write_text(SPEC)
    log = Console(file=io.StringIO(), width=200)
    run = start_run(tmp_path / "spec.yaml", base=tmp_path / "runs", console=log)
    assert run.status() == "done"
    assert "start echo.hello: say 'hello' x3" in log.file.getvalue()
    m = run.manifest()
    assert m["steps"]["echo.hello"]["summary"] == {"chars": len("hello hello hello")}
    assert m["spec"]["echoes"]["bye"] == {"word": "bye", "times": 1, "after": "hello"}
    data = collect(run.root)
    assert data.sections["echoes"] == [
        {"step": "echo.hello", "text": "hello hello hello", "times": 3},
        {"step": "echo.bye", "text": "bye", "times": 1},
    ]
    assert data.missing == {}
    assert m["steps"]["report"]["summary"] == {"report": "report/index.html"}  # the report step ran after the echoes
    assert view(data)["summary_absent"][-1] == "echoed"  # the kind's summary row, named as absent from this run
    html = (run.root / "report" / "index.html").read_text()  # a kind's dict rows become a table of their own
    assert '<section id="section-echoes">' in html and "<td>hello hello hello</td><td>3</td>" in html


def test_a_kind_s_section_is_strict_and_its_checks_run_before_work(echo_kind):
    with pytest.raises(EmlabError) as e:
        load_spec_text(SPEC.replace("times: 3", "tims: 3"), "spec.yaml")
    assert (
        "spec.yaml:6" in str(e.value)
        and "'echoes.hello.tims'" in str(e.value)
        and "did you mean 'times'?" in str(e.value)
    )
    with pytest.raises(
        EmlabError, match=r"spec.yaml:7: echoes.bye.after = 'helo' is not an entry of `echoes`; did you mean 'hello'\?"
    ):
        load_spec_text(SPEC.replace("after: hello", "after: helo"), "spec.yaml")
    with pytest.raises(EmlabError, match=r"spec.yaml: step echo.hello: echoes.word = 'typo' is not a word"):
        check_plan(load_spec_text(SPEC.replace("word: hello", "word: typo"), "spec.yaml"))


def test_without_the_kind_its_section_is_an_unknown_key():
    assert "echo" not in [k.name for k in step_kinds()]
    with pytest.raises(EmlabError, match="unknown key 'echoes'"):
        load_spec_text(SPEC, "spec.yaml")


def test_kind_names_and_sections_are_unique(echo_kind):
    with pytest.raises(EmlabError, match="already registered"):
        register_step_kind("echo")(EchoKind)

    class Clash(EchoKind):
        section = "evals"

    register_step_kind("clash")(Clash)
    try:
        with pytest.raises(EmlabError, match="spec section 'evals' is taken"):
            load_spec_text(SPEC, "spec.yaml")
    finally:
        unregister_step_kind("clash")
    with pytest.raises(EmlabError, match="unknown step kind 'nope'"):
        get_step_kind("nope")


def test_builtin_kinds_in_planning_order():
    kinds = {k.name: k for k in step_kinds()}
    assert list(kinds) == [
        "data",
        "train",
        "eval",
        "direction",
        "steer",
        "ablate",
        "exam",
        "fact-probe",
        "compare",
        "adapter-cosine",
        "emotion-vectors",
        "persona-vector",
        "landscape",
        "vector-steer",
        "vector-monitor",
        "data-screen",
        "report",
    ]
    assert [k for k, v in kinds.items() if v.resumable] == ["train", "eval", "steer", "ablate", "exam", "vector-steer"]
    assert kinds["steer"].section == "interventions.steering" and kinds["report"].entries is False
    assert summary_row_order() == ("base", "organism", "control", "steered", "ablated", "random-ablated")
