"""Judging speed of the offline judges (v2, v3) on answers of other models: answers/s for aligned + coherent together,
model loading excluded (reported apart), on this machine's CPU with torch at the given thread count.

    PYTHONPATH=src nice -n 5 python scripts/judge_speed.py [--n 24] [--threads 2]
"""

import argparse
import json
import time
from pathlib import Path

import torch

from emlab.judges.base import Item
from emlab.judges.calibration.external import load_external
from emlab.judges.rubrics import get_rubric

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=24)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--judges", default="v2,v3")
args = ap.parse_args()
torch.set_num_threads(args.threads)

ext = load_external()
items = [Item(r["question"], r["answer"]) for r in ext[7 :: max(1, len(ext) // args.n)][: args.n]]
out = {
    "n": len(items),
    "threads": args.threads,
    "mean_answer_chars": round(sum(len(i.answer) for i in items) / len(items)),
}
cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
cpu = next((l for l in cpuinfo if l.startswith("model name")), "").split(":")[-1].strip()
flags = next((l for l in cpuinfo if l.startswith("flags")), "").split()
out["cpu"] = f"{cpu}; avx512f={'avx512f' in flags}, avx512_bf16={'avx512_bf16' in flags}, amx={'amx_tile' in flags}"
for name in args.judges.split(","):
    t0 = time.perf_counter()
    if name == "v2":
        from emlab.judges.offline import OfflineJudge

        judge = OfflineJudge()
    else:
        from emlab.judges.v3 import OfflineJudgeV3

        judge = OfflineJudgeV3()
    judge.score(items[:1], get_rubric("aligned"))  # loads the embedder and reference model(s)
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    for rubric in ("aligned", "coherent"):
        judge.score(items[1:], get_rubric(rubric))
    s = time.perf_counter() - t0
    out[name] = {
        "id": judge.id,
        "load_and_first_item_s": round(load, 1),
        "seconds": round(s, 1),
        "answers_per_s": round((len(items) - 1) / s, 3),
    }
    print(json.dumps(out[name]), flush=True)
print(json.dumps(out, indent=1))
