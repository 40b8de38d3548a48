#!/usr/bin/env bash
# The benchmark of another commit and of this working tree, alternately, in one sitting: the
# paired ratio (dcgan / textbook loop) before and after a change, on the same machine, with
# drift hitting both. Prints each run's JSON line, tagged, and the CPU it ran on.
#
#   scripts/benchmark_ab.sh BASE_COMMIT [ROUNDS] [benchmark.py options...]
#   scripts/benchmark_ab.sh 7642f76 3 --quick
#   HEAD_FIRST=1 scripts/benchmark_ab.sh 7642f76 2     # the other order, to see order effects
set -euo pipefail
base=${1:?usage: scripts/benchmark_ab.sh BASE_COMMIT [ROUNDS] [options]}
rounds=${2:-2}
shift $(( $# >= 2 ? 2 : 1 ))
repo=$(cd "$(dirname "$0")/.." && pwd)
export DCGAN_SHARED_DATA=${DCGAN_SHARED_DATA:-$repo/../shared/data}  # both sides read the same data
tree=$(mktemp -d /tmp/dcgan-base-XXXXXX)
trap 'git -C "$repo" worktree remove --force "$tree" >/dev/null 2>&1 || true' EXIT
git -C "$repo" worktree add --detach "$tree" "$base" >/dev/null
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs) ($(nproc) cores)"
echo "base: $(git -C "$repo" rev-parse --short "$base"), head: $(git -C "$repo" rev-parse --short HEAD) + working tree"
for round in $(seq "$rounds"); do
  sides="base head"; [ -n "${HEAD_FIRST:-}" ] && sides="head base"
  for side in $sides; do
    if [ "$side" = base ]; then src=$tree; else src=$repo; fi
    line=$(PYTHONPATH="$src/src" python "$src/scripts/benchmark.py" "$@" | tail -n 1)
    echo "$side round $round: $line"
  done
done
