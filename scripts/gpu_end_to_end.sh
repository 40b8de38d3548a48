#!/usr/bin/env bash
# Run on a CUDA machine with dcgan installed; the figures are in docs/benchmark_cuda.txt.
#   CACHES="false true" bash scripts/gpu_end_to_end.sh
# End-to-end dcgan-train on the GPU: image files decoded per epoch vs the decoded-image cache.
python3 - <<'PY'
import numpy as np, os
from PIL import Image
from concurrent.futures import ProcessPoolExecutor
os.makedirs("/tmp/faces", exist_ok=True)
def write(i):
    rng = np.random.default_rng(i)
    Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(f"/tmp/faces/{i:06d}.jpg", quality=90)
with ProcessPoolExecutor(16) as pool: list(pool.map(write, range(20480), chunksize=256))
PY
for cache in ${CACHES:-false true}; do
  for batch in 128 512; do
    dcgan-train dataset=celeba dataset.root=/tmp/faces dataset.cache=$cache dataset.cache_dir=/tmp/cache batch_size=$batch epochs=3 eval.every=0 log_every=10 hydra.run.dir=/tmp/e2e-$cache-$batch > /tmp/e2e.log 2>&1 || tail -5 /tmp/e2e.log
    echo "cache=$cache batch=$batch: $(python3 -c "import json;d=json.load(open('/tmp/e2e-$cache-$batch/summary.json'));print(round(d['img_per_s']), 'img/s in the last window,', d['seconds'], 's for 3 epochs')")"
  done
done
