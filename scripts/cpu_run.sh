#!/usr/bin/env bash
# A profile's (default cpu) C and D for seeds 0-2 on a 2-core machine: two queues, one process of one
# torch thread each. A queue is a ';'-separated list of argument lists for `python -m mingpt.experiments`.
# Runs write straight into the repository: each component is stored (minGPT/checkpoints/PROFILE, with
# its manifest entry and training time) as soon as it is trained, each finished seed's results go to
# results/section5/PROFILE, and the queues log starts, ends and accuracies to results/cpu_run/. A stopped
# queue resumes from what is stored, from the training states of prefixes and LoRAs (the seed's training/
# folder, committed) and from runs/PROFILE (whole-model mid-phase states, not committed): commit the
# stored components and training states as they appear, and run the script again.
#
#   bash scripts/cpu_run.sh                                   # the default queues below
#   QUEUE1="C --seeds 1" QUEUE2="D --seeds 1" bash scripts/cpu_run.sh
#   PROFILE=gpu QUEUE1="A --seeds 1 2;D --seeds 1" QUEUE2="" bash scripts/cpu_run.sh   # another profile
#   bash scripts/cpu_run.sh --help
set -u
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then sed -n '2,14p' "$0" | cut -c3-; exit 0; fi
PROFILE=${PROFILE:-cpu}
PY=${PY:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}
QUEUE1=${QUEUE1-"C --seeds 0;D --seeds 1;C --seeds 2"}   # about equal work in each queue
QUEUE2=${QUEUE2-"D --seeds 0;C --seeds 1;D --seeds 2"}
LOGS=$(cd "$(dirname "$0")/.." && pwd)/results/cpu_run   # committed: the record of each run's times
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$LOGS"

run_queue() {  # run_queue LOGNAME "ARGS;ARGS;...": the runs one after the other, each timed in the log
  local log=$LOGS/$1.log job
  IFS=';' read -ra jobs <<<"$2"
  for job in "${jobs[@]}"; do
    [ -n "${job// /}" ] || continue  # an empty queue runs nothing (not every experiment)
    echo "$(date -u +%FT%TZ) start: $job" >>"$log"
    "$PY" -m mingpt.experiments --profile "$PROFILE" --no-progress $job >>"$log" 2>&1
    local rc=$?
    echo "$(date -u +%FT%TZ) exit $rc: $job" >>"$log"
  done
}

run_queue cpu_queue1 "$QUEUE1" &
run_queue cpu_queue2 "$QUEUE2" &
wait
