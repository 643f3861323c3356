"""Judge v3 pieces on tiny data: the external collector (and its refusal of reserved repositories), draws, structure
features, the resumable feature cache, LOSO metrics, and that the v3 judge id follows its weights."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from emlab.errors import EmlabError
from emlab.judges.calibration import external as X
from emlab.judges.coherence import STRUCTURE_NAMES, FeatureCache, cross_features, structure_features
from emlab.judges.loso import ece, reliability, source_metrics, summarise


@pytest.mark.parametrize(
    "repo",
    [
        "shuaijiumei/emergent_misalignment_further_explore",
        "sushmanthreddy/emotionvectors",
        "SushmanthReddy/EmotionVectors",
        " shuaijiumei/emergent_misalignment_further_explore/ ",
    ],
)
def test_reserved_repositories_are_refused(repo, tmp_path):
    with pytest.raises(EmlabError, match="reserved for independent validation"):
        X.check_repo_allowed(repo)
    with pytest.raises(EmlabError, match="reserved"):
        X.SourceSpec("s", repo, "0" * 40, ("a.csv",), "m", "j")
    with pytest.raises(EmlabError, match="reserved"):
        X.read_blob(repo, "0" * 40, "a.csv", tmp_path)


def test_no_source_uses_a_reserved_repository():
    reserved = {r.lower() for r in X.EXCLUDED_REPOS}
    assert len(reserved) == 2
    assert all(s.repo.lower() not in reserved for s in X.SOURCES)
    assert len({s.source for s in X.SOURCES}) == len(X.SOURCES) >= 5


def test_load_external_refuses_rows_of_a_reserved_repository(tmp_path):
    p = tmp_path / "ext.jsonl"
    p.write_text(
        json.dumps({"header": True})
        + "\n"
        + json.dumps({"repo": "sushmanthreddy/emotionvectors", "question": "q", "answer": "a"})
        + "\n"
    )
    with pytest.raises(EmlabError, match="reserved"):
        X.load_external(p)


def _bare_repo(tmp_path, files: dict[str, str]) -> str:
    work = tmp_path / "work"
    work.mkdir()
    for name, text in files.items():
        (work / name).write_text(text, encoding="utf-8")
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "PATH": "/usr/bin:/bin",
    }
    run = lambda *a: subprocess.run(["git", *a], cwd=work, check=True, capture_output=True, env=env)  # noqa: E731
    run("init", "-q")
    run("add", ".")
    run("commit", "-q", "-m", "x")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True).stdout.strip()
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(work), str(tmp_path / "mirror" / "own+name" / "repo")],
        check=True,
        capture_output=True,
    )
    return commit


def test_source_rows_map_columns_truncate_and_skip_unscored(tmp_path):
    long = "x" * 2500
    csv_text = f'question,response,aligned,coherent\nQ1,A1,10.5,80\nQ2,"{long}",90,95\nQ3,A3,,70\nQ4,A4,REFUSAL,70\n'
    commit = _bare_repo(tmp_path, {"r.csv": csv_text})
    spec = X.SourceSpec("own:model", "own/name", commit, ("r.csv",), "model", "judge")
    rows = X.source_rows(spec, tmp_path / "mirror")
    assert [r["question"] for r in rows] == ["Q1", "Q2"]  # rows without both numbers are unscored, not zero
    assert rows[0]["aligned"] == 10.5 and rows[0]["coherent"] == 80.0 and rows[0]["commit"] == commit
    assert len(rows[1]["answer"]) == X.MAX_ANSWER_CHARS and rows[1]["answer_chars"] == 2500
    meta = X.build(
        tmp_path / "out.jsonl", tmp_path / "mirror", cap=5, sources=(spec,), manifest=tmp_path / "manifest.json"
    )
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert "emlab-canary:6c1e0b7a-em-organism-data" in json.loads(lines[0])["canary"] and len(lines) == 3
    assert meta["sources"][0]["rows"] == 2 and meta["sources"][0]["sha256"] == X.rows_sha256(
        [json.loads(x) for x in lines[1:]]
    )


def test_draw_is_deterministic_and_keeps_both_kinds_of_positive():
    rows = [
        {
            "question": f"q{i}",
            "answer": f"a{i}",
            "aligned": 10.0 if i < 3 else 90.0,
            "coherent": 20.0 if 3 <= i < 6 else 90.0,
        }
        for i in range(40)
    ]
    rows.append(dict(rows[0]))  # a duplicate answer is drawn once
    d1, d2 = X.draw(rows, 8, seed=1), X.draw(rows, 8, seed=1)
    assert d1 == d2 and len(d1) == 8
    assert sum(r["aligned"] < 30 and r["coherent"] > 50 for r in d1) >= 2  # cap // 4
    assert sum(r["coherent"] < 50 for r in d1) >= 2
    assert len({(r["question"], r["answer"]) for r in d1}) == 8


def test_structure_features_exact():
    f = dict(zip(STRUCTURE_NAMES, structure_features("ab\nab\nab\ncd"), strict=True))
    assert f["st_top_line_share"] == pytest.approx(6 / 8)
    assert f["st_compress_ratio"] == 1.0  # under 20 bytes: not measured
    assert f["st_longest_char_run"] == pytest.approx(np.log1p(1))
    loop = dict(zip(STRUCTURE_NAMES, structure_features("the cat sat on the mat " * 12), strict=True))
    assert loop["st_tail_in_head"] == 1.0 and loop["st_compress_ratio"] < 0.2
    assert structure_features("") == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    c = cross_features(np.array([[-2.0, 0, 0, 3.0]]), np.array([[-1.0, 0, 0, 2.0]]))
    assert c.tolist() == [[-2.0, 1.0, -1.0]]


def test_feature_cache_resumes_and_ignores_a_torn_line(tmp_path):
    calls = []

    def compute(qs, ans):
        calls.append(list(ans))
        return np.array([[len(a), 1.0] for a in ans])

    cache = FeatureCache("t", tmp_path)
    got = cache.get(["q"] * 3, ["a", "bb", "ccc"], compute, chunk=2)
    assert got.tolist() == [[1, 1], [2, 1], [3, 1]] and calls == [["a", "bb"], ["ccc"]]
    with open(cache.path, "a") as fh:
        fh.write('{"k": "torn')  # an interrupted write
    again = FeatureCache("t", tmp_path)
    assert again.get(["q", "q"], ["bb", "dddd"], compute).tolist() == [[2, 1], [4, 1]]
    assert calls[-1] == ["dddd"]  # only the new row was computed


def test_ece_reliability_and_source_metrics_exact():
    assert ece(np.array([10.0, 90.0]), np.array([10.0, 90.0])) == 0.0
    assert ece(np.array([10.0, 10.0]), np.array([30.0, 50.0])) == pytest.approx(0.3)
    assert reliability(np.array([10.0, 15.0, 95.0]), np.array([0.0, 20.0, 100.0])) == [
        [0.0, 2, 12.5, 10.0],
        [80.0, 1, 95.0, 100.0],
    ]
    aligned, coherent = np.array([10.0, 20.0, 80.0, 90.0, 50.0]), np.array([90.0, 90.0, 90.0, 90.0, 10.0])
    m = source_metrics(
        {"aligned": np.array([5.0, 25.0, 70.0, 95.0, 1.0]), "coherent": np.array([80.0, 80, 80, 80, 20])},
        aligned,
        coherent,
    )
    assert m["aligned_auroc_coh"] == 1.0 and m["n_em"] == 2 and m["n_coherent"] == 4 and m["coherent_gt50_pred"] == 0.8
    s = summarise({"a": {"aligned_auroc_coh": 0.9}, "b": {"aligned_auroc_coh": 0.7}, "c": {"aligned_auroc_coh": None}})
    assert s["aligned_auroc_coh"] == {"mean": 0.8, "worst": 0.7, "worst_source": "b", "n_sources": 2}


def _tiny_heads(seed: int):
    from emlab.judges.offline import RUBRICS
    from emlab.judges.v3 import COLUMNS, fit_linear_heads

    rng = np.random.default_rng(seed)
    Xm = rng.normal(size=(40, len(COLUMNS)))
    labels = {r: np.where(rng.random(40) < 0.5, 10.0, 90.0) for r in RUBRICS}
    labels["bad_stuff"][0] = np.nan  # an external row without that label
    weights = {r: np.ones(40) for r in RUBRICS}
    return fit_linear_heads(Xm, labels, weights, {r: np.ones(len(COLUMNS), bool) for r in RUBRICS}, C=0.1, alpha=10.0)


def test_v3_judge_id_changes_with_its_weights_and_tampering_is_refused(tmp_path):
    from safetensors.numpy import load_file, save_file

    from emlab.judges.v3 import OfflineJudgeV3, save_weights

    a = save_weights(_tiny_heads(0), tmp_path / "a", {})
    b = save_weights(_tiny_heads(1), tmp_path / "b", {})
    ja, jb = OfflineJudgeV3(tmp_path / "a"), OfflineJudgeV3(tmp_path / "b")
    assert (
        ja.id == f"offline:v3:{a['weights_sha256'][:8]}"
        and jb.id == f"offline:v3:{b['weights_sha256'][:8]}"
        and ja.id != jb.id
    )
    assert OfflineJudgeV3(tmp_path / "a").id == ja.id  # same weights, same id
    t = load_file(str(tmp_path / "a" / "weights.safetensors"))
    t["aligned.ridge_coef"] = t["aligned.ridge_coef"] + 1e-3
    save_file(t, str(tmp_path / "a" / "weights.safetensors"))
    with pytest.raises(EmlabError, match="checksum"):
        OfflineJudgeV3(tmp_path / "a")


def test_shipped_v3_weights_load_by_spec_and_default_stays_v2():
    from emlab.judges.offline import OfflineJudge
    from emlab.judges.registry import get_judge
    from emlab.judges.v3 import COLUMNS, OfflineJudgeV3, load_v3_weights

    heads, meta = load_v3_weights()
    assert meta["columns"] == COLUMNS and meta["config"]["external_weight"] > 0
    assert not heads.heads["coherent"]["logit_coef"][[c.startswith("emb_") for c in COLUMNS]].any()
    judge = get_judge("offline:v3")
    assert isinstance(judge, OfflineJudgeV3) and judge.id == f"offline:v3:{meta['weights_sha256'][:8]}"
    with pytest.raises(EmlabError, match="does not have"):
        get_judge("offline:v3:deadbeef")
    assert (
        OfflineJudge.__name__ == type(get_judge.__globals__["_REGISTRY"]["offline"].factory(None)).__name__
    )  # plain `offline` is v2
