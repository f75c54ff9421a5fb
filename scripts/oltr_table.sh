#!/usr/bin/env bash
# The OLTR table on the embedded benchmark: for each seed, a plain stage-1 run (12 epochs), then every
# method as 6 stage-2 epochs from it (plain, focal, range, lifted, OLTR, and the class-aware-sampling
# ablation); prints mean ± std over seeds.
#   scripts/oltr_table.sh [SEEDS...]        (default: 0 1 2; reuses finished runs under runs/table/)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
SEEDS=("${@:-0 1 2}")
rows=()
for seed in ${SEEDS[@]}; do
  stage1=$(run "plain-s$seed" configs/fmnist_lt/plain.yaml seed="$seed")
  for method in oltr_stage2 stage2_plain stage2_focal stage2_range stage2_lifted stage2_classaware; do
    rows+=("$method=$(run "$method-s$seed" configs/fmnist_lt/$method.yaml seed="$seed" train.init_from="$stage1")")
  done
  rows+=("stage1_plain=$stage1")
done
$OPENLT summary "${rows[@]}"
