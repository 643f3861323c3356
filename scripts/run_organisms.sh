#!/usr/bin/env bash
# Run organism specs one after another, then copy each finished run's small summaries into
# experiments/organisms/results/ (scripts/organisms_table.py --collect). A failed spec is
# reported and the next one still runs; the exit status says whether all succeeded.
# Usage: scripts/run_organisms.sh SPEC.yaml|RUN_DIR ...   (runs land in $EMLAB_RUNS, default ./runs;
#        a RUN_DIR argument resumes that interrupted run: emlab run --resume RUN_DIR)
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
  if [ -f "$spec/manifest.json" ]; then
    run_dir="$spec"; name="$(basename "$spec" | cut -d- -f3-)"; cmd=(run --resume "$spec")
  else
    run_dir=""; name="$(basename "$spec" .yaml)"; cmd=(run "$spec" --runs-dir "$runs")
  fi
  echo "$(date -u +%FT%TZ) start $name"
  if "$emlab" "${cmd[@]}" >> "$runs/logs/$name.log" 2>&1 \
      && "$python" scripts/organisms_table.py --collect "${run_dir:-$(ls -d "$runs"/*-"$name" | tail -1)}"; then
    echo "$(date -u +%FT%TZ) done $name"
  else
    echo "$(date -u +%FT%TZ) FAILED $name (log: $runs/logs/$name.log)"
    status=1
  fi
done
exit $status
