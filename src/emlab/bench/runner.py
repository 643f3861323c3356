"""Run the benchmark sections and assemble one JSON result (see docs/performance.md for the schema).

Sections run in a fixed order on one loaded model; each produces figures or, when it cannot
run (a component missing or failing), one `skipped` entry naming the section and the reason,
so one broken part never hides the others' numbers. The matmul peak and load average are
measured at the start (load average also at the end): they say how busy the machine was.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from emlab.bench.figure import Figure
from emlab.errors import EmlabError

SCHEMA = "emlab.bench/1"
SECTIONS = ("threads", "sampling", "hooks", "capture", "training", "judging", "demo")


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of each section; `quick` and `full` are the presets the CLI offers."""

    mode: str = "quick"
    sections: tuple[str, ...] = SECTIONS
    peak_repeats: int = 5
    omp_rounds: int = 1
    omp_sampling_rounds: int = 0  # > 0: also compare wait policies on a sampling workload (subprocesses, slow)
    sampling_dtypes: tuple[str, ...] = ("fp32", "bf16")
    batches: tuple[int, ...] = (1, 8, 32, 64)
    new_tokens: int = 24  # tokens generated per prompt (forced: min_new_tokens == max_new_tokens)
    naive_prompts: int = 2  # prompts in the per-prompt baseline (a per-token rate)
    batch1_prompts: int = 2
    multinomial_batches: tuple[int, ...] = (
        64,
    )  # batches also run through HF's multinomial sampler (the before of emlab's inverse-CDF draws)
    numerics_answers: int = 8  # answers teacher-forced in fp32 and bf16 to compare next-token distributions
    natural_new_tokens: int = (
        0  # > 0: also sample at batch 32 (last dtype) with natural stopping up to this many tokens
    )
    hook_batch: int = 8
    hook_new_tokens: int = 12
    hook_repeats: int = 3
    capture_answers: int = 16
    capture_batch: int = 8
    capture_repeats: int = 2
    train_dtypes: tuple[str, ...] = ("bf16",)
    train_steps: int = 3  # the first is a warm-up, not timed
    train_batch: int = 8
    offline_answers: int = 32
    local_answers: int = 4
    demo: str = "read"  # read: newest demo run's manifest; run: `emlab demo --quick` first

    def __post_init__(self):
        unknown = [s for s in self.sections if s not in SECTIONS]
        if unknown:
            raise EmlabError(f"unknown bench section(s) {unknown}; choose from {', '.join(SECTIONS)}")
        if self.demo not in ("read", "run"):
            raise EmlabError(f"demo={self.demo!r}; choose read or run")


QUICK = BenchConfig()
FULL = BenchConfig(
    mode="full",
    peak_repeats=8,
    omp_rounds=2,
    omp_sampling_rounds=2,
    new_tokens=64,
    natural_new_tokens=200,
    naive_prompts=6,
    batch1_prompts=4,
    hook_batch=16,
    hook_new_tokens=32,
    hook_repeats=5,
    capture_answers=64,
    capture_batch=16,
    capture_repeats=3,
    multinomial_batches=(1, 8, 32, 64),
    train_dtypes=("fp32", "bf16"),
    train_steps=5,
    offline_answers=64,
    local_answers=16,
    demo="run",
)


def preset(mode: str) -> BenchConfig:
    if mode not in ("quick", "full"):
        raise EmlabError(f"unknown bench mode {mode!r}; choose quick or full")
    return QUICK if mode == "quick" else FULL


def default_out(root: str | Path = "bench-results") -> Path:
    return Path(root) / f"bench-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"


class _Collector:
    """Figures and skips in order, with per-section seconds."""

    def __init__(self, log: Callable[[str], None]):
        self.figures: list[Figure] = []
        self.skipped: list[dict[str, str]] = []
        self.seconds: dict[str, float] = {}
        self.log = log

    def section(self, name: str, fn: Callable[[], list[Figure]]) -> None:
        self.log(f"{name} ...")
        t0 = time.perf_counter()
        try:
            figs = fn()
        except Exception as e:  # a broken or missing component skips its section, loudly, with the reason
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            self.skipped.append({"section": name, "reason": reason})
            self.log(f"{name} skipped: {reason}")
            figs = []
        self.seconds[name] = time.perf_counter() - t0
        self.figures.extend(figs)
        self.log(f"{name} done in {self.seconds[name]:.1f}s")


