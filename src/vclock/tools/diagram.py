"""Space-time diagrams of a run: one line per process, events as dots, messages as arrows.

:func:`layout` (:mod:`vclock.tools.spacetime`, re-exported here) turns the events
of a log into a :class:`Diagram`; :func:`render_svg` and :func:`render_html` draw it;
:func:`write_diagram` goes from a run folder or ``.jsonl`` file to a file. Nothing
here prints, and only :func:`load_diagram` and :func:`write_diagram` touch files.

Every piece of the picture (lanes, dots, arrows, ticks, legends, the page's CSS and
script) is drawn by :mod:`vclock.tools.drawing`, which the live dashboard
(:mod:`vclock.web`) draws with too; this module puts a whole run's pieces together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..events import SERVER_ID
from .drawing import (
    LABEL_LIMIT,
    LEFT,
    MARGIN,
    TOP,
    Geometry,
    arrow_svg,
    clock_label,
    defs_svg,
    diagram_svg,
    esc,
    event_svg,
    fill_page,
    json_for_script,
    labels_below,
    lane_label_svg,
    lane_labels_svg,
    lane_svg,
    legend_html,
    legend_svg,
    num,
    page_assets,
    place,
    tick_svg,
)
from .spacetime import Arrow, Diagram, DiagramEvent, Marker, layout, load_diagram

__all__ = [
    "LABEL_LIMIT",
    "Arrow",
    "Counts",
    "Diagram",
    "DiagramEvent",
    "Marker",
    "counts",
    "layout",
    "load_diagram",
    "render_html",
    "render_svg",
    "write_diagram",
]

FORMATS = (".html", ".svg")
_FONT = "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace"


def _geometry(d: Diagram, *, left: float, top: float) -> Geometry:
    return place(d.processes, d.events, d.clock_ids, left=left, top=top)


# A whole run's pieces, drawn with vclock.tools.drawing


def _lanes(d: Diagram, g: Geometry, x0: float) -> list[str]:
    return [lane_svg(pid, g.lane_y[pid], x0, g.width) for pid in d.processes]


def _lane_labels(d: Diagram, g: Geometry, right: float) -> list[str]:
    return [lane_label_svg(pid, g.lane_y[pid], right) for pid in d.processes]


def _arrows(d: Diagram, g: Geometry) -> list[str]:
    at = {e.id: (g.x(e.rank), g.lane_y[e.pid]) for e in d.events}
    return [arrow_svg(a, at[a.source], at[a.target], g) for a in d.arrows]


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


@dataclass(frozen=True, slots=True)
class Counts:
    """What the header counts. The first five are ``vclock check``'s summary, counted
    the same way: client processes, their causal events, their sends (reports to the
    server included), receives and sync-receives. The server lane's dots are apart."""

    processes: int
    events: int
    messages: int
    reports: int
    receives: int
    syncs: int
    server_reports: int  # the server's receipts of reports (grey dots)
    server_syncs: int  # the server's sync cycles that sent something (diamonds)


def counts(d: Diagram) -> Counts:
    """The header's counts of a diagram (see :class:`Counts`)."""
    clients = [e for e in d.events if not e.server]
    sends = [e for e in clients if e.kind == "send"]
    return Counts(
        processes=sum(p != SERVER_ID for p in d.processes),
        events=len(clients),
        messages=len(sends),
        reports=sum(e.peer == SERVER_ID for e in sends),
        receives=sum(e.kind == "receive" for e in clients),
        syncs=sum(e.kind == "sync-receive" for e in clients),
        server_reports=sum(e.server and e.kind == "receive" for e in d.events),
        server_syncs=sum(e.server and e.kind == "sync" for e in d.events),
    )


def _summary(d: Diagram) -> str:
    c = counts(d)
    text = (
        f"{_plural(c.processes, 'process', 'processes')} · {_plural(c.events, 'event')} · "
        f"{_plural(c.messages, 'message')} ({_plural(c.reports, 'report')}) · "
        f"{_plural(c.receives, 'receive')} · {_plural(c.syncs, 'sync')}"
    )
    if SERVER_ID in d.processes:
        text += (
            f" · server: {_plural(c.server_reports, 'report')} received, "
            f"{_plural(c.server_syncs, 'sync')} sent"
        )
    return text


