#!/usr/bin/env bash
# The OLTR table on the embedded benchmark: for each seed, a plain stage-1 run (12 epochs), then every
# method as 6 stage-2 epochs from it (plain, focal, range, lifted, OLTR, and the class-aware-sampling ablation); prints mean ± std over seeds.
#   scripts/oltr_table.sh [SEEDS...]        (default: 0 1 2; reuses finished runs under runs/table/)
set -euo pipefail
cd "$(dirname "$0")/.."
OPENLT=${OPENLT:-.venv/bin/openlt}
SPLITS=${SPLITS:-splits/fmnist_lt}
OUT=${OUT:-runs/table}
SEEDS=("${@:-0 1 2}")
[ -f "$SPLITS/manifest.json" ] || $OPENLT split --dataset fashion-mnist --out "$SPLITS"
# the first finished (evaluated) run of a name, or nothing
finished() { for d in "$OUT"/"$1"-*; do if [ -f "$d/metrics.json" ]; then echo "$d"; return; fi; done; }
rows=()
for seed in ${SEEDS[@]}; do
  stage1=$(finished "plain-s$seed")
  if [ -z "$stage1" ]; then
    $OPENLT train configs/fmnist_lt/plain.yaml data.split_dir="$SPLITS" seed="$seed" out_dir="$OUT" --name "plain-s$seed" --quiet
    stage1=$(finished "plain-s$seed")
  fi
  for method in oltr_stage2 stage2_plain stage2_focal stage2_range stage2_lifted stage2_classaware; do
    run=$(finished "$method-s$seed")
    if [ -z "$run" ]; then
      $OPENLT train configs/fmnist_lt/$method.yaml data.split_dir="$SPLITS" seed="$seed" out_dir="$OUT" \
        train.init_from="$stage1" --name "$method-s$seed" --quiet
      run=$(finished "$method-s$seed")
    fi
    rows+=("$method=$run")
  done
  rows+=("stage1_plain=$stage1")
done
$OPENLT summary "${rows[@]}"
