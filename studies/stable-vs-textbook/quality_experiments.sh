#!/usr/bin/env bash
# The stable-vs-textbook study: the textbook DCGAN against +experiment=celeba_stable /
# mnist_stable, same seed, same data, same images seen. Each run uses one CPU thread so two can
# share a 2-core machine; pass a group name to run one.
#
#   DCGAN_SHARED_DATA=DIR studies/stable-vs-textbook/quality_experiments.sh [GROUP]
#     small           1,000 CelebA faces, a stronger D (ndf=64)
#     rollback        the textbook "small" run with collapse.policy=rollback
#     full            all 6,097 faces of DIR/celeba
#     mnist           the 10k MNIST test digits of DIR/mnist
#     mnist-rollback  the textbook MNIST run with collapse.policy=rollback
#     all             every group (the default)
#
# DCGAN_SHARED_DATA is the folder holding celeba/ and mnist/; the runs go to
# $DCGAN_QUALITY_RUNS (default runs/quality, under the current folder), each with its log and
# its wall time (NAME.time). Then: python studies/stable-vs-textbook/quality_report.py --runs
# that folder (tables and grids beside the script).
#
# A run continued with `dcgan-train resume=RUN_DIR epochs=N` ends as if it had been started
# with epochs=N (resuming is exact); put the time of each continuation in RUN_DIR.resume.time,
# and quality_report.py adds it to the run's wall time.
set -euo pipefail
if [ -z "${DCGAN_SHARED_DATA:-}" ]; then
    echo "usage: DCGAN_SHARED_DATA=DIR [DCGAN_QUALITY_RUNS=DIR] $0 [small|full|rollback|mnist|mnist-rollback|all]" >&2
    echo "  DCGAN_SHARED_DATA: the folder holding celeba/ and mnist/" >&2
    exit 2
fi
DATA=$DCGAN_SHARED_DATA
OUT=${DCGAN_QUALITY_RUNS:-runs/quality}
COMMON=(seed=0 device=cpu cpu_threads=1 num_workers=0 batch_size=64 log_every=10
        keep_last=0 eval.n_samples=1000)

pair() {  # name, then the overrides both runs share
  local name=$1; shift
  local experiment=$1; shift
  /usr/bin/time -f "%e s" -o "$OUT/$name-textbook.time" \
    dcgan-train "${COMMON[@]}" "$@" hydra.run.dir="$OUT/$name-textbook" > "$OUT/$name-textbook.log" 2>&1 &
  /usr/bin/time -f "%e s" -o "$OUT/$name-stable.time" \
    dcgan-train "${COMMON[@]}" +experiment="$experiment" "$@" hydra.run.dir="$OUT/$name-stable" > "$OUT/$name-stable.log" 2>&1 &
  wait
}

mkdir -p "$OUT"
case "${1:-all}" in
  small|all)
    pair small celeba_stable dataset=celeba dataset.root="$DATA/celeba" dataset.limit=1000 \
      model.ngf=32 model.ndf=64 epochs=70 eval.every=3 ;;&
  full|all)
    pair full celeba_stable dataset=celeba dataset.root="$DATA/celeba" \
      model.ngf=32 model.ndf=32 epochs=8 eval.every=2 ;;&
  rollback|all)  # the textbook run of "small" again, with collapse.policy=rollback
    /usr/bin/time -f "%e s" -o "$OUT/small-rollback.time" \
    dcgan-train "${COMMON[@]}" dataset=celeba dataset.root="$DATA/celeba" dataset.limit=1000 \
      model.ngf=32 model.ndf=64 epochs=40 eval.every=3 collapse.policy=rollback \
      hydra.run.dir="$OUT/small-rollback" > "$OUT/small-rollback.log" 2>&1 ;;&
  mnist|all)
    pair mnist mnist_stable dataset=mnist dataset.root="$DATA/mnist" dataset.split=test \
      model.ngf=32 model.ndf=32 epochs=3 eval.every=1 ;;&
  mnist-rollback|all)  # the textbook MNIST run with collapse.policy=rollback; D wins within
    # the first epoch, so step checkpoints give it somewhere to go back to
    /usr/bin/time -f "%e s" -o "$OUT/mnist-rollback.time" \
    dcgan-train "${COMMON[@]}" dataset=mnist dataset.root="$DATA/mnist" dataset.split=test \
      model.ngf=32 model.ndf=32 epochs=3 eval.every=1 collapse.policy=rollback ckpt_every_steps=20 \
      hydra.run.dir="$OUT/mnist-rollback" > "$OUT/mnist-rollback.log" 2>&1 ;;
esac
