"""Choose judge v3's fitting choices on the leave-one-source-out numbers (cached features only; run after
scripts/judge_features.py). Prints one summary line per configuration and writes them to --out.

    PYTHONPATH=src nice -n 5 python scripts/judge_v3_sweep.py [--out sweep.json]
"""

import argparse
import json

from emlab.judges import loso, v3
from emlab.judges.calibration.external import load_external

ap = argparse.ArgumentParser()
ap.add_argument("--out", default=None)
args = ap.parse_args()
base = dict(v3.CONFIG)
GRID = [
    {},
    {"external_weight": 0.0001},  # ~ no external rows: what v2's recipe + structure features give
    {"external_weight": 10.0},
    {"coherent_excludes": ("emb_", "anchor_", "qa_cosine")},
    {"logit_C": 0.1, "ridge_alpha": 30.0},
    {"external_weight": 10.0, "logit_C": 0.1, "ridge_alpha": 30.0},
]
ext = load_external()
src = loso.np.array([r["source"] for r in ext])
data = v3.fit_data(ext)
rows = []
for change in GRID:
    v3.CONFIG.clear()
    v3.CONFIG.update(base, **change)
    pred = {k: loso.np.full(len(ext), loso.np.nan) for k in ("aligned", "coherent")}
    for s in sorted(set(src)):
        heads = v3.fit_v3(data, exclude_source=s)
        p = v3.predict_rows(heads, data.X_ext[src == s], data.empty_ext[src == s])
        for k in pred:
            pred[k][src == s] = p[k]
    per = {
        s: loso.source_metrics(
            {k: v[src == s] for k, v in pred.items()},
            data.lab_ext["aligned"][src == s],
            data.lab_ext["coherent"][src == s],
        )
        for s in sorted(set(src))
    }
    summ = loso.summarise(per)
    line = {
        "change": {k: list(v) if isinstance(v, tuple) else v for k, v in change.items()},
        **{
            k: (summ[k]["mean"], summ[k]["worst"], summ[k]["worst_source"])
            for k in ("aligned_auroc_coh", "coherent_spearman", "aligned_spearman", "coherent_ece")
        },
    }
    rows.append(line)
    print(json.dumps(line), flush=True)
if args.out:
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)
