"""Space-time diagrams of a run: one line per process, events as dots, messages as arrows.

:func:`layout` (:mod:`vclock.tools.spacetime`, re-exported here) turns the events
of a log into a :class:`Diagram`; :func:`render_svg` and :func:`render_html` draw it;
:func:`write_diagram` goes from a run folder or ``.jsonl`` file to a file. Nothing
here prints, and only :func:`load_diagram` and :func:`write_diagram` touch files.

**One set of drawing rules.** The pieces drawn here (:func:`place`, :func:`lane_svg`,
:func:`event_svg`, :func:`arrow_svg`, :func:`tick_svg`, :func:`legend_html`) and the
page's CSS and script (``diagram.css``, ``diagram.js``, see :func:`page_assets`) are
shared with the live dashboard (:mod:`vclock.web`), which draws each dot with them as
it arrives; its ``deliver`` and ``sync-deliver`` dots (a delivery whose receiver's
clock the server does not know) are hollow.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..events import EVERYONE, SERVER_ID
from .spacetime import (
    Arrow,
    Diagram,
    DiagramEvent,
    Marker,
    layout,
    load_diagram,
    natural_key,
)

__all__ = [
    "BROADCAST_LABEL",
    "LABEL_LIMIT",
    "Arrow",
    "Diagram",
    "DiagramEvent",
    "Geometry",
    "Marker",
    "arrow_svg",
    "clock_label",
    "defs_svg",
    "event_svg",
    "json_for_script",
    "labels_below",
    "lane_label_svg",
    "lane_svg",
    "layout",
    "legend_html",
    "load_diagram",
    "page_assets",
    "peer_label",
    "place",
    "render_html",
    "render_svg",
    "tick_svg",
    "write_diagram",
]

#: Runs with more events than this are drawn without clock labels (tooltips keep them).
LABEL_LIMIT = 60

FORMATS = (".html", ".svg")

#: How the diagrams name the broadcast peer, :data:`vclock.events.EVERYONE` (``"*"``
#: in the logs): a word for the reader, never an id.
BROADCAST_LABEL = "everyone"


# Rendering: shared geometry and SVG elements

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
_LEGEND_DOTS = [
    ("local", "local"),
    ("send", "send"),
    ("receive", "receive"),
    ("sync-receive", "sync-receive"),
    ("server-sync", "server sync"),
    ("server-receive", "server gets report"),
]
_LEGEND_ARROWS = [("message", "message"), ("sync", "sync (server → client)"), ("report", "report")]

_DOT_R = 5.0
_FONT = "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace"
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _esc(text: object) -> str:
    """Escaped for XML text and attributes; characters XML 1.0 cannot hold become U+FFFD."""
    return html.escape(_INVALID_XML.sub("\ufffd", str(text)), quote=True)


def _num(x: float) -> str:
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
    left: float,
    top: float,
) -> Geometry:
    """The geometry of a drawing: lanes top to bottom, one column per rank.

    Up to :data:`LABEL_LIMIT` events, dots carry clock labels and the columns are as
    wide as the widest label; past it, columns are narrow and tooltips keep the clocks.
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


def _geometry(d: Diagram, *, left: float, top: float) -> Geometry:
    return place(d.processes, d.events, d.clock_ids, left=left, top=top)


# Drawing pieces. render_svg and render_html draw with these, and so does the live
# dashboard (vclock.web), one element at a time, so both pictures follow one set of rules.


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
        f'<line class="{cls}" data-pid="{_esc(pid)}" x1="{_num(x0)}" y1="{_num(y)}" '
        f'x2="{_num(x1)}" y2="{_num(y)}" {style} stroke-width="1.5"/>'
    )


def lane_label_svg(pid: str, y: float, right: float) -> str:
    """The name of a process, right-aligned at ``right``; long names are cut, with a tooltip."""
    text = _esc(pid) if len(pid) <= 14 else f"<title>{_esc(pid)}</title>{_esc(pid[:13])}…"
    style = ' font-style="italic" fill="#64748b"' if pid == SERVER_ID else ' fill="#0f172a"'
    return (
        f'<text class="lane-label" data-pid="{_esc(pid)}" x="{_num(right)}" '
        f'y="{_num(y + 4)}" text-anchor="end" font-weight="600" '
        f'font-size="13"{style}>{text}</text>'
    )


