"""Inline SVG charts for the run report: line charts over time and bar charts (private).

Plain SVG text built here, so the report needs no script, no stylesheet and no network to
show them; every label is escaped. A chart is an ``<svg class="chart">`` whose data are
``<polyline>`` (a series over time) or ``<rect class="bar">`` (a bar) elements.

>>> svg = line_chart("t", [Series("in/s", [(0.0, 1.0), (1.0, 3.0)])], y_unit="/s")
>>> svg.startswith('<svg class="chart"') and svg.count("<polyline") == 1
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Final

__all__ = ("Series", "bar_chart", "column_chart", "line_chart", "nice_number")

_WIDTH: Final = 960
_HEIGHT: Final = 260
_LEFT: Final = 70  # room for the y axis labels
_RIGHT: Final = 20
_TOP: Final = 30  # room for the legend
_BOTTOM: Final = 40  # room for the x axis labels
_COLORS: Final = ("#1f77b4", "#2ca02c", "#d62728", "#ff7f0e", "#9467bd", "#8c564b")


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a line chart.

    Attributes:
        label: its name in the legend.
        points: ``(x, y)`` pairs, x increasing.
        dashed: drawn dashed (a limit, such as a capacity).
    """

    label: str
    points: Sequence[tuple[float, float]]
    dashed: bool = False


def nice_number(value: float) -> str:
    """A number for an axis label: ``1.5k``, ``250``, ``0.25``.

    >>> [nice_number(v) for v in (0, 0.25, 12, 1500, 2_000_000)]
    ['0', '0.25', '12', '1.5k', '2M']
    """
    for bound, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= bound:
            return f"{value / bound:.3g}{suffix}"
    return f"{value:.3g}"


def _ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``top``."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _frame(title: str, legend: Sequence[tuple[str, str, bool]]) -> list[str]:
    parts = [
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}"'
        f' width="{_WIDTH}" height="{_HEIGHT}" role="img" aria-label="{escape(title)}">',
        f'<rect x="0" y="0" width="{_WIDTH}" height="{_HEIGHT}" fill="#fff"/>',
    ]
    x = _LEFT
    for label, color, dashed in legend:
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        parts.append(
            f'<line x1="{x}" y1="14" x2="{x + 24}" y2="14" stroke="{color}" stroke-width="3"'
            f"{dash}/>"
            f'<text x="{x + 30}" y="18" font-size="12">{escape(label)}</text>'
        )
        x += 40 + 7 * len(label)
    return parts


def line_chart(
    title: str, series: Sequence[Series], *, y_unit: str = "", y_max: float | None = None
) -> str:
    """Lines over time (x in seconds) on one y axis starting at 0.

    Args:
        title: what the chart shows (its accessible name).
        series: the lines; one with a single point is drawn as a dot.
        y_unit: appended to the y axis labels (``/s``, ``%``).
        y_max: the top of the y axis (default: the largest y, rounded up).
    """
    drawn = [s for s in series if s.points]
    xs = [x for s in drawn for x, _ in s.points]
    x_lo, x_hi = (min(0.0, *xs), max(xs)) if xs else (0.0, 1.0)  # time from the start
    if x_hi <= x_lo:
        x_hi = x_lo + 1.0
    top = y_max if y_max is not None else max((y for s in drawn for _, y in s.points), default=1)
    ticks = _ticks(top)
    y_hi = ticks[-1] or 1.0
    plot_w = _WIDTH - _LEFT - _RIGHT
    plot_h = _HEIGHT - _TOP - _BOTTOM

    def px(x: float) -> float:
        return _LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w

    def py(y: float) -> float:
        return _TOP + plot_h - min(max(y, 0.0), y_hi) / y_hi * plot_h

    legend = [(s.label, _COLORS[i % len(_COLORS)], s.dashed) for i, s in enumerate(drawn)]
    parts = _frame(title, legend)
    for tick in ticks:
        y = py(tick)
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_WIDTH - _RIGHT}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
            f"{escape(nice_number(tick) + y_unit)}</text>"
        )
    for tick in _ticks(x_hi - x_lo, 8):
        x = px(x_lo + tick)
        if x > _WIDTH - _RIGHT + 0.5:
            break
        parts.append(
            f'<text x="{x:.1f}" y="{_HEIGHT - _BOTTOM + 16}" font-size="11" text-anchor="middle">'
            f"{escape(nice_number(x_lo + tick))} s</text>"
        )
    parts.append(
        f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_WIDTH - _RIGHT}" y2="{_TOP + plot_h}"'
        ' stroke="#333"/>'
    )
    for s, (_, color, dashed) in zip(drawn, legend, strict=True):
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash}'
            f' data-series="{escape(s.label)}" points="{coords}"/>'
        )
        if len(s.points) == 1:
            x, y = s.points[0]
            parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>')
    parts.append("</svg>")
    return "".join(parts)


def column_chart(title: str, columns: Sequence[tuple[str, float]]) -> str:
    """Vertical bars, one per ``(label, value)``, left to right (a histogram)."""
    plot_w = _WIDTH - _LEFT - _RIGHT
    plot_h = _HEIGHT - _TOP - _BOTTOM
    ticks = _ticks(max((v for _, v in columns), default=1))
    y_hi = ticks[-1] or 1.0
    parts = _frame(title, ())
    for tick in ticks:
        y = _TOP + plot_h - tick / y_hi * plot_h
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_WIDTH - _RIGHT}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
            f"{escape(nice_number(tick))}</text>"
        )
    slot = plot_w / max(len(columns), 1)
    every = max(1, math.ceil(len(columns) * 60 / plot_w))  # keep labels from overlapping
    for i, (label, value) in enumerate(columns):
        height = value / y_hi * plot_h
        x = _LEFT + i * slot
        parts.append(
            f'<rect class="bar" x="{x + slot * 0.1:.1f}" y="{_TOP + plot_h - height:.1f}"'
            f' width="{slot * 0.8:.1f}" height="{height:.1f}" fill="{_COLORS[0]}">'
            f"<title>{escape(label)}: {value:,.0f}</title></rect>"
        )
        if i % every == 0:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{_HEIGHT - _BOTTOM + 16}" font-size="11"'
                f' text-anchor="middle">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(title: str, bars: Sequence[tuple[str, float]]) -> str:
    """Horizontal bars, one per ``(label, value)``, top to bottom, labels on the left."""
    row = 24
    label_w = 460
    height = _TOP + row * max(len(bars), 1) + 10
    top = max((v for _, v in bars), default=1) or 1
    parts = [
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {height}"'
        f' width="{_WIDTH}" height="{height}" role="img" aria-label="{escape(title)}">',
        f'<rect x="0" y="0" width="{_WIDTH}" height="{height}" fill="#fff"/>',
    ]
    for i, (label, value) in enumerate(bars):
        y = _TOP + i * row
        width = value / top * (_WIDTH - label_w - 90)
        shown = label if len(label) <= 70 else label[:69] + "…"
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 15}" font-size="12" text-anchor="end">'
            f"<title>{escape(label)}</title>{escape(shown)}</text>"
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{max(width, 1):.1f}"'
            f' height="{row - 6}" fill="{_COLORS[2]}"/>'
            f'<text x="{label_w + width + 6:.1f}" y="{y + 15}" font-size="12">{value:,.0f}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
