#!/usr/bin/env bash
# The runs behind the README's "Stable training" tables: the textbook DCGAN against
# +experiment=celeba_stable / mnist_stable, same seed, same data, same images seen.
# Each run uses one CPU thread so two can share a 2-core machine; pass a group name to run one.
#   scripts/quality_experiments.sh small    # 1,000 CelebA faces, a stronger D (ndf=64)
#   scripts/quality_experiments.sh rollback # the textbook "small" run with collapse.policy=rollback
#   scripts/quality_experiments.sh full     # all 6,097 faces of ../shared/data/celeba
#   scripts/quality_experiments.sh mnist    # the 10k MNIST test digits
#   scripts/quality_experiments.sh mnist-rollback  # the textbook MNIST run with collapse.policy=rollback
# Then: python scripts/quality_report.py  (tables and grids under docs/quality/)
# (The "small" runs in the README were made with epochs=30, then continued with
#  dcgan-train resume=runs/quality/small-<kind> epochs=70; resuming is exact, so it is the same.
#  A machine restart stopped that continuation at epoch 56 and it was resumed again; the time of
#  the interrupted part, in small-<kind>.resume.time, is read from its TensorBoard event times.)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DCGAN_SHARED_DATA:-../shared/data}
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
