#!/usr/bin/env bash
# Issue 15, part 1: does bf16 autocast change what a CPU run learns? The shared faces at the
# study's setting (ngf=ndf=32, batch 128, train partition), 30 epochs, fp32 and bf16 from the
# same two seeds, on one thread each, resume=auto in $STUDY_DIR/NAME:
#
#   scripts/study_bf16.sh                       # textbook | bf16_seed1, then bf16_seed2 | textbook_seed2
#   LANES=1 scripts/study_bf16.sh               # the same runs one after the other
#   python scripts/study_faces_score.py --study /work/study15 --out docs/quality/bf16
#   python scripts/study_faces_score.py --out docs/quality/bf16 --plot
#
# The fp32 runs are issue 12's textbook runs at seeds 1 and 2 (scripts/study_faces.sh textbook
# and textbook_seed2, 50 epochs, in $TEXTBOOK_STUDY), linked here as fp32_seed1 and fp32_seed2:
# nothing in the textbook recipe depends on the run's length, so their first 30 epochs are the
# 30-epoch runs (checked 2026-12-01: a fresh `precision=fp32 seed=1 epochs=1` run ends
# bit-identical to the textbook run's epoch_001.pt). Finished runs return at once.
#
# bf16 is judged by whether its SWD curve stays within the spread of the two fp32 seeds.
set -uo pipefail
cd "$(dirname "$0")/.."
export STUDY_DIR=${STUDY_DIR:-/work/study15}
TEXTBOOK_STUDY=${TEXTBOOK_STUDY:-/work/study12}
mkdir -p "$STUDY_DIR" "$TEXTBOOK_STUDY"
bf16() {  # SEED
    scripts/study_faces.sh "bf16_seed$1" precision=bf16 epochs=30 >> "$STUDY_DIR/bf16_seed$1.log" 2>&1
}
fp32() {  # SEED
    local name=textbook; [ "$1" = 1 ] || name=textbook_seed$1
    STUDY_DIR=$TEXTBOOK_STUDY scripts/study_faces.sh "$name" >> "$TEXTBOOK_STUDY/$name.log" 2>&1
    [ -e "$STUDY_DIR/fp32_seed$1" ] || ln -s "$TEXTBOOK_STUDY/$name" "$STUDY_DIR/fp32_seed$1"
}
if [ "${LANES:-2}" = 1 ]; then fp32 1; bf16 1; bf16 2; fp32 2; else { fp32 1; bf16 1; } & { bf16 2; fp32 2; } & wait; fi