def run_bench(
    cm=None,
    config: BenchConfig = QUICK,
    log: Callable[[str], None] = lambda s: None,
    runs_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Run the configured sections on `cm` (default: the embedded smollm2-135m in fp32); return the result dict."""
    from emlab.bench import roofline

    started, t0 = dt.datetime.now().astimezone(), time.perf_counter()
    machine = roofline.machine_facts()
    log(f"measuring matmul peaks (load average {machine['loadavg'][0]:.2f})")
    peaks = roofline.measure_peaks(config.peak_repeats)
    if cm is None:
        from emlab.models import load_model

        cm = load_model("smollm2-135m")
    col = _Collector(log)
    config, dropped = for_machine(config)
    if dropped:
        col.skipped.append({"section": "sampling, training (bf16)", "reason": dropped})
        log(f"bf16 left out: {dropped}")
    answers: list[tuple[str, str]] = []
    want = max(
        config.capture_answers, config.offline_answers, config.local_answers, config.train_steps * config.train_batch
    )

    def sampling() -> list[Figure]:
        from emlab.bench.sampling import sampling_figures

        figs, records = sampling_figures(
            cm, config.sampling_dtypes, config.batches, config.new_tokens, config.naive_prompts, config.batch1_prompts
        )
        answers.extend((r.question, r.text) for r in records)
        if "bf16" in config.sampling_dtypes and config.numerics_answers:
            from emlab.bench.sampling import bf16_agreement_figure

            figs.append(bf16_agreement_figure(cm, answers[: config.numerics_answers]))
        if config.multinomial_batches:
            from emlab.bench.sampling import multinomial_figure

            base = [
                f for f in list(figs) if f.name.rsplit(".", 1)[-1] in {f"batch{b}" for b in config.multinomial_batches}
            ]
            figs.extend(multinomial_figure(cm, f) for f in base)
        if config.natural_new_tokens:
            from emlab.bench.sampling import natural_length_figure

            b = max([b for b in config.batches if b <= 32] or config.batches)
            forced = [f for f in figs if f.name == f"sampling.{config.sampling_dtypes[-1]}.batch{b}"]
            figs.extend(natural_length_figure(cm, f, config.natural_new_tokens) for f in forced)
        return figs

    def need_answers() -> list[tuple[str, str]]:
        if len(answers) < want:
            answers.extend(_more_answers(cm, want - len(answers), config.new_tokens))
        return answers

    sections: dict[str, Callable[[], list[Figure]]] = {
        "threads": lambda: _threads(cm, config),
        "sampling": sampling,
        "hooks": lambda: _hooks(cm, config),
        "capture": lambda: _capture(cm, need_answers()[: config.capture_answers], config),
        "training": lambda: _training(cm, need_answers(), config),
        "judging": lambda: _judging(cm, need_answers(), config),
        "demo": lambda: _demo(config, runs_dir),
    }
    for name in SECTIONS:
        if name in config.sections:
            col.section(name, sections[name])
    peak_values = {k: v["gflops"] for k, v in peaks.items()}
    cpu_peaks = {k: v["gflops_per_cpu_s"] for k, v in peaks.items()}
    machine["loadavg_end"] = list(os.getloadavg())
    counts = roofline.param_counts(cm.model)
    return {
        "schema": SCHEMA,
        "mode": config.mode,
        "started": started.isoformat(timespec="seconds"),
        "wall_s": time.perf_counter() - t0,
        "machine": machine,
        "peak": peaks,
        "model": {
            "ref": cm.ref,
            "revision": cm.revision,
            "params": counts,
            "forward_flops_per_token": 2.0 * counts["forward"],
            "train_flops_per_token_4n": 4.0 * counts["forward"],
        },
        "config": asdict(config),
        "section_seconds": col.seconds,
        "figures": [f.to_dict(peak_values, cpu_peaks) for f in col.figures],
        "skipped": col.skipped,
    }


def _more_answers(cm, n: int, new_tokens: int) -> list[tuple[str, str]]:
    from emlab.bench.sampling import bench_prompts, equal_length_params, run_sample

    records, _ = run_sample(cm, bench_prompts(n), equal_length_params(new_tokens, min(n, 32), seed=1))
    return [(r.question, r.text) for r in records]


def _threads(cm, config: BenchConfig) -> list[Figure]:
    from emlab.bench.threads import omp_policy_figure, omp_sampling_figure

    figs = [omp_policy_figure(config.omp_rounds)]
    if config.omp_sampling_rounds:
        figs.append(omp_sampling_figure(config.omp_sampling_rounds, cm.ref))
    return figs


def _hooks(cm, config: BenchConfig) -> list[Figure]:
    from emlab.bench.hooks import hook_overhead_figures

    return hook_overhead_figures(cm, config.hook_batch, config.hook_new_tokens, config.hook_repeats)


def _capture(cm, pairs, config: BenchConfig) -> list[Figure]:
    from emlab.bench.capture import capture_figures

    return capture_figures(cm, pairs, config.capture_batch, config.capture_repeats)


def _training(cm, pairs, config: BenchConfig) -> list[Figure]:
    from emlab.bench.training import training_figures

    return training_figures(cm, pairs, config.train_dtypes, config.train_steps, config.train_batch)


def _judging(cm, pairs, config: BenchConfig) -> list[Figure]:
    from emlab.bench.judging import fluency_figure, local_figure, offline_figure

    figs = []
    if config.offline_answers:
        figs.append(offline_figure(pairs[: config.offline_answers]))
        figs.append(fluency_figure(pairs[: config.offline_answers]))
    if config.local_answers:
        figs.append(local_figure(cm, pairs[: config.local_answers]))
    return figs


def _demo(config: BenchConfig, runs_dir) -> list[Figure]:
    from emlab.bench.demo import demo_figures

    return demo_figures(runs_dir, run_quick=config.demo == "run")


def for_machine(config: BenchConfig) -> tuple[BenchConfig, str]:
    """Quick mode leaves bf16 out where the dtype probe measured it slower than fp32 (emulated): it is
    not what emlab uses there, and on an avx2-only CPU it runs at ~5 % of fp32's speed. Full mode keeps it."""
    if config.mode != "quick" or ("bf16" not in config.sampling_dtypes and "bf16" not in config.train_dtypes):
        return config, ""
    from emlab.dtype_probe import choose_dtype

    choice = choose_dtype("cpu")
    if choice.dtype == "bfloat16":
        return config, ""
    keep = tuple(d for d in config.sampling_dtypes if d != "bf16") or ("fp32",)
    return replace(config, sampling_dtypes=keep, train_dtypes=("fp32",)), f"dtype probe: {choice.reason}"


def write_result(result: dict[str, Any], out: str | Path) -> Path:
    """Write the result JSON atomically."""
    from emlab.io import write_json

    write_json(out, result)
    return Path(out)


def with_sections(config: BenchConfig, sections: list[str] | None) -> BenchConfig:
    return config if not sections else replace(config, sections=tuple(sections))
