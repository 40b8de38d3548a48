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
lane() { for name in "$@"; do nice -n 19 "$HERE/run.sh" "$name" >> "$STUDY_DIR/$name.log" 2>&1; done; }
# celeba_stable itself is re-run on the machine that runs the rest: a run on another machine
# follows another trajectory, as another seed would
lane stable lecam lrtail lecam_seed2 r1_seed2 &
lane r1 bcr stable_seed2 bcr_seed2 lrtail_seed2 &
wait
