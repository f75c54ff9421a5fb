#!/usr/bin/env bash
# Does the sampler study's finding depend on the training budget? Kang et al. (2020) find that
# instance-balanced stage 1 + cRT beats class-balanced stage 1; on the embedded benchmark at 12 epochs we
# found the opposite (README, "Sampler study"). Here the same two stage-1 recipes train EPOCHS epochs (default
# 48, 4x the table's budget), each with cRT on top, and the summary sets them beside the 12-epoch runs.
#   scripts/budget_study.sh [SEEDS...]                 (default: 0)
#   ONLY=instance|class_balanced scripts/budget_study.sh 0   (one recipe: run two at a time on 2 cores with
#                                                         OMP_NUM_THREADS=1, then once without ONLY for the table)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
EPOCHS=${EPOCHS:-48}
SEEDS=("${@:-0}")
declare -A CONFIG=([instance]=plain [class_balanced]=sampler_class_balanced)
declare -A SHORT=([instance]=plain [class_balanced]=sampler_class_balanced)
declare -A SHORT_CRT=([instance]=decouple_crt [class_balanced]=crt_class_balanced)
rows=()
for seed in ${SEEDS[@]}; do
  for sampler in instance class_balanced; do
    if [ -n "${ONLY:-}" ] && [ "$ONLY" != "$sampler" ]; then continue; fi
    joint=$(run "${CONFIG[$sampler]}_e$EPOCHS-s$seed" "configs/fmnist_lt/${CONFIG[$sampler]}.yaml" seed="$seed" \
      train.epochs="$EPOCHS")
    crt=$(run "crt_${sampler}_e$EPOCHS-s$seed" configs/fmnist_lt/decouple_crt.yaml seed="$seed" train.init_from="$joint")
    rows+=("${sampler}_e$EPOCHS=$joint" "${sampler}_e$EPOCHS+crt=$crt")
    short=$(finished "${SHORT[$sampler]}-s$seed")
    [ -n "$short" ] && rows+=("${sampler}_e12=$short")
    short=$(finished "${SHORT_CRT[$sampler]}-s$seed")
    [ -n "$short" ] && rows+=("${sampler}_e12+crt=$short")
  done
done
if [ -z "${ONLY:-}" ]; then $OPENLT summary "${rows[@]}"; fi
