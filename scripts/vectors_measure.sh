#!/usr/bin/env bash
# The measurements of docs/personas-emotions.md (CPU, niced). Each step is resumable or cheap to redo:
# rerun the script and finished folders are skipped.
#   bash scripts/vectors_measure.sh smollm2   # emotions + geometry + evil persona + steering table (SmolLM2-135M)
#   bash scripts/vectors_measure.sh qwen      # emotions + geometry (Qwen2.5-Coder-0.5B)
set -euo pipefail
PY=${PY:-python}
OUT=${OUT:-runs/vectors}
E="nice -n 5 $PY -m emlab.cli"
t() { local s=$(date +%s); "$@"; echo "[$(( $(date +%s) - s )) s] $*" >&2; }
case "${1:-smollm2}" in
  smollm2)
    M=smollm2-135m; D=$OUT/emo-smollm2
    [ -f $D/emotion_vectors.json ] || t $E emotions extract --model $M --out $D
    t $E emotions geometry $D
    [ -f $OUT/persona-evil-smollm2/direction.json ] || t $E personas extract --model $M --trait evil -n 2 --judge offline --out $OUT/persona-evil-smollm2
    t $E emotions steer --model $M --vectors $D --persona evil=$OUT/persona-evil-smollm2 \
        -c calm:0.25 -c desperate:0.25 -c evil:0.25 -c evil:-0.25 --questions core --questions pressure -n 2 --judge offline --out $OUT/steer-smollm2
    ;;
  qwen)
    M=qwen2.5-coder-0.5b; D=$OUT/emo-qwen
    # one story per situation (144 stories): a third of the SmolLM2 protocol, to fit the shared 2-core CPU
    [ -f $D/emotion_vectors.json ] || t $E emotions extract --model $M --out $D --per-situation 1 --batch-size 8
    t $E emotions geometry $D
    ;;
  smollm2-small)
    # the same reduced protocol on SmolLM2, to see what fewer stories alone change
    M=smollm2-135m; D=$OUT/emo-smollm2-ps1
    [ -f $D/emotion_vectors.json ] || t $E emotions extract --model $M --out $D --per-situation 1
    t $E emotions geometry $D
    ;;
esac
