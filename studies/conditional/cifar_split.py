"""Split a folder-per-class CIFAR-10 tree (e.g. the 10,000 test images) into train/ and held/
trees of symbolic links: the first 90% of each class's files (sorted by name) train, the rest
are held out for scoring. Running it again on an existing split does nothing.

    python studies/conditional/cifar_split.py SOURCE_TREE OUT_DIR [--held 0.1]
"""

from __future__ import annotations

import argparse
from pathlib import Path


def split(source: Path, out: Path, held: float) -> tuple[int, int]:
    counts = [0, 0]
    for folder in sorted(path for path in source.iterdir() if path.is_dir()):
        files = sorted(path for path in folder.iterdir() if path.is_file())
        keep = round(len(files) * (1 - held))
        for part, chosen in ((0, files[:keep]), (1, files[keep:])):
            target = out / ("train", "held")[part] / folder.name
            target.mkdir(parents=True, exist_ok=True)
            for path in chosen:
                link = target / path.name
                if not link.exists():
                    link.symlink_to(path.resolve())
            counts[part] += len(chosen)
    return counts[0], counts[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--held", type=float, default=0.1)
    args = parser.parse_args()
    train, held = split(args.source, args.out, args.held)
    print(f"{args.out}: {train} training and {held} held-out images")


if __name__ == "__main__":
    main()
