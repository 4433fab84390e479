"""The status page: the rollouts and, per rollout, its weight and evidence over time.

Server-rendered HTML with inline SVG charts and no external assets (no script, no font, no
stylesheet to fetch), so it works on an air-gapped box, behind a strict proxy and in a
headless browser's screenshot alike. Every value shown comes from the store through the same
functions as the JSON API, so the page and ``GET /rollouts/{id}`` never disagree.

Three charts per rollout, on one time axis (seconds since the rollout began):

* the canary's share of traffic, as the step function the router applied;
* the evidence: each metric's e-value and their weighted average, which is what the rollback
  rule compares with 1/alpha (a log scale, because e-values grow and shrink geometrically);
* the breaches that ended a rollout: each estimate with its confidence interval.

The chart functions are pure (data in, SVG text out) and every number is formatted here,
so the page is the same in every browser.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse

from canary.core.lifecycle import Phase
from canary.service.api import RolloutSummary, summary
from canary.service.controller import Controller

COMBINED = "all metrics (rollback rule)"
"""Series name of the weighted average of the metrics' e-values: the one that decides."""

REFRESH_SECONDS = 15
"""Pages of active rollouts reload themselves this often (the default analysis interval)."""

_ACTIVE_PHASES = frozenset(phase.value for phase in Phase if phase.active)

_ENDINGS = frozenset(
    {Phase.ROLLING_BACK, Phase.PROMOTING, Phase.PROMOTED, Phase.ROLLED_BACK, Phase.ABORTED}
)

_PALETTE = ("#2f6fdf", "#d9822b", "#1a7f37", "#8e44ad", "#16a085", "#b7950b", "#7f8c8d")
_COMBINED_COLOUR = "#1d2330"
_THRESHOLD_COLOUR = "#c0392b"
_GRID = "#e6e8ee"
_AXIS = "#8a90a0"
_LABEL = "#4a5163"

_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5rem 2rem;
 color:#1d2330;background:#f6f7f9;max-width:1180px}
