"""report.html: written at the end of every run and by dcgan-report; self-contained (every
image embedded), with the curves, the collapse markers, the epoch grids, the real and best
grids, the checkpoints, the commands and the config; and drawn by a real browser."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcgan.reporting.history import Marker, RunHistory, read_history
from dcgan.reporting.plots import LINE_COLOURS, MARKER_STYLE, plot_curves
from tests.behaviour_reference import BASE, COLLAPSING
from tests.conftest import TINY, user_error_line

CURVE_TAGS = {"loss/d", "loss/g", "d/real_prob", "d/fake_prob", "perf/img_per_s",
              "metrics/swd/mean", "metrics/diversity"}


class Page(HTMLParser):
    """What a test needs from the page: images, curve figures, links, table rows, text."""

    def __init__(self, text: str):
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.curves: list[str] = []
        self.external: list[str] = []
        self.event_kinds: list[str] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag == "figure" and "curve" in attrs.get("class", ""):
            self.curves.extend(attrs["data-tags"].split())
        if tag == "tr" and attrs.get("class") in MARKER_STYLE:
            self.event_kinds.append(attrs["class"])
        for key in ("src", "href"):
            if key in attrs and not attrs[key].startswith("data:"):
                self.external.append(attrs[key])

    def handle_data(self, data):
        self.text.append(data)

    @property
    def all_text(self) -> str:
        return " ".join(self.text)


def decoded(image: dict[str, str]) -> Image.Image:
    header, payload = image["src"].split(",", 1)
    assert header == "data:image/png;base64"
    return Image.open(io.BytesIO(base64.b64decode(payload)))


def read_page(run: Path) -> Page:
    return Page((run / "report.html").read_text())


@pytest.fixture(scope="module")
def reported_run(tmp_path_factory) -> Path:
    from tests.conftest import run_cli

    run = tmp_path_factory.mktemp("report") / "run"
    run_cli("dcgan-train", *TINY, "report=true", "epochs=2", "eval.n_samples=32",
            f"hydra.run.dir={run}",
            check=True)
    return run


@pytest.mark.slow
def test_every_run_ends_with_a_self_contained_report(reported_run):
    page = read_page(reported_run)
    assert page.external == []  # nothing fetched: readable offline
    assert CURVE_TAGS <= set(page.curves)
    assert {"metrics/swd/16", "metrics/swd/32", "metrics/swd/64"} <= set(page.curves)
    for image in page.images:  # every picture is a real PNG
        assert decoded(image).size[0] > 50
    epoch_strip = [image for image in page.images if "data-epoch" in image]
    assert [image["data-epoch"] for image in epoch_strip] == ["1", "2"]
    assert decoded(epoch_strip[1]).tobytes() == Image.open(
        reported_run / "samples" / "epoch_002.png").tobytes()
    alts = [image["alt"] for image in page.images]
    assert "real training images" in alts
    best = [alt for alt in alts if alt.startswith("best checkpoint: epoch")]
    assert len(best) == 1 and "swd/mean" in best[0]
    text = page.all_text
    assert "finished: trained to epoch 2, step 8" in text
    assert f"dcgan-train resume={reported_run} epochs=7" in text
    assert f"dcgan-sample --ckpt {reported_run}" in text
    assert str(reported_run / "checkpoints" / "last.pt") in text
    assert "same file as" in text  # last.pt is a link to epoch_002.pt
    assert "ngf: 8" in text and "n_samples: 32" in text  # the config
    assert "1 process" in text
    assert page.event_kinds == []
    summary = json.loads((reported_run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 8


@pytest.mark.slow
def test_dcgan_report_rebuilds_the_page_of_a_resumed_run(cli, reported_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reported_run, run)
    cli("dcgan-train", f"resume={run}", "epochs=3", check=True)
    (run / "report.html").unlink()
    result = cli("dcgan-report", str(run), check=True)
    assert str(run / "report.html") in result.stderr
    page = read_page(run)
    assert [image["data-epoch"] for image in page.images if "data-epoch" in image] == \
        ["1", "2", "3"]
    assert "2 processes" in page.all_text  # the first run and the resumed one
    steps = [step for step, _ in read_history(run).scalars["loss/d"]]
    assert steps == list(range(1, 13))  # each step once, across both processes


@pytest.mark.slow
def test_a_rolled_back_run_lists_its_verdicts_and_rollbacks(cli, tmp_path):
    run = tmp_path / "run"
    result = cli("dcgan-train", *BASE, *COLLAPSING, "collapse.policy=rollback",
                 "collapse.rollback.max_rollbacks=1", "eval.every=0", "ckpt_every_steps=1",
                 f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-2000:]  # one rollback, then it recovers
    page = read_page(run)
    assert page.event_kinds == ["rollback", "collapse"]  # by step: rolled back to step 2 at 5
    assert "rolled back to step_0000002.pt" in page.all_text
    markers = read_history(run).markers
    assert [(m.step, m.kind) for m in markers] == [(2, "rollback"), (5, "collapse")]


def test_markers_are_drawn_on_every_curve():
    steps = range(1, 41)
    history = RunHistory(scalars={"loss/d": [(s, 1.0 / s) for s in steps],
                                  "loss/g": [(s, 0.05 * s) for s in steps],
                                  "augment/p": [(s, 0.01 * s) for s in steps]})
    plain = plot_curves(history)
    assert [tags for _, tags, _ in plain] == [["loss/d", "loss/g"], ["augment/p"]]
    history.markers = [Marker(12, "collapse", "saturated"), Marker(15, "rollback", "back"),
                       Marker(30, "nonfinite", "nan")]
    marked = plot_curves(history)
    for (_, _, before), (_, _, after) in zip(plain, marked):
        for kind in ("collapse", "rollback", "nonfinite"):
            colour = MARKER_STYLE[kind][0]
            assert colour_pixels(after, colour) > 20, kind
            assert colour_pixels(before, colour) == 0, kind


def colour_pixels(png: bytes, hex_colour: str) -> int:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    target = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels - target).sum(axis=-1) < 60).sum())


@pytest.mark.slow
def test_dcgan_report_refuses_what_is_not_a_run(cli, tmp_path):
    assert "not a dcgan-train run directory" in user_error_line(cli("dcgan-report", str(tmp_path)))
    missing = user_error_line(cli("dcgan-report", str(tmp_path / "nowhere")))
    assert "is not a directory" in missing


CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser",
                                                  "google-chrome") if shutil.which(name)), None)
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--no-first-run", "--hide-scrollbars",
            "--virtual-time-budget=5000"]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (Debian: apt-get install "
                                             "chromium; .ci/run installs it)")
def test_a_real_browser_draws_the_page(reported_run, tmp_path):
    url = (reported_run / "report.html").as_uri()
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *HEADLESS, "--window-size=1280,1600", f"--screenshot={shot}",
                    url], capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (1600, 1280)
    assert pixels.std() > 20  # not a blank page
    png = io.BytesIO()
    Image.open(shot).save(png, format="PNG")
    for line_colour in LINE_COLOURS[:2]:  # the curves' first two colours
        assert colour_pixels(png.getvalue(), line_colour) > 200, line_colour
    dom = subprocess.run([CHROMIUM, *HEADLESS, "--dump-dom", url], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    n_images = len(read_page(reported_run).images)
    assert f'data-images-drawn="{n_images}/{n_images}"' in dom  # every image decoded


@pytest.mark.slow
def test_a_run_the_guard_stops_still_gets_its_report(cli, tmp_path):
    run = tmp_path / "run"
    result = cli("dcgan-train", *BASE, *COLLAPSING, "collapse.policy=stop", "eval.every=0",
                 f"hydra.run.dir={run}")
    assert result.returncode == 4, result.stderr[-2000:]
    assert "stopped by the collapse guard at epoch 1, step 5" in read_page(run).all_text
    assert json.loads((run / "summary.json").read_text())["status"] == "collapsed"


@pytest.mark.slow
def test_report_false_leaves_the_page_to_dcgan_report(cli, trained_run, tmp_path):
    """trained_run trains with the tests' report=false: the summary is there, the page is not
    until dcgan-report writes it."""
    assert json.loads((trained_run / "summary.json").read_text())["status"] == "finished"
    assert not (trained_run / "report.html").exists()
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    cli("dcgan-report", str(run), check=True)
    assert CURVE_TAGS <= set(read_page(run).curves)
