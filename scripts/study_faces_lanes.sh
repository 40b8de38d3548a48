#!/usr/bin/env bash
# Issue 12's study, two runs at a time (one CPU thread each), in the order they were started.
# Run it again in a later session: finished runs return at once (resume=auto sees epoch 50),
# a run that was cut off carries on from its last checkpoint.
set -uo pipefail
cd "$(dirname "$0")/.."
STUDY_DIR=${STUDY_DIR:-/work/study12}
lane() { for name in "$@"; do scripts/study_faces.sh "$name" >> "$STUDY_DIR/$name.log" 2>&1; done; }
lane textbook celeba_stable ada_mirror celeba_stable_ttur celeba_stable_sn &
lane textbook_ema ada ada_mirror_ema &
wait