def arrow_svg(a: Arrow, start: tuple[float, float], end: tuple[float, float]) -> str:
    """A message from the dot at ``start`` to the dot at ``end``, stopping at their rims."""
    (x1, y1), (x2, y2) = start, end
    length = math.hypot(x2 - x1, y2 - y1) or 1.0
    ux, uy = (x2 - x1) / length, (y2 - y1) / length
    x1, y1 = x1 + ux * (_DOT_R + 1), y1 + uy * (_DOT_R + 1)
    x2, y2 = x2 - ux * (_DOT_R + 2), y2 - uy * (_DOT_R + 2)
    stroke, width, dash = _ARROW[a.kind]
    cls = "message" if a.kind == "message" else f"message {a.kind}"
    return (
        f'<line class="{cls}" data-from="{_esc(a.source)}" data-to="{_esc(a.target)}" '
        f'data-msg="{_esc(a.msg)}" x1="{_num(x1)}" y1="{_num(y1)}" x2="{_num(x2)}" '
        f'y2="{_num(y2)}" stroke="{stroke}" stroke-width="{width}"'
        + (f' stroke-dasharray="{dash}"' if dash else "")
        + f' marker-end="url(#vc-head-{a.kind})"><title>{_esc(a.msg)}: '
        f"{_esc(a.source)} → {_esc(a.target)}</title></line>"
    )


def event_svg(e: DiagramEvent, x: float, y: float, label: str | None, below: bool = False) -> str:
    """One dot with its hover halo, tooltip and, when ``label`` is given, its clock label
    (``below`` the dot when all its arrows go up)."""
    text = ""
    if label is not None:
        label_y = y + 19 if below else y - 10
        text = (
            f'<text class="clock-label" x="{_num(x)}" y="{_num(label_y)}" '
            f'text-anchor="middle">{_esc(label)}</text>'
        )
    return (
        f'<g class="event kind-{_esc(e.kind)}{" server" if e.server else ""}" '
        f'data-id="{_esc(e.id)}" data-pid="{_esc(e.pid)}" data-kind="{_esc(e.kind)}" '
        f'data-rank="{e.rank}"><title>{_esc(_tooltip(e))}</title>'
        f'<circle class="halo" cx="{_num(x)}" cy="{_num(y)}" r="9" fill="none"/>'
        + _shape(_style_of(e), x, y, _DOT_R, ' class="dot"')
        + text
        + "</g>"
    )


