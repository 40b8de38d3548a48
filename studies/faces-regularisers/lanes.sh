#!/usr/bin/env bash
# Every run of the study, two at a time (one CPU thread each) on a 2-core machine, in order.
# Run it again later: finished runs return at once (resume=auto sees their last epoch), a run
# that was cut off carries on from its last checkpoint. Each run's log: $STUDY_DIR/NAME.log.
#
#   STUDY_DIR=DIR DCGAN_SHARED_DATA=DIR studies/faces-regularisers/lanes.sh
set -uo pipefail
if [ -z "${STUDY_DIR:-}" ] || [ -z "${DCGAN_SHARED_DATA:-}" ]; then
    echo "usage: STUDY_DIR=DIR DCGAN_SHARED_DATA=DIR $0" >&2
    exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$STUDY_DIR"
# at the lowest CPU priority, so the machine stays usable for other work meanwhile
run() { nice -n 19 "$HERE/run.sh" "$1" >> "$STUDY_DIR/$1.log" 2>&1; }
# lrtail is stable until epoch 30 (its rates fall over the last 40% of 50 epochs): it starts
# from stable's epoch-30 checkpoint, which an uninterrupted lrtail run reaches bit for bit
# (r1_lrtail likewise from r1's)
tail_of() {
    mkdir -p "$STUDY_DIR/$1/checkpoints"
    [ -n "$(ls -A "$STUDY_DIR/$1/checkpoints")" ] ||
        cp "$STUDY_DIR/$2/checkpoints/epoch_030.pt" "$STUDY_DIR/$1/checkpoints/"
    run "$1"
}
# celeba_stable itself is re-run on the machine that runs the rest
(run stable; tail_of lrtail stable; run r1; run lecam; tail_of r1_lrtail r1) &
(run stable_seed2; tail_of lrtail_seed2 stable_seed2; run r1_seed2; run lecam_seed2; run bcr;
 tail_of r1_lrtail_seed2 r1_seed2) &
wait
