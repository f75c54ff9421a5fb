#!/usr/bin/env bash
# The decoupling table on the embedded benchmark: for each seed, the plain instance-balanced stage-1 run
# (12 epochs, shared with oltr_table.sh) is the "joint" row; NCM, cRT, tau-norm, LWS and post-hoc logit
# adjustment are stage 2 on its cached features; with LOSSES=1 also stage 1 trained with each re-balancing
# loss (focal, class-balanced, LDAM-DRW, balanced softmax, logit-adjusted; 12 epochs each); with SAMPLERS=1
# the sampler study: stage 1 with class-balanced, square-root and progressively-balanced sampling, each
# with cRT on top (the paper's finding: instance-balanced features + re-balanced classifier win).
#   scripts/decouple_table.sh [SEEDS...]    (default: 0 1 2; reuses finished runs under runs/table/)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
SEEDS=("${@:-0 1 2}")
rows=()
for seed in ${SEEDS[@]}; do
  stage1=$(run "plain-s$seed" configs/fmnist_lt/plain.yaml seed="$seed")
  rows+=("joint=$stage1")
  for method in ncm ncm_cl2n crt tau_norm lws logit_adjust; do
    rows+=("$method=$(run "decouple_$method-s$seed" configs/fmnist_lt/decouple_$method.yaml seed="$seed" train.init_from="$stage1")")
  done
  if [ "${SAMPLERS:-0}" = 1 ]; then
    for sampler in class_balanced sqrt progressive; do
      joint=$(run "sampler_$sampler-s$seed" configs/fmnist_lt/sampler_$sampler.yaml seed="$seed")
      rows+=("joint_$sampler=$joint")
      rows+=("crt_$sampler=$(run "crt_$sampler-s$seed" configs/fmnist_lt/decouple_crt.yaml seed="$seed" train.init_from="$joint")")
    done
  fi
  if [ "${LOSSES:-0}" = 1 ]; then
    for loss in focal class_balanced ldam_drw balanced_softmax logit_adjusted; do
      rows+=("loss_$loss=$(run "loss_$loss-s$seed" configs/fmnist_lt/loss_$loss.yaml seed="$seed")")
    done
  fi
done
$OPENLT summary "${rows[@]}"
