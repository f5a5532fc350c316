"""The drawing rules of every space-time diagram: the offline one and the live one.

:mod:`vclock.tools.diagram` draws a whole :class:`~vclock.tools.spacetime.Diagram` at
once (``vclock diagram``); the live dashboard (:mod:`vclock.web`) draws each dot as it
arrives. Both draw with the pieces here, so a dot, an arrow or a lane looks and
behaves the same in both: the geometry (:func:`place`), the SVG elements
(:func:`lane_svg`, :func:`lane_label_svg`, :func:`event_svg`, :func:`arrow_svg`,
:func:`tick_svg`), the frame of an HTML page's drawing (:func:`lane_labels_svg`,
:func:`diagram_svg`, :data:`LEFT`, :data:`TOP`), the legends (:func:`legend_html`,
:func:`legend_svg`), and the page's CSS and script (``diagram.css``, ``diagram.js``,
see :func:`page_assets`). The live dashboard's ``deliver`` and ``sync-deliver`` dots
(a delivery whose receiver's clock the server does not know) are hollow.

Nothing here reads a file but :func:`page_assets`, and nothing prints.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

from ..events import EVERYONE, SERVER_ID
from .spacetime import Arrow, DiagramEvent, Marker, natural_key

__all__ = [
    "BROADCAST_LABEL",
    "LABELS_WIDTH",
    "LABEL_LIMIT",
    "LEFT",
    "LEGEND_ARROWS",
    "LEGEND_DOTS",
    "LIVE_LEGEND_DOTS",
    "MARGIN",
    "TOP",
    "Geometry",
    "arrow_route",
    "arrow_svg",
    "clock_label",
    "defs_svg",
    "diagram_svg",
    "esc",
    "event_svg",
    "fill_page",
    "json_for_script",
    "labels_below",
    "lane_label_svg",
    "lane_labels_svg",
    "lane_svg",
    "legend_html",
    "legend_svg",
    "num",
    "page_assets",
    "peer_label",
    "place",
    "tick_svg",
]

#: Drawings with more events than this have no clock labels on the dots (tooltips keep them).
LABEL_LIMIT = 60

#: How the diagrams name the broadcast peer, :data:`vclock.events.EVERYONE` (``"*"``
#: in the logs): a word for the reader, never an id.
BROADCAST_LABEL = "everyone"

# The drawing of an HTML page (the offline page and the dashboard): x of rank 0 and y
# of the first lane, the space right of the last rank, and the width of the lane names,
# which sit in an SVG of their own so they stay put while the drawing scrolls.
LEFT = 20.0
TOP = 34.0
MARGIN = 20.0
LABELS_WIDTH = 110.0

_STYLE = {  # (fill, stroke) per dot kind
    "local": ("#cbd5e1", "#475569"),
    "send": ("#60a5fa", "#1d4ed8"),
    "receive": ("#34d399", "#047857"),
    "sync-receive": ("#fdba74", "#c2410c"),
    "server-sync": ("#f97316", "#9a3412"),
    "server-receive": ("#e2e8f0", "#64748b"),
    # The live dashboard's: the server delivered a message or a sync; the receiver's
    # clock after it is not known to the server, so the dot is hollow and its rim dashed.
    "deliver": ("#ffffff", "#047857"),
    "sync-deliver": ("#ffffff", "#c2410c"),
}
_HOLLOW = frozenset({"deliver", "sync-deliver"})
_INCOMING = frozenset({"receive", "sync-receive", "deliver", "sync-deliver"})
_ARROW = {  # stroke, width, dash
    "message": ("#1d4ed8", 1.4, ""),
    "report": ("#94a3b8", 1.1, ""),
    "sync": ("#ea580c", 1.4, "6 4"),
}
_TICK = {"join": "#16a34a", "leave": "#dc2626"}  # stroke per marker kind

# The legends, as (dot style or arrow kind, text). The server's dots mean the same in both.
_SERVER_DOTS = (("server-sync", "server sync"), ("server-receive", "server gets report"))
#: The offline diagram's dots: it knows every event of the clients.
LEGEND_DOTS = (
    ("local", "local"),
    ("send", "send"),
    ("receive", "receive"),
    ("sync-receive", "sync-receive"),
    *_SERVER_DOTS,
)
#: The live diagram's dots: the server sees only sends and what it delivered.
LIVE_LEGEND_DOTS = (
    ("send", "send or report"),
    ("deliver", "delivered (receiver's clock unknown)"),
    ("sync-deliver", "sync delivered"),
    *_SERVER_DOTS,
)
LEGEND_ARROWS = (("message", "message"), ("sync", "sync (server → client)"), ("report", "report"))

_DOT_R = 5.0
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def esc(text: object) -> str:
    """Escaped for XML text and attributes; characters XML 1.0 cannot hold become U+FFFD."""
    return html.escape(_INVALID_XML.sub("\ufffd", str(text)), quote=True)


def num(x: float) -> str:
    """A coordinate as SVG gets it: one decimal at most (``12``, ``12.5``)."""
    return f"{x:.1f}".removesuffix(".0")


def _clock_text(clock: Mapping[str, int]) -> str:
    """``{A: 2, B: 1}``, ids in natural order."""
    inner = ", ".join(f"{k}: {clock[k]}" for k in sorted(clock, key=natural_key))
    return "{" + inner + "}"


def clock_label(clock: Mapping[str, int], clock_ids: Sequence[str]) -> str:
    """``[2,1,0]`` over ``clock_ids`` when there are few of them, else ``A2 B1``."""
    if len(clock_ids) <= 8:
        return "[" + ",".join(str(clock.get(k, 0)) for k in clock_ids) + "]"
    return " ".join(f"{k}{clock[k]}" for k in sorted(clock, key=natural_key))


def peer_label(peer: str) -> str:
    """``peer`` as a diagram shows it: the broadcast peer is :data:`BROADCAST_LABEL`."""
    return BROADCAST_LABEL if peer == EVERYONE else peer


def _tooltip(e: DiagramEvent) -> str:
    arrow = " → " if e.kind == "send" else " ← " if e.kind in _INCOMING else " "
    head = f"{e.id}  {'server ' if e.server else ''}{e.kind}"
    if e.peer and e.peer != e.pid:
        head += arrow + peer_label(e.peer)
    lines = [head]
    if e.msg:
        lines.append(f"msg {e.msg}" + (f" to {', '.join(e.to)}" if e.to else ""))
    lines.append(("frontier " if e.kind == "sync" else "clock ") + _clock_text(e.clock))
    if e.desc:
        lines.append(e.desc)
    lines.append(e.ref)
    return "\n".join(lines)


# Geometry


@dataclass(frozen=True, slots=True)
class Geometry:
    """Where things go: the x of a rank, the y of each lane. See :func:`place`."""

    left: float  # x of rank 0
    spacing: float  # px per rank
    lane_y: Mapping[str, float]
    width: float  # right end of the lanes
    height: float
    labels: bool  # clock labels on the dots

    def x(self, rank: float) -> float:
        return self.left + rank * self.spacing


def place(
    processes: Sequence[str],
    events: Sequence[DiagramEvent],
    clock_ids: Sequence[str],
    *,
    left: float = LEFT,
    top: float = TOP,
) -> Geometry:
    """The geometry of a drawing: lanes top to bottom, one column per rank.

    Up to :data:`LABEL_LIMIT` events, dots carry clock labels and the columns are as
    wide as the widest label; past it, columns are narrow and tooltips keep the clocks.
    ``left`` and ``top`` default to an HTML page's (:data:`LEFT`, :data:`TOP`).
    """
    labels = len(events) <= LABEL_LIMIT
    spacing = 26.0
    if labels and events:
        widest = max(len(clock_label(e.clock, clock_ids)) for e in events)
        spacing = min(max(44.0, widest * 6.2 + 14), 240.0)
    gap = 64.0 if labels else 52.0
    lane_y: dict[str, float] = {}
    y = top
    for pid in processes:
        if pid == SERVER_ID and lane_y:
            y += 14  # set the server apart
        lane_y[pid] = y
        y += gap
    last = max((e.rank for e in events), default=0)
    width = left + (last + 1) * spacing
    return Geometry(left, spacing, lane_y, width, y - gap + 30, labels)


# SVG elements, one at a time


def defs_svg() -> str:
    """The arrow heads, once per SVG that draws arrows."""
    heads = "".join(
        f'<marker id="vc-head-{kind}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" '
        f'fill="{stroke}"/></marker>'
        for kind, (stroke, _, _) in _ARROW.items()
    )
    return f"<defs>{heads}</defs>"


def lane_svg(pid: str, y: float, x0: float, x1: float) -> str:
    """The line of one process, from ``x0`` to ``x1``; the server's is dotted."""
    style = 'stroke="#94a3b8" stroke-dasharray="2 3"' if pid == SERVER_ID else 'stroke="#334155"'
    cls = "process-line server" if pid == SERVER_ID else "process-line"
    return (
        f'<line class="{cls}" data-pid="{esc(pid)}" x1="{num(x0)}" y1="{num(y)}" '
        f'x2="{num(x1)}" y2="{num(y)}" {style} stroke-width="1.5"/>'
    )


