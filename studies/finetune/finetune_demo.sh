#!/usr/bin/env bash
# The fine-tuning study: the first run's MNIST generator, carried over to scikit-learn's 1,797
# digits (8x8 scans blown up to 32x32: thick, blocky strokes, a small data set of another
# style), against the same networks trained from scratch on the same budget (same steps, same
# recipe, same seed).
#
#   DEMO_DIR=DIR studies/finetune/finetune_demo.sh           # runs in DIR; resume=auto
#   DEMO_DIR=DIR python studies/finetune/finetune_demo_plot.py   # the curve and the grids, beside it
#
# Every run uses one CPU thread and evaluates SWD (and diversity) against the digits after every
# epoch on all 1,797 of them.
set -euo pipefail
if [ -z "${DEMO_DIR:-}" ]; then
    echo "usage: DEMO_DIR=DIR [EPOCHS=10] $0" >&2
    echo "  DEMO_DIR: where the runs go (source, scratch, finetune, finetune_freeze_d2)" >&2
    exit 2
fi
EPOCHS=${EPOCHS:-10}
COMMON=(+experiment=quickstart cpu_threads=1 resume=auto keep_last=0)
# a moving average with a horizon in images (ramped up: at most 5% of the images seen so far)
TARGET=(dataset=digits "epochs=$EPOCHS" eval.every=1 eval.n_samples=1797 ema.decay=0 ema.start_step=0
        ema.half_life_images=5000)

# the source: the first run (README "Set-up"), on the bundled MNIST digits
dcgan-train "${COMMON[@]}" hydra.run.dir="$DEMO_DIR/source"
SOURCE=$DEMO_DIR/source/checkpoints/last.pt

dcgan-train "${COMMON[@]}" "${TARGET[@]}" hydra.run.dir="$DEMO_DIR/scratch"
dcgan-train "${COMMON[@]}" "${TARGET[@]}" init_from="$SOURCE" hydra.run.dir="$DEMO_DIR/finetune"
dcgan-train "${COMMON[@]}" "${TARGET[@]}" init_from="$SOURCE" freeze_d=2 \
    hydra.run.dir="$DEMO_DIR/finetune_freeze_d2"
