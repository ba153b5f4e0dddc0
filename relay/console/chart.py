"""The overview's chart: deliveries and failures per minute as an inline SVG, drawn here.

Pure computation from numbers the services hand over (no user-supplied text reaches the
markup, so nothing needs escaping). This module must never do I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from markupsafe import Markup

from relay.services.overview import Minute

WIDTH: Final = 600
HEIGHT: Final = 160
PAD_LEFT: Final = 36
PAD_BOTTOM: Final = 20
PAD_TOP: Final = 8


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M")


def _scale_top(peak: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above ``peak`` (the y axis's top)."""
    power = 1
    while True:
        for step in (1, 2, 5):
            if power * step >= peak:
                return power * step
        power *= 10


def delivery_chart(minutes: list[Minute]) -> Markup:
    """An SVG bar chart: per minute, delivered (up) stacked with failed; with a text summary."""
    delivered = sum(m.delivered for m in minutes)
    failed = sum(m.failed for m in minutes)
    label = f"Last hour: {delivered} delivered, {failed} failed attempts"
    top = _scale_top(max((m.delivered + m.failed for m in minutes), default=0))
    plot_w, plot_h = WIDTH - PAD_LEFT, HEIGHT - PAD_BOTTOM - PAD_TOP
    slot = plot_w / max(len(minutes), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{label}</title>',
        f'<text class="axis" x="{PAD_LEFT - 4}" y="{PAD_TOP + 8}" text-anchor="end">{top}</text>',
        f'<text class="axis" x="{PAD_LEFT - 4}" y="{PAD_TOP + plot_h}" text-anchor="end">0</text>',
        f'<line class="base" x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" x2="{WIDTH}" '
        f'y2="{PAD_TOP + plot_h}"/>',
    ]
    for i, m in enumerate(minutes):
        x = PAD_LEFT + i * slot
        ok_h = plot_h * m.delivered / top
        bad_h = plot_h * m.failed / top
        y_ok = PAD_TOP + plot_h - ok_h
        if m.delivered:
            parts.append(
                f'<rect class="ok" x="{x:.1f}" y="{y_ok:.1f}" width="{slot * 0.8:.1f}" '
                f'height="{ok_h:.1f}"/>'
            )
        if m.failed:
            parts.append(
                f'<rect class="bad" x="{x:.1f}" y="{y_ok - bad_h:.1f}" '
                f'width="{slot * 0.8:.1f}" height="{bad_h:.1f}"/>'
            )
    if minutes:
        last = len(minutes) - 1
        for i, anchor in ((0, "start"), (last // 2, "middle"), (last, "end")):
            x = PAD_LEFT + i * slot + (slot * 0.8 if anchor == "end" else 0)
            parts.append(
                f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 4}" text-anchor="{anchor}">'
                f"{_clock(minutes[i].start)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers and fixed text only
