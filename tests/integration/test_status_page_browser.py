"""The status page in a real browser: headless Chromium loads it from the daemon's API.

The API serves a store with a rolled-back rollout and one progressing at its last step
(``tests/integration/deploy/world_api.py``). Chromium renders each page; the test reads the
DOM Chromium built (not the HTML sent) to check that the charts are drawn where the data says
they should be, and saves a screenshot of each page under ``test-artifacts/status-page/``
for people to look at.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.harness.proc import require_binary
from tests.integration.deploy.world_api import TOKEN, ServedWorld, serve_world

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "status-page"
WINDOW = (1200, 1600)


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    chart: str | None  # aria-label of the enclosing svg chart
    text: str = ""


class Dom(HTMLParser):
    """The elements of a page with the chart each one is drawn in."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._chart: str | None = None
        self._open: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "svg" and "chart" in values.get("class", "").split():
            self._chart = values.get("aria-label", "")
        element = Element(tag, values, self._chart)
        self.elements.append(element)
        self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            element = self._open.pop()
            if element.tag == tag:
                break
        if tag == "svg":
            self._chart = None

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1].text += data

    def find(self, tag: str, chart: str | None = None, cls: str | None = None) -> list[Element]:
        return [
            e
            for e in self.elements
            if e.tag == tag
            and (chart is None or (e.chart or "").startswith(chart))
            and (cls is None or cls in e.attrs.get("class", "").split())
        ]

    def charts(self) -> list[str]:
        return [e.attrs["aria-label"] for e in self.find("svg", cls="chart")]


def points(element: Element) -> list[tuple[float, float]]:
    pairs = [p.split(",") for p in element.attrs["points"].split()]
    return [(float(x), float(y)) for x, y in pairs]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture
def chromium() -> str:
    return require_binary("chromium")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedWorld]:
    with serve_world(tmp_path) as served:
        yield served


def render(chromium: str, url: str, screenshot: Path, profile: Path) -> Dom:
    """Load ``url`` in headless Chromium; return the DOM it built and save a screenshot."""
    argv = [
        chromium,
        "--headless",
        "--no-sandbox",  # the tests run as root, where Chromium's sandbox refuses to start
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--screenshot={screenshot}",
        "--dump-dom",
        url,
    ]
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=90)
    finally:
        # Chromium leaves helpers (crash handler, zygote) behind: stop its whole group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if process.poll() is None:
            process.wait(timeout=10)
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    dom = Dom()
    dom.feed(out.decode())
    return dom


def test_index_lists_both_rollouts_with_links(chromium, served, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "index.png"
    dom = render(chromium, f"{served.url}/status", shot, tmp_path / "profile")
    links = {e.attrs.get("href") for e in dom.find("a")}
    assert f"/status/{served.rolled_back}" in links
    assert f"/status/{served.progressing}" in links
    phases = [e.text for e in dom.find("td", cls="phase")]
    assert phases == ["progressing", "rolled_back"]  # newest first
    assert png_size(shot) == WINDOW


def test_progressing_rollout_draws_its_ramp_and_evidence_below_the_threshold(
    chromium, served, tmp_path
):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "rollout-progressing.png"
    dom = render(chromium, f"{served.url}/status/{served.progressing}", shot, tmp_path / "p")
    assert dom.charts() == [
        "canary share of traffic",
        "evidence: e-value per metric (log scale)",
        "breaches: estimate and interval",
    ]

    (ramp,) = dom.find("polyline", chart="canary share", cls="series")
    ys = [y for _, y in points(ramp)]
    # Three steps up (5, 25, 50%): three distinct heights after the start, each higher on
    # screen (smaller y) than the one before, and the last one held to the end.
    levels = list(dict.fromkeys(ys))
    assert len(levels) == 4
    assert levels == sorted(levels, reverse=True)
    xs = [x for x, _ in points(ramp)]
    assert xs == sorted(xs)

    (threshold,) = dom.find("line", chart="evidence", cls="threshold")
    assert threshold.attrs["y1"] == threshold.attrs["y2"]
    labels = [e.text for e in dom.find("text", chart="evidence")]
    assert "1/alpha = 20: roll back" in labels
    series = {e.attrs["data-name"]: points(e) for e in dom.find("polyline", chart="evidence")}
    assert set(series) == {"errors", "all metrics (rollback rule)"}
    measurements = served.world.store.measurements(served.progressing)
    assert len(series["errors"]) == len(measurements)
    line_y = float(threshold.attrs["y1"])
    # A healthy canary: every e-value under 1/alpha, so drawn below the line (larger y).
    assert all(y > line_y for _, y in series["all metrics (rollback rule)"])

    assert dom.find("line", chart="breaches", cls="interval") == []
    assert TOKEN not in " ".join(e.text for e in dom.elements)
    assert png_size(shot) == WINDOW


def test_rolled_back_rollout_shows_the_crossing_and_the_breach(chromium, served, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "rollout-rolled-back.png"
    dom = render(chromium, f"{served.url}/status/{served.rolled_back}", shot, tmp_path / "p")
    assert len(dom.charts()) == 3

    (threshold,) = dom.find("line", chart="evidence", cls="threshold")
    line_y = float(threshold.attrs["y1"])
    (combined,) = dom.find("polyline", chart="evidence", cls="combined")
    ys = [y for _, y in points(combined)]
    assert ys[0] > line_y  # started below 1/alpha ...
    assert ys[-1] < line_y  # ... and ended above it: the tick that rolled back
    markers = [e.text for e in dom.find("text", chart="evidence")]
    assert "rolling back" in markers

    (ramp,) = dom.find("polyline", chart="canary share", cls="series")
    assert points(ramp)[-1][1] == points(ramp)[0][1]  # back to 0% at the end

    (interval,) = dom.find("line", chart="breaches", cls="interval")
    (estimate,) = dom.find("circle", chart="breaches", cls="estimate")
    low, high = float(interval.attrs["x1"]), float(interval.attrs["x2"])
    assert low < float(estimate.attrs["cx"]) < high
    breach = served.world.store.get(served.rolled_back).rollout.detail["breaches"][0]
    texts = [e.text for e in dom.find("text", chart="breaches")]
    assert breach["metric"] in texts
    assert f"{breach['estimate']:.4g}" in " ".join(texts)
    assert png_size(shot) == WINDOW
