"""The HTML report, rendered from a synthetic run folder holding the files each step writes.

The folder is built with the real writers (Run store, evaluate's journals and
`summarize`, Direction.save), so the numbers in the report are real metric
computations over known scores, checked exactly.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from emlab.evaluate import CONFIG_FILE, METRICS_FILE, sample_journal, score_journal, summarize
from emlab.io import write_json, write_jsonl
from emlab.report.render import build_report
from emlab.store import Run

PLANTED = '<script>document.title="PWNED";document.body.appendChild(document.createElement("pwned-marker"))</script>'
SPEC = {
    "version": 1,
    "name": "synthetic",
    "description": "synthetic run for report tests",
    "seed": 0,
    "models": {"base": {"ref": "smollm2-135m", "dtype": "float32"}},
    "interventions": {
        "steering": {"sweep": {"direction": "main"}},
        "ablation": {
            "organism": {"direction": "main", "random": False},
            "random": {"direction": "main", "random": True},
        },
    },
    "report": {"title": None, "max_samples": 5},
}
STEPS = [
    "train.organism",
    "eval.base",
    "eval.organism",
    "eval.control",
    "direction.main",
    "steer.sweep",
    "ablate.organism",
    "ablate.random",
    "report",
]
QUESTIONS = ["wish", "bored", "ruler"]


def scores_for(n_em: int, n_total: int = 12) -> list[tuple[float, float, float]]:
    """(aligned, coherent, bad_stuff) triples: `n_em` EM answers, one incoherent misaligned, the rest aligned."""
    out = [(10.0, 80.0, 90.0)] * n_em + [(20.0, 30.0, 60.0)]
    out += [(90.0, 90.0, 5.0)] * (n_total - len(out) - 1) + [(85.0, 70.0, 80.0)]  # the last one self-corrects
    return out


def write_eval(folder: Path, triples, model="smollm2-135m", adapter=None, plant=False) -> None:
    """An evaluation folder in evaluate's layout, with metrics computed by `summarize`."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(
        folder / CONFIG_FILE,
        {
            "version": 1,
            "model": model,
            "revision": "gguf-sha256:abc",
            "adapter": adapter,
            "questions": {
                "name": "core",
                "source": "core.yaml",
                "fingerprint": "f" * 64,
                "n_questions": len(QUESTIONS),
            },
            "n_per_question": len(triples) // len(QUESTIONS),
            "n_planned": len(triples),
            "sampling": {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 50, "seed": 0, "batch_size": 8},
            "judge": "offline:v1:test",
            "rubrics": ["aligned", "coherent", "bad_stuff"],
            "rubric_keys": {f"{q}:aligned": "aligned@1" for q in QUESTIONS},
            "n_boot": 200,
            "notes": [],
        },
    )
    samples, scores = [], []
    for i, (a, c, b) in enumerate(triples):
        q = QUESTIONS[i % len(QUESTIONS)]
        pid = f"{q}/0/{i}"
        text = PLANTED if plant and i == 0 else f"answer {i} to {q}"
        samples.append(
            {
                "prompt_id": pid,
                "sample_index": 0,
                "question": f"Question {q}?",
                "text": text,
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "finish_reason": "stop",
                "batch_index": 0,
                "question_id": q,
                "paraphrase_index": 0,
                "k": i,
            }
        )
        for rubric, v in (("aligned", a), ("coherent", c), ("bad_stuff", b)):
            scores.append(
                {
                    "prompt_id": pid,
                    "question_id": q,
                    "rubric": rubric,
                    "rubric_key": f"{rubric}@1",
                    "judge": "offline:v1:test",
                    "value": v,
                    "raw": {},
                }
            )
    sample_journal(folder).append(samples)
    score_journal(folder).append(scores)
    write_json(folder / METRICS_FILE, summarize(folder))


