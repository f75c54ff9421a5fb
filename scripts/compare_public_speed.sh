#!/bin/bash
# Whole-process wall times of openlt against the public OLTR code (zhmiao/OpenLongTailRecognition-OLTR, stage 1,
# patched to run on a CPU and read SPLIT; not part of this repository), alternated in ROUNDS rounds: `python main.py`
# (1 epoch) and `python main.py --test 1 --test_open 1` against `openlt train configs/imagenet_lt/plain_resnet10.yaml`
# (1 epoch, --no-eval; defaults, and train.amp=none) and `openlt eval RUN`. Run it alone on the machine.
#   PUBLIC=/path/to/oltr_public SPLIT=/path/to/perf224 scripts/compare_public_speed.sh [ROUNDS]
# SPLIT holds images/ and splits/ImageNet_LT_{train,val,test,open}.txt (scripts/bench_perf.py write_224_split).
# PUBLIC: a copy of the upstream main.py run_networks.py utils.py data/dataloader.py config/ImageNet_LT/stage_1.py
# models/{ResNet10Feature,ResNetFeature,DotProductClassifier}.py layers/ModulatedAttLayer.py loss/SoftmaxLoss.py
# (commits: the patch's head), then `patch -p1 < scripts/public_oltr_cpu.patch` in it: CPU, split from $PERF_SPLIT
# (run with PERF_SPLIT=$SPLIT). Larger splits: `scripts/bench_perf.py --write-split DIR --train-factor 4` (1,684
# training images) or `--eval-factor 8` (1,280 test and 640 open images; the 80 validation images stay).
set -u
ROUNDS=${1:-3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=$REPO/.venv/bin/python; OLT=$REPO/.venv/bin/openlt
OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT
t() { local name=$1; shift; local s=$(date +%s.%N); "$@" > "$OUT/$name.log" 2>&1; local rc=$?
      echo "$name rc=$rc $(echo "$(date +%s.%N) - $s" | bc) s"; }
TRAIN=(train "$REPO/configs/imagenet_lt/plain_resnet10.yaml" "data.root=$SPLIT/images" "data.split_dir=$SPLIT/splits"
       train.epochs=1 train.batch_size=32 "out_dir=$OUT/runs" --no-eval --quiet)
for r in $(seq "$ROUNDS"); do
  (cd "$PUBLIC" && t "public_train_$r" "$PY" main.py)
  t "openlt_train_$r" "$OLT" "${TRAIN[@]}" "name=auto_$r"
  t "openlt_train_fp32_$r" "$OLT" "${TRAIN[@]}" train.amp=none "name=fp32_$r"
  (cd "$PUBLIC" && t "public_eval_$r" "$PY" main.py --test 1 --test_open 1)
  t "openlt_eval_$r" "$OLT" eval "$(ls -d "$OUT"/runs/auto_"$r"-*)" --quiet
  t "openlt_eval_fp32_$r" "$OLT" eval "$(ls -d "$OUT"/runs/fp32_"$r"-*)" --quiet
done
