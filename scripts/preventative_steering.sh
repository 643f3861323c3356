#!/usr/bin/env bash
# Preventative steering vs the plain organism (Chen et al. 2025, "Persona Vectors", sec. 5), ready to run.
#
#   JUDGE=openai:gpt-4o-2024-08-06 bash scripts/preventative_steering.sh      # or JUDGE=offline (proxy)
#
# Steps (each skipped when its output is finished; trainings resume with --resume, evals with --resume):
#   1. bad-medical training data (1000 examples) and the base model's evil persona vector;
#   2. plain organism: LoRA rank 32 on all modules, lr 1e-4, 1 epoch (the reference organism of
#      experiments/organisms/qwen2.5-coder-0.5b/bad-medical_r32all_lr1e-4_e1_n1000.yaml);
#   3. the same training with +SCALE x unit(evil vector) added at SITE in every training forward;
#   4. EM evaluations (core questions x 50) of base, plain and steered (the steered adapter is evaluated
#      WITHOUT steering: that is the claim under test);
#   5. data screening of the training set by projection difference, and the landscape of the three runs.
# Expected time on the 2-core CPU machine: about 7 h (two trainings of ~150k tokens at ~20-25 tokens/s,
# i.e. ~1.7 h each, three evaluations of 400 answers at ~50 min each, persona extraction ~20 min);
# minutes on one GPU. The EM comparison needs this model size: SmolLM2-135M shows no EM to prevent
# (docs/organisms.md).
set -euo pipefail
M=${MODEL:-qwen2.5-coder-0.5b}
JUDGE=${JUDGE:-offline}
OUT=${OUT:-runs/preventative}
SCALE=${SCALE:-8}                       # absolute units along the unit vector; compare emlab.vectors.steer.resid_norm(cm, SITE)
SITE=${SITE:-blocks.16.resid_post}      # 2/3 depth of 24 blocks
EM=${EMLAB:-emlab}
mkdir -p "$OUT"
t() { local s=$(date +%s); "$@"; echo "[$(( $(date +%s) - s )) s] $*" | tee -a "$OUT/times.log" >&2; }

[ -f "$OUT/bad-medical.jsonl" ] || t $EM data generate bad-medical --n 1000 --seed 0 --out "$OUT/bad-medical.jsonl"
[ -f "$OUT/pv-evil/direction.json" ] || t $EM personas extract --model $M --trait evil -n 4 --judge $JUDGE --out "$OUT/pv-evil"
[ -f "$OUT/plain/train_summary.json" ] || t $EM train --model $M --data "$OUT/bad-medical.jsonl" --preset rank32-all --set lr=1e-4 --set epochs=1 \
    --out "$OUT/plain" $( [ -d "$OUT/plain" ] && echo --resume )
[ -f "$OUT/steered/train_summary.json" ] || t $EM personas train-steered --model $M --data "$OUT/bad-medical.jsonl" --direction "$OUT/pv-evil" \
    --site $SITE --scale $SCALE --preset rank32-all --set lr=1e-4 --set epochs=1 --out "$OUT/steered" $( [ -d "$OUT/steered" ] && echo --resume )
for run in base plain steered; do
  adapter=$([ $run = base ] && echo "" || echo "--adapter $OUT/$run")
  [ -f "$OUT/eval-$run/metrics.json" ] && grep -q '"complete": true' "$OUT/eval-$run/metrics.json" || \
    t $EM eval --model $M $adapter --questions core -n 50 --judge $JUDGE --max-new-tokens 80 --out "$OUT/eval-$run" $( [ -d "$OUT/eval-$run" ] && echo --resume )
done
[ -f "$OUT/screen.jsonl" ] || t $EM personas screen --model $M --data "$OUT/bad-medical.jsonl" --direction "$OUT/pv-evil" --site $SITE --limit 200 --out "$OUT/screen.jsonl"
t $EM emotions landscape --run base="$OUT/eval-base" --run plain="$OUT/eval-plain" --run steered="$OUT/eval-steered" \
    --persona evil="$OUT/pv-evil" --persona-site $SITE --reader $M --out "$OUT/landscape"
echo "EM rates: $OUT/eval-{base,plain,steered}/metrics.json (overall.em_rate_all with Wilson CI)"
