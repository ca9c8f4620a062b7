#!/usr/bin/env bash
# The one GPU run of the `gpu` profile (see README, "GPU run"): the training-throughput benchmark,
# then experiment C (seed 0) in one process and A, B, D (seeds 0, 1, 2) in another, sharing the GPU.
# Everything must end within LIMIT seconds; what finished is packed into $OUT as tarballs
# (checkpoints, results, logs), which scripts/import_run.py unpacks into the repository.
#
#   OUT=/tmp/out LIMIT=540 bash scripts/gpu_run.sh            # PROFILE=quick for a dry run on a CPU
set -u
OUT=${OUT:?set OUT to the folder that receives the results}
LIMIT=${LIMIT:-540}
PROFILE=${PROFILE:-gpu}
PY=${PY:-python3}
ROOT=$(mktemp -d)
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../minGPT"

left() { echo $(( LIMIT - SECONDS )); }
run() {  # run LOGNAME ARGS...: one experiments process, stopped when the time is up
  local log=$1; shift
  if [ "$(left)" -lt 10 ]; then echo "skipped (time is up): $*" >>"$OUT/$log.log"; return; fi
  timeout "$(left)" "$PY" -m mingpt.experiments --profile "$PROFILE" --root "$ROOT" --no-progress "$@" \
    >>"$OUT/$log.log" 2>&1
  echo "exit $? after ${SECONDS}s: $*" >>"$OUT/$log.log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; "$PY" -c "import torch; print(torch.__version__)"; } \
  >"$OUT/device.txt" 2>&1
[ "$PROFILE" = quick ] || timeout 90 "$PY" -m mingpt.bench --steps 30 >"$OUT/bench.md" 2>&1

run C C --seeds 0 &
{ run ABD A B D --seeds 0; run ABD D --seeds 1; run ABD D --seeds 2; } &
wait

cd "$ROOT"
tar czf "$OUT/results.tgz" results 2>/dev/null
for seed in 0 1 2; do  # one tarball per seed keeps each file under the 16 MiB transfer limit
  files=$(find minGPT/checkpoints -path "*seed$seed/*" -o -name manifest.json | sort)
  [ -n "$files" ] && tar czf "$OUT/checkpoints_seed$seed.tgz" $files
done
echo "finished in ${SECONDS}s" >>"$OUT/device.txt"
