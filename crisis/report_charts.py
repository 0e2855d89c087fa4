"""SVG charts for the HTML report, written directly (no charting library; README says why).

Each function returns one ``<svg>`` element as text. Values arrive already suppressed: a suppressed
value is drawn as a hatched placeholder labelled ``*``, never as a bar of its (unknown) size, and a
missing one is left out. Every chart has a ``<title>`` and ``<desc>`` for screen readers.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from html import escape

from domain.outcome_report import Figure

COLORS = ("#1b6ca8", "#e07b39", "#3a9d5d", "#8c8c8c", "#9b59b6", "#c0392b")
_DEFS = ('<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
         'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f3f3f3"/>'
         '<line x1="0" y1="0" x2="0" y2="6" stroke="#9a9a9a" stroke-width="2"/></pattern></defs>')


def _svg(width: int, height: int, title: str, desc: str, body: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif" font-size="12">'
            f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>{_DEFS}{''.join(body)}</svg>")


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def horizontal_bars(title: str, desc: str, items: Sequence[tuple[str, Figure]], unit: str = "",
                    maximum: float | None = None, width: int = 560) -> str:
    """One bar per item, label on the left, value on the right of the bar."""
    label_width, bar_height, gap = 230, 18, 8
    height = 30 + len(items) * (bar_height + gap)
    values = [float(f.value) for _, f in items if f.value is not None]
    top = maximum if maximum is not None else _nice_max(max(values, default=0))
    span = width - label_width - 70
    body = [f'<text x="0" y="16" font-weight="600">{escape(title)}</text>']
    for index, (label, figure) in enumerate(items):
        y = 30 + index * (bar_height + gap)
        body.append(f'<text x="{label_width - 8}" y="{y + 13}" text-anchor="end">{escape(label)}</text>')
        if figure.suppressed:
            body.append(f'<rect x="{label_width}" y="{y}" width="24" height="{bar_height}" fill="url(#hatch)" '
                        'stroke="#9a9a9a"/>')
            body.append(f'<text x="{label_width + 30}" y="{y + 13}">* suppressed</text>')
            continue
        if figure.value is None:
            body.append(f'<text x="{label_width + 4}" y="{y + 13}" fill="#777">no data</text>')
            continue
        length = span * float(figure.value) / top if top else 0
        body.append(f'<rect x="{label_width}" y="{y}" width="{length:.1f}" height="{bar_height}" '
                    f'fill="{COLORS[index % len(COLORS)]}"/>')
        text = f"{figure.value:,.1f}{unit}" if unit else f"{int(figure.value):,}"
        body.append(f'<text x="{label_width + length + 6:.1f}" y="{y + 13}">{escape(text)}</text>')
    return _svg(width, height, title, desc, body)


def line_chart(title: str, desc: str, x_labels: Sequence[str], series: Sequence[tuple[str, Sequence[Figure]]],
               width: int = 760, height: int = 280) -> str:
    """One line per series over ``x_labels``; a suppressed point breaks the line and shows a hollow marker."""
    left, right, top_margin, bottom = 50, 150, 30, 40
    plot_w, plot_h = width - left - right, height - top_margin - bottom
    values = [float(f.value) for _, figures in series for f in figures if f.value is not None]
    top = _nice_max(max(values, default=0))
    n = max(len(x_labels), 1)

    def x(i: int) -> float:
        return left + (plot_w * (i + 0.5) / n)

    def y(v: float) -> float:
        return top_margin + plot_h * (1 - v / top)

    body = [f'<text x="0" y="16" font-weight="600">{escape(title)}</text>']
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        gy = y(top * fraction)
        body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="#e3e3e3"/>')
        body.append(f'<text x="{left - 6}" y="{gy + 4:.1f}" text-anchor="end" fill="#555">{top * fraction:g}</text>')
    step = max(1, n // 10)
    for i, label in enumerate(x_labels):
        if i % step == 0:
            body.append(f'<text x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="middle" fill="#555">'
                        f"{escape(label)}</text>")
    for index, (name, figures) in enumerate(series):
        color = COLORS[index % len(COLORS)]
        segment: list[str] = []
        for i, figure in enumerate(figures):
            if figure.value is None:
                if len(segment) > 1:
                    body.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                                f'points="{" ".join(segment)}"/>')
                segment = []
                if figure.suppressed:
                    body.append(f'<circle cx="{x(i):.1f}" cy="{top_margin + plot_h - 3}" r="3" fill="none" '
                                f'stroke="{color}"/>')
                continue
            point = f"{x(i):.1f},{y(float(figure.value)):.1f}"
            segment.append(point)
            body.append(f'<circle cx="{x(i):.1f}" cy="{y(float(figure.value)):.1f}" r="2.5" fill="{color}"/>')
        if len(segment) > 1:
            body.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(segment)}"/>')
        ly = top_margin + 16 * index
        body.append(f'<rect x="{width - right + 12}" y="{ly}" width="12" height="12" fill="{color}"/>')
        body.append(f'<text x="{width - right + 30}" y="{ly + 10}">{escape(name)}</text>')
    body.append(f'<text x="{width - right + 12}" y="{top_margin + 16 * len(series) + 14}" fill="#555">'
                "○ at zero: suppressed</text>")
    return _svg(width, height, title, desc, body)


def histogram(title: str, desc: str, bins: Sequence[tuple[str, Figure]], edges: Sequence[float],
              median: float | None, p90: float | None, width: int = 760, height: int = 280) -> str:
    """Vertical bars over bins of minutes (the last one open-ended), median and 90th percentile marked."""
    left, right, top_margin, bottom = 50, 20, 40, 40
    plot_w, plot_h = width - left - right, height - top_margin - bottom
    values = [float(f.value) for _, f in bins if f.value is not None]
    top = _nice_max(max(values, default=0))
    # Bins drawn in proportion to their width in minutes; the open-ended last one as wide as the one before.
    widths = [b - a for a, b in itertools.pairwise(edges)]
    widths.append(widths[-1] if widths else 1)
    total = sum(widths)
    positions = []
    cursor = 0.0
    for w in widths:
        positions.append((left + plot_w * cursor / total, plot_w * w / total))
        cursor += w

    def x_of(minutes: float) -> float:
        for (px, pw), edge, w in zip(positions, edges, widths, strict=False):
            if minutes < edge + w:
                return px + pw * max(0.0, (minutes - edge) / w)
        return left + plot_w

    body = [f'<text x="0" y="16" font-weight="600">{escape(title)}</text>']
    for fraction in (0, 0.5, 1):
        gy = top_margin + plot_h * (1 - fraction)
        body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="#e3e3e3"/>')
        body.append(f'<text x="{left - 6}" y="{gy + 4:.1f}" text-anchor="end" fill="#555">{top * fraction:g}</text>')
    for (label, figure), (px, pw) in zip(bins, positions, strict=False):
        if figure.suppressed:
            body.append(f'<rect x="{px + 1:.1f}" y="{top_margin + plot_h - 14}" width="{pw - 2:.1f}" height="14" '
                        'fill="url(#hatch)" stroke="#9a9a9a"/>')
        elif figure.value is not None:
            bar_h = plot_h * float(figure.value) / top
            body.append(f'<rect x="{px + 1:.1f}" y="{top_margin + plot_h - bar_h:.1f}" width="{pw - 2:.1f}" '
                        f'height="{bar_h:.1f}" fill="{COLORS[0]}"/>')
        body.append(f'<text x="{px + pw / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle" fill="#555">'
                    f"{escape(label)}</text>")
    for value, name, color in ((median, "median", COLORS[2]), (p90, "90th percentile", COLORS[5])):
        if value is None:
            continue
        mx = x_of(value / 60)
        body.append(f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{top_margin - 8}" y2="{top_margin + plot_h}" '
                    f'stroke="{color}" stroke-width="2" stroke-dasharray="5 3"/>')
        body.append(f'<text x="{mx + 4:.1f}" y="{top_margin - 10 if name == "median" else top_margin + 4}" '
                    f'fill="{color}">{name} {value / 60:.1f} min</text>')
    body.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" fill="#555">'
                "minutes from the team's request to its arrival</text>")
    return _svg(width, height, title, desc, body)