def lane_label_svg(pid: str, y: float, right: float) -> str:
    """The name of a process, right-aligned at ``right``; long names are cut, with a tooltip."""
    text = esc(pid) if len(pid) <= 14 else f"<title>{esc(pid)}</title>{esc(pid[:13])}…"
    style = ' font-style="italic" fill="#64748b"' if pid == SERVER_ID else ' fill="#0f172a"'
    return (
        f'<text class="lane-label" data-pid="{esc(pid)}" x="{num(right)}" '
        f'y="{num(y + 4)}" text-anchor="end" font-weight="600" '
        f'font-size="13"{style}>{text}</text>'
    )


#: How near an arrow may pass to the centre of a dot that is not one of its ends: the
#: dot's radius, half its rim, half the arrow's width, and a pixel to spare.
_CLEARANCE = _DOT_R + 0.75 + 0.7 + 1.0


def arrow_route(
    start: tuple[float, float], end: tuple[float, float], g: Geometry
) -> list[tuple[float, float]]:
    """The path of an arrow from the dot at ``start`` to the dot at ``end``, centre to centre.

    Dots sit only where a lane meets a whole rank. An arrow is a straight line when no
    such place, the two ends aside, is within :data:`_CLEARANCE` of it: so it misses
    every dot, including dots the live view draws later. Otherwise it leaves its dot
    into the gap beside the lane, runs down the channel half a rank right of the
    source, along the gap beside the target's lane to half a rank left of the target,
    and into the target; channels and gaps hold no dots. Only the geometry decides,
    so the offline diagram and the dashboard route an arrow the same way.
    """
    (x1, y1), (x2, y2) = start, end
    if y1 == y2 or _clear(start, end, g):
        return [start, end]
    lanes = sorted(set(g.lane_y.values()) | {y1, y2})
    step = 1 if y2 > y1 else -1
    after_source = lanes[lanes.index(y1) + step]
    before_target = lanes[lanes.index(y2) - step]
    gap_out, gap_in = (y1 + after_source) / 2, (y2 + before_target) / 2
    half = g.spacing / 2
    points = [start, (x1 + half, gap_out), (x1 + half, gap_in), (x2 - half, gap_in), end]
    return [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]


