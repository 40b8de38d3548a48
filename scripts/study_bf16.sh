#!/usr/bin/env bash
# Issue 15, part 1: does bf16 autocast change what a CPU run learns? The shared faces at the
# study's setting (ngf=ndf=32, batch 128, train partition), 30 epochs, fp32 and bf16 from the
# same two seeds, two runs at a time on one thread each, resume=auto in $STUDY_DIR/NAME:
#
#   scripts/study_bf16.sh                       # fp32_seed1 bf16_seed1 | fp32_seed2 bf16_seed2
#   LANES=1 scripts/study_bf16.sh               # the same four runs one after the other
#   python scripts/study_faces_score.py --study /work/study15 --out docs/quality/bf16
#   python scripts/study_faces_score.py --out docs/quality/bf16 --plot
#
# bf16 is judged by whether its SWD curve stays within the spread of the two fp32 seeds.
set -uo pipefail
cd "$(dirname "$0")/.."
export STUDY_DIR=${STUDY_DIR:-/work/study15}
mkdir -p "$STUDY_DIR"
run() {  # NAME PRECISION SEED
    scripts/study_faces.sh "$1" "precision=$2" "seed=$3" epochs=30 >> "$STUDY_DIR/$1.log" 2>&1
}
# fp32 at seed 1 is issue 12's textbook run up to epoch 30 (nothing in the textbook recipe
# depends on the run's length): reuse it when that study has been run. Checked 2026-12-01: a
# fresh `precision=fp32 seed=1 epochs=1` run ends bit-identical to that run's epoch_001.pt.
if [ ! -e "$STUDY_DIR/fp32_seed1" ] && [ -d "${TEXTBOOK_RUN:-/work/study12/textbook}" ]; then
    ln -s "${TEXTBOOK_RUN:-/work/study12/textbook}" "$STUDY_DIR/fp32_seed1"
fi
lane1() { [ -L "$STUDY_DIR/fp32_seed1" ] || run fp32_seed1 fp32 1; run bf16_seed1 bf16 1; }
lane2() { run bf16_seed2 bf16 2; run fp32_seed2 fp32 2; }
if [ "${LANES:-2}" = 1 ]; then lane1; lane2; else lane1 & lane2 & wait; fi
