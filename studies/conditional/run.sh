#!/usr/bin/env bash
# The conditional-training study: one run per NAME, each with resume=auto in $STUDY_DIR/NAME
# (outside the repository), so running the same command again carries a cut-off run on.
#
#   STUDY_DIR=DIR DCGAN_SHARED_DATA=DIR studies/conditional/run.sh NAME [overrides]
#
# NAME is one of
#   digits_cond, digits_uncond         the quickstart (bundled MNIST test digits, 32x32,
#                                      15 epochs), with condition=class or without
#   digits_cond_halflife               digits_cond with an EMA half-life of 10,000 images
#   digits_uncond_halflife             digits_uncond with it
#   cifar_cond, cifar_uncond           CIFAR-10: 9,000 of the 10,000 test images (900 a
#                                      class; the other 1,000 are held out for scoring), 32x32,
#                                      the quickstart's networks and recipe, 30 epochs
#   faces_attrs                        CelebA faces that have attribute rows, conditioned on
#                                      Smiling, Eyeglasses and Male, at the faces study's
#                                      networks; 150 epochs of batch 64 (1,500 steps: the 645
#                                      faces give 10 steps an epoch)
# with _projection for condition.style=projection (default: concat), then _seedN for seed N
# (default 1). DCGAN_SHARED_DATA holds cifar10/test and celeba/.
set -euo pipefail
source "$(dirname "$0")/../run_args.sh"
shift
DATA=$SHARED_DATA
HERE=$(cd "$(dirname "$0")" && pwd)
STYLE=concat
if [[ $RECIPE_NAME =~ ^(.+)_projection$ ]]; then RECIPE_NAME=${BASH_REMATCH[1]} STYLE=projection; fi
COMMON=(seed="$SEED" cpu_threads=1 resume=auto keep_last=0 hydra.run.dir="$STUDY_DIR/$NAME"
        condition.style=$STYLE)
# the quickstart's moving average of G when the study began (a per-step decay); the
# quickstart now uses the half-life of the _halflife runs
DECAY=(ema.decay=0.999 ema.half_life_images=null)
case $RECIPE_NAME in
    digits_cond)   RUN=(+experiment=quickstart condition=class "${DECAY[@]}") ;;
    digits_uncond) RUN=(+experiment=quickstart "${DECAY[@]}") ;;
    # the moving average of G with a half-life of 10,000 images instead of decay 0.999
    digits_cond_halflife)
        RUN=(+experiment=quickstart condition=class ema.decay=0 ema.half_life_images=10000) ;;
    digits_uncond_halflife) RUN=(+experiment=quickstart ema.decay=0 ema.half_life_images=10000) ;;
    cifar_cond|cifar_uncond)
        python "$HERE/cifar_split.py" "$DATA/cifar10/test" "$STUDY_DIR/cifar10"
        CONDITION=none; [ "$RECIPE_NAME" = cifar_cond ] && CONDITION=class
        RUN=(+experiment=quickstart dataset=cifar10 dataset.root="$STUDY_DIR/cifar10/train"
             dataset.image_size=32 condition=$CONDITION epochs=30 eval.every=5 "${DECAY[@]}") ;;
    faces_attrs)
        RUN=(dataset=celeba dataset.root="$DATA/celeba" dataset.split=train dataset.cache=true
             dataset.cache_dir="$STUDY_DIR/cache" condition=attributes
             "dataset.attributes=[Smiling,Eyeglasses,Male]" model.ngf=32 model.ndf=32
             batch_size=64 epochs=150 eval.every=25 precision=fp32 +experiment=celeba_stable) ;;
    *) echo "unknown run $NAME" >&2; exit 2 ;;
esac
exec $TRAIN "${RUN[@]}" "${COMMON[@]}" "$@"
