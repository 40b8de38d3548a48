# Sourced by the studies' run.sh scripts: checks `STUDY_DIR=DIR DCGAN_SHARED_DATA=DIR run.sh
# NAME [overrides]` and sets NAME, STUDY_DIR and SHARED_DATA (absolute), TRAIN (dcgan-train, or
# $DCGAN_TRAIN), and RECIPE_NAME and SEED from NAME (NAME_seedN: seed N; otherwise seed 1).
# The caller shifts NAME off its own arguments afterwards.
if [ -z "${STUDY_DIR:-}" ] || [ -z "${DCGAN_SHARED_DATA:-}" ] || [ $# -lt 1 ]; then
    echo "usage: STUDY_DIR=DIR DCGAN_SHARED_DATA=DIR $0 NAME [overrides]" >&2
    exit 2
fi
NAME=$1
mkdir -p "$STUDY_DIR"
STUDY_DIR=$(cd "$STUDY_DIR" && pwd)
SHARED_DATA=$(cd "$DCGAN_SHARED_DATA" && pwd)
TRAIN=${DCGAN_TRAIN:-dcgan-train}
RECIPE_NAME=$NAME SEED=1
if [[ $NAME =~ ^(.+)_seed([0-9]+)$ ]]; then RECIPE_NAME=${BASH_REMATCH[1]} SEED=${BASH_REMATCH[2]}; fi
