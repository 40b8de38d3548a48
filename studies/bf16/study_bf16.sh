#!/usr/bin/env bash
# The bf16 study: does bf16 autocast change what a CPU run learns? The shared faces at the faces
# study's setting (ngf=ndf=32, batch 128, train partition), 30 epochs, fp32 and bf16 from the
# same two seeds, on one thread each, resume=auto in $STUDY_DIR/NAME:
#
#   STUDY_DIR=DIR TEXTBOOK_STUDY=DIR DCGAN_SHARED_DATA=DIR studies/bf16/study_bf16.sh
#                                    # textbook | bf16_seed1, then bf16_seed2 | textbook_seed2
#   LANES=1 ... studies/bf16/study_bf16.sh   # the same runs one after the other
#   python studies/faces/study_faces_score.py --study $STUDY_DIR --data $DCGAN_SHARED_DATA \
#       --out studies/bf16 --last-epoch 30
#   python studies/faces/study_faces_score.py --out studies/bf16 --plot
#
# The fp32 runs are the faces study's textbook runs at seeds 1 and 2 (../faces/study_faces.sh
# textbook and textbook_seed2, 50 epochs, in $TEXTBOOK_STUDY), linked here as fp32_seed1 and
# fp32_seed2: nothing in the textbook recipe depends on the run's length, so their first 30
# epochs are the 30-epoch runs (a fresh `precision=fp32 seed=1 epochs=1` run ends bit-identical
# to the textbook run's epoch_001.pt). Finished runs return at once.
#
# bf16 is judged by whether its SWD curve stays within the spread of the two fp32 seeds.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
FACES=$HERE/../faces/study_faces.sh
if [ -z "${STUDY_DIR:-}" ] || [ -z "${TEXTBOOK_STUDY:-}" ] || [ -z "${DCGAN_SHARED_DATA:-}" ]; then
    echo "usage: STUDY_DIR=DIR TEXTBOOK_STUDY=DIR DCGAN_SHARED_DATA=DIR [LANES=1] $0" >&2
    echo "  STUDY_DIR: the bf16 runs; TEXTBOOK_STUDY: the faces study's runs (its textbook runs" \
         "are the fp32 ones); DCGAN_SHARED_DATA: the folder holding celeba/" >&2
    exit 2
fi
export DCGAN_SHARED_DATA
mkdir -p "$STUDY_DIR" "$TEXTBOOK_STUDY" || exit 2
# absolute: the runs' configs name these folders, and the fp32_seedN links point into TEXTBOOK_STUDY
STUDY_DIR=$(cd "$STUDY_DIR" && pwd)
export STUDY_DIR
TEXTBOOK_STUDY=$(cd "$TEXTBOOK_STUDY" && pwd)
bf16() {  # SEED
    "$FACES" "bf16_seed$1" precision=bf16 epochs=30 >> "$STUDY_DIR/bf16_seed$1.log" 2>&1
}
fp32() {  # SEED
    local name=textbook; [ "$1" = 1 ] || name=textbook_seed$1
    STUDY_DIR=$TEXTBOOK_STUDY "$FACES" "$name" >> "$TEXTBOOK_STUDY/$name.log" 2>&1
    [ -e "$STUDY_DIR/fp32_seed$1" ] || ln -s "$TEXTBOOK_STUDY/$name" "$STUDY_DIR/fp32_seed$1"
}
if [ "${LANES:-2}" = 1 ]; then fp32 1; bf16 1; bf16 2; fp32 2; else { fp32 1; bf16 1; } & { bf16 2; fp32 2; } & wait; fi