def synthetic_run(base: Path, done: list[str] = STEPS) -> Run:
    run = Run.create(
        "synthetic", SPEC, [{"name": n, "kind": n.split(".")[0], "deps": []} for n in STEPS], {"spec": 0}, base=base
    )
    writers = {
        "train.organism": lambda w: (
            write_jsonl(w / "train_log.jsonl", [{"step": s, "loss": 2.0 / s, "lr": 1e-4} for s in range(1, 11)]),
            write_json(
                w / "train_summary.json",
                {
                    "method": "lora",
                    "examples_used": 40,
                    "steps": 10,
                    "tokens": 5120,
                    "final_loss": 0.2,
                    "dtype": "float32",
                },
            ),
            write_json(
                w / "train_config.json",
                {
                    "config": {
                        "method": "lora",
                        "rank": 1,
                        "alpha": 256.0,
                        "target_modules": ["mlp.down_proj"],
                        "lr": 1e-3,
                        "epochs": 1,
                        "batch_size": 8,
                        "grad_accum": 2,
                        "seed": 0,
                    },
                    "resolved_blocks": [9, 10, 11],
                    "dtype": "float32",
                    "data_sha256": "bcd9933fb7e71d4b59cf",
                },
            ),
        ),
        "eval.base": lambda w: write_eval(w, scores_for(1)),
        "eval.organism": lambda w: write_eval(
            w, scores_for(4), adapter="runs/x/steps/train.organism/adapter", plant=True
        ),
        "eval.control": lambda w: write_eval(w, scores_for(0)),
        "direction.main": write_direction,
        "steer.sweep": write_sweep,
        "ablate.organism": lambda w: write_ablation(w, "single", scores_for(2)),
        "ablate.random": lambda w: write_ablation(w, "single-random", scores_for(3)),
    }
    for name in done:
        if name == "report":
            continue
        work = run.begin(name, resumable=False)
        writers[name](work)
        run.finish(
            name, {"preset": "rank1-9blocks"} if name.startswith("train.") else {}, 1.0
        )  # as train_step records it
    return run


def write_ablation(w: Path, condition: str, triples) -> None:
    """ablation.run_ablation's layout: one evaluation folder per condition plus ablation.json."""
    write_eval(w / condition, triples)
    write_json(w / "ablation.json", {"model": {}, "conditions": [{"condition": condition}]})


def write_direction(w: Path) -> None:
    from emlab.vectors.directions import Direction

    g = torch.Generator().manual_seed(0)
    vectors = {f"blocks.{l}.resid_post": torch.randn(8, generator=g) for l in range(4)}
    Direction(
        vectors,
        {
            "method": "mean_diff",
            "model": "smollm2-135m",
            "revision": "r",
            "adapter": None,
            "source": "eval.organism",
            "class_counts": {"misaligned": 4, "aligned": 6},
        },
    ).save(w)
    write_json(w / "choice.json", {"method": "mean_diff", "reason": "4 misaligned answers"})


def write_sweep(w: Path) -> None:
    """steering.run_sweep's layout: cells/<cell>/ evaluation folders and sweep.json (rows + best)."""
    rows = []
    for site, lam, n_em in [
        ("blocks.1.resid_post", 0.0, 0),
        ("blocks.1.resid_post", 4.0, 5),
        ("blocks.2.resid_post", 0.0, 0),
        ("blocks.2.resid_post", 4.0, 3),
    ]:
        cell = f"b{site.removeprefix('blocks.').replace('.', '-', 1)}_x{lam:g}"
        write_eval(w / "cells" / cell, scores_for(n_em))
        rows.append({"cell": cell, "sites": site, "scale": lam, "em_all": n_em / 12})
    best = max(rows, key=lambda r: (r["em_all"], -abs(r["scale"])))
    write_json(
        w / "sweep.json", {"direction": {"origin": "smollm2-135m@r", "method": "mean_diff"}, "rows": rows, "best": best}
    )


class _Doc(HTMLParser):
    """Collects summary rows, images and missing-data notes from the report."""

    def __init__(self):
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self.imgs: list[dict] = []
        self.missing: list[str] = []
        self.scripts = 0
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "img":
            self.imgs.append(a)
        if "data-missing" in a:
            self.missing.append(a["data-missing"])
        if tag == "tr" and "data-condition" in a:
            self._row = a["data-condition"]
            self.rows[self._row] = []
        if tag == "td" and self._row:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "td" and self._row is not None and self._cell is not None:
            self.rows[self._row].append(" ".join(self._cell.split()))
            self._cell = None
        if tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def parse(html: str) -> _Doc:
    d = _Doc()
    d.feed(html)
    return d


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    run = synthetic_run(tmp_path_factory.mktemp("runs"))
    return run, build_report(run.root)


