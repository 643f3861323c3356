"""Step kinds of the study plan (docs/findings.md) that the core kinds do not cover.

`fact-probe` (spec section `fact_probes`): linear probes for true vs false statements
(emlab.vectors.fact_probes) on the base model and on each listed adapter, same statements,
folds and sites, so the table says whether a fine-tune erased the knowledge or only what the
model says. `compare` (section `comparisons`): two evaluations side by side (b - a): EM rates
with Wilson CIs and Fisher / z tests, aligned and coherent mean differences with a bootstrap that
resamples answers within each question (studies 1-4, 8: organism vs control vs base).
`adapter-cosine` (section `adapter_cosines`): rank-1 adapters' B vectors against a direction at
their block and against each other, with the 95 % band of random cosines (study 1).
Gradient conflict (study 7) and evaluation during training (study 5) are the train kind's
`grad_probe` and `eval_at` options (steps.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from emlab.errors import EmlabError
from emlab.experiments.common import judged_records, model_of
from emlab.experiments.kinds import StepKind, Strict, check_sites, register_step_kind
from emlab.io import atomic_open, write_json

PROBES_FILE = "fact_probes.json"
TABLE_FILE = "fact_probes.md"
DEFAULT_SITES = 6  # evenly spaced resid_post sites when none are given


class FactProbeSpec(Strict):
    """Fit fact probes on `model` and on `model` + each adapter in `adapters` (keys of `training`)."""

    model: str | None = None  # key in `models` (default: the first model)
    adapters: list[str] = Field(default_factory=list)
    bank: str | None = None  # a facts YAML (default: the shipped medical_facts.yaml)
    sites: list[str] | None = None  # default: 6 evenly spaced blocks.{l}.resid_post
    position: Literal["last", "mean"] = "last"
    folds: int = Field(5, ge=2)
    c: float = Field(0.1, gt=0)  # inverse L2 strength of the logistic regression
    batch_size: int = Field(16, ge=1)

    @field_validator("sites")
    @classmethod
    def _sites(cls, v):
        return check_sites(v)


def spaced_sites(model, k: int = DEFAULT_SITES) -> list[str]:
    """k residual sites from the first block to the last, evenly spaced."""
    from emlab.vectors.directions import resid_sites

    sites = resid_sites(model)
    k = min(k, len(sites))
    return [sites[round(i * (len(sites) - 1) / (k - 1))] for i in range(k)] if k > 1 else sites[-1:]


def markdown_table(rows: list[dict], reference: str) -> str:
    """Accuracy (CI), pair accuracy and the difference against the reference model, one line per model x site."""

    def ci(v):
        return f"[{v[0]:.2f}, {v[1]:.2f}]" if v else "n/a"

    key = f"difference_vs_{reference}"
    lines = [
        f"| model | site | accuracy | 95 % CI | pair accuracy | 95 % CI | minus {reference} | 95 % CI |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = f"{r[key]:+.3f} | {ci(r.get(key + '_ci'))}" if key in r else "- | -"
        lines.append(
            f"| {r['model']} | {r['site']} | {r['accuracy']:.3f} | {ci(r['accuracy_ci'])} | "
            f"{r['pair_accuracy']:.3f} | {ci(r['pair_accuracy_ci'])} | {diff} |"
        )
    return "\n".join(lines) + "\n"


@register_step_kind("fact-probe")
class FactProbeKind(StepKind):
    """Linear true/false fact probes on the base model and its adapters (study 9)."""

    section = "fact_probes"
    schema = FactProbeSpec

    def plan(self, name, entry, path, planning):
        cfg = entry.model_dump() | {"model": model_of(planning, path, entry.model), "seed": planning.spec.seed}
        if len(set(entry.adapters)) != len(entry.adapters):
            raise EmlabError(f"{planning.where(path)}: {path}.adapters lists a training entry twice: {entry.adapters}")
        for i, a in enumerate(entry.adapters):
            planning.ref(f"{path}.adapters[{i}]", a, "training")
        return cfg, tuple(f"train.{a}" for a in entry.adapters)

    def resolve_paths(self, entry, fix):
        if entry.bank:
            entry.bank = fix(entry.bank)

    def check(self, step):
        from emlab.vectors.fact_probes import load_facts

        load_facts(step.config["bank"])

    def describe(self, step):
        c = step.config
        return f"fact probes on {' + '.join([c['model'], *c['adapters']])}, {c['folds']}-fold by pair"

    def run(self, ctx, step, work: Path):
        from emlab.vectors.fact_probes import load_facts, probe_models

        cfg = step.config
        pairs = load_facts(cfg["bank"])
        base = cfg["model"]
        sites = cfg["sites"] or spaced_sites(ctx.model(base).model)
        models = {base: lambda: ctx.model(base)} | {a: (lambda a=a: ctx.model(base, a)) for a in cfg["adapters"]}
        rows = probe_models(
            models, sites, pairs, cfg["position"], cfg["folds"], cfg["c"], cfg["seed"], cfg["batch_size"]
        )
        write_json(work / PROBES_FILE, {"pairs": [p.id for p in pairs], "sites": sites, "rows": rows})
        with atomic_open(work / TABLE_FILE) as fh:
            fh.write(markdown_table(rows, base))
        best = {m: max(r["accuracy"] for r in rows if r["model"] == m) for m in models}
        return {"pairs": len(pairs), "sites": len(sites), "best_accuracy": best}

    def result_line(self, summary):
        best = summary.get("best_accuracy") or {}
        return ", ".join(f"{m} {a:.3f}" for m, a in best.items()) + " (best site accuracy)"


# ------------------------------------------------------------------ compare two evaluations


COMPARE_FILE = "comparison.json"
N_BOOT = 2000


class CompareSpec(Strict):
    """Compare evaluation `b` against `a` (keys of `evals`), e.g. organism vs base: b - a."""

    a: str
    b: str


def stratified_mean_difference(
    a: dict[str, list[float]], b: dict[str, list[float]], seed: int, n_boot: int = N_BOOT
) -> dict:
    """mean(b) - mean(a) over answers, with a percentile bootstrap that resamples answers within each question.

    Both means weight questions by their answer counts, as the plain means do; questions missing on
    either side are left out (named in `dropped`).
    """
    qs = sorted(set(a) & set(b))
    if not qs:
        raise EmlabError(
            "the two evaluations share no question with scored answers; compare evals of the same question set"
        )
    rng = np.random.default_rng(seed)
    xa = [np.asarray(a[q], dtype=float) for q in qs]
    xb = [np.asarray(b[q], dtype=float) for q in qs]
    diff = float(np.concatenate(xb).mean() - np.concatenate(xa).mean())
    reps = np.zeros(n_boot)
    for x, sign in ((xb, 1.0), (xa, -1.0)):
        total = sum(len(v) for v in x)
        sums = np.zeros(n_boot)
        for v in x:
            sums += v[rng.integers(0, len(v), size=(n_boot, len(v)))].sum(1)
        reps += sign * sums / total
    lo, hi = np.quantile(reps, [0.025, 0.975])
    return {"difference": diff, "ci95": [float(lo), float(hi)], "dropped": sorted(set(a) ^ set(b))}


def _scores(records, key: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for r in records:
        v = getattr(r, key)
        if v is not None:
            out.setdefault(r.question_id, []).append(float(v))
    return out


def _em_side(records) -> tuple[int, int, dict]:
    """(EM answers, judged answers, the JSON row) of one evaluation's judged records."""
    from emlab.metrics import em_counts, wilson_interval

    k, n_coh, n = em_counts({"aligned": r.aligned, "coherent": r.coherent} for r in records)
    ci = wilson_interval(k, n)
    row = {
        "em": k,
        "coherent": n_coh,
        "judged": n,
        "em_rate": k / n if n else None,
        "em_ci95": list(ci) if ci else None,
    }
    return k, n, row


