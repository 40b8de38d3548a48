"""The figure and table of the fine-tuning study (finetune_demo.sh beside this script).

SWD against the digits over training, fine-tuned from the first run's MNIST generator vs from
scratch on the same budget, and the samples of the same 32 seeds before (the MNIST generator),
after fine-tuning, and from scratch.

    python studies/finetune/finetune_demo_plot.py --demo DIR [--out DIR]

--demo (default $DEMO_DIR) is the folder finetune_demo.sh trained in; finetune.png and swd.md
go to --out (default: this script's folder).
"""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from dcgan.files.images import image_grid  # noqa: E402
from dcgan.nets.latents import batch_latents  # noqa: E402
from dcgan.reporting.history import read_history  # noqa: E402
from dcgan.store.checkpoints import load_generator  # noqa: E402

OUT = Path(__file__).resolve().parent
RUNS = {"finetune": "fine-tuned from MNIST", "finetune_freeze_d2": "fine-tuned, freeze_d=2",
        "scratch": "from scratch"}
SEED, N = 0, 32


def grid(checkpoint: Path) -> Image.Image:
    generator = load_generator(checkpoint, torch.device("cpu"))
    with torch.no_grad():
        images = generator(batch_latents(N, generator.arch.nz, SEED))
    pixels = image_grid(images, nrow=8)  # uint8 already
    return Image.fromarray(pixels.permute(1, 2, 0).squeeze(-1).numpy())


def real_grid() -> Image.Image:
    """32 of the target digits, as the runs saw them (32x32)."""
    from dcgan.config import compose_config
    from dcgan.data.datasets import build_dataset

    dataset = build_dataset(compose_config(["+experiment=quickstart", "dataset=digits"]).dataset)
    images = torch.stack([dataset[i] for i in range(N)])
    return Image.fromarray(image_grid(images, nrow=8).squeeze(0).numpy())


def curves(demo: Path) -> dict[str, list[tuple[int, float]]]:
    return {name: read_history(demo / name).scalars.get("metrics/swd/mean", [])
            for name in RUNS if (demo / name).is_dir()}


def figure(demo: Path, swd: dict[str, list[tuple[int, float]]]) -> bytes:
    panels = {"before: the MNIST generator": grid(demo / "source" / "checkpoints" / "last.pt"),
              "the target: scikit-learn's digits": real_grid(),
              **{f"after 280 steps: {RUNS[name]}": grid(demo / name / "checkpoints" / "last.pt")
                 for name in ("finetune", "scratch")}}
    fig, axes = plt.subplots(1, 5, figsize=(21, 4.2),
                             gridspec_kw={"width_ratios": [1, 1, 1, 1, 1.3]})
    for axis, (title, image) in zip(axes, panels.items()):
        axis.imshow(image, cmap="gray", vmin=0, vmax=255)
        axis.set_title(title, fontsize=10)
        axis.axis("off")
    curve = axes[-1]
    for name, points in swd.items():
        curve.plot([s for s, _ in points], [v for _, v in points], marker="o", markersize=3,
                   label=RUNS[name])
    curve.set_xlabel("training steps on the digits (batch 64, 28 per epoch)")
    curve.set_ylabel("SWD x1e3 vs the 1,797 digits (lower is better)")
    curve.set_yscale("log")
    curve.grid(alpha=0.3)
    curve.legend(fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=72)
    return buffer.getvalue()


def table(swd: dict[str, list[tuple[int, float]]]) -> str:
    names = list(swd)
    steps = sorted({s for points in swd.values() for s, _ in points})
    rows = ["| step | " + " | ".join(RUNS[n] for n in names) + " |",
            "| ---: | " + " | ".join("---:" for _ in names) + " |"]
    for step in steps:
        values = [dict(swd[n]).get(step) for n in names]
        rows.append(f"| {step} | " + " | ".join("" if v is None else f"{v:.1f}" for v in values)
                    + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=os.environ.get("DEMO_DIR"),
                        help="the folder finetune_demo.sh trained in (default $DEMO_DIR)")
    parser.add_argument("--out", type=Path, default=OUT,
                        help="where finetune.png and swd.md go (default: this script's folder)")
    args = parser.parse_args()
    if args.demo is None:
        parser.error("say where the runs are: --demo DIR (or DEMO_DIR=DIR), the folder "
                     "finetune_demo.sh trained in")
    args.out.mkdir(parents=True, exist_ok=True)
    swd = curves(args.demo)
    (args.out / "finetune.png").write_bytes(figure(args.demo, swd))
    (args.out / "swd.md").write_text("SWD (x1e3, `metrics/swd/mean`) against all 1,797 digits, "
                                     "after every epoch (finetune_demo.sh)\n\n"
                                     + table(swd) + "\n")
    print(table(swd))


if __name__ == "__main__":
    main()
