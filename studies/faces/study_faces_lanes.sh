#!/usr/bin/env bash
# The faces study, two runs at a time (one CPU thread each), in the order they were started;
# lane 2 also carries the bf16 study (../bf16/study_bf16.sh), whose fp32 runs are this study's
# textbook runs at seeds 1 and 2.
#
#   STUDY_DIR=DIR BF16_DIR=DIR DCGAN_SHARED_DATA=DIR studies/faces/study_faces_lanes.sh
#
# Run it again to carry on: finished runs return at once (resume=auto sees their last epoch), a
# run that was cut off carries on from its last checkpoint. Each run's output goes to
# $STUDY_DIR/NAME.log (the bf16 runs' to $BF16_DIR/NAME.log).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
if [ -z "${STUDY_DIR:-}" ] || [ -z "${BF16_DIR:-}" ] || [ -z "${DCGAN_SHARED_DATA:-}" ]; then
    echo "usage: STUDY_DIR=DIR BF16_DIR=DIR DCGAN_SHARED_DATA=DIR $0" >&2
    echo "  STUDY_DIR: the faces study's runs; BF16_DIR: the bf16 study's runs;" \
         "DCGAN_SHARED_DATA: the folder holding celeba/" >&2
    exit 2
fi
export DCGAN_SHARED_DATA
mkdir -p "$STUDY_DIR" "$BF16_DIR" || exit 2
STUDY_DIR=$(cd "$STUDY_DIR" && pwd)
BF16_DIR=$(cd "$BF16_DIR" && pwd)
lane() { for name in "$@"; do STUDY_DIR=$STUDY_DIR "$HERE/study_faces.sh" "$name" >> "$STUDY_DIR/$name.log" 2>&1; done; }
lane textbook celeba_stable ada_mirror celeba_stable_ttur celeba_stable_sn celeba_stable_seed2 \
    celeba_stable_mirror_hl celeba_stable_mirror_hl20 &
{ lane textbook_ema ada ada_mirror_ema
  TEXTBOOK_STUDY=$STUDY_DIR STUDY_DIR=$BF16_DIR LANES=1 "$HERE/../bf16/study_bf16.sh"  # ... textbook_seed2
  lane ada_mirror_ema_seed2 celeba_stable_mirror_hl_seed2 celeba_stable_mirror_hl20_seed2; } &
wait
