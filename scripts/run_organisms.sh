#!/usr/bin/env bash
# Run organism specs in parallel (one process per spec, one torch thread each: on the shared
# 2-core machine a single-threaded process wastes no time spinning on preempted OpenMP threads),
# then copy each finished run's small summaries into experiments/organisms/results/.
# Usage: scripts/run_organisms.sh SPEC.yaml [SPEC.yaml ...]   (runs land in $EMLAB_RUNS, default ./runs)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
runs="${EMLAB_RUNS:-runs}"
mkdir -p "$runs/logs"
pids=()
for spec in "$@"; do
  name="$(basename "$spec" .yaml)"
  ( emlab run "$spec" --runs-dir "$runs" > "$runs/logs/$name.log" 2>&1 \
      && python scripts/organisms_table.py --collect "$(ls -d "$runs"/*-"$name" | tail -1)" ) &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
