"""Small, dependency-free SVG charts for self-contained HTML reports.

Line charts on linear or logarithmic axes and outlined histograms, written as inline
``<svg>`` text: no fonts, scripts or links to fetch, every label escaped, and the
same input always gives the same bytes (so reports can be diffed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["Line", "histogram_chart", "line_chart"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
_WIDTH, _HEIGHT = 440, 320
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 12, 28, 44


@dataclass(frozen=True)
class Line:
    """One series: points ``(x[i], y[i])`` joined by straight segments."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    dashed: bool = False


@dataclass(frozen=True)
class _Axis:
    low: float
    high: float
    log: bool
    start: float  # pixel of low
    end: float  # pixel of high

    def __call__(self, value: float) -> float:
        if self.log:
            value = max(value, self.low)
            fraction = (math.log10(value) - math.log10(self.low)) / (
                math.log10(self.high) - math.log10(self.low)
            )
        else:
            fraction = (value - self.low) / (self.high - self.low)
        fraction = min(max(fraction, 0.0), 1.0)
        return self.start + fraction * (self.end - self.start)

    def ticks(self) -> list[float]:
        if self.log:
            first, last = math.ceil(math.log10(self.low)), math.floor(math.log10(self.high))
            step = max(1, math.ceil((last - first + 1) / 7))
            return [10.0**k for k in range(first, last + 1, step)]
        return _nice_ticks(self.low, self.high)


def _nice_ticks(low: float, high: float, target: int = 5) -> list[float]:
    span = high - low
    raw = span / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    count = math.floor((high - first) / step + 1e-9) + 1
    return [round(first + i * step, 12) for i in range(count)]


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        exponent = math.floor(math.log10(abs(value)))
        mantissa = value / 10.0**exponent
        return f"1e{exponent}" if math.isclose(mantissa, 1.0) else f"{value:.1e}"
    return f"{value:g}"


def _range(values: Sequence[float], log: bool) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v) and (v > 0 or not log)]
    if not finite:
        return (0.1, 1.0) if log else (0.0, 1.0)
    low, high = min(finite), max(finite)
    if log:
        return 10.0 ** math.floor(math.log10(low)), 10.0 ** math.ceil(math.log10(high))
    if low == high:
        low, high = low - 0.5, high + 0.5
    return low, high


