"""The status page: the rollouts and, per rollout, its weight and evidence over time.

Server-rendered HTML with inline SVG charts and no external assets, so it works on an
air-gapped box and in a terminal browser's screenshot alike. Every value shown comes from
the store through the same functions as the JSON API.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse

from canary.service.api import summary
from canary.service.controller import Controller

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1d2330;background:#fafbfc}
h1{font-size:1.4rem} h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}
td,th{padding:.3rem .7rem;border-bottom:1px solid #dde}
th{text-align:left;font-weight:600} .phase{font-weight:600}
.promoted{color:#1a7f37} .rolled_back,.failed,.aborted,.rejected{color:#c0392b}
.progressing,.paused,.promoting,.rolling_back,.starting{color:#9a6700}
svg{background:#fff;border:1px solid #dde;margin:.3rem 1rem .3rem 0}
.muted{color:#667}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if at else "-"


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{_esc(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def line_chart(
    title: str,
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    y_label: str,
    log_y: bool = False,
    hline: tuple[float, str] | None = None,
    step: bool = False,
    width: int = 520,
    height: int = 220,
) -> str:
    """An SVG line chart; ``hline`` draws a labelled horizontal line (e.g. 1/alpha)."""
    left, right, top, bottom = 56, 12, 28, 34
    points = [p for values in series.values() for p in values]
    if hline is not None:
        points.append((points[0][0] if points else 0.0, hline[0]))
    if not points:
        return (
            f'<svg class=chart role=img aria-label="{_esc(title)}" width={width} height=60>'
            f"<text x=10 y=35>{_esc(title)}: no data yet</text></svg>"
        )

    def fy(v: float) -> float:
        return math.log10(max(v, 1e-6)) if log_y else v

    xs = [p[0] for p in points]
    ys = [fy(p[1]) for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if log_y:
        y0 = min(y0, 0.0)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return top + (1 - (fy(y) - y0) / (y1 - y0)) * (height - top - bottom)

    colours = ["#2f6fdf", "#d9822b", "#1a7f37", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d"]
    parts = [
        f'<svg class=chart role=img aria-label="{_esc(title)}" width={width} height={height} '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f"<text x={left} y=16 font-size=13 font-weight=600>{_esc(title)}</text>",
        f"<line x1={left} y1={height - bottom} x2={width - right} y2={height - bottom} "
        'stroke="#889"/>',
        f'<line x1={left} y1={top} x2={left} y2={height - bottom} stroke="#889"/>',
        f'<text x=4 y={top + 10} font-size=10 fill="#556">{_esc(_fmt(y1, log_y))}</text>',
        f'<text x=4 y={height - bottom} font-size=10 fill="#556">{_esc(_fmt(y0, log_y))}</text>',
        f'<text x={left} y={height - 8} font-size=10 fill="#556">{x0:.0f}s</text>',
        f'<text x={width - right - 40} y={height - 8} font-size=10 fill="#556">{x1:.0f}s</text>',
        f'<text x={width // 2 - 30} y={height - 8} font-size=10 fill="#556">{_esc(y_label)}</text>',
    ]
    if hline is not None:
        y = sy(hline[0])
        parts.append(
            f"<line class=threshold x1={left} y1={y:.1f} x2={width - right} y2={y:.1f} "
            'stroke="#c0392b" stroke-dasharray="5,4"/>'
            f'<text x={width - right - 90} y={y - 4:.1f} font-size=10 fill="#c0392b">'
            f"{_esc(hline[1])}</text>"
        )
    for index, (name, values) in enumerate(series.items()):
        if not values:
            continue
        colour = colours[index % len(colours)]
        coords: list[str] = []
        previous: tuple[float, float] | None = None
        for x, y in values:
            if step and previous is not None:
                coords.append(f"{sx(x):.1f},{sy(previous[1]):.1f}")
            coords.append(f"{sx(x):.1f},{sy(y):.1f}")
            previous = (x, y)
        parts.append(
            f'<polyline class=series data-name="{_esc(name)}" fill=none stroke="{colour}" '
            f'stroke-width=2 points="{" ".join(coords)}"/>'
        )
        parts.append(
            f"<text x={width - right - 110} y={top + 12 + 12 * index} font-size=10 "
            f'fill="{colour}">{_esc(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _fmt(value: float, log_y: bool) -> str:
    if log_y:
        return f"{10**value:.3g}"
    return f"{value:.3g}"


def interval_chart(title: str, rows: Sequence[tuple[str, float, float, float]]) -> str:
    """Estimates with their intervals, one row per (metric, slice)."""
    width, row_h, left = 520, 22, 170
    height = 30 + row_h * max(len(rows), 1)
    if not rows:
        return (
            f'<svg class=chart role=img aria-label="{_esc(title)}" width={width} height=60>'
            f"<text x=10 y=35>{_esc(title)}: no breach</text></svg>"
        )
    finite = [v for _, e, lo, hi in rows for v in (e, lo, hi) if math.isfinite(v)]
    lo_all, hi_all = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if hi_all == lo_all:
        hi_all = lo_all + 1

    def sx(v: float) -> float:
        v = min(max(v, lo_all), hi_all) if math.isfinite(v) else (hi_all if v > 0 else lo_all)
        return left + (v - lo_all) / (hi_all - lo_all) * (width - left - 20)

    parts = [
        f'<svg class=chart role=img aria-label="{_esc(title)}" width={width} height={height} '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<text x=8 y=16 font-size=13 font-weight=600>{_esc(title)}</text>",
    ]
    for i, (name, estimate, lo, hi) in enumerate(rows):
        y = 34 + i * row_h
        parts.append(f"<text x=8 y={y + 4} font-size=11>{_esc(name)}</text>")
        parts.append(
            f"<line class=interval x1={sx(lo):.1f} y1={y} x2={sx(hi):.1f} y2={y} "
            'stroke="#2f6fdf" stroke-width=3/>'
        )
        parts.append(f'<circle cx={sx(estimate):.1f} cy={y} r=4 fill="#c0392b"/>')
    parts.append("</svg>")
    return "".join(parts)


def _number(value: Any, default: float = math.nan) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.inf if value == "inf" else default


def add_status_page(controller: Controller) -> Callable[[FastAPI], None]:
    def install(app: FastAPI) -> None:
        @app.get("/status", response_class=HTMLResponse, include_in_schema=False)
        def status_index() -> str:
            rows = []
            for stored in reversed(controller.ctx.store.rollouts()):
                s = summary(stored)
                rows.append(
                    f"<tr><td><a href='/status/{_esc(s.id)}'>{_esc(s.id)}</a></td>"
                    f"<td>{_esc(s.model)}</td><td>v{_esc(s.version)}</td>"
                    f"<td>v{_esc(s.champion_version or '-')}</td>"
                    f"<td class='phase {_esc(s.phase)}'>{_esc(s.phase)}</td>"
                    f"<td>{s.canary_weight:g}%</td><td>{_esc(_time(s.updated_at))}</td>"
                    f"<td class=muted>{_esc(s.reason[:140])}</td></tr>"
                )
            table = (
                "<table><tr><th>rollout</th><th>model</th><th>version</th><th>champion</th>"
                "<th>phase</th><th>canary</th><th>updated</th><th>why</th></tr>"
                + "".join(rows)
                + "</table>"
                if rows
                else "<p class=muted>No rollouts yet.</p>"
            )
            return _page("canary", f"<h1>canary: rollouts</h1>{table}")

        @app.get("/status/{rollout_id}", response_class=HTMLResponse, include_in_schema=False)
        def status_rollout(rollout_id: str) -> str:
            stored = controller.ctx.store.get(rollout_id)
            if stored is None:
                raise HTTPException(status_code=404, detail=f"no rollout {rollout_id!r}")
            return _page(f"canary: {rollout_id}", rollout_body(controller, rollout_id))

    return install


def rollout_body(controller: Controller, rollout_id: str) -> str:
    store = controller.ctx.store
    stored = store.get(rollout_id)
    assert stored is not None
    s = summary(stored)
    rollout = stored.rollout
    start = rollout.analysis_started_at or rollout.created_at
    weights = [(max(t.at - start, 0.0), t.canary_weight) for t in store.transitions(rollout_id)]
    evidence: dict[str, list[tuple[float, float]]] = {}
    for m in store.measurements(rollout_id):
        result = (m.analysis or {}).get("result") or {}
        for name, status in (result.get("metrics") or {}).items():
            value = _number(status.get("e_value"))
            if math.isfinite(value) or value == math.inf:
                evidence.setdefault(name, []).append((m.t, min(value, 1e12)))
    threshold = s.threshold or 20.0
    breaches = rollout.detail.get("breaches") or []
    rows = []
    for b in breaches:
        name = b["metric"] + (f" ({b['slice']})" if b.get("slice") else "")
        lo, hi = b.get("interval") or [None, None]
        rows.append(
            (name, _number(b.get("estimate")), _number(lo, -math.inf), _number(hi, math.inf))
        )
    facts = (
        f"<table><tr><th>model</th><td>{_esc(s.model)} v{_esc(s.version)} "
        f"(champion v{_esc(s.champion_version or '-')})</td></tr>"
        f"<tr><th>phase</th><td class='phase {_esc(s.phase)}'>{_esc(s.phase)}</td></tr>"
        f"<tr><th>step</th><td>{s.step + 1} of {s.steps}, canary {s.canary_weight:g}%</td></tr>"
        f"<tr><th>why</th><td>{_esc(s.reason)}</td></tr>"
        f"<tr><th>lineage</th><td>{_esc(rollout.detail.get('lineage') or '-')}</td></tr>"
        f"<tr><th>policy</th><td>{_esc(rollout.policy_digest)}</td></tr></table>"
    )
    charts = [
        line_chart(
            "canary weight (%)", {"canary": weights}, y_label="seconds since start", step=True
        ),
        line_chart(
            "evidence per metric (e-value, log scale)",
            evidence,
            y_label="seconds since start",
            log_y=True,
            hline=(threshold, f"1/alpha = {threshold:g}"),
        ),
        interval_chart("breaches: estimate and interval", rows),
    ]
    return (
        f"<p><a href='/status'>all rollouts</a></p><h1>{_esc(rollout_id)}</h1>{facts}"
        f"<h2>charts</h2>{''.join(charts)}"
    )
