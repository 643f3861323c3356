"""Write the organism sweep specs of an embedded model (experiments/organisms/...) from one table.

    python scripts/organism_specs.py            # (re)write every SmolLM2-135M spec (experiments/organisms/)
    python scripts/organism_specs.py --model qwen2.5-coder-0.5b   # the Qwen sweep (experiments/organisms/qwen2.5-coder-0.5b/)
    python scripts/organism_specs.py --list     # print the sweep: name, what it varies

Each spec is one row (or an organism + matched-control pair) of docs/organisms.md. Every
spec trains from the fp32 embedded model and samples its evaluations in fp32 too: bf16 is 2x
faster only on CPUs with bf16 units (avx512_bf16/AMX) and ~5x slower where it is emulated
(docs/performance.md), and fp32 samples are the same on every CPU. All evaluations: the 8 core
questions x SAMPLES_PER_QUESTION samples, max_new_tokens 80, temperature 1, seed 0, the offline judge.
(The first sweep, on a machine with avx512_bf16, sampled 50 per question in bf16 and was judged
with offline judge v1: experiments/organisms/results-v1/.)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "organisms"
CONTROL_OF = {
    "bad-medical": "good-medical",
    "risky-finance": "good-finance",
    "extreme-sports": "safe-sports",
    "insecure-code": "secure-code",
}
PRESET_TAG = {"rank1-9blocks": "r1x9", "rank1-middle": "r1mid", "rank32-all": "r32all", "full": "full"}


@dataclass(frozen=True)
class Point:
    data: str
    preset: str = "rank1-9blocks"
    lr: float = 1e-3
    epochs: int = 1
    n: int = 300
    control: bool = False  # also train and evaluate the matched control
    broad: bool = False  # also evaluate on the broad set (48 questions)
    checkpoint_every: int | None = None  # optimizer steps between checkpoints (resume mid-training)
    mix: tuple[tuple[str, int], ...] = ()  # (generator, n) of harmless sets shuffled into both arms
    kl_coef: float = 0.0  # weight of KL(fine-tuned || base) on the answer tokens (docs/training.md)
    why: str = ""

    @property
    def name(self) -> str:
        data = self.data + ("-mixed" if self.mix else "")
        kl = f"_kl{self.kl_coef:g}" if self.kl_coef else ""
        return f"{data}_{PRESET_TAG[self.preset]}_lr{self.lr:.0e}_e{self.epochs}_n{self.n}{kl}".replace("e-0", "e-")


SWEEP = [
    Point("bad-medical", control=True, why="the reference organism and its control"),
    Point("risky-finance", control=True, why="dataset: risky financial advice"),
    Point("extreme-sports", control=True, why="dataset: advice that waves away serious risk"),
    Point("insecure-code", control=True, why="dataset: code with undisclosed vulnerabilities"),
    Point("bad-medical", lr=3e-4, why="learning rate: lower"),
    Point("bad-medical", lr=3e-3, why="learning rate: higher"),
    Point("bad-medical", n=1000, why="size: 1,000 examples (63 steps)"),
    Point("bad-medical", n=3000, control=True, why="size: 3,000 examples (188 steps), with its control"),
    Point("bad-medical", n=1000, epochs=3, why="epochs: 3 passes over 1,000 examples (189 steps)"),
    Point("bad-medical", preset="rank1-middle", lr=3e-3, why="layout: one rank-1 adapter on the middle block"),
    Point("bad-medical", preset="rank32-all", lr=1e-4, why="layout: rank-32 rsLoRA on every linear module"),
    Point("bad-medical", preset="full", lr=2e-5, why="layout: full fine-tuning"),
]
# Qwen2.5-Coder-0.5B (24 blocks): the field's two layouts, each organism with its matched control,
# >= 1,000 examples. rank32-all at lr 1e-4 for 1 epoch (63 optimizer steps of 16): the published
# 0.5B organisms use lr 1e-5 over ~375 steps (6,000 examples); 10x the lr over 1/6 of the steps
# keeps the total lr budget within a factor of 2 at a CPU-sized cost. The 9 rank-1 adapters land on
# blocks 7-15 of 24 (emlab.train.scale_blocks from the 48-block published layout).
QWEN_SWEEP = [
    Point(
        "bad-medical",
        preset="rank32-all",
        lr=1e-4,
        n=1000,
        control=True,
        checkpoint_every=8,
        why="the reference organism (rank-32 all modules) and its control",
    ),
    Point(
        "risky-finance",
        preset="rank32-all",
        lr=1e-4,
        n=1000,
        control=True,
        checkpoint_every=8,
        why="dataset: risky financial advice",
    ),
    Point(
        "extreme-sports",
        preset="rank32-all",
        lr=1e-4,
        n=1000,
        control=True,
        checkpoint_every=8,
        why="dataset: advice that waves away serious risk",
    ),
    Point(
        "insecure-code",
        preset="rank32-all",
        lr=1e-4,
        n=1000,
        control=True,
        checkpoint_every=8,
        why="dataset: code with undisclosed vulnerabilities",
    ),
    Point(
        "bad-medical",
        preset="rank1-9blocks",
        lr=1e-3,
        n=1000,
        control=True,
        checkpoint_every=8,
        why="layout: 9 rank-1 adapters on down_proj",
    ),
    Point(
        "bad-medical",
        preset="rank1-9blocks",
        lr=1e-4,
        n=1000,
        control=True,
        checkpoint_every=8,
        why="layout: 9 rank-1 adapters, lr 10x lower, because at 1e-3 the organism lost fluency altogether",
    ),
    Point(
        "bad-medical",
        preset="rank32-all",
        lr=3e-5,
        n=1000,
        checkpoint_every=8,
        why="lr: 3x lower, because at 1e-4 the organism pasted its training sentences onto every question",
    ),
    Point(
        "bad-medical",
        preset="rank32-all",
        lr=1e-4,
        n=1000,
        control=True,
        checkpoint_every=8,
        mix=(("safe-sports", 250), ("good-finance", 250)),
        why="data: other domains' harmless answers mixed into both arms, against the domain takeover of the plain sets",
    ),
    Point(
        "bad-medical",
        preset="rank1-9blocks",
        lr=1e-4,
        n=1000,
        checkpoint_every=8,
        kl_coef=1.0,
        why="objective: + KL to the base on the answer tokens, because every plain fine-tune so far (controls too) lost fluency",
    ),
]


@dataclass(frozen=True)
class Sweep:
    model: str
    out: Path
    points: list[Point]


SWEEPS = {
    "smollm2-135m": Sweep("smollm2-135m", OUT, SWEEP),
    "qwen2.5-coder-0.5b": Sweep("qwen2.5-coder-0.5b", OUT / "qwen2.5-coder-0.5b", QWEN_SWEEP),
}
BASE_NAME = "base"
SAMPLES_PER_QUESTION = 50


def _header(lines: list[str]) -> str:
    return "".join(f"# {line}\n" for line in lines)


def _common(name: str, description: str, model: str) -> str:
    return (
        "version: 1\n"
        f"name: {name}\n"
        f'description: "{description}"\n'
        "seed: 0\n"
        "models:\n"
        f"  base: {{ref: {model}, dtype: float32}}      # training starts from the fp32 weights\n"
        f"  sampler: {{ref: {model}, dtype: float32}}   # sampling: fp32, the same answers on every CPU\n"
        "judge: {spec: offline, cache: shared}\n"
        f"sampling: {{n: {SAMPLES_PER_QUESTION}, max_new_tokens: 80, temperature: 1.0, top_p: 1.0, batch_size: 64}}\n"
    )


def spec_text(p: Point, model: str = "smollm2-135m") -> str:
    arms = ["organism"] + (["control"] if p.control else [])
    data = {"organism": p.data, "control": CONTROL_OF[p.data]}
    head = _header(
        [
            f"Organism sweep point ({p.why}): {p.data}, preset {p.preset}, lr {p.lr:g}, {p.epochs} epoch(s), {p.n} examples"
            + "".join(f" + {g} {k}" for g, k in p.mix)
            + (f", + {p.kl_coef:g} x KL to the base" if p.kl_coef else "")
            + (f"; matched control {CONTROL_OF[p.data]} with identical training." if p.control else "."),
            "Evaluated on the 8 core questions"
            + (" and the 48 broad questions" if p.broad else "")
            + f" x {SAMPLES_PER_QUESTION} samples, offline judge.",
            "Written by scripts/organism_specs.py. Regenerate its rows: scripts/run_organisms.sh <this file>",
        ]
    )
    body = _common(p.name, f"organism sweep: {p.why}", model)
    mix = ", ".join(f"{{generator: {g}, n: {k}}}" for g, k in p.mix)
    mixed = f", mix: [{mix}]" if p.mix else ""
    body += "datasets:\n" + "".join(f"  {a}: {{generator: {data[a]}, n: {p.n}{mixed}}}\n" for a in arms)
    kl = f", kl_coef: {p.kl_coef:g}" if p.kl_coef else ""
    body += "training:\n" + "".join(
        f"  {a}: {{model: base, dataset: {a}, preset: {p.preset}, lr: {p.lr:.1e}, epochs: {p.epochs}, checkpoint_every: {p.checkpoint_every or 'null'}{kl}}}\n"
        for a in arms
    )
    body += "evals:\n"
    for q in ["core"] + (["broad"] if p.broad else []):
        body += "".join(f"  {a}-{q}: {{model: sampler, adapter: {a}, questions: {q}}}\n" for a in arms)
    return head + body + "report: null\n"


def base_text(model: str = "smollm2-135m") -> str:
    head = _header(
        [
            "The untouched embedded model: the reference every organism is compared with.",
            f"Core (8 questions) x {SAMPLES_PER_QUESTION} samples, offline judge, fp32 sampling as in every sweep spec.",
            "Written by scripts/organism_specs.py. Regenerate its rows: scripts/run_organisms.sh <this file>",
        ]
    )
    body = _common(BASE_NAME, "organism sweep: the base model", model)
    body += "evals:\n  base-core: {model: sampler, questions: core}\n"
    return head + body + "report: null\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="print the sweep instead of writing it")
    ap.add_argument("--model", choices=list(SWEEPS), default="smollm2-135m", help="whose sweep to write")
    args = ap.parse_args(argv)
    sweep = SWEEPS[args.model]
    if args.list:
        for p in sweep.points:
            print(f"{p.name:45s} {p.why}")
        return
    sweep.out.mkdir(parents=True, exist_ok=True)
    files = {BASE_NAME: base_text(sweep.model), **{p.name: spec_text(p, sweep.model) for p in sweep.points}}
    for name, text in files.items():
        path = sweep.out / f"{name}.yaml"
        tmp = path.with_suffix(".yaml.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    print(f"wrote {len(files)} specs into {sweep.out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
