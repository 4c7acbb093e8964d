"""The report's pictures as inline SVG: who served each request over time, and the success rate per second.

One lane per provider (plus one for requests no provider served), each request a mark in the lane
of the provider that really served it (ground truth), coloured by outcome; fault windows and
kill-switch windows shaded behind. A fallback shows as marks moving to another lane inside a fault
window, a failback as them moving back after it. Above MAX_MARKS requests the marks are aggregated per
lane, outcome and time bucket (harness.reporting.picture), so a million-request run stays a small file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from harness.reporting.picture import MAX_MARKS, Picture

MAX_TITLED_MARKS = 5_000  # a tooltip per mark costs ~80 bytes; beyond this only aggregates carry one
__all__ = ["CATEGORIES", "MAX_MARKS", "success_rate_svg", "standalone_timeline_svg", "timeline_svg"]
# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies. Shapes differ too.
CATEGORIES: dict[str, tuple[str, str]] = {
    "primary": ("served by the primary", "#009E73"),
    "fallback": ("served by a fallback", "#E69F00"),
    "failed": ("failed closed / error (no answer)", "#D55E00"),
    "incomplete": ("incomplete (cut stream, invalid body, or no provider answered)", "#7B4FA0"),
}
_SHAPES = {"primary": '<circle r="3.2"/>', "fallback": '<circle r="3.2"/>',
           "failed": '<rect x="-3" y="-3" width="6" height="6"/>',
           "incomplete": '<path d="M0 -4 L4 0 L0 4 L-4 0 Z"/>'}
WIDTH, LEFT, RIGHT = 1200, 170, 24
LANE_H, TOP = 52, 44


@dataclass(frozen=True)
class Scale:
    """Seconds since the run started -> x in the SVG, shared by both pictures so they line up."""

    span: float

    def x(self, seconds: float) -> float:
        seconds = min(max(seconds, 0.0), self.span)
        return round(LEFT + seconds / self.span * (WIDTH - LEFT - RIGHT), 1)

    def ticks(self) -> list[float]:
        step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600) if self.span / s <= 16),
                    math.ceil(self.span / 16))
        return [i * step for i in range(int(self.span // step) + 1)]


def _windows(picture: Picture, scale: Scale, top: float, bottom: float, lanes: list[str] | None,
             labelled: bool) -> list[str]:
    """Fault and kill-switch windows as bands; labels above the plot in alternating rows, clear of the marks."""
    out = []
    labels: list[tuple[float, str, str]] = []
    for w in picture.faults:
        x0, x1 = scale.x(w.start_s), scale.x(w.end_s)
        tip = (f"fault {w.name}: {w.start_s:g}-{w.end_s:g} s on {', '.join(w.targets)}, "
               f"effect {w.effect.get('kind', '?')} {w.effect.get('status', '')}".rstrip())
        out.append(f'<rect class="fault" x="{x0}" y="{top}" width="{max(x1 - x0, 1)}" height="{bottom - top}">'
                   f'<title>{escape(tip)}</title></rect>')
        for j, lane in enumerate(lanes or []):
            if lane in w.targets:  # darker where the fault really bites: the targeted provider's lane
                out.append(f'<rect class="fault-target" x="{x0}" y="{top + j * LANE_H}" '
                           f'width="{max(x1 - x0, 1)}" height="{LANE_H}"/>')
        labels.append((x0, "fault-label", f"fault: {w.name}"))
    for off_s, on_s in picture.switches:
        x0, x1 = scale.x(off_s), scale.x(on_s)
        tip = f"kill switch: fallback off {off_s:g}-{on_s:g} s"
        out.append(f'<rect class="switch" x="{x0}" y="{top}" width="{max(x1 - x0, 1)}" height="{bottom - top}">'
                   f'<title>{escape(tip)}</title></rect>')
        labels.append((x0, "switch-label", "kill switch: fallback off"))
    if labelled:
        for i, (x, cls, text) in enumerate(sorted(labels)):
            out.append(f'<text class="{cls}" x="{x + 3}" y="{top - 8 - 15 * (i % 2)}">{escape(text)}</text>')
    return out


def _axis(scale: Scale, top: float, bottom: float) -> list[str]:
    out = [f'<line class="axis" x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}"/>']
    for t in scale.ticks():
        x = scale.x(t)
        out.append(f'<line class="grid" x1="{x}" y1="{top}" x2="{x}" y2="{bottom}"/>'
                   f'<text class="tick" x="{x}" y="{bottom + 16}" text-anchor="middle">{t:g}</text>')
    out.append(f'<text class="axis-label" x="{WIDTH - RIGHT}" y="{bottom + 32}" text-anchor="end">'
               f'seconds since the run started</text>')
    return out


def _marks(picture: Picture, scale: Scale) -> list[str]:
    row = {lane: i for i, lane in enumerate(picture.lanes)}
    if picture.marks is not None:
        titled = len(picture.marks) <= MAX_TITLED_MARKS
        out = []
        for i, m in enumerate(picture.marks):
            # Golden-ratio jitter: deterministic, spreads simultaneous marks across the lane's height.
            y = round(TOP + row[m.lane] * LANE_H + 9 + (i * 0.618034 % 1) * (LANE_H - 18), 1)
            served = m.lane if m.lane != "none" else "no provider"
            tip = (f'<title>{escape(m.request_id)} at {m.rel_s:g} s: {CATEGORIES[m.category][0]}'
                   f' ({escape(served)}, status {m.status})</title>') if titled else ""
            out.append(f'<use href="#mk-{m.category}" x="{scale.x(m.rel_s)}" y="{y}">{tip}</use>')
        return out
    # Aggregated: one mark per lane, outcome and bucket, in the outcome's quarter of the lane.
    bucket = picture.bucket_s
    peak = max(picture.cells.values(), default=1)
    order = list(CATEGORIES)
    width = max(scale.x(bucket) - LEFT, 1.0)
    out = []
    for (lane, cat, b), n in sorted(picture.cells.items()):
        y = TOP + row[lane] * LANE_H + 3 + order.index(cat) * (LANE_H - 6) / 4
        tip = f"{lane}, {b * bucket:.1f}-{(b + 1) * bucket:.1f} s: {n} {CATEGORIES[cat][0]}"
        out.append(f'<rect x="{scale.x(b * bucket)}" y="{y:.1f}" width="{width:.1f}" height="{(LANE_H - 6) / 4:.1f}" '
                   f'fill="{CATEGORIES[cat][1]}" fill-opacity="{0.3 + 0.7 * n / peak:.2f}"><title>{escape(tip)}</title>'
                   f'</rect>')
    return out


def timeline_svg(picture: Picture, span: float) -> str:
    scale = Scale(max(span, 1.0))
    lanes, labels = picture.lanes, picture.labels
    bottom = TOP + len(lanes) * LANE_H
    height = bottom + 40
    parts = [f'<svg class="timeline" viewBox="0 0 {WIDTH} {height}" role="img" '
             'aria-labelledby="tl-title tl-desc">',
             '<title id="tl-title">Timeline: which provider served each request</title>',
             '<desc id="tl-desc">One lane per provider; each mark is a request, coloured by outcome; shaded bands are '
             'fault windows and kill-switch windows.</desc>',
             '<defs><pattern id="hatch" width="8" height="8" patternUnits="userSpaceOnUse" '
             'patternTransform="rotate(45)"><rect width="8" height="8" fill="#dbe4f0"/>'
             '<line x1="0" y1="0" x2="0" y2="8" stroke="#7f93b0" stroke-width="3"/></pattern>',
             *(f'<g id="mk-{c}" fill="{col}" stroke="#fff" stroke-width="0.6">{_SHAPES[c]}</g>'
               for c, (_, col) in CATEGORIES.items()), '</defs>']
    for i, lane in enumerate(lanes):
        y = TOP + i * LANE_H
        parts.append(f'<rect class="lane{" lane-alt" if i % 2 else ""}" x="{LEFT}" y="{y}" '
                     f'width="{WIDTH - LEFT - RIGHT}" height="{LANE_H}"><title>{escape(lane)}</title></rect>'
                     f'<text class="lane-name" x="{LEFT - 10}" y="{y + 20}" text-anchor="end">{escape(lane)}</text>'
                     f'<text class="lane-sub" x="{LEFT - 10}" y="{y + 35}" text-anchor="end">'
                     f'{escape(labels.get(lane, "undeclared provider"))}</text>')
    parts += _windows(picture, scale, TOP, bottom, lanes, labelled=True)
    parts += _axis(scale, TOP, bottom)
    parts.append('<g class="marks">')
    parts += _marks(picture, scale)
    parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts)


def success_rate_svg(picture: Picture, span: float) -> str:
    """Fraction of the requests sent in each second that got a 2xx (a cut stream is not one)."""
    scale = Scale(max(span, 1.0))
    top, bottom = 18, 158
    sent, ok = picture.sent, picture.ok
    parts = [f'<svg class="rate" viewBox="0 0 {WIDTH} {bottom + 40}" role="img" '
             'aria-labelledby="sr-title">',
             '<title id="sr-title">Success rate per second: share of the requests sent in each second that got a '
             '2xx</title>']
    parts += _windows(picture, scale, top, bottom, None, labelled=False)
    for pct in (0, 25, 50, 75, 100):
        y = bottom - pct / 100 * (bottom - top)
        parts.append(f'<line class="grid" x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}"/>'
                     f'<text class="tick" x="{LEFT - 8}" y="{y + 4}" text-anchor="end">{pct}%</text>')
    parts += _axis(scale, top, bottom)
    points, runs, dots = [], [], []
    for second in range(int(scale.span) + 1):
        if not sent.get(second):
            if points:
                runs.append(points)  # a second without traffic breaks the line: no rate to draw
            points = []
            continue
        x, y = scale.x(second + 0.5), round(bottom - ok[second] / sent[second] * (bottom - top), 1)
        points.append(f"{x},{y}")
        share = f"{ok[second]} of {sent[second]} got a 2xx ({100 * ok[second] / sent[second]:.0f}%)"
        dots.append(f'<circle class="rate-dot" cx="{x}" cy="{y}" r="3"><title>{second}-{second + 1} s: {share}'
                    "</title></circle>")
    if points:
        runs.append(points)
    parts += [f'<polyline class="rate-line" points="{" ".join(run)}"/>' for run in runs]
    parts += dots
    parts.append("</svg>")
    return "\n".join(parts)


def standalone_timeline_svg(picture: Picture, span: float) -> str:
    """The timeline as an SVG file of its own (for Allure and chat): the same picture, its styles inside."""
    from harness.reporting.html_style import CSS  # the report's stylesheet carries the lane and mark styles

    svg = timeline_svg(picture, span)
    head, _, rest = svg.partition(">")
    return (head.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1)
            + f' style="background:#fff"><style>{CSS}</style>' + rest)
