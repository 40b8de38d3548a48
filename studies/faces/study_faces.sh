#!/usr/bin/env bash
# The faces study on the shared CelebA faces: one recipe per run, 50 epochs at the textbook's
# own setting (ngf=ndf=32, batch 128, seed 1), trained on the official train partition (4,657
# of the 6,097 shared faces) and scored later against the test partition (660 faces) by
# study_faces_score.py beside this script.
#
#   STUDY_DIR=DIR DCGAN_SHARED_DATA=DIR studies/faces/study_faces.sh NAME [extra overrides]
#
# STUDY_DIR holds one run directory per NAME and the decoded-image cache; DCGAN_SHARED_DATA is
# the folder that holds celeba/ (img_align_celeba/ and list_eval_partition.txt).
#
# Every run uses one CPU thread (two run side by side on a 2-core machine) and resume=auto in a
# fixed directory ($STUDY_DIR/NAME), so a run that was cut off carries on from its last
# checkpoint when the same command is run again. Precision is pinned to fp32 (what
# precision=auto was on a CPU when the study began), so a resumed run carries on as it started.
set -euo pipefail
usage() {
    echo "usage: STUDY_DIR=DIR DCGAN_SHARED_DATA=DIR $0 NAME [extra overrides]" >&2
    echo "  STUDY_DIR: where the runs go (one folder per NAME); DCGAN_SHARED_DATA: the folder holding celeba/" >&2
    exit 2
}
[ $# -ge 1 ] && [ -n "${STUDY_DIR:-}" ] && [ -n "${DCGAN_SHARED_DATA:-}" ] || usage
[ -d "$DCGAN_SHARED_DATA" ] || { echo "$0: DCGAN_SHARED_DATA=$DCGAN_SHARED_DATA is not a folder" >&2; exit 2; }
NAME=$1; shift
mkdir -p "$STUDY_DIR"
# absolute, so the composed config names the same folders from wherever the script is run
STUDY_DIR=$(cd "$STUDY_DIR" && pwd)
DATA=$(cd "$DCGAN_SHARED_DATA" && pwd)/celeba
CACHE=$STUDY_DIR/cache
if [ ! -d "$CACHE" ] || [ -z "$(ls -A "$CACHE" 2>/dev/null)" ]; then
    dcgan-prepare dataset=celeba dataset.root="$DATA" dataset.split=train dataset.cache_dir="$CACHE"
fi
# NAME_seedN: recipe NAME from seed N (its own run directory), e.g. celeba_stable_seed2
RECIPE_NAME=$NAME SEED=1
if [[ $NAME =~ ^(.+)_seed([0-9]+)$ ]]; then RECIPE_NAME=${BASH_REMATCH[1]} SEED=${BASH_REMATCH[2]}; fi
# celeba_stable as it was when the study began (DiffAugment, real_label 0.9, EMA decay 0.99 from
# step 100); the study made celeba_stable_mirror_hl the recipe, and every run here keeps the
# settings it started with
STABLE=(+experiment=celeba_stable dataset.mirror=false ema.half_life_images=null ema.decay=0.99)
case $RECIPE_NAME in
    textbook)        RECIPE=() ;;
    textbook_ema)    RECIPE=(ema.decay=0.999) ;;
    celeba_stable)   RECIPE=("${STABLE[@]}") ;;
    # adaptive augmentation over the DiffAugment operations; 100k images from p=0 to 1 (the
    # paper's 500k is for runs of millions of images: this whole run is 233k)
    ada)             RECIPE=("augment=[translation,color,cutout]" augment.p=ada augment.speed_images=100000) ;;
    ada_mirror)      RECIPE=("augment=[translation,color,cutout]" augment.p=ada augment.speed_images=100000
                             dataset.mirror=true) ;;
    ada_mirror_ema)  RECIPE=("augment=[translation,color,cutout]" augment.p=ada augment.speed_images=100000
                             dataset.mirror=true ema.half_life_images=10000) ;;
    # two time-scale learning rates (Heusel et al., 2017), and spectral normalisation in D
    # (Miyato et al., 2018), each on celeba_stable
    celeba_stable_ttur) RECIPE=("${STABLE[@]}" lr_d=4e-4 lr_g=1e-4) ;;
    celeba_stable_sn)   RECIPE=("${STABLE[@]}" model.spectral_norm=true) ;;
    # celeba_stable with what helped ADA late: mirroring and an EMA horizon in images instead
    # of the per-step decay
    celeba_stable_mirror_hl) RECIPE=("${STABLE[@]}" dataset.mirror=true ema.decay=0
                             ema.half_life_images=10000) ;;
    # ... with a longer horizon: the 0.05 ramp-up held mirror_hl's half-life to 5% of the
    # images seen (5.8k at epoch 25, below celeba_stable's 8.8k); 0.2 lets it grow to 20k
    celeba_stable_mirror_hl20) RECIPE=("${STABLE[@]}" dataset.mirror=true ema.decay=0
                             ema.half_life_images=20000 ema.rampup=0.2) ;;
    *)               RECIPE=() ;;  # a new recipe: its overrides come as the extra arguments
esac
exec dcgan-train dataset=celeba dataset.root="$DATA" dataset.split=train dataset.cache=true \
    dataset.cache_dir="$CACHE" model.ngf=32 model.ndf=32 batch_size=128 seed="$SEED" epochs=50 \
    keep_last=0 eval.every=0 cpu_threads=1 log_every=10 resume=auto precision=fp32 \
    "${RECIPE[@]}" "$@" hydra.run.dir="$STUDY_DIR/$NAME"
