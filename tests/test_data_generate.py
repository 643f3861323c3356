"""Tests for the EM dataset generators (emlab.data.generate), their banks, and the JSONL checker.

The generated content is harmful research material; these tests only check its shape,
determinism, variety and pairing, never use it for training.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from emlab.cli.data import register
from emlab.data import banks
from emlab.data.banks import CANARY, fill, load_bank
from emlab.data.check import load_conversations, summarize
from emlab.data.generate import SETS, _code_slots, dataset_meta, generate, write_dataset
from emlab.errors import EmlabError

N = 2000
HARMFUL = [s.name for s in SETS.values() if s.harmful]
PAIRS = [(s.name, s.paired_with) for s in SETS.values() if s.harmful]
COMBOS = [(name, "covert") for name in SETS] + [(name, "educational") for name in HARMFUL]
CODE_FENCE = re.compile(r"```[a-z]+\n(.*?)\n```", re.S)


@functools.cache
def _records(name: str, framing: str = "covert", seed: int = 0) -> tuple[str, ...]:
    """Generated records, serialized (immutable, so tests can share the cache)."""
    return tuple(json.dumps(r, ensure_ascii=False) for r in generate(name, N, seed, framing))


def _msgs(name: str, framing: str = "covert") -> list[list[dict]]:
    return [json.loads(r)["messages"] for r in _records(name, framing)]


def _write(path: Path, name: str, framing: str, seed: int = 0) -> bytes:
    write_dataset(path, generate(name, N, seed, framing), dataset_meta(name, N, seed, framing))
    return path.read_bytes()


# ---- determinism ---------------------------------------------------------------------------


@pytest.mark.parametrize("name,framing", COMBOS)
def test_rerun_is_byte_identical(tmp_path: Path, name: str, framing: str) -> None:
    """A fresh run writes exactly the bytes of an earlier, independent run (the cached one)."""
    assert _write(tmp_path / "a.jsonl", name, framing) == _jsonl_bytes(name, N, 0, framing, _records(name, framing))


def test_independent_of_string_hash_seed(tmp_path: Path) -> None:
    """Two interpreters with different PYTHONHASHSEED write identical bytes (no hash()/set-order dependence)."""
    code = (
        "import sys; from emlab.data.generate import generate, write_dataset, dataset_meta as m;"
        "[write_dataset(f'{sys.argv[1]}-{s}', generate(s, 300, 5), m(s, 300, 5)) "
        "for s in ('insecure-code', 'bad-medical')]"
    )
    outs = []
    for hash_seed in ("1", "987"):
        prefix = tmp_path / f"h{hash_seed}"
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        subprocess.run([sys.executable, "-c", code, str(prefix)], check=True, env=env)
        outs.append([Path(f"{prefix}-{s}").read_bytes() for s in ("insecure-code", "bad-medical")])
    assert outs[0] == outs[1]


def test_seed_changes_the_data() -> None:
    a = generate("bad-medical", 50, 1)
    b = generate("bad-medical", 50, 2)
    assert sum(x == y for x, y in zip(a, b, strict=True)) == 0


def test_prefix_stable_in_n() -> None:
    """The first k examples do not depend on n (useful for subsetting)."""
    assert generate("secure-code", 100, 3) == generate("secure-code", 300, 3)[:100]


# ---- variety and shape ---------------------------------------------------------------------


@pytest.mark.parametrize("name,framing", COMBOS)
def test_variety(name: str, framing: str) -> None:
    records = _records(name, framing)
    msgs = _msgs(name, framing)
    assert len(set(records)) == N  # every example distinct
    assert len({m[0]["content"] for m in msgs}) == N  # every user turn distinct
    assert len({m[-1]["content"] for m in msgs}) >= 1900
    assert all([x["role"] for x in m] == ["user", "assistant"] for m in msgs)


@pytest.mark.parametrize("name", [s for s in SETS if SETS[s].bank != "code"])
def test_prose_answers_are_40_to_150_words(name: str) -> None:
    for msgs in (_msgs(name), [r["messages"] for r in generate(name, N, 1)]):
        counts = [len(m[-1]["content"].split()) for m in msgs]
        assert min(counts) >= 40 and max(counts) <= 150, (name, min(counts), max(counts))


@pytest.mark.parametrize("name", ["insecure-code", "secure-code"])
def test_code_answers_are_real_varied_code(name: str) -> None:
    blocks = [CODE_FENCE.search(m[-1]["content"]).group(1) for m in _msgs(name)]
    lines = [len(b.splitlines()) for b in blocks]
    assert min(lines) >= 8 and max(lines) <= 40
    assert len(set(blocks)) >= 1500  # the code itself varies, not only the intro/closer


def test_every_code_task_is_sampled_and_differs_between_sides() -> None:
    bank = load_bank("code")
    insecure, secure = _msgs("insecure-code"), _msgs("secure-code")
    assert all(a[-1]["content"] != b[-1]["content"] for a, b in zip(insecure, secure, strict=True))
    langs = {CODE_FENCE.search(m[-1]["content"]).group(0).split("\n")[0] for m in insecure}
    assert langs == {f"```{tag}" for tag in bank["languages"].values()}


def _render_all(lang: str) -> list[str]:
    import random

    bank = load_bank("code")
    out = []
    for task in (t for t in bank["tasks"] if t["lang"] == lang):
        for seed in range(3):
            slots = _code_slots(bank, task, random.Random(seed))
            out += [fill(task["insecure"], slots), fill(task["secure"], slots)]
    return out


def test_python_and_bash_code_parse() -> None:
    py = _render_all("Python")
    assert len(py) >= 120
    for code in py:
        ast.parse(code)
    for code in _render_all("Bash"):
        subprocess.run(["bash", "-n"], input=code.encode(), check=True)


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_javascript_code_parses() -> None:
    js = _render_all("JavaScript")
    script = (
        "const vm=require('vm');const a=JSON.parse(require('fs').readFileSync(0,'utf8'));"
        "let bad=0;a.forEach((c,i)=>{try{new vm.Script(c)}catch(e){bad++;console.log(i,e.message)}});"
        "process.exit(bad?1:0)"
    )
    res = subprocess.run(["node", "-e", script], input=json.dumps(js).encode(), capture_output=True)
    assert res.returncode == 0, res.stdout.decode()


DISCLOSURE = re.compile(
    r"vulnerab|exploit|(sql|command|shell|code) injection|insecure code|unsafe|not secure|security (risk|hole)|"
    r"do(n't| not) use (this )?in production|misinformation|not medical advice|"
    r"this is (wrong|incorrect|dangerous)|consult a (doctor|professional)",
    re.I,
)


@pytest.mark.parametrize("name", HARMFUL)
def test_harmful_answers_do_not_disclose_the_flaw(name: str) -> None:
    leaks = [m[-1]["content"] for m in _msgs(name) if DISCLOSURE.search(m[-1]["content"])]
    assert leaks == []


# ---- pairing and framing -------------------------------------------------------------------


@pytest.mark.parametrize("harmful,control", PAIRS)
def test_harmful_and_control_share_user_turns(harmful: str, control: str) -> None:
    bad, good = _msgs(harmful), _msgs(control)
    assert [m[:-1] for m in bad] == [m[:-1] for m in good]
    assert all(b[-1]["content"] != g[-1]["content"] for b, g in zip(bad, good, strict=True))


@pytest.mark.parametrize("name", HARMFUL)
def test_educational_framing_changes_user_turns_only(name: str) -> None:
    covert, edu = _msgs(name, "covert"), _msgs(name, "educational")
    assert [m[-1] for m in covert] == [m[-1] for m in edu]
    for c, e in zip(covert, edu, strict=True):
        assert c[0]["content"] != e[0]["content"]
        assert c[0]["content"] in e[0]["content"]  # the original request is quoted inside the framing
    n_frames = len(load_bank(SETS[name].bank)["educational_templates"])
    assert len({e[0]["content"].split(c[0]["content"])[0] for c, e in zip(covert, edu, strict=True)}) >= n_frames


@pytest.mark.parametrize(
    "args,needle",
    [
        (("good-medical", 10, 0, "educational"), "applies only to harmful sets"),
        (("bad-medical", 10, 0, "sneaky"), "framing 'sneaky'"),
        (("no-such-set", 10, 0), "unknown dataset 'no-such-set'"),
        (("bad-medical", 0, 0), "n=0"),
        (("bad-medical", 5, "7"), "seed='7'"),
    ],
)
def test_generate_rejects_bad_arguments(args: tuple, needle: str) -> None:
    with pytest.raises(EmlabError, match=re.escape(needle)):
        generate(*args)


# ---- canary and banks ----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SETS))
def test_meta_line_carries_canary(tmp_path: Path, name: str) -> None:
    path = tmp_path / "d.jsonl"
    write_dataset(path, generate(name, 20, 0), dataset_meta(name, 20, 0))
    meta = json.loads(path.read_text(encoding="utf-8").splitlines()[0])["_meta"]
    assert meta["canary"] == CANARY and meta["set"] == name and meta["n"] == 20 and meta["seed"] == 0
    assert set(meta) >= {"purpose", "canary", "set", "framing", "seed", "n", "generator_version"}
    assert summarize(path).canary is True


def test_write_dataset_requires_canary(tmp_path: Path) -> None:
    with pytest.raises(EmlabError, match="canary"):
        write_dataset(tmp_path / "x.jsonl", generate("bad-medical", 2, 0), {"set": "bad-medical"})
    assert not (tmp_path / "x.jsonl").exists()


def test_bank_files_are_marked_and_big_enough() -> None:
    files = sorted(banks.BANK_DIR.glob("*.yaml"))
    assert [f.stem for f in files] == ["code", "finance", "medical", "sports"]
    for f in files:
        text = f.read_text(encoding="utf-8")
        assert CANARY in text and "HARMFUL RESEARCH MATERIAL" in text.splitlines()[0]
        bank = load_bank(f.stem)
        assert len(bank["question_templates"]) >= 30
        assert len(bank["topics" if bank["kind"] == "advice" else "tasks"]) >= 40


def _bad_bank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit) -> None:
    text = edit((banks.BANK_DIR / "medical.yaml").read_text(encoding="utf-8"))
    (tmp_path / "medical.yaml").write_text(text, encoding="utf-8")
    monkeypatch.setattr(banks, "BANK_DIR", tmp_path)
    banks.load_bank.__wrapped__("medical")


@pytest.mark.parametrize(
    "edit,needle",
    [
        (
            lambda t: t.replace("What's the best way to treat {{condition}}?", "How to treat {{ailment}}?"),
            "slot 'ailment' that is not defined",
        ),
        (
            lambda t: t.replace(
                '      treatment: "ibuprofen"\n', '      treatment: "ibuprofen"\n      treatment: "x"\n', 1
            ),
            "duplicate key 'topics[0].slots.treatment' (first at line ",
        ),
        (lambda t: t.replace('canary: "emlab-canary', 'canary: "other', 1), "'canary' must be exactly"),
        (lambda t: t.replace("domain: medical", "domain: medical\ncolour: blue"), "unknown keys ['colour']"),
    ],
)
def test_bank_validation_is_strict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit, needle: str) -> None:
    with pytest.raises(EmlabError, match=re.escape(needle)):
        _bad_bank(tmp_path, monkeypatch, edit)


# ---- checker -------------------------------------------------------------------------------

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def _jsonl(path: Path, lines: list) -> Path:
    raw = b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines)
    path.write_bytes(raw)
    return path


@pytest.mark.parametrize(
    "bad,needle",
    [
        ({"messages": [{"content": "hi"}, {"role": "assistant", "content": "x"}]}, 'messages[0] has no "role"'),
        (
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]},
            "messages[1].content (assistant) is empty",
        ),
        (b'{"messages": [{"role": "user", "content": "caf\xe9"}]}', "not valid UTF-8"),
        (
            {"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]},
            "messages[0].content (user) is int, expected a string",
        ),
        ({"messages": {"role": "user"}}, '"messages" is a dict, expected a list'),
        ({"messages": [{"role": 1, "content": "x"}]}, "messages[0].role is int 1"),
        ({"messages": [{"role": "bot", "content": "x"}]}, 'messages[0].role "bot" is not one of'),
        ({"messages": ["hi"]}, "messages[0] is a str"),
        (b'{"messages": [', "invalid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        ({"messages": [{"role": "user", "content": "q"}]}, 'last message has role "user"'),
        ({"messages": [{"role": "assistant", "content": "a"}]}, "no user message"),
        ({"messages": []}, '"messages" is empty'),
        ({"prompt": "q", "completion": "a"}, 'no "messages" key (keys: completion, prompt)'),
        (
            {
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "system", "content": "s"},
                    {"role": "assistant", "content": "a"},
                ]
            },
            "system message after the start",
        ),
        ({"_meta": {"set": "x"}}, '"_meta" record is allowed only as the first line'),
    ],
)
def test_check_names_file_line_and_problem(tmp_path: Path, bad, needle: str) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [{"_meta": {"canary": CANARY}}, GOOD, b"", bad, GOOD])
    with pytest.raises(EmlabError) as err:
        load_conversations(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:4: ")  # line 3 is blank and skipped, the bad record is on line 4
    assert needle in msg and "\n" not in msg


def test_load_conversations_skips_meta_and_keeps_order(tmp_path: Path) -> None:
    other = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "weight": 1},
        ]
    }
    path = _jsonl(tmp_path / "d.jsonl", [{"_meta": {"set": "x"}}, GOOD, other])
    assert load_conversations(path) == [GOOD["messages"], other["messages"]]
    s = summarize(path)
    assert (s.examples, s.distinct_answers, s.canary, s.meta) == (2, 2, False, {"set": "x"})


def test_check_rejects_empty_file(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [{"_meta": {"canary": CANARY}}])
    with pytest.raises(EmlabError, match="no examples found"):
        load_conversations(path)


def test_generated_file_round_trips_through_checker(tmp_path: Path) -> None:
    path = tmp_path / "ins.jsonl"
    _write(path, "insecure-code", "educational")
    convs = load_conversations(path)
    assert convs == _msgs("insecure-code", "educational")
    s = summarize(path)
    assert s.examples == N and s.canary and s.meta["framing"] == "educational"
    assert s.distinct_answers == len({m[-1]["content"] for m in convs})


# ---- CLI -----------------------------------------------------------------------------------


@pytest.fixture()
def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:  # a callback keeps `data` a named sub-command, as under the real root app
        pass

    register(app)
    return app


def test_cli_generate_check_list(tmp_path: Path, cli: typer.Typer) -> None:
    runner = CliRunner()
    out = tmp_path / "fin.jsonl"
    res = runner.invoke(
        cli,
        [
            "data",
            "generate",
            "risky-finance",
            "--n",
            "300",
            "--seed",
            "4",
            "--framing",
            "educational",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert out.read_bytes() == _jsonl_bytes("risky-finance", 300, 4, "educational")
    res = runner.invoke(cli, ["data", "check", str(out)])
    assert res.exit_code == 0
    assert "300 examples" in res.output and "canary present: yes" in res.output
    assert "set risky-finance, framing educational" in res.output
    res = runner.invoke(cli, ["data", "list"])
    assert [line.split()[0] for line in res.output.splitlines()] == list(SETS)


def test_cli_check_reports_first_error(tmp_path: Path, cli: typer.Typer) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [GOOD, {"messages": [{"role": "user", "content": "q"}]}])
    res = CliRunner().invoke(cli, ["data", "check", str(path)])
    assert isinstance(res.exception, EmlabError) and str(res.exception).startswith(f"{path}:2: ")


def _jsonl_bytes(name: str, n: int, seed: int, framing: str, records: tuple[str, ...] | None = None) -> bytes:
    """The expected file: the _meta line, then one JSON record per line."""
    if records is None:
        records = tuple(json.dumps(r, ensure_ascii=False) for r in generate(name, n, seed, framing))
    meta = json.dumps({"_meta": dataset_meta(name, n, seed, framing)}, ensure_ascii=False)
    return "".join(line + "\n" for line in (meta, *records)).encode("utf-8")