def compare_evaluations(a_records, b_records, seed: int) -> dict:
    """EM rates (Wilson CIs, Fisher and z tests) and aligned / coherent mean differences (b - a)."""
    from emlab.metrics import fisher_p, two_proportion_z

    ka, na, a = _em_side(a_records)
    kb, nb, b = _em_side(b_records)
    z, p_z = two_proportion_z(kb, nb, ka, na)
    return {
        "a": a,
        "b": b,
        "em_difference": kb / nb - ka / na if na and nb else None,
        "p_fisher": fisher_p(kb, nb, ka, na),
        "z": z,
        "p_z": p_z,
        "aligned": stratified_mean_difference(_scores(a_records, "aligned"), _scores(b_records, "aligned"), seed),
        "coherent": stratified_mean_difference(_scores(a_records, "coherent"), _scores(b_records, "coherent"), seed),
    }


@register_step_kind("compare")
class CompareKind(StepKind):
    """Compare two evaluations: EM rates with tests, aligned and coherent mean differences with CIs (b - a)."""

    section = "comparisons"
    schema = CompareSpec

    def plan(self, name, entry, path, planning):
        planning.ref(f"{path}.a", entry.a, "evals")
        planning.ref(f"{path}.b", entry.b, "evals")
        if entry.a == entry.b:
            raise EmlabError(f"{planning.where(path)}: {path} compares eval {entry.a!r} with itself; name two evals")
        return entry.model_dump() | {"seed": planning.spec.seed}, (f"eval.{entry.a}", f"eval.{entry.b}")

    def describe(self, step):
        return f"{step.config['b']} - {step.config['a']}"

    def run(self, ctx, step, work: Path):
        cfg = step.config
        result = compare_evaluations(
            judged_records(ctx.output(f"eval.{cfg['a']}")), judged_records(ctx.output(f"eval.{cfg['b']}")), cfg["seed"]
        )
        write_json(work / COMPARE_FILE, {"a_eval": cfg["a"], "b_eval": cfg["b"]} | result)
        al = result["aligned"]
        return {
            "aligned_difference": al["difference"],
            "aligned_ci95": al["ci95"],
            "em_difference": result["em_difference"],
            "p_fisher": result["p_fisher"],
        }

    def result_line(self, summary):
        lo, hi = summary["aligned_ci95"]
        return f"aligned {summary['aligned_difference']:+.1f} [{lo:+.1f}, {hi:+.1f}], EM p (Fisher) {summary['p_fisher']:.3g}"


