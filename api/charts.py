"""Charts drawn on the server as SVG (no chart library, nothing fetched by the browser).

Each chart is an ``<svg role="img">`` with a ``<title>`` and a ``<desc>`` that says in words
what it shows, so a screen reader gets the numbers too; every label is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 16, 16, 40


def _pct(rate: float | None) -> str:
    return "no data" if rate is None else f"{rate * 100:.0f}%"


def line_chart(
    title: str, points: Sequence[tuple[str, float | None]], *, ident: str = "trend"
) -> Markup:
    """A 0–100 % line over labelled points (e.g. the 12 months of a compliance trend).

    Args:
        title: The chart's accessible name.
        ident: Unique on the page (the ids of its title and description).
        points: ``(label, rate)`` in order; a None rate leaves a gap in the line.
    """
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = inner_w / max(1, len(points) - 1)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-labelledby="{ident}-t {ident}-d">',
        f'<title id="{ident}-t">{escape(title)}</title>',
        f'<desc id="{ident}-d">'
        + escape("; ".join(f"{label}: {_pct(rate)}" for label, rate in points))
        + "</desc>",
    ]
    for tick in (0, 25, 50, 75, 100):
        y = TOP + inner_h * (1 - tick / 100)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#d0d7de" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="#57606a">{tick}%</text>'
        )
    segment: list[str] = []
    segments: list[list[str]] = []
    for index, (label, rate) in enumerate(points):
        x = LEFT + step * index
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="10" text-anchor="middle" '
            f'fill="#57606a">{escape(label[-5:] if len(label) > 5 else label)}</text>'
        )
        if rate is None:
            if segment:
                segments.append(segment)
            segment = []
            continue
        y = TOP + inner_h * (1 - rate)
        segment.append(f"{x:.1f},{y:.1f}")
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="#0b57d0">'
            f"<title>{escape(label)}: {_pct(rate)}</title></circle>"
        )
    if segment:
        segments.append(segment)
    for line in segments:
        parts.append(
            f'<polyline points="{" ".join(line)}" fill="none" stroke="#0b57d0" stroke-width="2"/>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(
    title: str, bars: Sequence[tuple[str, float | None, int]], *, ident: str = "bars"
) -> Markup:
    """Horizontal 0–100 % bars, one per group (e.g. compliance by team).

    Args:
        title: The chart's accessible name.
        ident: Unique on the page (the ids of its title and description).
        bars: ``(label, rate, total)``; a None rate draws no bar ("no data").
    """
    row_h, label_w = 26, 180
    height = TOP + row_h * max(1, len(bars)) + 24
    inner_w = WIDTH - label_w - RIGHT - 50
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-labelledby="{ident}-t {ident}-d">',
        f'<title id="{ident}-t">{escape(title)}</title>',
        f'<desc id="{ident}-d">'
        + escape("; ".join(f"{label}: {_pct(rate)} of {total}" for label, rate, total in bars))
        + "</desc>",
    ]
    for index, (label, rate, total) in enumerate(bars):
        y = TOP + row_h * index
        short = label if len(label) <= 26 else label[:25] + "…"
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 16}" font-size="12" text-anchor="end" '
            f'fill="#1b1f24">{escape(short)}</text>'
            f'<rect x="{label_w}" y="{y + 4}" width="{inner_w}" height="16" fill="#f6f8fa"/>'
        )
        if rate is not None:
            colour = "#1a7f37" if rate >= 0.9 else "#9a6700" if rate >= 0.7 else "#cf222e"
            parts.append(
                f'<rect x="{label_w}" y="{y + 4}" width="{inner_w * rate:.1f}" height="16" '
                f'fill="{colour}"><title>{escape(label)}: {_pct(rate)} of {total}</title></rect>'
            )
        parts.append(
            f'<text x="{label_w + inner_w + 6}" y="{y + 16}" font-size="12" '
            f'fill="#1b1f24">{_pct(rate)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