def _clear(start: tuple[float, float], end: tuple[float, float], g: Geometry) -> bool:
    """Whether no lane-and-whole-rank place but the ends is near the segment.

    On each lane the segment spans, the place nearest the line is the whole rank
    nearest where the line crosses the lane (on the ends' lanes: the next rank from
    the end, towards the other end); its distance to the line is its distance along
    the lane times |dy| / length. Ends' lanes aside, that can only under-estimate
    the distance to the segment, so the test errs on the side of routing."""
    (x1, y1), (x2, y2) = start, end
    dx, dy = x2 - x1, y2 - y1
    slope = abs(dy) / math.hypot(dx, dy)  # distance to the line per px along a lane
    low, high = min(y1, y2), max(y1, y2)
    for y in g.lane_y.values():
        if not low <= y <= high:
            continue
        if y in (y1, y2):
            along = g.spacing if dx else math.inf
        else:
            column = (x1 + dx * (y - y1) / dy - g.left) / g.spacing
            along = abs(column - round(column)) * g.spacing
        if along * slope <= _CLEARANCE:
            return False
    return True


def arrow_svg(a: Arrow, start: tuple[float, float], end: tuple[float, float], g: Geometry) -> str:
    """A message from the dot at ``start`` to the dot at ``end`` (a ``polyline`` along
    :func:`arrow_route`), stopping at their rims."""
    points = arrow_route(start, end, g)
    points[0] = _towards(points[0], points[1], _DOT_R + 1)
    points[-1] = _towards(points[-1], points[-2], _DOT_R + 2)
    stroke, width, dash = _ARROW[a.kind]
    cls = "message" if a.kind == "message" else f"message {a.kind}"
    path = " ".join(f"{num(x)},{num(y)}" for x, y in points)
    return (
        f'<polyline class="{cls}" data-from="{esc(a.source)}" data-to="{esc(a.target)}" '
        f'data-msg="{esc(a.msg)}" points="{path}" fill="none" stroke="{stroke}" '
        f'stroke-width="{width}"'
        + (f' stroke-dasharray="{dash}"' if dash else "")
        + f' marker-end="url(#vc-head-{a.kind})"><title>{esc(a.msg)}: '
        f"{esc(a.source)} → {esc(a.target)}</title></polyline>"
    )