def _frame(
    title: str, x_axis: _Axis, y_axis: _Axis, x_label: str, y_label: str, body: list[str]
) -> str:
    left, right = x_axis.start, x_axis.end
    bottom, top = y_axis.start, y_axis.end
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        f'width="{_WIDTH}" height="{_HEIGHT}" role="img" font-family="sans-serif" '
        'font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<text x="{_WIDTH / 2:.0f}" y="16" text-anchor="middle" font-size="13" '
        f'font-weight="bold">{escape(title)}</text>',
    ]
    for tick in x_axis.ticks():
        x = x_axis(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#e5e5e5"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle">{_label(tick)}</text>'
        )
    for tick in y_axis.ticks():
        y = y_axis(tick)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        parts.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{_label(tick)}</text>'
        )
    parts.append(
        f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" '
        'fill="none" stroke="#444"/>'
    )
    parts.append(
        f'<text x="{(left + right) / 2:.0f}" y="{_HEIGHT - 8}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    parts.append(
        f'<text transform="translate(14 {(top + bottom) / 2:.0f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    parts.extend(body)
    parts.append("</svg>")
    return "".join(parts)


def _legend(entries: Sequence[tuple[str, str, bool]], x: float, y: float) -> list[str]:
    if not entries:
        return []
    width = 28 + 6.2 * max(len(label) for label, _, _ in entries)
    parts = [  # a backdrop keeps the labels readable over curves and markers
        f'<rect x="{x - 4}" y="{y - 9}" width="{width:.0f}" height="{14 * len(entries) + 4}" '
        'fill="#fff" fill-opacity="0.85"/>'
    ]
    for row, (label, color, dashed) in enumerate(entries):
        top = y + 14 * row
        dash = ' stroke-dasharray="4 3"' if dashed else ""
        parts.append(
            f'<line x1="{x}" y1="{top:.0f}" x2="{x + 18}" y2="{top:.0f}" stroke="{color}" '
            f'stroke-width="2"{dash}/>'
        )
        parts.append(f'<text x="{x + 22}" y="{top + 4:.0f}">{escape(label)}</text>')
    return parts


def _path(points: Sequence[tuple[float, float]]) -> str:
    out: list[str] = []
    previous = ""
    for x, y in points:
        here = f"{x:.1f},{y:.1f}"
        if here != previous:  # skip points that land on the same pixel
            out.append(here)
            previous = here
    return "M" + " L".join(out)


def line_chart(
    lines: Sequence[Line],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_log: bool = False,
    y_log: bool = False,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    diagonal: bool = False,
    markers: Sequence[tuple[float, str]] = (),
) -> str:
    """An SVG line chart.

    On a logarithmic axis values at or below the range's low end are drawn on it.
    ``diagonal`` adds the dotted line y = x (chance on a ROC curve); ``markers`` are
    vertical lines ``(x, label)``.

    Examples
    --------
    >>> svg = line_chart([Line("a<b", [0, 1], [0, 1])], title="t", x_label="x", y_label="y")
    >>> svg.startswith("<svg") and "a&lt;b" in svg and "<script" not in svg
    True
    """
    all_x = [v for line in lines for v in line.x] + [m for m, _ in markers]
    all_y = [v for line in lines for v in line.y]
    x_low, x_high = x_range or _range(all_x, x_log)
    y_low, y_high = y_range or _range(all_y, y_log)
    x_axis = _Axis(x_low, x_high, x_log, _LEFT, _WIDTH - _RIGHT)
    y_axis = _Axis(y_low, y_high, y_log, _HEIGHT - _BOTTOM, _TOP)
    body: list[str] = []
    if diagonal:
        low, high = max(x_low, y_low), min(x_high, y_high)
        ends = [(x_axis(low), y_axis(low)), (x_axis(high), y_axis(high))]
        if x_log or y_log:  # y = x on log axes: sample it
            ends = [(x_axis(v), y_axis(v)) for v in _geometric(low, high)]
        body.append(f'<path d="{_path(ends)}" fill="none" stroke="#999" stroke-dasharray="2 3"/>')
    legend: list[tuple[str, str, bool]] = []
    for index, line in enumerate(lines):
        color = PALETTE[index % len(PALETTE)]
        points = [(x_axis(x), y_axis(y)) for x, y in zip(line.x, line.y, strict=True)]
        dash = ' stroke-dasharray="5 3"' if line.dashed else ""
        body.append(
            f'<path d="{_path(points)}" fill="none" stroke="{color}" stroke-width="1.6"{dash}/>'
        )
        legend.append((line.label, color, line.dashed))
    for index, (value, label) in enumerate(markers):
        x = x_axis(value)
        color = "#555"
        body.append(
            f'<line x1="{x:.1f}" y1="{y_axis.end}" x2="{x:.1f}" y2="{y_axis.start}" '
            f'stroke="{color}" stroke-dasharray="{3 + 2 * index} 3"/>'
        )
        legend.append((label, color, True))
    legend_x, legend_y = x_axis.start + 8, y_axis.end + 12  # top left
    if diagonal:  # keep the legend clear of the rising curves: bottom right
        legend_x = x_axis.end - 150
        legend_y = y_axis.start - 10 - 14 * (len(legend) - 1)
    body.extend(_legend(legend, legend_x, legend_y))
    return _frame(title, x_axis, y_axis, x_label, y_label, body)


def _geometric(low: float, high: float, count: int = 32) -> list[float]:
    ratio = (high / low) ** (1 / (count - 1))
    return [low * ratio**i for i in range(count)]


def histogram_chart(
    edges: Sequence[float],
    groups: Sequence[tuple[str, Sequence[int]]],
    *,
    title: str,
    x_label: str,
) -> str:
    """Outlined histograms of several groups on shared bins, each as a share of its group.

    Examples
    --------
    >>> svg = histogram_chart([0, 1, 2], [("members", [1, 3]), ("others", [3, 1])],
    ...                       title="scores", x_label="score")
    >>> svg.count("<path") == 2 and "members" in svg
    True
    """
    shares = []
    for _, counts in groups:
        total = sum(counts) or 1
        shares.append([c / total for c in counts])
    top = max((max(s) for s in shares if s), default=1.0) or 1.0
    x_axis = _Axis(edges[0], edges[-1], False, _LEFT, _WIDTH - _RIGHT)
    y_axis = _Axis(0.0, top * 1.1, False, _HEIGHT - _BOTTOM, _TOP)
    body: list[str] = []
    legend: list[tuple[str, str, bool]] = []
    for index, ((label, _), share) in enumerate(zip(groups, shares, strict=True)):
        color = PALETTE[index % len(PALETTE)]
        points = [(x_axis(edges[0]), y_axis(0.0))]
        for left, right, value in zip(edges, edges[1:], share, strict=False):
            points += [(x_axis(left), y_axis(value)), (x_axis(right), y_axis(value))]
        points.append((x_axis(edges[-1]), y_axis(0.0)))
        body.append(
            f'<path d="{_path(points)}" fill="{color}" fill-opacity="0.18" stroke="{color}" '
            'stroke-width="1.4"/>'
        )
        legend.append((label, color, False))
    body.extend(_legend(legend, x_axis.start + 8, y_axis.end + 12))
    return _frame(title, x_axis, y_axis, x_label, "share of group", body)
