"""The status page's charts as pure functions: axes, scales and what each shape says."""

from __future__ import annotations

import itertools
import math
import re

import pytest

from canary.service.status_page import (
    COMBINED,
    IntervalRow,
    duration_label,
    evidence_chart,
    interval_chart,
    nice_ticks,
    time_ticks,
    weight_chart,
)


def polyline(svg: str, name: str) -> list[tuple[float, float]]:
    match = re.search(rf'data-name="{re.escape(name)}"[^>]*points="([^"]+)"', svg)
    assert match is not None, name
    return [tuple(map(float, p.split(","))) for p in match.group(1).split()]  # type: ignore[misc]


@pytest.mark.parametrize(
    ("low", "high"), [(0, 50), (0, 1), (1.25, 7.1), (-3.2, 0.4), (0, 100), (2e-3, 9e-3)]
)
def test_nice_ticks_cover_the_range_with_round_even_steps(low, high):
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low
    assert ticks[-1] >= high
    steps = {round(b - a, 12) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1
    (step,) = steps
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert round(mantissa, 6) in (1, 2, 5)
    assert 3 <= len(ticks) <= 8


def test_time_ticks_and_labels():
    assert time_ticks(435) == [0, 120, 240, 360, 480]
    assert time_ticks(0) == [0, 1]
    assert [duration_label(s) for s in (45, 60, 90, 3600, 5400)] == [
        "45s",
        "1m",
        "1m30s",
        "1h",
        "1h30m",
    ]


def test_weight_chart_holds_the_last_weight_until_the_end():
    svg = weight_chart([(0, 0), (0, 5), (120, 25)], end=300)
    points = polyline(svg, "canary")
    top = [x for x, y in points if y == points[-1][1]]
    assert max(top) - min(top) > 200  # 25% held from 120 s to the end (300 s) of 0-300 s
    ys = [y for _, y in points]
    assert ys[0] > ys[-1]  # higher weight, higher on screen
    assert "no traffic change yet" in weight_chart([], end=0)


def test_evidence_is_drawn_against_the_threshold_on_a_log_scale():
    series = {"errors": [(15, 0.5), (30, 5.0), (45, 50.0)]}
    svg = evidence_chart(series, threshold=20.0, end=45, combined=[(15, 0.5), (30, 5.0)])
    line = re.search(r"class=threshold x1=\S+ y1=([0-9.]+)", svg)
    assert line is not None
    y_threshold = float(line.group(1))
    errors = polyline(svg, "errors")
    assert errors[0][1] > y_threshold > errors[2][1]  # 0.5 below the line, 50 above
    # Equal ratios are equal distances on a log scale: 0.5 -> 5 -> 50.
    assert errors[0][1] - errors[1][1] == pytest.approx(errors[1][1] - errors[2][1], abs=0.2)
    assert polyline(svg, COMBINED)
    assert "1/alpha = 20: roll back" in svg
    assert "no measurement yet" in evidence_chart({}, threshold=20.0, end=0)


def test_breach_estimate_sits_inside_its_interval_and_text_is_escaped():
    svg = interval_chart([IntervalRow("errors (<b>)", 3.0, 1.5, 7.0)])
    x1, x2 = (
        float(v)
        for v in re.search(r"class=interval x1=([0-9.]+) y1=\S+ x2=([0-9.]+)", svg).groups()
    )
    cx = float(re.search(r"class=estimate cx=([0-9.]+)", svg).group(1))
    assert x1 < cx < x2
    assert "<b>" not in svg
    assert "errors (&lt;b&gt;)" in svg
    assert "3 [1.5, 7]" in svg
    unbounded = interval_chart([IntervalRow("accuracy", 0.9, float("-inf"), 0.95)])
    assert "-∞" in unbounded