def _towards(p: tuple[float, float], q: tuple[float, float], by: float) -> tuple[float, float]:
    """``p`` moved ``by`` towards ``q``."""
    length = math.hypot(q[0] - p[0], q[1] - p[1]) or 1.0
    return p[0] + (q[0] - p[0]) * by / length, p[1] + (q[1] - p[1]) * by / length


def event_svg(e: DiagramEvent, x: float, y: float, label: str | None, below: bool = False) -> str:
    """One dot with its hover halo, tooltip and, when ``label`` is given, its clock label
    (``below`` the dot when all its arrows go up)."""
    text = ""
    if label is not None:
        label_y = y + 19 if below else y - 10
        text = (
            f'<text class="clock-label" x="{num(x)}" y="{num(label_y)}" '
            f'text-anchor="middle">{esc(label)}</text>'
        )
    return (
        f'<g class="event kind-{esc(e.kind)}{" server" if e.server else ""}" '
        f'data-id="{esc(e.id)}" data-pid="{esc(e.pid)}" data-kind="{esc(e.kind)}" '
        f'data-rank="{e.rank}"><title>{esc(_tooltip(e))}</title>'
        f'<circle class="halo" cx="{num(x)}" cy="{num(y)}" r="9" fill="none"/>'
        + _shape(_style_of(e), x, y, _DOT_R, ' class="dot"')
        + text
        + "</g>"
    )


def tick_svg(m: Marker, x: float, y: float) -> str:
    """A join (green) or leave (red) tick across a lane."""
    colour = _TICK["join"] if m.kind == "join" else _TICK["leave"]
    what = "joined" if m.kind == "join" else "left"
    tip = f"{m.pid} {what}, clock {_clock_text(m.clock)}" + (f"\n{m.desc}" if m.desc else "")
    return (
        f'<line class="marker {m.kind}" data-pid="{esc(m.pid)}" x1="{num(x)}" '
        f'y1="{num(y - 7)}" x2="{num(x)}" y2="{num(y + 7)}" stroke="{colour}" '
        f'stroke-width="2.5"><title>{esc(tip + chr(10) + m.ref)}</title></line>'
    )


def labels_below(lane_of: Mapping[str, float], arrows: Iterable[Arrow]) -> set[str]:
    """Dots whose arrows all go up: their label goes below, out of the arrows' way.

    ``lane_of`` maps each dot id to the y of its lane."""
    up: set[str] = set()
    down: set[str] = set()
    for a in arrows:
        for here, there in ((a.source, a.target), (a.target, a.source)):
            (up if lane_of[there] < lane_of[here] else down).add(here)
    return up - down


def _shape(style: str, x: float, y: float, r: float, extra: str = "") -> str:
    fill, stroke = _STYLE[style]
    if style == "server-sync":  # a diamond
        r += 1.5
        return (
            f'<path{extra} d="M{num(x)},{num(y - r)}l{num(r)},{num(r)}l{num(-r)},{num(r)}'
            f'l{num(-r)},{num(-r)}z" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
        )
    dash = ' stroke-dasharray="2.2 1.6"' if style in _HOLLOW else ""
    return (
        f'<circle{extra} cx="{num(x)}" cy="{num(y)}" r="{num(r)}" fill="{fill}" '
        f'stroke="{stroke}" stroke-width="1.5"{dash}/>'
    )


def _style_of(e: DiagramEvent) -> str:
    return f"server-{e.kind}" if e.server else e.kind


# The drawing of an HTML page: the lane names, and the drawing beside them


def lane_labels_svg(processes: Iterable[str], lane_y: Mapping[str, float], height: float) -> str:
    """The names of the lanes, in an SVG :data:`LABELS_WIDTH` wide."""
    w, h = num(LABELS_WIDTH), num(height)
    return (
        f'<svg class="lane-labels" data-width="{w}" data-height="{h}" width="{w}" '
        f'height="{h}" viewBox="0 0 {w} {h}">'
        + "".join(lane_label_svg(pid, lane_y[pid], LABELS_WIDTH - 12) for pid in processes)
        + "</svg>"
    )


