#!/usr/bin/env bash
# The PEFT adapters in results/peft, diagnosed with `python -m lm.diagnose` on the 259 held-out prompts of the
# GPT-2 stand-in's classification task: the adapters PEFT trained (`python -m lm.peft_train`, seeds 1-3) and this
# project's prefixes of the same seeds exported as PEFT adapters (`python -m lm.peft_adapters`).
#
#   bash scripts/peft_diagnoses.sh            # writes results/peft/*/seed*/diagnosis/
#   bash scripts/peft_diagnoses.sh --help
set -euo pipefail
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then sed -n '2,6p' "$0" | cut -c3-; exit 0; fi
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$REPO/.venv/bin/python}
RUN=$REPO/results/prefix_tuning/gpt2-classification-n10
PEFT=$REPO/results/peft
for seed in 1 2 3; do
  "$PY" -m lm.peft_adapters "$RUN" --index $((seed - 1)) --out "$PEFT/project-gpt2-classification-n10/seed$seed"
  for adapters in gpt2-classification-n10 project-gpt2-classification-n10; do
    "$PY" -m lm.diagnose --hf-model "$REPO/models/gpt2-standin" --adapter "$PEFT/$adapters/seed$seed" \
      --task classification --n-inputs 259 --out "$PEFT/$adapters/seed$seed/diagnosis"
  done
done
