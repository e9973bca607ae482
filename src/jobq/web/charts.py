"""Charts drawn on the server as SVG: no script draws them, so the
Content-Security-Policy (``script-src 'self'``) holds and tests read them as
markup. Every chart has its axes labelled with units; every piece of text
from the store (a job type) is escaped.

The failure-rate line reads over a trailing window of
:data:`RATE_TRAIL` buckets and is drawn only where at least
:data:`RATE_MIN_ATTEMPTS` attempts ended in it, against its own axis (0 to
100 %): a single failure in a quiet minute is a red bar, not a line at the top.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

from ..figures import DURATION_BOUNDS_MS, PAST_LAST_BOUND, Window

W, H = 760, 250  # the outcome chart's view box
LEFT, RIGHT, TOP, BOTTOM = 52, 56, 14, 40  # its margins (axis labels live there)
RATE_TRAIL = 5  # buckets the failure rate is read over
RATE_MIN_ATTEMPTS = 5  # attempts a trailing window needs before its rate is drawn
X_LABELS = 6  # time labels along the bottom axis


def nice_ceiling(value: float) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return int(step * power)
    return int(10 * power)  # pragma: no cover - the loop always returns


def ticks(top: int) -> list[int]:
    """Whole-number ticks from 0 to ``top`` (a :func:`nice_ceiling`), at most five steps."""
    step = max(1, nice_ceiling(top / 5))
    return list(range(0, top + 1, step))


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def failure_rates(rows: Sequence[Any]) -> list[float | None]:
    """Per bucket: failed / (completed + failed) over the trailing
    :data:`RATE_TRAIL` buckets, or ``None`` where fewer than
    :data:`RATE_MIN_ATTEMPTS` attempts ended in them."""
    rates: list[float | None] = []
    for i in range(len(rows)):
        trail = rows[max(0, i - RATE_TRAIL + 1) : i + 1]
        failed = sum(r.failed for r in trail)
        attempts = failed + sum(r.completed for r in trail)
        rates.append(failed / attempts if attempts >= RATE_MIN_ATTEMPTS else None)
    return rates


def outcome_chart(rows: Sequence[Any], window: Window) -> Markup:
    """Completed and failed attempts per bucket as stacked bars (left axis,
    attempts per ``window.unit``), the failure rate as a line (right axis,
    %), time along the bottom (UTC)."""
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    top = nice_ceiling(max((r.completed + r.failed for r in rows), default=0))
    slot = plot_w / max(len(rows), 1)

    def y(value: float, scale: float) -> float:
        return TOP + plot_h - value / scale * plot_h

    parts = [
        f'<svg class="chart-svg outcomes" viewBox="0 0 {W} {H}" role="img" data-max="{top}"'
        f' aria-label="completed and failed attempts per {window.unit}">'
    ]
    for t in ticks(top):
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{_num(y(t, top))}" y2="{_num(y(t, top))}"/>'
            f'<text class="tick end y-left" x="{LEFT - 6}" y="{_num(y(t, top) + 4)}">{t}</text>'
        )
    for pct in (0, 25, 50, 75, 100):
        parts.append(f'<text class="tick y-right" x="{W - RIGHT + 6}" y="{_num(y(pct, 100) + 4)}">{pct}%</text>')
    for i, r in enumerate(rows):
        x = LEFT + i * slot + slot * 0.1
        width = _num(max(slot * 0.8, 1))
        stamp = r.minute.strftime("%H:%M")
        done_h, failed_h = r.completed / top * plot_h, r.failed / top * plot_h
        label = f"{stamp} UTC: {r.completed} completed, {r.failed} failed"
        parts.append(f"<g><title>{escape(label)}</title>")
        if r.completed:
            parts.append(
                f'<rect class="bar completed" x="{_num(x)}" y="{_num(TOP + plot_h - done_h)}"'
                f' width="{width}" height="{_num(done_h)}"/>'
            )
        if r.failed:
            parts.append(
                f'<rect class="bar failed" x="{_num(x)}" y="{_num(TOP + plot_h - done_h - failed_h)}"'
                f' width="{width}" height="{_num(failed_h)}"/>'
            )
        parts.append("</g>")
    every = max(1, math.ceil(len(rows) / X_LABELS))
    for i in range(0, len(rows), every):
        x = LEFT + i * slot + slot / 2
        parts.append(f'<text class="tick x" x="{_num(x)}" y="{H - BOTTOM + 16}">{rows[i].minute:%H:%M}</text>')
    segments: list[list[str]] = [[]]
    for i, rate in enumerate(failure_rates(rows)):
        if rate is None:
            segments.append([])
        else:
            segments[-1].append(f"{_num(LEFT + i * slot + slot / 2)},{_num(y(rate * 100, 100))}")
    for points in segments:
        if len(points) == 1:
            x0, y0 = points[0].split(",")
            parts.append(f'<circle class="rate" cx="{x0}" cy="{y0}" r="2.5"/>')
        elif points:
            parts.append(f'<polyline class="rate" points="{" ".join(points)}"/>')
    bottom = TOP + plot_h
    parts.append(
        f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{bottom}"/>'
        f'<line class="axis" x1="{W - RIGHT}" x2="{W - RIGHT}" y1="{TOP}" y2="{bottom}"/>'
        f'<line class="axis" x1="{LEFT}" x2="{W - RIGHT}" y1="{bottom}" y2="{bottom}"/>'
        f'<text class="axis-title" x="12" y="{TOP + plot_h / 2}" transform="rotate(-90 12 {TOP + plot_h / 2})"'
        f' text-anchor="middle">attempts per {window.unit}</text>'
        f'<text class="axis-title" x="{W - 8}" y="{TOP + plot_h / 2}"'
        f' transform="rotate(90 {W - 8} {TOP + plot_h / 2})" text-anchor="middle">failure rate,'
        f" last {RATE_TRAIL} {window.unit}s (%)</text>"
        f'<text class="axis-title" x="{LEFT + plot_w / 2}" y="{H - 6}" text-anchor="middle">time (UTC)</text>'
        "</svg>"
    )
    return Markup("".join(parts))


def duration_text(bound: int | None) -> str:
    """A bucket bound as an operator reads it: ``≤ 5 ms``, ``≤ 2 s``, ``≤ 1 h``."""
    if bound is None:
        return "–"
    if bound == PAST_LAST_BOUND:
        return f"> {duration_text(DURATION_BOUNDS_MS[-1])[2:]}"
    for unit, ms in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if bound >= ms and bound % ms == 0:
            return f"≤ {bound // ms} {unit}"
    return f"≤ {bound} ms"


DW = 760  # the duration chart's width
ROW_H, LABEL_W = 22, 170  # its row height and the width of the type labels


def _log_x(bound: int, span: float) -> float:
    """Where a duration (ms) sits on the log axis from 1 ms to the last bound."""
    # The axis starts half a decade under 1 ms, so the shortest bucket still shows a bar.
    value = DURATION_BOUNDS_MS[-1] * 10 if bound == PAST_LAST_BOUND else max(bound, 1)
    return LABEL_W + (math.log10(value) + 0.5) / (math.log10(DURATION_BOUNDS_MS[-1] * 10) + 0.5) * span


def duration_chart(figures: dict[str, dict[str, Any]]) -> Markup:
    """Per job type, run time and queue age: a bar to p50 and a lighter one
    on to p95, on a logarithmic axis of time (1 ms to days)."""
    rows = [(t, m, f[m]) for t, f in figures.items() for m in ("wait", "run") if f[m]["count"]]
    span = DW - LABEL_W - 20
    height = TOP + len(rows) * ROW_H + BOTTOM
    parts = [f'<svg class="chart-svg durations" viewBox="0 0 {DW} {height}" role="img" aria-label="p50 and p95">']
    bottom = TOP + len(rows) * ROW_H
    for ms, label in ((1, "1 ms"), (10, "10 ms"), (100, "100 ms"), (1000, "1 s"), (10_000, "10 s"),
                      (60_000, "1 min"), (600_000, "10 min"), (3_600_000, "1 h"), (86_400_000, "1 d")):  # fmt: skip
        x = _num(_log_x(ms, span))
        parts.append(
            f'<line class="grid" x1="{x}" x2="{x}" y1="{TOP}" y2="{bottom}"/>'
            f'<text class="tick x" x="{x}" y="{bottom + 16}">{label}</text>'
        )
    for i, (job_type, measure, f) in enumerate(rows):
        y = TOP + i * ROW_H
        name = job_type if len(job_type) <= 22 else job_type[:21] + "…"
        what = "queue age" if measure == "wait" else "run time"
        parts.append(
            f'<g class="row" data-type="{escape(job_type)}" data-measure="{measure}">'
            f"<title>{escape(job_type)} {what}: p50 {duration_text(f['p50'])}, p95 {duration_text(f['p95'])}"
            f" ({f['count']} attempts)</title>"
            f'<text class="tick end" x="{LABEL_W - 8}" y="{y + 15}">{escape(name)} · {what}</text>'
            f'<rect class="bar p95 {measure}" x="{LABEL_W}" y="{y + 4}" width="{_num(_log_x(f["p95"], span) - LABEL_W)}"'
            f' height="{ROW_H - 8}"/>'
            f'<rect class="bar p50 {measure}" x="{LABEL_W}" y="{y + 4}" width="{_num(_log_x(f["p50"], span) - LABEL_W)}"'
            f' height="{ROW_H - 8}"/></g>'
        )
    parts.append(
        f'<line class="axis" x1="{LABEL_W}" x2="{LABEL_W}" y1="{TOP}" y2="{bottom}"/>'
        f'<line class="axis" x1="{LABEL_W}" x2="{DW - 20}" y1="{bottom}" y2="{bottom}"/>'
        f'<text class="axis-title" x="{LABEL_W + span / 2}" y="{height - 6}" text-anchor="middle">'
        "time (logarithmic): dark to p50, light to p95</text></svg>"
    )
    return Markup("".join(parts))
