#!/usr/bin/env bash
# The faces study, round two: celeba_stable plus one regulariser made for small data sets per
# run, at the faces study's setting (studies/faces: ngf=ndf=32, batch 128, 50 epochs, the 4,657
# CelebA train faces; scored against the 660 test faces by studies/faces/study_faces_score.py).
#
#   STUDY_DIR=DIR DCGAN_SHARED_DATA=DIR studies/faces-regularisers/run.sh NAME [overrides]
#   (NAME_seedN: recipe NAME from seed N, e.g. lecam_seed2)
#
# STUDY_DIR holds one run directory per NAME (outside the repository) and the decoded-image
# cache; DCGAN_SHARED_DATA is the folder that holds celeba/. Every run uses one CPU thread and
# resume=auto, so running the same command again carries a cut-off run on from its last
# checkpoint. The recipe is spelled out in full (not read from the experiment file alone), so a
# run resumed after the shipped recipe changes keeps the settings it began with.
set -euo pipefail
source "$(dirname "$0")/../run_args.sh"
shift
DATA=$SHARED_DATA/celeba
CACHE=$STUDY_DIR/cache
PREPARE=${DCGAN_PREPARE:-dcgan-prepare}
if [ ! -d "$CACHE" ] || [ -z "$(ls -A "$CACHE" 2>/dev/null)" ]; then
    $PREPARE dataset=celeba dataset.root="$DATA" dataset.split=train dataset.cache_dir="$CACHE"
fi
# celeba_stable as shipped: DiffAugment, one-sided label smoothing, mirroring, an EMA of G with
# a half-life of 10,000 images
STABLE=(+experiment=celeba_stable dataset.mirror=true "augment.ops=[translation,color,cutout]"
        real_label=0.9 ema.decay=0 ema.half_life_images=10000 ema.rampup=0.05 ema.start_step=100)
case $RECIPE_NAME in
    stable) RECIPE=() ;;
    # LeCam at the weight and decay of the paper's DiffAugment + BigGAN CIFAR-10 runs
    lecam)  RECIPE=(reg.lecam.weight=0.3 reg.lecam.decay=0.99) ;;
    # R1 every 16 steps; gamma about 15x StyleGAN2-ADA's rule 0.0002 * 64^2 / 128 = 0.0064
    # (this D has no other penalty)
    r1)     RECIPE=(reg.r1.gamma=0.1 reg.r1.interval=16) ;;
    # bCR at the paper's weights (10 for real and for fake images), T = translation + cutout
    bcr)    RECIPE=(reg.bcr.real=10 reg.bcr.fake=10 "reg.bcr.ops=[translation,cutout]") ;;
    # the rates fall linearly over the last 40% (from epoch 30, where the recipe stops improving)
    lrtail) RECIPE=(lr_schedule=linear_tail lr_tail_fraction=0.4) ;;
    # the best two at seed 1 together: r1 until epoch 30, then its rates fall as lrtail's do
    r1_lrtail) RECIPE=(reg.r1.gamma=0.1 reg.r1.interval=16 lr_schedule=linear_tail
                       lr_tail_fraction=0.4) ;;
    *)      RECIPE=() ;;  # a new recipe: its overrides come as the extra arguments
esac
exec $TRAIN dataset=celeba dataset.root="$DATA" dataset.split=train dataset.cache=true \
    dataset.cache_dir="$CACHE" model.ngf=32 model.ndf=32 batch_size=128 seed="$SEED" epochs=50 \
    keep_last=0 eval.every=0 cpu_threads=1 log_every=10 resume=auto precision=fp32 \
    "${STABLE[@]}" "${RECIPE[@]}" "$@" hydra.run.dir="$STUDY_DIR/$NAME"