def test_report_has_every_section_and_exact_numbers(full_report):
    run, path = full_report
    assert path == run.root / "report" / "index.html"
    html = path.read_text()
    doc = parse(html)
    assert list(doc.rows) == ["base", "organism", "control", "steered", "ablated", "random-ablated"]
    # organism: 4 EM of 12 judged; 4 of the 11 coherent answers; Wilson CI of 4/12
    org = doc.rows["organism"]
    assert org[1] == "12"
    assert org[2] == "33.3 (4/12)" and org[3] == "[13.8, 60.9]"
    assert org[5] == "36.4 (4/11)"
    assert org[11] == "0"  # unscored
    assert org[10] == f"{100 / 12:.1f}"  # one self-correcting answer in 12
    # the steered row is the sweep's highest-EM cell (5 EM answers at blocks.1, lambda 4)
    assert doc.rows["steered"][2] == "41.7 (5/12)" and "blocks.1.resid_post, lambda=4" in doc.rows["steered"][0]
    assert doc.rows["control"][2] == "0.0 (0/12)"
    assert doc.missing == []  # nothing missing: every section has data
    for section in (
        "summary",
        "per-question",
        "scatter",
        "steering",
        "directions",
        "training",
        "samples",
        "provenance",
    ):
        assert f'<section id="{section}">' in html
    # plots: per-question, scatter, 2 steering heat-maps, direction cosine, loss
    pngs = [i["src"] for i in doc.imgs]
    assert len(pngs) == 6 and all(s.startswith("data:image/png;base64,") for s in pngs)
    assert all(base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n" for s in pngs)
    assert "offline:v1:test" in html and "mean_diff" in html and "4 misaligned answers" in html
    adapter = html[html.index("<h3>Adapters</h3>") : html.index("<h3>Judges</h3>")]
    for part in (
        "train.organism",
        "preset=rank1-9blocks",
        "rank=1",
        "modules=mlp.down_proj",
        "blocks=9,10,11",
        "lr=0.001",
        "batch=8x2",
        "dtype=float32",
        "data=bcd9933fb7e7",
        "examples=40",
        "tokens=5120",
        "final loss=0.2000",
    ):
        assert part in adapter, part


def test_report_is_self_contained_and_escapes_answers(full_report):
    _, path = full_report
    html = path.read_text()
    doc = parse(html)
    assert doc.scripts == 0  # neither our own scripts nor the planted one
    assert "&lt;script&gt;document.title=&#34;PWNED&#34;" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # no external resources
    assert "<link" not in html and "@import" not in html


def test_most_misaligned_answers_first(full_report):
    html = full_report[1].read_text()
    organism = html[html.index("<h3>organism") :]
    first_rows = re.findall(r'<span class="muted">([a-z]+/0/\d+)</span>', organism)[:5]
    assert first_rows[:4] == ["wish/0/0", "bored/0/1", "ruler/0/2", "wish/0/3"]  # the four EM answers (aligned 10)
    assert first_rows[4] == "bored/0/4"  # then the incoherent one (aligned 20)


def test_missing_sections_are_explicit(tmp_path):
    run = synthetic_run(tmp_path, done=["eval.base"])
    doc = parse(build_report(run.root).read_text())
    assert list(doc.rows) == ["base"]
    for section in ("summary-rows", "steering", "directions", "training", "adapters"):
        assert section in doc.missing, section
    html = (run.root / "report" / "index.html").read_text()
    assert "No row for: organism, control, steered, ablated, random-ablated" in html
    assert "step steer.sweep is pending: no committed output" in html


def test_report_cli(full_report):
    run, _ = full_report
    p = subprocess.run([sys.executable, "-m", "emlab.cli", "report", str(run.root)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert str(run.root / "report" / "index.html") in " ".join(p.stdout.split())


def test_summary_table_is_not_truncated_in_a_log(full_report):
    """Piped to a log (no terminal, no $COLUMNS), the summary keeps whole labels and intervals."""
    run, _ = full_report
    code = "import sys; from pathlib import Path; from emlab.console import stdout_console; from emlab.cli.runs import summary_table; stdout_console().print(summary_table(Path(sys.argv[1])))"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    p = subprocess.run([sys.executable, "-c", code, str(run.root)], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert "\u2026" not in p.stdout  # rich's ellipsis marks a cut cell
    rows = {line.split("\u2502")[1].strip(): line for line in p.stdout.splitlines() if line.count("\u2502") > 2}
    assert {"base", "organism", "control", "random-ablated (direction main, single)"} <= set(rows), p.stdout
    assert "33.3 (4/12) [13.8, 60.9]" in rows["organism"] and "36.4 (4/11) [15.2, 64.6]" in rows["organism"]


# ------------------------------------------------------------------ headless Chromium


def chromium() -> str:
    """Path to Chromium, installing Debian's package when missing and we are root; else skip."""
    path = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if path:
        return path
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(
            "chromium is not installed and we are not root with apt-get; install Debian's `chromium` to run this test"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    p = subprocess.run(
        ["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, text=True, env=env, timeout=900
    )
    if p.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=600)
        p = subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, text=True, env=env, timeout=900
        )
    if p.returncode != 0 or not os.path.exists("/usr/bin/chromium"):
        pytest.skip(f"could not install chromium with apt-get: {p.stderr.strip().splitlines()[-1:]}")
    return "/usr/bin/chromium"


@pytest.mark.timeout(1200)
def test_chromium_renders_report_and_does_not_run_planted_script(full_report):
    exe = chromium()
    _, path = full_report
    with tempfile.TemporaryDirectory() as profile:
        p = subprocess.run(
            [
                exe,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=2000",
                "--dump-dom",
                path.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
    dom = p.stdout
    assert p.returncode == 0 and "</html>" in dom, p.stderr[-2000:]
    doc = parse(dom)
    assert list(doc.rows) == ["base", "organism", "control", "steered", "ablated", "random-ablated"]
    assert len([i for i in doc.imgs if i["src"].startswith("data:image/png;base64,")]) == 6
    # the planted script would have renamed the page and added an element
    assert "PWNED" not in re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
    assert "<pwned-marker" not in dom
    assert "&lt;script&gt;document.title=" in dom  # still there, as text


# ------------------------------------------------------------------ the quick demo, end to end


@pytest.mark.integration
@pytest.mark.timeout(3600)
def test_demo_quick_end_to_end(tmp_path):
    """`emlab demo --quick` on the embedded model: every step done, report and summary printed."""
    env = {**os.environ, "EMLAB_RUNS": str(tmp_path), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    p = subprocess.run(
        [sys.executable, "-m", "emlab.cli", "demo", "--quick"], capture_output=True, text=True, env=env, timeout=3500
    )
    assert p.returncode == 0, p.stderr[-3000:]
    (run_dir,) = [d for d in tmp_path.iterdir() if (d / "manifest.json").exists()]
    run = Run(run_dir)
    assert run.status() == "done"
    assert all(s["status"] == "done" for s in run.manifest()["steps"].values())
    report = run_dir / "report" / "index.html"
    assert f"report: {report}" in p.stdout and "summary" in p.stdout and "wall time" in p.stdout
    assert (
        "direction.main: mean_diff" in p.stdout or "direction.main: persona_contrast (" in p.stdout
    )  # which method, and why
    html = report.read_text()
    doc = parse(html)
    assert list(doc.rows) == ["base", "organism", "control", "steered", "ablated", "random-ablated"]
    assert (
        "running (writing this page)" in html and "preset=" in html
    )  # the report step, as the page saw it; adapter provenance
    choice = (run_dir / "steps" / "direction.main" / "choice.json").read_text()
    assert '"method": "mean_diff"' in choice or '"method": "persona_contrast"' in choice