def tick_svg(m: Marker, x: float, y: float) -> str:
    """A join (green) or leave (red) tick across a lane."""
    colour = "#16a34a" if m.kind == "join" else "#dc2626"
    what = "joined" if m.kind == "join" else "left"
    tip = f"{m.pid} {what}, clock {_clock_text(m.clock)}" + (f"\n{m.desc}" if m.desc else "")
    return (
        f'<line class="marker {m.kind}" data-pid="{_esc(m.pid)}" x1="{_num(x)}" '
        f'y1="{_num(y - 7)}" x2="{_num(x)}" y2="{_num(y + 7)}" stroke="{colour}" '
        f'stroke-width="2.5"><title>{_esc(tip + chr(10) + m.ref)}</title></line>'
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


def _lanes(d: Diagram, g: Geometry, x0: float) -> list[str]:
    return [lane_svg(pid, g.lane_y[pid], x0, g.width) for pid in d.processes]


def _lane_labels(d: Diagram, g: Geometry, right: float) -> list[str]:
    return [lane_label_svg(pid, g.lane_y[pid], right) for pid in d.processes]


def _arrows(d: Diagram, g: Geometry) -> list[str]:
    at = {e.id: (g.x(e.rank), g.lane_y[e.pid]) for e in d.events}
    return [arrow_svg(a, at[a.source], at[a.target]) for a in d.arrows]


def _shape(style: str, x: float, y: float, r: float, extra: str = "") -> str:
    fill, stroke = _STYLE[style]
    if style == "server-sync":  # a diamond
        r += 1.5
        return (
            f'<path{extra} d="M{_num(x)},{_num(y - r)}l{_num(r)},{_num(r)}l{_num(-r)},{_num(r)}'
            f'l{_num(-r)},{_num(-r)}z" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
        )
    dash = ' stroke-dasharray="2.2 1.6"' if style in _HOLLOW else ""
    return (
        f'<circle{extra} cx="{_num(x)}" cy="{_num(y)}" r="{_num(r)}" fill="{fill}" '
        f'stroke="{stroke}" stroke-width="1.5"{dash}/>'
    )


def _style_of(e: DiagramEvent) -> str:
    return f"server-{e.kind}" if e.server else e.kind


def _events(d: Diagram, g: Geometry) -> list[str]:
    lane_of = {e.id: g.lane_y[e.pid] for e in d.events}
    below = labels_below(lane_of, d.arrows) if g.labels else set()
    return [
        event_svg(
            e,
            g.x(e.rank),
            g.lane_y[e.pid],
            clock_label(e.clock, d.clock_ids) if g.labels else None,
            e.id in below,
        )
        for e in d.events
    ]


def _ticks(d: Diagram, g: Geometry) -> list[str]:
    return [tick_svg(m, g.x(m.position), g.lane_y[m.pid]) for m in d.markers]


def _counts(d: Diagram) -> tuple[int, int, int, int]:
    syncs = sum(a.kind == "sync" for a in d.arrows)
    return len(d.processes), len(d.events), len(d.arrows), syncs


def _summary(d: Diagram) -> str:
    processes, events, messages, syncs = _counts(d)
    reports = sum(a.kind == "report" for a in d.arrows)
    extra = ", ".join(
        part
        for part in (f"{syncs} sync" if syncs else "", f"{reports} reports" if reports else "")
        if part
    )
    return f"{processes} processes · {events} events · {messages} messages" + (
        f" ({extra})" if extra else ""
    )


def _legend_svg(x: float, y: float) -> list[str]:
    out = []
    for style, text in _LEGEND_DOTS:
        out.append(_shape(style, x + 6, y, 4.5))
        out.append(f'<text x="{_num(x + 14)}" y="{_num(y + 4)}">{_esc(text)}</text>')
        x += 24 + len(text) * 6.6
    x += 10
    for kind, text in _LEGEND_ARROWS:
        stroke, width, dash = _ARROW[kind]
        out.append(
            f'<line x1="{_num(x)}" y1="{_num(y)}" x2="{_num(x + 26)}" y2="{_num(y)}" '
            f'stroke="{stroke}" stroke-width="{width}"'
            + (f' stroke-dasharray="{dash}"' if dash else "")
            + f' marker-end="url(#vc-head-{kind})"/>'
        )
        out.append(f'<text x="{_num(x + 32)}" y="{_num(y + 4)}">{_esc(text)}</text>')
        x += 44 + len(text) * 6.6
    return out


# SVG


def render_svg(diagram: Diagram) -> str:
    """A standalone SVG; clock labels on the dots up to :data:`LABEL_LIMIT` events."""
    d = diagram
    left_column = 120.0
    g = _geometry(d, left=left_column, top=96.0)
    legend_y = g.height + 12
    width = max(g.width + 24, 1040.0)
    height = legend_y + 20
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" class="vclock-diagram" '
        f'width="{_num(width)}" height="{_num(height)}" viewBox="0 0 {_num(width)} '
        f'{_num(height)}" font-family="{_FONT}" font-size="11">',
        f"<title>{_esc(d.name or 'run')}: space-time diagram</title>",
        defs_svg(),
        f'<rect width="{_num(width)}" height="{_num(height)}" fill="#ffffff"/>',
        f'<text x="16" y="26" font-size="16" font-weight="700" fill="#0f172a">'
        f"{_esc(d.name or 'run')}</text>",
        f'<text class="counts" x="16" y="46" fill="#475569">{_esc(_summary(d))}</text>',
    ]
    hint = "x: causal order, not time; dots one above another are concurrent"
    if g.labels and d.clock_ids:
        hint += f"; labels: clock [{','.join(d.clock_ids)}]"
    parts.append(f'<text x="16" y="62" fill="#64748b" font-size="10">{_esc(hint)}</text>')
    parts.append('<g class="lanes">' + "".join(_lanes(d, g, left_column - 4)) + "</g>")
    parts += _lane_labels(d, g, left_column - 14)
    parts.append('<g class="markers">' + "".join(_ticks(d, g)) + "</g>")
    parts.append('<g class="arrows">' + "".join(_arrows(d, g)) + "</g>")
    parts.append(
        '<g class="events" font-size="10" fill="#334155" stroke-linejoin="round">'
        + "".join(_events(d, g))
        + "</g>"
    )
    parts.append('<g class="legend" fill="#334155">' + "".join(_legend_svg(16, legend_y)))
    parts.append("</g></svg>")
    return "\n".join(parts) + "\n"


# HTML


def _template() -> str:
    return resources.files("vclock.tools").joinpath("diagram_template.html").read_text("utf-8")


