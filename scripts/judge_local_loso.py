"""local:qwen2.5-coder-0.5b on a few externally judged answers per source (resumable through the judge cache); writes JSON.

PYTHONPATH=src nice -n 5 python scripts/judge_local_loso.py --per-source 3 --out local.json
"""

import argparse
import json

import torch

from emlab.judges.calibration.external import load_external
from emlab.judges.loso import local_judge_loso

ap = argparse.ArgumentParser()
ap.add_argument("--per-source", type=int, default=3)
ap.add_argument("--out", required=True)
ap.add_argument("--threads", type=int, default=1)
args = ap.parse_args()
torch.set_num_threads(args.threads)
res = local_judge_loso(load_external(), args.per_source)
with open(args.out, "w") as f:
    json.dump(res, f, indent=1)
print(json.dumps({k: v for k, v in res.items() if k != "per_source"}, indent=1))
