#!/usr/bin/env bash
# Issue 12's study, two runs at a time (one CPU thread each), in the order they were started;
# lane 2 also carries issue 15's bf16 study (scripts/study_bf16.sh), whose fp32 runs are this
# study's textbook runs at seeds 1 and 2.
# Run it again in a later session: finished runs return at once (resume=auto sees their last
# epoch), a run that was cut off carries on from its last checkpoint.
set -uo pipefail
cd "$(dirname "$0")/.."
STUDY_DIR=${STUDY_DIR:-/work/study12}
BF16_DIR=${BF16_DIR:-/work/study15}
lane() { for name in "$@"; do STUDY_DIR=$STUDY_DIR scripts/study_faces.sh "$name" >> "$STUDY_DIR/$name.log" 2>&1; done; }
lane textbook celeba_stable ada_mirror celeba_stable_ttur celeba_stable_sn celeba_stable_seed2 \
    celeba_stable_mirror_hl celeba_stable_mirror_hl20 &
{ lane textbook_ema ada ada_mirror_ema
  TEXTBOOK_STUDY=$STUDY_DIR STUDY_DIR=$BF16_DIR LANES=1 scripts/study_bf16.sh  # ... textbook_seed2
  lane ada_mirror_ema_seed2 celeba_stable_mirror_hl_seed2 celeba_stable_mirror_hl20_seed2; } &
wait