# ------------------------------------------------------------------ adapter B vectors against a direction


COSINES_FILE = "adapter_cosines.json"


class AdapterCosineSpec(Strict):
    """Cosine of each rank-1 down_proj adapter's B vector with `direction` (a `directions` key) at its block,
    for every adapter in `adapters` (keys of `training`), and between the adapters' B vectors site by site."""

    model: str | None = None
    adapters: list[str] = Field(min_length=1)
    direction: str


def null_band(d: int) -> float:
    """Half-width of the central 95 % of cosines between a fixed vector and uniformly random ones in d dims
    (normal approximation: such a cosine has mean 0 and variance 1/d)."""
    return 1.959964 / float(np.sqrt(d))


def between_adapters(b_vectors: dict[str, dict[tuple[str, int], np.ndarray]]) -> list[dict]:
    """Cosine of every pair of adapters' B vectors at the same (site, rank index)."""
    names = list(b_vectors)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            for key in sorted(set(b_vectors[a]) & set(b_vectors[b])):
                u, v = b_vectors[a][key], b_vectors[b][key]
                rows.append(
                    {
                        "a": a,
                        "b": b,
                        "adapter": key[0],
                        "rank_index": key[1],
                        "cosine": float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v))),
                    }
                )
    return rows


@register_step_kind("adapter-cosine")
class AdapterCosineKind(StepKind):
    """Cosines of rank-1 adapters' B vectors with a direction and with each other (study 1)."""

    section = "adapter_cosines"
    schema = AdapterCosineSpec

    def plan(self, name, entry, path, planning):
        cfg = entry.model_dump() | {"model": model_of(planning, path, entry.model)}
        for i, a in enumerate(entry.adapters):
            planning.ref(f"{path}.adapters[{i}]", a, "training")
        planning.ref(f"{path}.direction", entry.direction, "directions")
        return cfg, (*(f"train.{a}" for a in entry.adapters), f"direction.{entry.direction}")

    def describe(self, step):
        c = step.config
        return f"B vectors of {', '.join(c['adapters'])} vs direction {c['direction']}"

    def run(self, ctx, step, work: Path):
        from emlab.vectors.directions import Direction
        from emlab.vectors.lora_interp import adapters, b_cosines

        cfg = step.config
        direction = Direction.load(ctx.output(f"direction.{cfg['direction']}"))
        rows, b_vectors, d = [], {}, 0
        for name in cfg["adapters"]:
            model = ctx.model(cfg["model"], name).model
            rows += [{"training": name} | r for r in b_cosines(model, direction)]
            found = {
                (a.site, j): a.B[:, j].double().numpy() for a in adapters(model) if a.site for j in range(a.B.shape[1])
            }
            if not found:
                raise EmlabError(
                    f"{step.name}: training {name!r} has no down_proj LoRA adapter; use a rank-1 down_proj preset"
                )
            b_vectors[name] = found
            d = next(iter(found.values())).shape[0]
        result = {
            "direction": cfg["direction"],
            "null_band_95": null_band(d),
            "rows": rows,
            "between": between_adapters(b_vectors),
        }
        write_json(work / COSINES_FILE, result)
        by = {n: [r["cosine"] for r in rows if r["training"] == n and r["cosine"] is not None] for n in cfg["adapters"]}
        return {
            "mean_abs_cosine": {n: float(np.mean(np.abs(v))) if v else None for n, v in by.items()},
            "null_band_95": result["null_band_95"],
        }
