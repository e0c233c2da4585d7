#!/usr/bin/env bash
# `make demo`: train YOLOv5-n on generated shapes with FeatmapVisHook, then
# draw the saved checkpoints with tools/featvis.py. Everything lands under
# $DEMO_DIR (default work_dirs/demo). DEMO_EPOCHS, DEMO_NUM_TRAIN and
# DEMO_NUM_VAL, DEMO_CKPT_INTERVAL shorten it (the test of this script does);
# DEMO_HOOK_OPTIONS adds --cfg-options for training (e.g.
# custom_hooks.1.alpha=1.0) and DEMO_FEATVIS_ARGS options for tools/featvis.py.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup_env.sh
PY=.venv/bin/python
DEMO_DIR="${DEMO_DIR:-work_dirs/demo}"
DATA="$DEMO_DIR/data"
EPOCHS="${DEMO_EPOCHS:-10}"
NUM_TRAIN="${DEMO_NUM_TRAIN:-128}"
NUM_VAL="${DEMO_NUM_VAL:-32}"
CKPT_INTERVAL="${DEMO_CKPT_INTERVAL:-2}"
start=$(date +%s)

echo "[demo 1/3] drawing $NUM_TRAIN + $NUM_VAL shape images into $DATA"
"$PY" tools/misc/make_shapes_dataset.py "$DATA" \
    --num-train "$NUM_TRAIN" --num-val "$NUM_VAL"

# The config derives its annotation paths from data_root when it is read.
DATA_OPTIONS=$("$PY" -c "import sys; from mmfeatvis.testing import \
shapes_cfg_options as o; print(' '.join(f'{k}={v}' for k, v in \
o(sys.argv[1]).items()))" "$DATA")

echo "[demo 2/3] training YOLOv5-n for $EPOCHS epochs with FeatmapVisHook"
"$PY" tools/train.py configs/demo/yolov5_n_shapes_featvis.py \
    --work-dir "$DEMO_DIR" \
    --cfg-options $DATA_OPTIONS train_cfg.max_epochs="$EPOCHS" \
    train_cfg.val_interval="$EPOCHS" \
    default_hooks.param_scheduler.max_epochs="$EPOCHS" \
    default_hooks.checkpoint.interval="$CKPT_INTERVAL" ${DEMO_HOOK_OPTIONS:-}

echo "[demo 3/3] tools/featvis.py over the saved checkpoints"
PROBE=$(ls "$DATA"/val/* | head -n 1)
"$PY" tools/featvis.py "$PROBE" configs/demo/yolov5_n_shapes.py \
    "$DEMO_DIR/epoch_*.pth" --target-layers backbone neck \
    --channel-reduction select_max --out-dir "$DEMO_DIR/featvis" \
    --device cpu ${DEMO_FEATVIS_ARGS:-} --cfg-options $DATA_OPTIONS

RUN_DIR=$(ls -d "$DEMO_DIR"/2*/ | tail -n 1)
# jpg by default; the hook's image_format may have made them png.
EXT=$(ls "${RUN_DIR}vis_data/vis_image" | head -n 1 | sed 's/.*\.//')
cat <<MSG

Demo finished in $(( $(date +%s) - start )) s.
  Hook images (every firing):  ${RUN_DIR}vis_data/vis_image/featvis_*.$EXT
  Checkpoint series:           $DEMO_DIR/featvis/*/ (epoch_*.jpg, series_strip.jpg,
                               series.gif, series_ranges.json)
  Training log:                ${RUN_DIR}$(basename "$RUN_DIR").log
Watch the maps next to the loss curves:
  .venv/bin/tensorboard --logdir $DEMO_DIR
MSG
