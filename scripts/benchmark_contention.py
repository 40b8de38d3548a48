"""Training on a busy CPU, as ratios to the trainer alone with torch's default threads
(`python scripts/benchmark.py --contention`; about two minutes).

Each trainer is a separate process that trains the quickstart's networks (32x32, ngf = ndf =
32, batch 64) on random images for a fixed time and reports real images per second. Its
threads come from cpu_threads=auto (chosen as dcgan-train chooses them, after start-up) or are
torch's default (every core: how the trainer ran before auto). Scenarios:
  - alone, default threads (the baseline) and auto
  - beside one busy process (a single-thread Python loop started first)
  - two trainers side by side, started together (a sweep)
  - two trainers, the second started while the first is training
Targets on 2 cores: alone >= 97% of the baseline, beside a busy process >= 45%, two side by
side >= 40% each. Prints a table, then one JSON line.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SECONDS = 8.0  # each trainer's timed window
LATE_START = 4.0  # seconds between the two trainers of the staggered scenario
BUSY_LOOP = "while True: pass"


def trainer_process(threads: str, seconds: float) -> subprocess.Popen:
    """A trainer in its own process; `threads`: auto or default."""
    return subprocess.Popen([sys.executable, __file__, "--trainer", threads, str(seconds)],
                            stdout=subprocess.PIPE, text=True, env=without_thread_settings())


def without_thread_settings() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def result_of(process: subprocess.Popen) -> dict:
    output, _ = process.communicate(timeout=300)
    return json.loads(output.strip().splitlines()[-1])


def train_for(threads: str, seconds: float) -> dict:
    """Runs in the trainer process: choose threads (watching the other processes through its
    start-up, as dcgan-train does), warm up, time steps for `seconds`."""
    from dcgan.runtime import cpu_share

    cpu_share.note_start()
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchmark import loop_step, project_trainer

    chosen = cpu_share.choose_cpu_threads().threads if threads == "auto" else torch.get_num_threads()
    torch.set_num_threads(chosen)
    trainer = project_trainer(torch.device("cpu"), 64, "model.ngf=32", "model.ndf=32",
                              "dataset.image_size=32")
    real = torch.rand(64, 3, 32, 32).mul_(2).sub_(1)
    step = loop_step(trainer, real)
    for _ in range(5):
        step()
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        steps += 1
    return {"img_s": steps * 64 / (time.perf_counter() - started), "threads": chosen}


def alone(threads: str) -> dict:
    return result_of(trainer_process(threads, SECONDS))


def beside_busy_loop(threads: str) -> dict:
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        time.sleep(0.5)
        return result_of(trainer_process(threads, SECONDS))
    finally:
        busy.kill()
        busy.wait()


def side_by_side(threads: str, late_start: float = 0.0) -> list[dict]:
    first = trainer_process(threads, SECONDS + late_start)
    time.sleep(late_start)
    second = trainer_process(threads, SECONDS)
    return [result_of(first), result_of(second)]


def measure(repeats: int) -> dict:
    """Median img/s of each scenario over `repeats` rounds (scenarios interleaved)."""
    runs: dict[str, list] = {}
    for _ in range(repeats):
        for name, measure_once in (
                ("alone, default threads", lambda: [alone("default")]),
                ("alone, auto", lambda: [alone("auto")]),
                ("beside a busy process, default threads", lambda: [beside_busy_loop("default")]),
                ("beside a busy process, auto", lambda: [beside_busy_loop("auto")]),
                ("two side by side, default threads", lambda: side_by_side("default")),
                ("two side by side, auto", lambda: side_by_side("auto")),
                ("two, the second 4 s later, auto", lambda: side_by_side("auto", LATE_START))):
            runs.setdefault(name, []).append(measure_once())
    baseline = statistics.median(r[0]["img_s"] for r in runs["alone, default threads"])
    table = {}
    for name, rounds in runs.items():
        per_trainer = [statistics.median(r[i]["img_s"] for r in rounds)
                       for i in range(len(rounds[0]))]
        table[name] = {"img_s": [round(v, 1) for v in per_trainer],
                       "of_alone": [round(v / baseline, 3) for v in per_trainer],
                       "threads": [rounds[-1][i]["threads"] for i in range(len(rounds[0]))]}
    return table


def report(table: dict, cpu: str) -> None:
    print(f"dcgan contention benchmark ({cpu}, {len(os.sched_getaffinity(0))} usable CPUs), "
          "quickstart networks, batch 64")
    width = max(len(name) for name in table)
    for name, row in table.items():
        shares = ", ".join(f"{100 * r:.0f}%" for r in row["of_alone"])
        speeds = ", ".join(f"{v:.0f}" for v in row["img_s"])
        print(f"  {name:<{width}}  {speeds:>12} img/s  {shares:>10} of alone  "
              f"threads {row['threads']}")
    print(json.dumps({"cpu": cpu, "contention": table}))


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--trainer":
    print(json.dumps(train_for(sys.argv[2], float(sys.argv[3]))))
