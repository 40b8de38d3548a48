"""RUN_DIR/report.html: one self-contained page per run (every image embedded, readable
offline): the curves with the collapse guard's verdicts and rollbacks marked, the fixed-noise
grid of every epoch, the real grid and the best checkpoint's grid, where the checkpoints are,
the commands to resume and to sample, and the config.

Written at the end of every run (finished or stopped) and by `dcgan-report RUN_DIR` (cli/report.py)
for any run.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from dcgan.errors import DCGANError
from dcgan.files.atomic import write_atomic
from dcgan.files.images import image_grid, to_pil
from dcgan.nets.conditioning import FakeLabels
from dcgan.reporting.history import RunHistory, read_history
from dcgan.reporting.plots import plot_curves
from dcgan.reporting.sweeps import SUMMARY_FILE
from dcgan.store.checkpoints import (
    BEST,
    CHECKPOINT_DIR,
    load_checkpoint,
    load_generator,
    load_labels,
)

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
EPOCH_GRID = re.compile(r"epoch_(\d+)\.png$")


@dataclass(frozen=True)
class Picture:
    caption: str
    png: bytes

    def html(self, css_class: str = "") -> str:
        return (f'<figure class="{css_class}"><img alt="{html.escape(self.caption)}" '
                f'src="{data_uri(self.png)}"><figcaption>{html.escape(self.caption)}'
                "</figcaption></figure>")


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def write_report(run_dir: Path, status: Optional[str] = None) -> Path:
    """Build RUN_DIR/report.html from what the run left on disk (atomically replaced)."""
    if not run_dir.is_dir():
        raise DCGANError(f"{run_dir} is not a directory; give the run directory of a dcgan-train run")
    if not (run_dir / "config.yaml").is_file() and not list(run_dir.glob("events.out.tfevents.*")):
        raise DCGANError(f"{run_dir} has neither config.yaml nor TensorBoard events: not a "
                         "dcgan-train run directory")
    history = read_history(run_dir)
    page = render_page(run_dir, history, status or status_from_summary(run_dir))
    path = run_dir / REPORT_FILE
    write_atomic(path, page.encode("utf-8"))
    return path


def status_from_summary(run_dir: Path) -> str:
    summary = run_dir / SUMMARY_FILE
    if summary.is_file():
        try:
            return json.loads(summary.read_text()).get("ended", "finished")
        except (OSError, ValueError):
            pass
    return "no summary.json: killed before its end, or still training"


def render_page(run_dir: Path, history: RunHistory, status: str) -> str:
    epochs = epoch_grids(run_dir)
    sections = [
        f"<h1>dcgan run <code>{html.escape(str(run_dir))}</code></h1>",
        facts_table(run_dir, history, status, len(epochs)),
        "<h2>Curves</h2>",
        curves_html(history),
        events_html(history),
        "<h2>Samples</h2>",
        epochs_html(epochs),
        '<div class="pair">' + "".join(p.html("grid") for p in fixed_pictures(run_dir, history))
        + "</div>",
        "<h2>Checkpoints</h2>",
        checkpoints_html(run_dir),
        "<h2>Commands</h2>",
        commands_html(run_dir, epochs[-1][0] if epochs else 0),
        "<h2>Config</h2>",
        f"<pre>{html.escape(read_text(run_dir / 'config.yaml'))}</pre>",
    ]
    body = "\n".join(sections)
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>dcgan: {html.escape(run_dir.name)}</title><style>{STYLE}</style></head>\n"
            f"<body>\n{body}\n<script>{SCRIPT}</script>\n</body></html>\n")


def facts_table(run_dir: Path, history: RunHistory, status: str, n_epochs: int) -> str:
    speed = [value for _, value in history.scalars.get("perf/img_per_s", [])]
    rows = [
        ("status", status),
        ("epochs with a grid", str(n_epochs)),
        ("last logged step", str(history.last_step)),
        ("training wall time", f"{format_seconds(history.seconds)} in {history.sessions} "
                               f"process{'es' if history.sessions != 1 else ''}"),
        ("median images/s", f"{sorted(speed)[len(speed) // 2]:.0f}" if speed else "-"),
    ]
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="facts">{cells}</table>'


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def curves_html(history: RunHistory) -> str:
    plots = plot_curves(history)
    if not plots:
        return "<p>No scalars logged yet.</p>"
    return '<div class="curves">' + "".join(
        f'<figure class="curve" data-tags="{html.escape(" ".join(tags))}">'
        f'<img alt="{html.escape(title)}" src="{data_uri(png)}"></figure>'
        for title, tags, png in plots) + "</div>"


def events_html(history: RunHistory) -> str:
    if not history.markers:
        return "<p>The collapse guard saw nothing; no rollback, no non-finite loss.</p>"
    rows = "".join(f'<tr class="{m.kind}"><td>{m.step}</td><td>{m.kind}</td>'
                   f"<td>{html.escape(m.text)}</td></tr>" for m in history.markers)
    return ('<table class="events"><tr><th>step</th><th>what</th><th>message</th></tr>'
            f"{rows}</table>")


def epoch_grids(run_dir: Path) -> list[tuple[int, bytes]]:
    found = []
    for path in (run_dir / "samples").glob("epoch_*.png"):
        match = EPOCH_GRID.search(path.name)
        if match:
            found.append((int(match.group(1)), path.read_bytes()))
    return sorted(found)


def epochs_html(epochs: Sequence[tuple[int, bytes]]) -> str:
    """A slider over the grids (the strip's images, not a second copy) and the strip."""
    if not epochs:
        return "<p>No epoch finished yet: no fixed-noise grid.</p>"
    strip = "".join(f'<figure><img alt="epoch {n}" data-epoch="{n}" src="{data_uri(png)}">'
                    f"<figcaption>{n}</figcaption></figure>" for n, png in epochs)
    last = epochs[-1][0]
    return (f'<div class="viewer"><img id="epoch-view" alt="fixed-noise grid" '
            f'src="{data_uri(epochs[-1][1])}"><div><input id="epoch-slider" type="range" '
            f'min="0" max="{len(epochs) - 1}" value="{len(epochs) - 1}"> '
            f'<button id="epoch-play">play</button> <span id="epoch-label">epoch {last}</span>'
            "<p>The same 16 noise vectors at the end of every epoch.</p></div></div>"
            f'<div class="strip">{strip}</div>')


def fixed_pictures(run_dir: Path, history: RunHistory) -> list[Picture]:
    pictures = []
    real_png = history.real_grid_png
    if (run_dir / "samples" / "real.png").is_file():
        real_png = (run_dir / "samples" / "real.png").read_bytes()
    if real_png:
        pictures.append(Picture("real training images", real_png))
    best = best_grid(run_dir)
    if best is not None:
        pictures.append(best)
    return pictures


def best_grid(run_dir: Path) -> Optional[Picture]:
    """The fixed-noise grid of checkpoints/best.pt, drawn again from its own generator."""
    path = run_dir / CHECKPOINT_DIR / BEST
    if not path.is_file():
        return None
    try:
        state = load_checkpoint(path)
        generator = load_generator(path, torch.device("cpu"), state=state)
        fixed = state.get("hooks", {}).get("samples", {})
        noise = fixed.get("fixed_noise")
        if noise is None:
            return None
        with torch.no_grad():
            grid = image_grid(*fixed_grid_images(generator, noise.float(), fixed.get(
                "fixed_labels"), load_labels(path, torch.device("cpu"), state)))
    except DCGANError as error:
        log.warning("report: no best grid (%s)", error)
        return None
    value = state.get("hooks", {}).get("checkpoints", {}).get("best_value")
    select = state.get("config", {}).get("eval", {}).get("select", "")
    scored = f", {select} {value:.4g}" if isinstance(value, float) else ""
    return Picture(f"best checkpoint: epoch {state['epoch']}{scored}", png_bytes(grid))


def fixed_grid_images(generator: torch.nn.Module, noise: torch.Tensor,
                      labels: Optional[torch.Tensor], prior: Optional[FakeLabels]
                      ) -> tuple[torch.Tensor, int]:
    """(the images of the run's fixed grid, images per row): G(noise), or for a conditional
    generator G(noise, labels) with a row per class (as the sample hook lays it out)."""
    if labels is None or prior is None:
        return generator(noise), 4
    images = generator(noise, prior.space.vectors(labels))
    if prior.space.kind == "class":
        return images, len(noise) // int(labels.max().item() + 1)
    return images, 4


def png_bytes(image_uint8: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    to_pil(image_uint8).save(buffer, format="PNG")
    return buffer.getvalue()


def checkpoints_html(run_dir: Path) -> str:
    folder = run_dir / CHECKPOINT_DIR
    files = sorted(p for p in folder.glob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        return "<p>No checkpoint yet.</p>"
    inodes: dict[int, list[str]] = {}
    for path in files:
        inodes.setdefault(path.stat().st_ino, []).append(path.name)
    rows = []
    for path in files:
        same = [name for name in inodes[path.stat().st_ino] if name != path.name]
        note = f"same file as {', '.join(same)}" if same else ""
        rows.append(f"<tr><td><code>{html.escape(str(path))}</code></td>"
                    f"<td>{path.stat().st_size / 1e6:.1f} MB</td><td>{note}</td></tr>")
    return f'<table class="files">{"".join(rows)}</table>'


def commands_html(run_dir: Path, last_epoch: int) -> str:
    more = last_epoch + 5
    commands = [
        ("continue training", f"dcgan-train resume={run_dir} epochs={more}"),
        ("sample", f"dcgan-sample --ckpt {run_dir} --n 64 --out grid.png"),
        ("score", f"dcgan-eval --ckpt {run_dir}"),
        ("watch", f"tensorboard --logdir {run_dir}"),
        ("this page again", f"dcgan-report {run_dir}"),
    ]
    return "<dl>" + "".join(f"<dt>{what}</dt><dd><code>{html.escape(cmd)}</code></dd>"
                            for what, cmd in commands) + "</dl>"


def read_text(path: Path) -> str:
    return path.read_text() if path.is_file() else "(no config.yaml)"


STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; background: #fff; }
h1 { font-size: 1.4em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; } td, th { padding: .2em .7em; text-align: left;
        vertical-align: top; border-bottom: 1px solid #eee; }
.curves { display: flex; flex-wrap: wrap; gap: .5em; } .curve { margin: 0; }
.curve img { width: 580px; max-width: 100%; }
.events .collapse td:nth-child(2) { color: #d62728; }
.events .rollback td:nth-child(2) { color: #ff7f0e; }
.events .nonfinite td:nth-child(2) { color: #9467bd; }
.viewer { display: flex; gap: 1em; align-items: flex-start; }
.viewer img, .grid img { width: 320px; image-rendering: pixelated; }
.strip { display: flex; overflow-x: auto; gap: 4px; padding: .5em 0; }
.strip figure { margin: 0; text-align: center; font-size: 11px; }
.strip img { width: 96px; cursor: pointer; }
.pair { display: flex; gap: 2em; } figure { margin: .5em 0; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
"""

SCRIPT = """
(function () {
  var strip = Array.prototype.slice.call(document.querySelectorAll('.strip img'));
  var view = document.getElementById('epoch-view');
  var slider = document.getElementById('epoch-slider');
  var label = document.getElementById('epoch-label');
  var timer = null;
  function show(i) {
    slider.value = i; view.src = strip[i].src;
    label.textContent = 'epoch ' + strip[i].dataset.epoch;
  }
  if (view && strip.length) {
    slider.addEventListener('input', function () { show(+slider.value); });
    strip.forEach(function (img, i) { img.addEventListener('click', function () { show(i); }); });
    document.getElementById('epoch-play').addEventListener('click', function () {
      if (timer) { clearInterval(timer); timer = null; return; }
      timer = setInterval(function () { show((+slider.value + 1) % strip.length); }, 400);
    });
  }
  window.addEventListener('load', function () {
    var images = document.querySelectorAll('img');
    var drawn = Array.prototype.filter.call(images, function (img) {
      return img.complete && img.naturalWidth > 0; });
    document.body.setAttribute('data-images-drawn', drawn.length + '/' + images.length);
  });
})();
"""