a{color:#2357b8} h1{font-size:1.35rem;margin:.2rem 0 .8rem}
h2{font-size:1.05rem;margin:1.6rem 0 .5rem}
table{border-collapse:collapse;margin:.3rem 0;background:#fff;border:1px solid #dde1e8}
td,th{padding:.35rem .7rem;border-bottom:1px solid #e6e8ee;text-align:left;vertical-align:top}
th{font-weight:600;background:#f0f2f5;white-space:nowrap} .facts th{background:#fff;width:9rem}
.rollouts{width:100%;font-size:.9rem} .rollouts .why{min-width:14rem}
.num{text-align:right;font-variant-numeric:tabular-nums} .nowrap{white-space:nowrap}
.phase{font-weight:600} .promoted{color:#1a7f37}
.rolled_back,.failed,.aborted,.rejected,.breach{color:#c0392b}
.progressing,.paused,.promoting,.rolling_back,.starting,.gating,.pending{color:#9a6700}
.charts{display:flex;flex-wrap:wrap;gap:1rem}
.chart{background:#fff;border:1px solid #dde1e8;border-radius:4px}
.muted{color:#667085} .crumbs{margin:0 0 .4rem}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _time(at: float, *, seconds: bool = True) -> str:
    pattern = "%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC"
    return datetime.fromtimestamp(at, UTC).strftime(pattern) if at else "-"


def _page(title: str, body: str, *, refresh: bool = False) -> str:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if refresh else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta}<title>{_esc(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


# --- axes ------------------------------------------------------------------------------------


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten) covering ``[low, high]``."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else [0.0]
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)


def time_ticks(end: float, count: int = 6) -> list[float]:
    """Tick positions in seconds from 0 to at least ``end``, at round durations."""
    end = max(end, 1.0)
    step = next((s for s in _TIME_STEPS if end / s <= count), _TIME_STEPS[-1])
    ticks = [0.0]
    while ticks[-1] < end:
        ticks.append(ticks[-1] + step)
    return ticks


def duration_label(seconds: float) -> str:
    """``45s``, ``2m``, ``1h30m``: short labels for a time axis."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"


def _number_label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.0e}".replace("e+0", "e").replace("e-0", "e-")
    return f"{value:.4g}"


@dataclass(frozen=True)
class _Frame:
    """The plot area of a chart and the maps from data to pixels."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    x0: float
    x1: float
    y0: float
    y1: float

    def sx(self, x: float) -> float:
        span = self.x1 - self.x0 or 1.0
        return self.left + (x - self.x0) / span * (self.width - self.left - self.right)

    def sy(self, y: float) -> float:
        span = self.y1 - self.y0 or 1.0
        clamped = min(max(y, self.y0), self.y1)
        return self.top + (1 - (clamped - self.y0) / span) * (self.height - self.top - self.bottom)

    @property
    def base(self) -> int:
        return self.height - self.bottom


def _open_svg(title: str, width: int, height: int) -> list[str]:
    return [
        f'<svg class=chart role=img aria-label="{_esc(title)}" width={width} height={height} '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" '
        'font-family="system-ui,sans-serif">',
        f"<title>{_esc(title)}</title>",
        f'<text x=12 y=20 font-size=14 font-weight=600 fill="#1d2330">{_esc(title)}</text>',
    ]


def _empty_chart(title: str, message: str, width: int) -> str:
    return "".join(
        [
            *_open_svg(title, width, 70),
            f'<text x=12 y=50 font-size=13 fill="{_LABEL}">{_esc(message)}</text></svg>',
        ]
    )


def _time_axis(frame: _Frame, ticks: Sequence[float]) -> list[str]:
    parts = []
    for tick in ticks:
        x = frame.sx(tick)
        parts.append(
            f"<line class=grid x1={x:.1f} y1={frame.top} x2={x:.1f} y2={frame.base} "
            f'stroke="{_GRID}" />'
            f"<text x={x:.1f} y={frame.base + 15} font-size=11 text-anchor=middle "
            f'fill="{_LABEL}">{_esc(duration_label(tick))}</text>'
        )
    parts.append(
        f"<line class=axis x1={frame.left} y1={frame.base} x2={frame.width - frame.right} "
        f'y2={frame.base} stroke="{_AXIS}" />'
        f"<text x={(frame.left + frame.width - frame.right) / 2:.0f} y={frame.base + 31} "
        f'font-size=11 text-anchor=middle fill="{_LABEL}">time since the rollout began</text>'
    )
    return parts


def _value_axis(frame: _Frame, ticks: Sequence[tuple[float, str]], unit: str) -> list[str]:
    parts = []
    for value, label in ticks:
        y = frame.sy(value)
        parts.append(
            f"<line class=grid x1={frame.left} y1={y:.1f} x2={frame.width - frame.right} "
            f'y2={y:.1f} stroke="{_GRID}" />'
            f"<text x={frame.left - 6} y={y + 4:.1f} font-size=11 text-anchor=end "
            f'fill="{_LABEL}">{_esc(label)}</text>'
        )
    parts.append(
        f"<line class=axis x1={frame.left} y1={frame.top} x2={frame.left} y2={frame.base} "
        f'stroke="{_AXIS}" />'
        f'<text x=12 y={frame.top - 8} font-size=11 fill="{_LABEL}">{_esc(unit)}</text>'
    )
    return parts


def _legend(frame: _Frame, entries: Sequence[tuple[str, str, str]]) -> list[str]:
    """One row of coloured keys under the time axis: (name, colour, dash pattern)."""
    parts = []
    x = float(frame.left)
    y = frame.height - 12
    for name, colour, dash in entries:
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<line x1={x:.0f} y1={y - 4} x2={x + 18:.0f} y2={y - 4} stroke="{colour}" '
            f"stroke-width=3{dashes} />"
            f'<text class=legend x={x + 23:.0f} y={y} font-size=11 fill="#1d2330">'
            f"{_esc(name)}</text>"
        )
        x += 32 + 6.6 * len(name)
    return parts


def _markers(frame: _Frame, markers: Sequence[tuple[float, str]]) -> list[str]:
    """Dashed vertical lines at the moment a rollout starts to end (rollback, promotion)."""
    parts = []
    for at, label in markers:
        x = frame.sx(at)
        anchor = "end" if x > (frame.left + frame.width - frame.right) / 2 else "start"
        shift = -4 if anchor == "end" else 4
        parts.append(
            f"<line class=marker x1={x:.1f} y1={frame.top} x2={x:.1f} y2={frame.base} "
            f'stroke="{_LABEL}" stroke-dasharray="3,3" />'
            f"<text x={x + shift:.1f} y={frame.top + 12} font-size=11 text-anchor={anchor} "
            f'fill="{_LABEL}">{_esc(label)}</text>'
        )
    return parts


def _points(frame: _Frame, values: Sequence[tuple[float, float]], step: bool) -> str:
    coords: list[str] = []
    previous: float | None = None
    for x, y in values:
        if step and previous is not None:
            coords.append(f"{frame.sx(x):.1f},{frame.sy(previous):.1f}")
        coords.append(f"{frame.sx(x):.1f},{frame.sy(y):.1f}")
        previous = y
    return " ".join(coords)


# --- charts ----------------------------------------------------------------------------------


def weight_chart(
    weights: Sequence[tuple[float, float]],
    *,
    end: float,
    markers: Sequence[tuple[float, str]] = (),
    width: int = 540,
    height: int = 270,
) -> str:
    """The canary's share of traffic over time, as the step function the router applied.

    ``weights`` are (seconds since start, percent) at each change; the last value is held
    until ``end``, so a rollout sitting at a step shows how long it has been there.
    """
    title = "canary share of traffic"
    if not weights:
        return _empty_chart(title, "no traffic change yet", width)
    end = max(end, weights[-1][0])
    held = [*weights, (end, weights[-1][1])]
    top_value = max(w for _, w in held)
    y_ticks = nice_ticks(0.0, max(top_value, 1.0), 5)
    x_ticks = time_ticks(end)
    frame = _Frame(width, height, 52, 18, 42, 62, 0.0, x_ticks[-1], 0.0, y_ticks[-1])
    line = _points(frame, held, step=True)
    area = f"{frame.sx(held[0][0]):.1f},{frame.base} {line} {frame.sx(end):.1f},{frame.base}"
    parts = [
        *_open_svg(title, width, height),
        *_value_axis(frame, [(t, f"{t:g}%") for t in y_ticks], "percent"),
        *_time_axis(frame, x_ticks),
        *_markers(frame, markers),
        f'<polygon class=area points="{area}" fill="{_PALETTE[0]}" fill-opacity=0.12 />',
        f'<polyline class=series data-name="canary" fill=none stroke="{_PALETTE[0]}" '
        f'stroke-width=2.5 stroke-linejoin=round points="{line}" />',
        *_legend(frame, [("canary weight", _PALETTE[0], "")]),
        "</svg>",
    ]
    return "".join(parts)


def evidence_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    threshold: float,
    end: float,
    combined: Sequence[tuple[float, float]] = (),
    markers: Sequence[tuple[float, str]] = (),
    width: int = 540,
    height: int = 270,
) -> str:
    """Each metric's e-value over time and their weighted average against 1/alpha.

    Log scale: an e-value multiplies by a likelihood ratio at every tick, so doubling and
    halving look alike, and the region below 1 (evidence for the canary) is visible. The
    rollout rolls back when the weighted average (``combined``) reaches ``threshold``.
    """
    title = "evidence: e-value per metric (log scale)"
    values = [v for points in (*series.values(), combined) for _, v in points]
    if not values:
        return _empty_chart(title, "no measurement yet", width)
    logs = [math.log10(min(max(v, 1e-12), 1e12)) for v in values]
    low = math.floor(min(min(logs), 0.0))
    high = math.ceil(max(max(logs), math.log10(threshold)) + 0.05)
    times = [t for points in (*series.values(), combined) for t, _ in points]
    x_ticks = time_ticks(max(end, *times))
    frame = _Frame(width, height, 52, 18, 42, 62, 0.0, x_ticks[-1], float(low), float(high))
    decades = range(low, high + 1)
    step = max(1, math.ceil(len(decades) / 7))
    labels = [(float(d), _number_label(10.0**d)) for d in decades if (d - low) % step == 0]
    parts = [
        *_open_svg(title, width, height),
        *_value_axis(frame, labels, "e-value"),
        *_time_axis(frame, x_ticks),
        *_markers(frame, markers),
    ]
    y = frame.sy(math.log10(threshold))
    parts.append(
        f"<line class=threshold x1={frame.left} y1={y:.1f} x2={frame.width - frame.right} "
        f'y2={y:.1f} stroke="{_THRESHOLD_COLOUR}" stroke-width=1.5 stroke-dasharray="6,4" />'
        f"<text x={frame.left + 6} y={y - 5:.1f} font-size=11 "
        f'fill="{_THRESHOLD_COLOUR}">1/alpha = {threshold:g}: roll back</text>'
    )
    legend: list[tuple[str, str, str]] = []

    def log_points(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(t, math.log10(min(max(v, 1e-12), 1e12))) for t, v in points]

    for index, (name, points) in enumerate(series.items()):
        if not points:
            continue
        colour = _PALETTE[index % len(_PALETTE)]
        line = _points(frame, log_points(points), step=False)
        parts.append(
            f'<polyline class=series data-name="{_esc(name)}" fill=none stroke="{colour}" '
            f'stroke-width=1.8 stroke-linejoin=round points="{line}" />'
        )
        legend.append((name, colour, ""))
    if combined:
        parts.append(
            f'<polyline class="series combined" data-name="{_esc(COMBINED)}" fill=none '
            f'stroke="{_COMBINED_COLOUR}" stroke-width=2.5 stroke-dasharray="2,3" '
            f'stroke-linecap=round points="{_points(frame, log_points(combined), step=False)}" />'
        )
        legend.append((COMBINED, _COMBINED_COLOUR, "2,3"))
    parts += [*_legend(frame, legend), "</svg>"]
    return "".join(parts)


@dataclass(frozen=True)
class IntervalRow:
    """One breach: what regressed (metric, slice), the estimate and its interval."""

    name: str
    estimate: float
    low: float
    high: float


def interval_chart(rows: Sequence[IntervalRow], *, width: int = 540) -> str:
    """Each breach's estimate (dot) and confidence interval (bar) on a shared axis.

    The units are those of the metric's test (a rate ratio, a difference of rates, a
    selection-rate ratio; see docs/statistics.md), so every row also prints its numbers. An
    unbounded end of an interval is drawn to the edge with an arrow.
    """
    title = "breaches: estimate and interval"
    if not rows:
        return _empty_chart(title, "no breach: no metric crossed its share of 1/alpha", width)
    finite = [v for r in rows for v in (r.estimate, r.low, r.high) if math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    pad = (high - low) * 0.08 or abs(high) * 0.1 or 1.0
    ticks = nice_ticks(low - pad, high + pad, 5)
    row_height, label_width = 30, 190
    height = 48 + row_height * len(rows) + 26
    frame = _Frame(width, height, label_width, 24, 40, 30, ticks[0], ticks[-1], 0.0, 1.0)
    parts = _open_svg(title, width, height)
    for tick in ticks:
        x = frame.sx(tick)
        parts.append(
            f"<line class=grid x1={x:.1f} y1={frame.top} x2={x:.1f} y2={frame.base} "
            f'stroke="{_GRID}" />'
            f"<text x={x:.1f} y={frame.base + 15} font-size=11 text-anchor=middle "
            f'fill="{_LABEL}">{_esc(_number_label(tick))}</text>'
        )
    right_edge = frame.width - frame.right
    for i, row in enumerate(rows):
        y = frame.top + 14 + i * row_height
        lo = frame.sx(row.low) if math.isfinite(row.low) else float(frame.left)
        hi = frame.sx(row.high) if math.isfinite(row.high) else float(right_edge)
        numbers = f"{_number_label(row.estimate)} [{_bound(row.low)}, {_bound(row.high)}]"
        parts.append(
            f'<text x=12 y={y - 2} font-size=12 fill="#1d2330">{_esc(row.name)}</text>'
            f'<text x=12 y={y + 12} font-size=11 fill="{_LABEL}">{_esc(numbers)}</text>'
            f'<line class=interval x1={lo:.1f} y1={y} x2={hi:.1f} y2={y} stroke="{_PALETTE[0]}" '
            "stroke-width=4 stroke-linecap=round />"
        )
        for end_value, x, direction in ((row.low, lo, -1), (row.high, hi, 1)):
            if not math.isfinite(end_value):
                tip = x + 7 * direction
                parts.append(
                    f'<polygon points="{tip:.1f},{y} {x:.1f},{y - 5} {x:.1f},{y + 5}" '
                    f'fill="{_PALETTE[0]}" />'
                )
        if math.isfinite(row.estimate):
            parts.append(
                f"<circle class=estimate cx={frame.sx(row.estimate):.1f} cy={y} r=5.5 "
                f'fill="{_THRESHOLD_COLOUR}" stroke="#fff" stroke-width=1.5 />'
            )
    parts.append("</svg>")
    return "".join(parts)


def _bound(value: float) -> str:
    if math.isfinite(value):
        return _number_label(value)
    return "∞" if value > 0 else "-∞"


# --- pages -----------------------------------------------------------------------------------


def _number(value: Any, default: float = math.nan) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.inf if value == "inf" else default


def _e_value_text(value: Any) -> str:
    number = _number(value)
    if math.isnan(number):
        return "-"
    return "∞" if math.isinf(number) else _number_label(number)


def add_status_page(controller: Controller) -> Callable[[FastAPI], None]:
    def install(app: FastAPI) -> None:
        @app.get("/status", response_class=HTMLResponse, include_in_schema=False)
        def status_index() -> str:
            summaries = [summary(s) for s in reversed(controller.ctx.store.rollouts())]
            refresh = any(s.phase in _ACTIVE_PHASES for s in summaries)
            return _page("canary: rollouts", index_body(summaries), refresh=refresh)

        @app.get("/status/{rollout_id}", response_class=HTMLResponse, include_in_schema=False)
        def status_rollout(rollout_id: str) -> str:
            stored = controller.ctx.store.get(rollout_id)
            if stored is None:
                raise HTTPException(status_code=404, detail=f"no rollout {rollout_id!r}")
            active = stored.rollout.phase.value in _ACTIVE_PHASES
            return _page(
                f"canary: {rollout_id}", rollout_body(controller, rollout_id), refresh=active
            )

    return install


def index_body(summaries: Sequence[RolloutSummary]) -> str:
    """The table of rollouts, newest first."""
    if not summaries:
        return "<h1>canary: rollouts</h1><p class=muted>No rollouts yet.</p>"
    rows = []
    for s in summaries:
        rows.append(
            f"<tr><td class=nowrap><a href='/status/{_esc(s.id)}'>{_esc(s.id)}</a></td>"
            f"<td class=nowrap>{_esc(s.model)}</td>"
            f"<td class=nowrap>v{_esc(s.version)} <span class=muted>(champion "
            f"v{_esc(s.champion_version or '-')})</span></td>"
            f"<td class='phase {_esc(s.phase)}'>{_esc(s.phase)}</td>"
            f"<td class=num>{s.canary_weight:g}%</td>"
            f"<td class=num>{_esc(_e_value_text(s.e_value))}</td>"
            f"<td class=nowrap>{_esc(_time(s.updated_at, seconds=False))}</td>"
            f"<td class='muted why'>{_esc(s.reason[:160])}</td></tr>"
        )
    active = sum(1 for s in summaries if s.phase in _ACTIVE_PHASES)
    return (
        f"<h1>canary: rollouts</h1><p class=muted>{active} active, {len(summaries)} in all. "
        "JSON: <a href='/rollouts'>/rollouts</a></p>"
        "<table class=rollouts><tr><th>rollout</th><th>model</th><th>version</th>"
        "<th>phase</th><th>canary</th><th>e-value</th><th>updated</th><th>why</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def rollout_body(controller: Controller, rollout_id: str) -> str:
    """Facts, the three charts, the metrics' current evidence and the phase history."""
    store = controller.ctx.store
    stored = store.get(rollout_id)
    assert stored is not None
    s = summary(stored)
    rollout = stored.rollout
    start = rollout.analysis_started_at or rollout.created_at
    history = store.transitions(rollout_id)
    weights = [(max(t.at - start, 0.0), t.canary_weight) for t in history]
    evidence: dict[str, list[tuple[float, float]]] = {}
    combined: list[tuple[float, float]] = []
    for m in store.measurements(rollout_id):
        result = (m.analysis or {}).get("result") or {}
        for name, status in (result.get("metrics") or {}).items():
            value = _number(status.get("e_value"))
            if not math.isnan(value):
                evidence.setdefault(name, []).append((m.t, value))
        total = _number(result.get("e_value"))
        if not math.isnan(total):
            combined.append((m.t, total))
    end = max([t for t, _ in weights] + [t for t, _ in combined] + [0.0])
    if rollout.phase.value in _ACTIVE_PHASES:
        end = max(end, rollout.updated_at - start)
    threshold = s.threshold or 20.0
    breaches = rollout.detail.get("breaches") or []
    rows = []
    for b in breaches:
        name = b["metric"] + (f" ({b['slice']})" if b.get("slice") else "")
        lo, hi = b.get("interval") or [None, None]
        rows.append(
            IntervalRow(
                name, _number(b.get("estimate")), _number(lo, -math.inf), _number(hi, math.inf)
            )
        )
    last = rollout.detail.get("last") or {}
    canary_total = last.get("canary_total")
    facts = (
        "<table class=facts>"
        f"<tr><th>model</th><td>{_esc(s.model)} v{_esc(s.version)} "
        f"(champion v{_esc(s.champion_version or '-')})</td></tr>"
        f"<tr><th>phase</th><td class='phase {_esc(s.phase)}'>{_esc(s.phase)}</td></tr>"
        f"<tr><th>step</th><td>{s.step + 1} of {s.steps}, canary {s.canary_weight:g}%</td></tr>"
        f"<tr><th>why</th><td>{_esc(s.reason)}</td></tr>"
        + (
            f"<tr><th>proxy</th><td class=breach>does not hold these weights yet: "
            f"{_esc(s.router_error)}</td></tr>"
            if s.router_error
            else ""
        )
        + f"<tr><th>evidence</th><td>e-value {_esc(_e_value_text(s.e_value))}; rolls back at "
        f"1/alpha = {threshold:g}; canary requests "
        f"{_esc(f'{canary_total:,.0f}' if isinstance(canary_total, int | float) else '-')}"
        "</td></tr>"
        f"<tr><th>started</th><td>{_esc(_time(rollout.created_at))}</td></tr>"
        f"<tr><th>lineage</th><td>{_esc(rollout.detail.get('lineage') or '-')}</td></tr>"
        f"<tr><th>policy</th><td>{_esc(rollout.policy_digest)}</td></tr></table>"
    )
    markers = [
        (max(t.at - start, 0.0), t.to_phase.value.replace("_", " "))
        for t in history
        if t.to_phase in _ENDINGS
    ][:1]
    charts = [
        weight_chart(weights, end=end, markers=markers),
        evidence_chart(evidence, threshold=threshold, end=end, combined=combined, markers=markers),
        interval_chart(rows),
    ]
    return (
        f"<p class=crumbs><a href='/status'>all rollouts</a> · "
        f"<a href='/rollouts/{_esc(rollout_id)}'>JSON</a></p>"
        f"<h1>{_esc(rollout_id)}</h1>{facts}"
        f"<h2>charts</h2><div class=charts>{''.join(charts)}</div>"
        f"<h2>metrics now</h2>{_metrics_table(last)}"
        f"<h2>history</h2>{_history_table(history, start)}"
    )


def _metrics_table(last: Mapping[str, Any]) -> str:
    metrics = last.get("metrics") or {}
    if not metrics:
        return "<p class=muted>No measurement yet.</p>"
    rows = []
    for name, m in metrics.items():
        progress = _number(m.get("progress"), 0.0)
        problem = m.get("problem") or ""
        rows.append(
            f"<tr><td>{_esc(name)}</td><td>{_esc(m.get('status', '-'))}</td>"
            f"<td class=num>{_esc(_e_value_text(m.get('e_value')))}</td>"
            f"<td class=num>{progress:.0%}</td>"
            f"<td>{'yes' if m.get('enough') else 'not yet'}</td>"
            f"<td class=muted>{_esc(problem)}</td></tr>"
        )
    return (
        "<table><tr><th>metric</th><th>status</th><th>e-value</th>"
        "<th>of minimum sample</th><th>enough to promote</th><th>problem</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _history_table(history: Sequence[Any], start: float) -> str:
    if not history:
        return "<p class=muted>No phase change yet.</p>"
    rows = [
        f"<tr><td class=nowrap>{_esc(_time(t.at))}</td>"
        f"<td class=num>{_esc(duration_label(max(t.at - start, 0.0)))}</td>"
        f"<td class='phase {_esc(t.to_phase.value)}'>{_esc(t.to_phase.value)}</td>"
        f"<td class=num>{t.step + 1}</td><td class=num>{t.canary_weight:g}%</td>"
        f"<td class=muted>{_esc(t.reason)}</td></tr>"
        for t in history
    ]
    return (
        "<table><tr><th>at</th><th>after</th><th>phase</th><th>step</th><th>canary</th>"
        "<th>why</th></tr>" + "".join(rows) + "</table>"
    )