def json_for_script(value: object) -> str:
    """JSON that cannot close its ``<script>`` element, whatever the strings hold."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def legend_html(
    dots: Sequence[tuple[str, str]] = _LEGEND_DOTS,
    arrows: Sequence[tuple[str, str]] = _LEGEND_ARROWS,
) -> str:
    """The legend of an HTML page: ``dots`` as (kind, text), ``arrows`` as (kind, text),
    then the selection colours and the join/leave ticks."""
    items = []
    for style, text in dots:
        swatch = _shape(style, 8, 8, 4.5)
        items.append(
            f'<span class="item"><svg width="16" height="16">{swatch}</svg>{_esc(text)}</span>'
        )
    for kind, text in arrows:
        stroke, width, dash = _ARROW[kind]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        items.append(
            f'<span class="item"><svg width="34" height="16">{defs_svg()}<line x1="2" y1="8" '
            f'x2="30" y2="8" stroke="{stroke}" stroke-width="{width}"{dash_attr} '
            f'marker-end="url(#vc-head-{kind})"/></svg>{_esc(text)}</span>'
        )
    for cls, text in (("selected", "selected"), ("past", "causal past"), ("future", "future")):
        items.append(f'<span class="item"><span class="swatch {cls}"></span>{text}</span>')
    items.append(
        '<span class="item"><svg width="12" height="16"><line x1="6" y1="2" x2="6" y2="14" '
        'stroke="#16a34a" stroke-width="2.5"/></svg>join'
        '<svg width="12" height="16"><line x1="6" y1="2" x2="6" y2="14" stroke="#dc2626" '
        'stroke-width="2.5"/></svg>leave</span>'
    )
    return "".join(items)


def page_assets() -> tuple[str, str]:
    """The CSS and the script every diagram page inlines (``diagram.css``, ``diagram.js``):
    tooltips, click for causal past and future, zoom. The offline page and the live
    dashboard both load them, so a dot behaves the same in both."""
    files = resources.files("vclock.tools")
    return (
        files.joinpath("diagram.css").read_text("utf-8"),
        files.joinpath("diagram.js").read_text("utf-8"),
    )


def render_html(diagram: Diagram) -> str:
    """One self-contained HTML page: inline SVG, CSS and script; it fetches nothing.

    Hover a dot for its clock; click one to light up its causal past and future.
    Zoom with the buttons or ctrl+wheel; long runs scroll sideways, lane names stay.
    """
    d = diagram
    style, script = page_assets()
    g = _geometry(d, left=20.0, top=34.0)
    processes, events, messages, syncs = _counts(d)
    labels_width = 110.0
    label_svg = (
        f'<svg class="lane-labels" data-width="{_num(labels_width)}" '
        f'data-height="{_num(g.height)}" width="{_num(labels_width)}" height="{_num(g.height)}" '
        f'viewBox="0 0 {_num(labels_width)} {_num(g.height)}">'
        + "".join(_lane_labels(d, g, labels_width - 12))
        + "</svg>"
    )
    width = g.width + 20
    main_svg = (
        f'<svg class="diagram" data-width="{_num(width)}" data-height="{_num(g.height)}" '
        f'width="{_num(width)}" height="{_num(g.height)}" '
        f'viewBox="0 0 {_num(width)} {_num(g.height)}">'
        + defs_svg()
        + '<g class="lanes">'
        + "".join(_lanes(d, g, 0))
        + '</g><g class="markers">'
        + "".join(_ticks(d, g))
        + '</g><g class="arrows">'
        + "".join(_arrows(d, g))
        + '</g><g class="events">'
        + "".join(_events(d, g))
        + "</g></svg>"
    )
    data = {
        "ids": [e.id for e in d.events],
        "edges": [v for edge in d.edges for v in edge],  # flat: a0, b0, a1, b1 ...
    }
    hint = "x is causal order, not time: dots one above another are concurrent."
    if g.labels and d.clock_ids:
        hint += f" Labels are clocks [{', '.join(d.clock_ids)}]."
    values = {
        "TITLE": _esc(d.name or "run"),
        "SUMMARY": _esc(_summary(d)),
        "PROCESSES": str(processes),
        "EVENTS": str(events),
        "MESSAGES": str(messages),
        "SYNCS": str(syncs),
        "HINT": _esc(hint),
        "NOTES": "".join(f'<p class="note">{_esc(n)}</p>' for n in d.notes),
        "LEGEND": legend_html(),
        "LABELS": label_svg,
        "DIAGRAM": main_svg,
        "DATA": json_for_script(data),
        "STYLE": style,
        "SCRIPT": script,
    }
    # One pass, so a name or desc holding "{{DATA}}" is never expanded.
    return re.sub(r"\{\{([A-Z]+)\}\}", lambda m: values[m.group(1)], _template())


# Files


def write_diagram(
    source: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    execution: str | None = None,
) -> Path:
    """Draw logs into ``out``: ``.html`` or ``.svg`` by suffix.

    ``source`` is a run folder or ``.jsonl`` log, GoVector/ShiViz logs, or a list
    of them (see :func:`~vclock.tools.spacetime.load_diagram`); ``execution``
    picks one execution of several by label.

    Raises:
        ValueError: ``out`` has another suffix, a log that cannot be read, or
            several executions and no ``execution``.
        FileNotFoundError: no such log or run folder, or no logs in it.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"cannot draw a diagram as {out.name!r}: the output must end in .html or .svg"
        )
    diagram = load_diagram(source, execution=execution)
    text = render_html(diagram) if suffix == ".html" else render_svg(diagram)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out