#: The tooltip of the header's counts: what they count.
COUNTS_NOTE = (
    "As vclock check counts them: client processes, their events, the messages they "
    "sent (reports to the server included), their receives and sync-receives. The "
    "server lane's dots are counted apart: a report received, a sync cycle that sent "
    "syncs. An arrow is drawn for each message received."
)


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


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
        f'width="{num(width)}" height="{num(height)}" viewBox="0 0 {num(width)} '
        f'{num(height)}" font-family="{_FONT}" font-size="11">',
        f"<title>{esc(d.name or 'run')}: space-time diagram</title>",
        defs_svg(),
        f'<rect width="{num(width)}" height="{num(height)}" fill="#ffffff"/>',
        f'<text x="16" y="26" font-size="16" font-weight="700" fill="#0f172a">'
        f"{esc(d.name or 'run')}</text>",
        f'<text class="counts" x="16" y="46" fill="#475569">{esc(_summary(d))}'
        f"<title>{esc(COUNTS_NOTE)}</title></text>",
    ]
    hint = "x: causal order, not time; dots one above another are concurrent"
    if g.labels and d.clock_ids:
        hint += f"; labels: clock [{','.join(d.clock_ids)}]"
    parts.append(f'<text x="16" y="62" fill="#64748b" font-size="10">{esc(hint)}</text>')
    parts.append('<g class="lanes">' + "".join(_lanes(d, g, left_column - 4)) + "</g>")
    parts += _lane_labels(d, g, left_column - 14)
    parts.append('<g class="markers">' + "".join(_ticks(d, g)) + "</g>")
    parts.append('<g class="arrows">' + "".join(_arrows(d, g)) + "</g>")
    parts.append(
        '<g class="events" font-size="10" fill="#334155" stroke-linejoin="round">'
        + "".join(_events(d, g))
        + "</g>"
    )
    parts.append('<g class="legend" fill="#334155">' + "".join(legend_svg(16, legend_y)))
    parts.append("</g></svg>")
    return "\n".join(parts) + "\n"


# HTML


def _template() -> str:
    return resources.files("vclock.tools").joinpath("diagram_template.html").read_text("utf-8")


def render_html(diagram: Diagram) -> str:
    """One self-contained HTML page: inline SVG, CSS and script; it fetches nothing.

    Hover a dot for its clock; click one to light up its causal past and future.
    Zoom with the buttons or ctrl+wheel; long runs scroll sideways, lane names stay.
    """
    d = diagram
    style, script = page_assets()
    g = _geometry(d, left=LEFT, top=TOP)
    c = counts(d)
    label_svg = lane_labels_svg(d.processes, g.lane_y, g.height)
    main_svg = diagram_svg(
        g.width + MARGIN, g.height, _lanes(d, g, 0), _ticks(d, g), _arrows(d, g), _events(d, g)
    )
    data = {
        "ids": [e.id for e in d.events],
        "edges": [v for edge in d.edges for v in edge],  # flat: a0, b0, a1, b1 ...
    }
    hint = "x is causal order, not time: dots one above another are concurrent."
    if g.labels and d.clock_ids:
        hint += f" Labels are clocks [{', '.join(d.clock_ids)}]."
    values = {
        "TITLE": esc(d.name or "run"),
        "SUMMARY": esc(_summary(d)),
        "COUNTS_NOTE": esc(COUNTS_NOTE),
        "PROCESSES": str(c.processes),
        "EVENTS": str(c.events),
        "MESSAGES": str(c.messages),
        "REPORTS": str(c.reports),
        "RECEIVES": str(c.receives),
        "SYNCS": str(c.syncs),
        "HINT": esc(hint),
        "NOTES": "".join(f'<p class="note">{esc(n)}</p>' for n in d.notes),
        "LEGEND": legend_html(),
        "LABELS": label_svg,
        "DIAGRAM": main_svg,
        "DATA": json_for_script(data),
        "STYLE": style,
        "SCRIPT": script,
    }
    return fill_page(_template(), values)


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
