#!/usr/bin/env bash
# Issue 15's GPU checks as one command, for a session whose task is lent a CUDA machine (the
# device tool: 15 minutes of device time in all, a fresh machine per lease, no network there).
#
#   scripts/device_checks.sh prepare     # here: wheels of what the device's image lacks -> .whl/
#   device run: command="bash scripts/device_checks.sh", carry=[".whl"], timeout_s=540
#
# There it installs the wheels beside the image's own torch, runs tests/test_cuda.py (the CUDA
# paths, CUDA graphs bit for bit against eager) and scripts/benchmark.py (the textbook loop,
# the trainer, cuda_graphs=true, in paired windows), and writes $OUT/cuda_tests.txt and
# $OUT/benchmark_cuda.txt: copy them into docs/ and commit them.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = prepare ]; then
    grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
    # the device image has torch, tensorboard, tqdm, safetensors, pillow, numpy, torchmetrics
    # (device/KINDS.md); Hydra and its parser are what it lacks
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_17_x86_64 --platform any -d .whl \
        hydra-core==1.3.2 omegaconf==2.3.0 torch-fidelity==0.3.0
    # omegaconf's parser is published as source only: build its (pure Python) wheel here
    python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
    ls .whl
    exit
fi
OUT=${OUT:-/tmp/device_checks}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/cuda_tests.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/cuda_tests.txt"
timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -40 \
    | tee -a "$OUT/cuda_tests.txt"
{ timeout 200 python3 scripts/benchmark.py --device cuda
  timeout 60 python3 scripts/benchmark.py --device cuda --batch-size 512 --quick; } 2>&1 \
    | tee "$OUT/benchmark_cuda.txt"
