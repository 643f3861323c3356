#!/usr/bin/env bash
# Run organism specs one after another, then copy each finished run's small summaries into
# experiments/organisms/results/ (scripts/organisms_table.py --collect). A failed spec is
# reported and the next one still runs; the exit status says whether all succeeded.
# Usage: scripts/run_organisms.sh SPEC.yaml [SPEC.yaml ...]   (runs land in $EMLAB_RUNS, default ./runs)
# Two queues on a 2-core machine: OMP_NUM_THREADS=1 scripts/run_organisms.sh A.yaml ... &
#                                  OMP_NUM_THREADS=1 scripts/run_organisms.sh B.yaml ...
set -uo pipefail
cd "$(dirname "$0")/.."
runs="${EMLAB_RUNS:-runs}"
emlab="${EMLAB:-.venv/bin/emlab}"
python="${PYTHON:-.venv/bin/python}"
mkdir -p "$runs/logs"
status=0
for spec in "$@"; do
  name="$(basename "$spec" .yaml)"
  echo "$(date -u +%FT%TZ) start $name"
  if "$emlab" run "$spec" --runs-dir "$runs" > "$runs/logs/$name.log" 2>&1 \
      && "$python" scripts/organisms_table.py --collect "$(ls -d "$runs"/*-"$name" | tail -1)"; then
    echo "$(date -u +%FT%TZ) done $name"
  else
    echo "$(date -u +%FT%TZ) FAILED $name (log: $runs/logs/$name.log)"
    status=1
  fi
done
exit $status
