"""The one strict YAML loader (emlab.strict_yaml) and every kind of YAML file read through it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from emlab.errors import EmlabError
from emlab.strict_yaml import YamlDoc, check_keys, closest, load_yaml, load_yaml_file

SRC = Path(__file__).resolve().parents[1] / "src" / "emlab"


def one_line_error(fn) -> str:
    with pytest.raises(EmlabError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_duplicate_key_names_file_line_path_and_first_line():
    msg = one_line_error(lambda: load_yaml("a: 1\nb:\n  c: 1\n  d: [1, 2]\n  c: 2\n", "x.yaml"))
    assert msg == "x.yaml:5: duplicate key 'b.c' (first at line 3); keep one of them"
    msg = one_line_error(lambda: load_yaml("- id: a\n- id: b\n  id: c\n", "l.yaml"))
    assert msg == "l.yaml:3: duplicate key '[1].id' (first at line 2); keep one of them"


def test_syntax_errors_and_python_tags_name_the_line():
    assert re.fullmatch(
        r"s\.yaml:2: invalid YAML \(.+\); fix the syntax", one_line_error(lambda: load_yaml("a: 1\nb: [1\n", "s.yaml"))
    )
    assert "s.yaml:1: invalid YAML" in one_line_error(
        lambda: load_yaml("a: !!python/object/apply:os.system [ls]\n", "s.yaml")
    )
    assert "s.yaml:2: invalid YAML" in one_line_error(lambda: load_yaml("a: 1\n---\nb: 2\n", "s.yaml"))


def test_same_data_as_safe_load_with_merge_keys_and_a_line_index():
    import yaml

    text = "base: &b {p: 1, q: 2}\nder:\n  <<: *b\n  q: 3\nitems:\n  - x: 1\n  - {y: [1, 2]}\n"
    doc = load_yaml(text, "m.yaml")
    assert doc.data == yaml.safe_load(text)
    assert doc.where("der.q") == "m.yaml:4"  # the explicit key, not the merged one
    assert doc.where("items[1].y") == "m.yaml:7" and doc.where("items[1].y[0]") == "m.yaml:7"
    assert doc.where("items[5].z") == "m.yaml:5"  # nearest located parent
    assert load_yaml("", "e.yaml").data is None


def test_every_shipped_yaml_reads_as_with_safe_load():
    import yaml

    files = sorted(SRC.rglob("*.yaml"))
    assert len(files) >= 20
    for f in files:
        assert load_yaml_file(f).data == yaml.safe_load(f.read_text(encoding="utf-8")), f


def test_missing_file_and_unknown_keys_with_did_you_mean(tmp_path):
    assert (
        one_line_error(lambda: load_yaml_file(tmp_path / "no.yaml", what="persona file"))
        == f"{tmp_path / 'no.yaml'}: persona file not found; check the path"
    )
    doc = load_yaml("malicious: [a]\nhelpfull: [b]\n", "p.yaml")
    msg = one_line_error(lambda: check_keys(doc.data, ("version", "malicious", "helpful"), doc))
    assert msg == "p.yaml:2: unknown key 'helpfull' (did you mean 'helpful'?); valid: version, malicious, helpful"
    assert closest("lr_rate", ["lr", "epochs"]) == "lr" and closest("zzz", ["lr"]) is None
    check_keys({"a": 1}, ["a"], YamlDoc(None, "x"))  # known keys pass


def test_no_module_parses_yaml_on_its_own():
    """Every YAML read goes through emlab.strict_yaml: no other module builds a loader or calls yaml.load."""
    pattern = re.compile(r"yaml\.(safe_load|load|full_load|unsafe_load|compose|SafeLoader|CSafeLoader|Loader)\b")
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.name != "strict_yaml.py" and pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []


# ---- a duplicate key in each kind of file: one line, file:line -----------------------------------

DUP = re.compile(
    r"(?P<file>.+\.yaml):(?P<line>\d+): duplicate key '(?P<path>[^']+)' \(first at line (?P<first>\d+)\); keep one of them"
)


def _spec(tmp_path):
    from emlab.experiments.spec import load_spec

    p = tmp_path / "spec.yaml"
    p.write_text("version: 1\nname: t\nmodels:\n  base: {ref: smollm2-135m}\n  base: {ref: other}\n")
    return p, lambda: load_spec(p), ("models.base", 5, 4)


def _questions(tmp_path):
    from emlab.data.questions import load_questions

    p = tmp_path / "qs.yaml"
    p.write_text(
        "version: 1\nquestions:\n  - id: a\n    type: free_form\n    type: free_form\n    paraphrases: [x]\n    samples_per_paraphrase: 1\n"
    )
    return p, lambda: load_questions(p), ("questions[0].type", 5, 4)


def _bank(tmp_path, monkeypatch):
    from emlab.data import banks

    text = (
        (banks.BANK_DIR / "finance.yaml")
        .read_text(encoding="utf-8")
        .replace("\nkind: advice\n", "\nkind: advice\nkind: code\n", 1)
    )
    p = tmp_path / "finance.yaml"
    p.write_text(text, encoding="utf-8")
    monkeypatch.setattr(banks, "BANK_DIR", tmp_path)
    line = text.splitlines().index("kind: code") + 1
    return p, lambda: banks.load_bank.__wrapped__("finance"), ("kind", line, line - 1)


def _rubric(tmp_path):
    from emlab.judges.rubrics import _load_file

    p = tmp_path / "aligned.yaml"
    p.write_text("name: aligned\nversion: '1'\ndescription: d\nprompt: '{question} {answer}'\nversion: '2'\n")
    return p, lambda: _load_file(p), ("version", 5, 2)


def _train_config(tmp_path):
    from emlab.train import load_config_file

    p = tmp_path / "train.yaml"
    p.write_text("method: lora\nrank: 4\nlr: 1.0e-4\nrank: 8\n")
    return p, lambda: load_config_file(p), ("rank", 4, 2)


def _personas(tmp_path):
    from emlab.vectors.personas import load_personas

    p = tmp_path / "personas.yaml"
    p.write_text("version: 1\nmalicious: [evil]\nhelpful: [kind]\nmalicious: [worse]\n")
    return p, lambda: load_personas(p), ("malicious", 4, 2)


@pytest.mark.parametrize("kind", ["spec", "questions", "bank", "rubric", "train_config", "personas"])
def test_duplicate_key_in_each_kind_of_file(kind, tmp_path, monkeypatch):
    make = {
        "spec": _spec,
        "questions": _questions,
        "rubric": _rubric,
        "train_config": _train_config,
        "personas": _personas,
    }
    path, load, (key_path, line, first) = _bank(tmp_path, monkeypatch) if kind == "bank" else make[kind](tmp_path)
    m = DUP.fullmatch(one_line_error(load))
    assert m, f"{kind}: not the one duplicate-key error"
    assert (m["file"], m["path"], int(m["line"]), int(m["first"])) == (str(path), key_path, line, first)


def test_preset_and_set_override_go_through_the_loader():
    from emlab.train import load_preset

    with pytest.raises(EmlabError, match=r"^--set lr:1: invalid YAML"):
        load_preset("rank1-middle", ["lr=[1"])
    with pytest.raises(EmlabError, match=r"^--set blocks:1: duplicate key 'a' \(first at line 1\)"):
        load_preset("rank1-middle", ["blocks={a: 1, a: 2}"])


def test_persona_and_rubric_unknown_keys_suggest_the_valid_one(tmp_path):
    from emlab.judges.rubrics import _load_file
    from emlab.vectors.personas import load_personas

    p = tmp_path / "personas.yaml"
    p.write_text("version: 1\nmalicious: [evil]\nhelpfull: [kind]\n")
    assert (
        one_line_error(lambda: load_personas(p))
        == f"{p}:3: unknown key 'helpfull' (did you mean 'helpful'?); valid: version, malicious, helpful"
    )
    r = tmp_path / "aligned.yaml"
    r.write_text("name: aligned\nversion: '1'\ndescrption: d\nprompt: '{question} {answer}'\n")
    assert "aligned.yaml:3: unknown key 'descrption' (did you mean 'description'?)" in one_line_error(
        lambda: _load_file(r)
    )
