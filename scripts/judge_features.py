"""Compute (resumably) the cached feature rows judge v3 and the LOSO validation read: external answers, the
calibration corpus and the validation sets. Run under `nice`; rerun after an interruption to resume.

    PYTHONPATH=src nice -n 5 python scripts/judge_features.py [--blocks v2,qwen] [--sets external,val,corpus]
"""

import argparse
import time

import torch

from emlab.judges import coherence as C
from emlab.judges.calibration.external import load_external
from emlab.judges.offline import HELDOUT_PATH, REAL_HELDOUT_PATH, REAL_TEST_PATH, load_records
from emlab.judges.v3 import corpus_subset

ap = argparse.ArgumentParser()
ap.add_argument("--blocks", default="v2,qwen")
ap.add_argument("--sets", default="external,val,corpus,test")
args = ap.parse_args()

torch.set_num_threads(1)
sets = {
    "external": lambda: load_external(),
    "val": lambda: load_records(HELDOUT_PATH) + load_records(REAL_HELDOUT_PATH),
    "test": lambda: load_records(REAL_TEST_PATH),
    "corpus": lambda: corpus_subset(),
}
for name in args.sets.split(","):
    recs = sets[name]()
    qs, ans = [r["question"] or "" for r in recs], [r["answer"] or "" for r in recs]
    for block in args.blocks.split(","):
        t0 = time.time()
        fn = C.v2_block if block == "v2" else C.qwen_block
        fn(
            qs,
            ans,
            progress=lambda d, n, name=name, block=block, t0=t0: (
                print(f"{name}/{block}: {d}/{n} {time.time() - t0:.0f}s", flush=True)
                if d % 320 == 0 or d == n
                else None
            ),
        )
        print(f"{name}/{block}: done {len(recs)} rows in {time.time() - t0:.0f}s", flush=True)
