#!/usr/bin/env bash
# The same comparison on a second, standard data set: CIFAR-10, unconditional, 32x32, 30 epochs,
# seed 1. It trains on 9,000 of the 10,000 test images (900 a class) and holds the other 1,000
# out for scoring (studies/conditional/cifar_split.py: the conditional study's split), with the
# quickstart's networks (ngf = ndf = 32) and batch 64.
#
#   STUDY_DIR=DIR DCGAN_SHARED_DATA=DIR studies/faces-regularisers/cifar.sh NAME [overrides]
#
# NAME is one of
#   cifar_textbook   the paper's DCGAN as the defaults build it (BCE, Adam 2e-4, no EMA)
#   cifar_stable     celeba_stable's recipe (DiffAugment, real_label 0.9, mirroring, an EMA of G
#                    with a half-life of 10,000 images), spelled out: the experiment file
#                    would also choose the CelebA data set
#   cifar_lrtail     cifar_stable with its rates falling linearly over the last 40% of the run
#                    (from epoch 18; it starts from cifar_stable's epoch-18 checkpoint, which an
#                    uninterrupted run reaches bit for bit)
# Scored by: python studies/conditional/score.py --study DIR --runs NAME... --out DIR_OF_RESULTS
set -euo pipefail
source "$(dirname "$0")/../run_args.sh"
shift
HERE=$(cd "$(dirname "$0")" && pwd)
python "$HERE/../conditional/cifar_split.py" "$SHARED_DATA/cifar10/test" "$STUDY_DIR/cifar10"
STABLE=(dataset.mirror=true "augment.ops=[translation,color,cutout]" real_label=0.9 ema.decay=0
        ema.half_life_images=10000 ema.rampup=0.05 ema.start_step=100)
case $RECIPE_NAME in
    cifar_textbook) RECIPE=() ;;
    cifar_stable)   RECIPE=("${STABLE[@]}") ;;
    cifar_lrtail)   RECIPE=("${STABLE[@]}" lr_schedule=linear_tail lr_tail_fraction=0.4)
                    mkdir -p "$STUDY_DIR/$NAME/checkpoints"
                    [ -n "$(ls -A "$STUDY_DIR/$NAME/checkpoints")" ] ||
                        cp "$STUDY_DIR/cifar_stable${NAME#cifar_lrtail}/checkpoints/epoch_018.pt" \
                           "$STUDY_DIR/$NAME/checkpoints/" ;;
    *) echo "unknown run $NAME" >&2; exit 2 ;;
esac
exec $TRAIN dataset=cifar10 dataset.root="$STUDY_DIR/cifar10/train" dataset.image_size=32 \
    model.ngf=32 model.ndf=32 batch_size=64 epochs=30 seed="$SEED" eval.every=0 keep_last=0 \
    cpu_threads=1 resume=auto precision=fp32 "${RECIPE[@]}" "$@" hydra.run.dir="$STUDY_DIR/$NAME"
