"""The curves of report.html, drawn with matplotlib (no display needed): one small PNG per
group of tags over steps, with the collapse verdicts, rollbacks and non-finite losses marked
as vertical lines where they happened."""

from __future__ import annotations

import io

from dcgan.reporting.history import Marker, RunHistory

# (title, y label, tags) in the order the page shows them; tags not named here get a plot each
GROUPS = [
    ("Losses", "loss", ("loss/d", "loss/g")),
    ("What D says", "probability", ("d/real_prob", "d/fake_prob")),
    ("Speed", "real images / s", ("perf/img_per_s",)),
    ("Sliced Wasserstein distance (lower is better)", "SWD", ("metrics/swd/",)),
    ("Diversity (near 1 healthy, near 0 collapsed)", "ratio", ("metrics/diversity",)),
]
# Curves take blues, greens and greys; red, orange and purple are kept for the markers.
LINE_COLOURS = ["#1f77b4", "#2ca02c", "#17becf", "#7f7f7f", "#bcbd22", "#8c564b"]
MARKER_STYLE = {  # kind -> (colour, line style, legend label)
    "collapse": ("#d62728", ":", "collapse detected"),
    "rollback": ("#ff7f0e", "--", "rollback"),
    "nonfinite": ("#9467bd", "-.", "non-finite loss"),
}


def plot_groups(tags: list[str]) -> list[tuple[str, str, list[str]]]:
    """(title, y label, tags present) for every group with data, then one per other tag."""
    groups, claimed = [], set()
    for title, ylabel, patterns in GROUPS:
        members = [tag for tag in tags if any(tag == p or (p.endswith("/") and tag.startswith(p))
                                              for p in patterns)]
        if members:
            groups.append((title, ylabel, sorted(members, key=swd_order)))
            claimed.update(members)
    groups += [(tag, tag.rsplit("/", 1)[-1], [tag]) for tag in tags if tag not in claimed]
    return groups


def swd_order(tag: str) -> tuple[int, str]:
    return (0 if tag.endswith("/mean") else 1, tag)


def plot_curves(history: RunHistory) -> list[tuple[str, list[str], bytes]]:
    """(title, tags, PNG bytes) for each plot."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    from matplotlib import pyplot as plt

    plots = []
    for title, ylabel, tags in plot_groups(sorted(history.scalars)):
        figure, axes = plt.subplots(figsize=(5.8, 2.9), dpi=100)
        axes.set_prop_cycle(color=LINE_COLOURS)
        for tag in tags:
            steps, values = zip(*history.scalars[tag])
            style = "o-" if len(steps) < 30 else "-"
            axes.plot(steps, values, style, label=tag, linewidth=1.4, markersize=3)
        mark(axes, history.markers)
        axes.set_title(title, fontsize=10)
        axes.set_xlabel("step", fontsize=9)
        axes.set_ylabel(ylabel, fontsize=9)
        axes.tick_params(labelsize=8)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="best")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        plt.close(figure)
        plots.append((title, tags, buffer.getvalue()))
    return plots


def mark(axes, markers: list[Marker]) -> None:
    """A vertical line at each marker's step; one legend entry per kind."""
    labelled = set()
    for marker in markers:
        colour, style, label = MARKER_STYLE[marker.kind]
        axes.axvline(marker.step, color=colour, linestyle=style, linewidth=1.8,
                     label=None if marker.kind in labelled else label)
        labelled.add(marker.kind)
