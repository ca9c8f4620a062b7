#!/usr/bin/env bash
# The one GPU run of the `gpu` profile (see README): the training-throughput benchmark, then two
# groups of experiment runs in two processes sharing the GPU. A group is a ';'-separated list of
# argument lists for `python -m mingpt.experiments`. The first GPU run used
#   GROUP1="C --seeds 0"   GROUP2="A B D --seeds 0;D --seeds 1;D --seeds 2"
# and finished A, B and D seed 0; the default is what is still missing (C, D's seeds 1-2).
# Everything must end within LIMIT seconds; what finished is packed into $OUT as tarballs
# (checkpoints, results, logs), which scripts/import_run.py unpacks into the repository.
#
#   OUT=/tmp/out LIMIT=540 bash scripts/gpu_run.sh            # PROFILE=quick for a dry run on a CPU
#   OUT=/tmp/out GROUP1="C --seeds 0" GROUP2="D --seeds 1;D --seeds 2" BENCH=0 bash scripts/gpu_run.sh
set -u
OUT=${OUT:?set OUT to the folder that receives the results}
LIMIT=${LIMIT:-540}
PROFILE=${PROFILE:-gpu}
PY=${PY:-python3}
GROUP1=${GROUP1:-"C --seeds 0"}
GROUP2=${GROUP2:-"D --seeds 1;D --seeds 2"}
BENCH=${BENCH:-1}
ROOT=$(mktemp -d)
REPO=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONUNBUFFERED=1
# start from the committed runs: stored components load instead of retraining, results files merge
mkdir -p "$ROOT/minGPT" && cp -r "$REPO/results" "$ROOT/" && cp -r "$REPO/minGPT/checkpoints" "$ROOT/minGPT/"

left() { echo $(( LIMIT - SECONDS )); }
run() {  # run LOGNAME ARGS...: one experiments process, stopped when the time is up
  local log=$1; shift
  if [ "$(left)" -lt 10 ]; then echo "skipped (time is up): $*" >>"$OUT/$log.log"; return; fi
  timeout "$(left)" "$PY" -m mingpt.experiments --profile "$PROFILE" --root "$ROOT" --no-progress "$@" \
    >>"$OUT/$log.log" 2>&1
  echo "exit $? after ${SECONDS}s: $*" >>"$OUT/$log.log"
}
run_group() {  # run_group LOGNAME "ARGS;ARGS;...": the runs one after the other
  local log=$1 job
  IFS=';' read -ra jobs <<<"$2"
  for job in "${jobs[@]}"; do run "$log" $job; done
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; "$PY" -c "import torch; print(torch.__version__)"; } \
  >"$OUT/device.txt" 2>&1
[ "$PROFILE" = quick ] || [ "$BENCH" = 0 ] || timeout 90 "$PY" -m mingpt.bench --steps 30 >"$OUT/bench.md" 2>&1

run_group group1 "$GROUP1" &
run_group group2 "$GROUP2" &
wait

tar -C "$ROOT" -czf "$OUT/results.tgz" results/section5 2>/dev/null
for seed in 0 1 2; do  # one tarball per seed keeps each file under the 16 MiB transfer limit
  files=$(find "$ROOT/minGPT/checkpoints" -path "*seed$seed/*" -o -name manifest.json | sed "s|^$ROOT/||" | sort)
  [ -n "$files" ] && tar -C "$ROOT" -czf "$OUT/checkpoints_seed$seed.tgz" $files
done
echo "finished in ${SECONDS}s" >>"$OUT/device.txt"
