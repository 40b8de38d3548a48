#!/usr/bin/env bash
# The digits study: the recipes on the 10,000 MNIST test digits (the bundled `dataset=mnist10k`)
# at ngf=ndf=32, batch 64, 64x64, seed 1, 10 epochs, a checkpoint every epoch; then
# digit_classes.py beside this script reads which digits each draws at epochs 5 and 10.
#
#   DIGITS_DIR=DIR studies/digits/digits_balance.sh NAME [extra overrides]   # runs in DIR/NAME (resume=auto)
#   python studies/digits/digit_classes.py DIR/* --data DIR_HOLDING_MNIST --epochs 5,10
set -euo pipefail
if [ $# -lt 1 ] || [ -z "${DIGITS_DIR:-}" ]; then
    echo "usage: DIGITS_DIR=DIR $0 NAME [extra overrides]" >&2
    echo "  DIGITS_DIR: where the runs go (one folder per NAME)" >&2
    exit 2
fi
NAME=$1; shift
# NAME_seedN: recipe NAME from seed N (its own run directory), e.g. mnist_stable_seed2
RECIPE_NAME=$NAME SEED=1
if [[ $NAME =~ ^(.+)_seed([0-9]+)$ ]]; then RECIPE_NAME=${BASH_REMATCH[1]} SEED=${BASH_REMATCH[2]}; fi
# the stable recipe as these runs began: DiffAugment at a fixed p=1 (mnist_stable adapts p since
# the runs below showed ADA helps; mnist_ada is that recipe)
STABLE=(+experiment=mnist_stable dataset=mnist10k augment.p=1.0)
case $RECIPE_NAME in
    textbook)        RECIPE=() ;;
    mnist_stable)    RECIPE=("${STABLE[@]}") ;;
    # what the faces study carries over: adaptive augmentation, a moving average with a horizon
    # in images (mirroring is not for digits)
    mnist_ada)       RECIPE=("${STABLE[@]}" augment.p=ada
                             augment.speed_images=100000) ;;
    mnist_ada_hl)    RECIPE=("${STABLE[@]}" augment.p=ada
                             augment.speed_images=100000 ema.decay=0 ema.half_life_images=10000) ;;
    # p rose slowly with 100k images (0.09 after epoch 1, 0.46 at epoch 10): 5x faster
    mnist_ada_fast)  RECIPE=("${STABLE[@]}" augment.p=ada augment.speed_images=20000) ;;
    # ADA steering D's confidence on real digits lower (r_t target 0.5 instead of 0.6)
    mnist_ada_target05) RECIPE=("${STABLE[@]}" augment.p=ada augment.speed_images=100000
                             augment.target=0.5) ;;
    # the two that helped most, together
    mnist_ada_hl_ttur) RECIPE=("${STABLE[@]}" augment.p=ada
                             augment.speed_images=100000 ema.decay=0 ema.half_life_images=10000
                             lr_d=4e-4 lr_g=1e-4) ;;
    mnist_stable_ttur) RECIPE=("${STABLE[@]}" lr_d=4e-4 lr_g=1e-4) ;;
    mnist_stable_sn) RECIPE=("${STABLE[@]}" model.spectral_norm=true) ;;
    *)               RECIPE=() ;;
esac
exec dcgan-train dataset=mnist10k model.ngf=32 model.ndf=32 batch_size=64 seed="$SEED" epochs=10 \
    keep_last=0 eval.every=0 cpu_threads=1 log_every=10 resume=auto precision=fp32 \
    "${RECIPE[@]}" "$@" hydra.run.dir="$DIGITS_DIR/$NAME"
