"""The behaviour reference: what tiny CPU runs of `dcgan-train` log and end with.

Recorded once from the trainer as it was before the redesign (commit 7642f76), committed under
tests/data/reference/, and compared by tests/test_reference.py after every change: the same
commands must give the same per-step losses, D(x), D(G(z)), evaluation metrics and collapse
messages, and bit-identical final weights and optimiser states.

    python -m tests.behaviour_reference record            # all cases, into tests/data/reference
    python -m tests.behaviour_reference record textbook   # one case

Each case is one or more `dcgan-train` commands run in a subprocess in a fresh folder. Every
run uses one CPU thread (`cpu_threads=1`), so the float reductions, and with them the bits,
do not depend on how many cores the machine has.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import TINY_NETWORKS, run_cli

REFERENCE_DIR = Path(__file__).resolve().parent / "data" / "reference"
# as they were when recorded: digits the default data set, samples from running statistics
BASE = [*TINY_NETWORKS, "dataset=digits", "ema.recalibrate_bn=false", "cpu_threads=1"]
# A discriminator that learns 100x faster than its generator wins within a few dozen steps.
COLLAPSING = ["lr_g=1e-6", "lr_d=5e-3", "collapse.patience=3", "collapse.g_loss_ceiling=4",
              "collapse.d_loss_floor=0.1", "epochs=12", "keep_last=0"]
# Every argument list is one dcgan-train command; {run} is the case's run directory, {dir} its
# scratch folder.
CASES: dict[str, list[list[str]]] = {
    # the paper's recipe on the offline default data set, evaluated every epoch
    "textbook": [[*BASE, "epochs=2", "eval.n_samples=32", "hydra.run.dir={run}"]],
    # the stable recipe (DiffAugment, label smoothing, EMA) on random images, as it was when
    # recorded (issue 12's study has since added mirroring and an EMA half-life to it)
    "celeba_stable": [[*BASE, "+experiment=celeba_stable", "dataset.mirror=false",
                       "ema.half_life_images=null", "ema.decay=0.99", "dataset=fake",
                       "dataset.size=64", "epochs=2", "ema.start_step=2", "eval.n_samples=32",
                       "hydra.run.dir={run}"]],
    # the other stabilisers: instance noise, label flips, two time scales, d_steps
    "stabilisers": [[*BASE, "instance_noise.std=0.2", "label_flip=0.1", "real_label=0.9",
                     "lr_g=1e-4", "lr_d=4e-4", "d_steps=2", "epochs=2", "eval.every=0",
                     "hydra.run.dir={run}"]],
    # a run made to collapse, with collapse.policy=rollback (one rollback, then it stops)
    "rollback": [[*BASE, *COLLAPSING, "collapse.policy=rollback",
                  "collapse.rollback.max_rollbacks=1", "eval.every=0", "ckpt_every_steps=1",
                  "hydra.run.dir={run}"]],
    # stopped after step 3 of 4 in the first epoch (its step checkpoint), resumed elsewhere
    "resume_mid_epoch": [
        [*BASE, "epochs=2", "ckpt_every_steps=3", "keep_last=0", "eval.every=0",
         "hydra.run.dir={dir}/first"],
        ["resume={dir}/first/checkpoints/step_0000003.pt", "hydra.run.dir={run}"],
    ],
}
RECORDED_TAGS = ("loss/d", "loss/g", "d/real_prob", "d/fake_prob")
STATE_KEYS = ("generator", "discriminator", "generator_ema", "opt_g", "opt_d")


def machine() -> dict[str, str]:
    """What decides the bits of a float computation here: CPU model, torch and its kernels."""
    model = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        model = found.group(1).strip() if found else model
    return {"cpu": model, "torch": torch.__version__,
            "capability": torch.backends.cpu.get_cpu_capability()}


def tensor_digest(state: Any) -> str:
    """SHA-256 over every tensor of a nested state (dict keys in sorted order) and its name."""
    digest = hashlib.sha256()

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            digest.update(prefix.encode())
            digest.update(value.detach().cpu().contiguous().flatten().view(torch.uint8)
                          .numpy().tobytes())
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                visit(f"{prefix}/{key}", value[key])
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                visit(f"{prefix}/{index}", item)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            digest.update(f"{prefix}={value!r}".encode())

    visit("", state)
    return digest.hexdigest()


def final_state(run_dir: Path) -> dict[str, Any]:
    """The digest of each network and optimiser of the run's last.pt, and where it stopped."""
    state = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu",
                       weights_only=True)
    return {"epoch": int(state["epoch"]), "step": int(state["step"]),
            "digests": {key: tensor_digest(state[key]) for key in STATE_KEYS if key in state}}


def logged(run_dir: Path) -> dict[str, Any]:
    """Every scalar the run logged (but images per second) as (step, value) in the order
    written, and its text messages."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    scalars = {tag: [[e.step, e.value] for e in events.Scalars(tag)]
               for tag in sorted(tags["scalars"])
               if tag in RECORDED_TAGS or tag.startswith("metrics/")}
    texts = [[e.step, value.decode()] for tag in sorted(tags["tensors"])
             for e in events.Tensors(tag) for value in e.tensor_proto.string_val]
    return {"scalars": scalars, "texts": texts}


def run_case(name: str, scratch: Path) -> dict[str, Any]:
    """Run the case's commands in `scratch`; what they logged and the final state."""
    run_dir = scratch / "run"
    exit_codes = []
    for command in CASES[name]:
        args = [arg.format(run=run_dir, dir=scratch) for arg in command]
        result = run_cli("dcgan-train", *args, cwd=scratch)
        if result.returncode not in (0, 4):  # 4: a collapse stop, part of the rollback case
            raise AssertionError(f"{name}: dcgan-train {' '.join(args)} exited "
                                 f"{result.returncode}\n{result.stderr[-3000:]}")
        exit_codes.append(result.returncode)
    texts = logged(run_dir)
    for entry in texts["texts"]:  # run directories differ from run to run
        entry[1] = entry[1].replace(str(scratch), "<scratch>")
    return {"commands": CASES[name], "exit_codes": exit_codes, **texts,
            "final": final_state(run_dir)}


def record(names: list[str]) -> None:
    REFERENCE_DIR.mkdir(parents=True, exist_ok=True)
    for name in names:
        with tempfile.TemporaryDirectory() as scratch:
            result = {"machine": machine(), **run_case(name, Path(scratch))}
        path = REFERENCE_DIR / f"{name}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        sys.stderr.write(f"{path}: {len(result['scalars'].get('loss/d', []))} steps, "
                         f"final step {result['final']['step']}\n")


if __name__ == "__main__":
    if sys.argv[1:2] != ["record"]:
        raise SystemExit(__doc__)
    record(sys.argv[2:] or list(CASES))