def diagram_svg(
    width: float,
    height: float,
    lanes: Iterable[str],
    markers: Iterable[str],
    arrows: Iterable[str],
    events: Iterable[str],
    *,
    live: bool = False,
    shift: float = 0.0,
) -> str:
    """The drawing: arrow heads, ``lanes``, then the ``markers``, ``arrows`` and
    ``events`` (SVG elements), each in its group. A ``live`` drawing holds those three
    in a ``window`` group moved ``shift`` to the left, so the lanes stay put."""
    w, h = num(width), num(height)
    layers = (
        '<g class="markers">'
        + "".join(markers)
        + '</g><g class="arrows">'
        + "".join(arrows)
        + '</g><g class="events">'
        + "".join(events)
        + "</g>"
    )
    if live:
        layers = f'<g class="window" transform="translate({num(-shift)},0)">{layers}</g>'
    return (
        f'<svg class="diagram{" live" if live else ""}" data-width="{w}" data-height="{h}" '
        f'width="{w}" height="{h}" viewBox="0 0 {w} {h}">'
        + defs_svg()
        + '<g class="lanes">'
        + "".join(lanes)
        + "</g>"
        + layers
        + "</svg>"
    )


# Legends


def legend_svg(x: float, y: float, dots: Sequence[tuple[str, str]] = LEGEND_DOTS) -> list[str]:
    """The legend in one row from (``x``, ``y``), for a standalone SVG: ``dots``, then
    the arrows (their heads come from :func:`defs_svg`)."""
    out = []
    for style, text in dots:
        out.append(_shape(style, x + 6, y, 4.5))
        out.append(f'<text x="{num(x + 14)}" y="{num(y + 4)}">{esc(text)}</text>')
        x += 24 + len(text) * 6.6
    x += 10
    for kind, text in LEGEND_ARROWS:
        stroke, width, dash = _ARROW[kind]
        out.append(
            f'<line x1="{num(x)}" y1="{num(y)}" x2="{num(x + 26)}" y2="{num(y)}" '
            f'stroke="{stroke}" stroke-width="{width}"'
            + (f' stroke-dasharray="{dash}"' if dash else "")
            + f' marker-end="url(#vc-head-{kind})"/>'
        )
        out.append(f'<text x="{num(x + 32)}" y="{num(y + 4)}">{esc(text)}</text>')
        x += 44 + len(text) * 6.6
    return out


def legend_html(dots: Sequence[tuple[str, str]] = LEGEND_DOTS) -> str:
    """The legend of an HTML page: ``dots`` as (style, text), the arrows, then the
    selection colours and the join/leave ticks."""
    items = []
    for style, text in dots:
        swatch = _shape(style, 8, 8, 4.5)
        items.append(
            f'<span class="item"><svg width="16" height="16">{swatch}</svg>{esc(text)}</span>'
        )
    for kind, text in LEGEND_ARROWS:
        stroke, width, dash = _ARROW[kind]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        items.append(
            f'<span class="item"><svg width="34" height="16">{defs_svg()}<line x1="2" y1="8" '
            f'x2="30" y2="8" stroke="{stroke}" stroke-width="{width}"{dash_attr} '
            f'marker-end="url(#vc-head-{kind})"/></svg>{esc(text)}</span>'
        )
    for cls, text in (("selected", "selected"), ("past", "causal past"), ("future", "future")):
        items.append(f'<span class="item"><span class="swatch {cls}"></span>{text}</span>')
    ticks = "".join(
        f'<svg width="12" height="16"><line x1="6" y1="2" x2="6" y2="14" stroke="{colour}" '
        f'stroke-width="2.5"/></svg>{kind}'
        for kind, colour in _TICK.items()
    )
    items.append(f'<span class="item">{ticks}</span>')
    return "".join(items)


# What a page inlines


def json_for_script(value: object) -> str:
    """JSON that cannot close its ``<script>`` element, whatever the strings hold."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def fill_page(template: str, values: Mapping[str, str]) -> str:
    """``template`` with each ``{{NAME}}`` replaced by ``values[NAME]``, in one pass, so
    a value holding ``{{DATA}}`` (a run's name, a page title) is never expanded."""
    return re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: values[m.group(1)], template)


def page_assets() -> tuple[str, str]:
    """The CSS and the script every diagram page inlines (``diagram.css``, ``diagram.js``):
    tooltips, click for causal past and future, zoom. The offline page and the live
    dashboard both load them, so a dot behaves the same in both."""
    files = resources.files("vclock.tools")
    return (
        files.joinpath("diagram.css").read_text("utf-8"),
        files.joinpath("diagram.js").read_text("utf-8"),
    )
