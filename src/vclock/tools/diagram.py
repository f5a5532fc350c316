"""Space-time diagrams of a run: one line per process, events as dots, messages as arrows.

:func:`layout` turns the events of a log (:mod:`vclock.tools.eventlog`) into a
:class:`Diagram`, plain data; :func:`render_svg` and :func:`render_html` draw it;
:func:`write_diagram` goes from a run folder or ``.jsonl`` file to a file. Nothing
here prints, and only :func:`load_diagram` and :func:`write_diagram` touch files.

What is drawn (the event log's docstring defines the kinds):

- a lane per client, sorted by id (``c2`` before ``c10``), then a ``server`` lane when
  the log holds server records;
- on a client lane, its causal events (``local`` ``send`` ``receive`` ``sync-receive``);
  ``join`` and ``leave`` only carry a clock, so they are small ticks between dots, not dots;
- on the server lane, its ``sync`` records and the ``receive`` records of *reports*
  (a client ``send`` whose peer is ``"server"``). The server also logs a ``receive``
  for every peer message it relays; those are not drawn, or each message would be
  two arrows bent through the server lane. The direct arrow stands for them;
- arrows: ``send`` → ``receive`` of a peer message, ``send`` → server ``receive`` of a
  report, and a dashed one from a server ``sync`` to each client's ``sync-receive``.
  Message ids link the ends (``"A#7"``, ``"sync#3"``), and clocks settle the rare
  reuse of an id (a frame lost with its connection): the send is the one whose clock
  the receive's clock covers.

**x is causal, not time.** An event's rank is 1 + the largest rank of its direct
predecessors: the previous event of its lane, the send of a message it receives, and
for a server ``sync``, on every lane the latest event its frontier covers. So when
``e`` happened before ``f``, ``e`` is drawn left of ``f``; events drawn one above the
other are concurrent. Wall time (``ts``) is never used: clocks of different machines
disagree. Logs that contradict themselves (a causal cycle) still draw; the cycle is
broken and named in :attr:`Diagram.notes`.

**One set of drawing rules.** The pieces drawn here (:func:`place`, :func:`lane_svg`,
:func:`event_svg`, :func:`arrow_svg`, :func:`tick_svg`, :func:`legend_html`) and the
page's CSS and script (``diagram.css``, ``diagram.js``, see :func:`page_assets`) are
shared with the live dashboard (:mod:`vclock.web`), which draws each dot with them as
it arrives; its ``deliver`` and ``sync-deliver`` dots (a delivery whose receiver's
clock the server does not know) are hollow.
"""

from __future__ import annotations

import bisect
import html
import itertools
import json
import math
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .eventlog import CAUSAL_KINDS, Event, iter_events, log_files

__all__ = [
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
    "place",
    "render_html",
    "render_svg",
    "tick_svg",
    "write_diagram",
]

SERVER = "server"  # vclock.hub.SERVER_ID; the tools read logs and need nothing else of the hub

#: Runs with more events than this are drawn without clock labels (tooltips keep them).
LABEL_LIMIT = 60

FORMATS = (".html", ".svg")


@dataclass(frozen=True, slots=True)
class DiagramEvent:
    """One dot. ``id`` is ``"<pid>:<n>"``, the n-th dot of that lane (``"B:2"``)."""

    id: str
    pid: str
    kind: str  # local send receive sync-receive; on the server lane: sync receive
    rank: int  # x position, in ranks: causal order, see the module docstring
    clock: Mapping[str, int]
    ref: str  # where it was logged: "A.jsonl:4"
    msg: str | None = None
    peer: str | None = None
    to: tuple[str, ...] = ()
    desc: str | None = None

    @property
    def server(self) -> bool:
        return self.pid == SERVER


@dataclass(frozen=True, slots=True)
class Arrow:
    """A message from one dot to another; ``kind`` is ``message``, ``report`` or ``sync``."""

    source: str
    target: str
    msg: str
    kind: str


@dataclass(frozen=True, slots=True)
class Marker:
    """A ``join`` or ``leave`` of a client, drawn as a tick at a half rank."""

    pid: str
    kind: str
    position: float
    clock: Mapping[str, int]
    ref: str
    desc: str | None = None


@dataclass(frozen=True, slots=True)
class Diagram:
    name: str
    processes: tuple[str, ...]  # lanes, top to bottom: clients sorted, then the server
    events: tuple[DiagramEvent, ...]
    arrows: tuple[Arrow, ...]
    markers: tuple[Marker, ...]
    #: happened-before edges between ``events`` (indices): lane order, arrows, frontiers.
    edges: tuple[tuple[int, int], ...]
    #: every id any clock mentions, in lane order: the order of the ``[1,0,2]`` labels.
    clock_ids: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def width(self) -> int:
        """The largest rank."""
        return max((e.rank for e in self.events), default=0)

    def index(self, event_id: str) -> int:
        for i, event in enumerate(self.events):
            if event.id == event_id:
                return i
        raise KeyError(event_id)

    def causal_past(self, event_id: str) -> set[str]:
        """The ids of the events that happened before this one (itself excluded)."""
        return self._reach(event_id, forward=False)

    def causal_future(self, event_id: str) -> set[str]:
        """The ids of the events this one happened before (itself excluded)."""
        return self._reach(event_id, forward=True)

    def _reach(self, event_id: str, *, forward: bool) -> set[str]:
        adjacent: list[list[int]] = [[] for _ in self.events]
        for a, b in self.edges:
            if forward:
                adjacent[a].append(b)
            else:
                adjacent[b].append(a)
        start = self.index(event_id)
        seen = {start}
        todo = deque([start])
        while todo:
            for j in adjacent[todo.popleft()]:
                if j not in seen:
                    seen.add(j)
                    todo.append(j)
        seen.discard(start)
        return {self.events[i].id for i in seen}


# Layout


def _natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort ``c2`` before ``c10``."""
    parts = re.split(r"(\d+)", text, flags=re.ASCII)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts if p)


def _covers(big: Mapping[str, int], small: Mapping[str, int]) -> bool:
    return all(big.get(k, 0) >= v for k, v in small.items())


class _Links:
    """Which send a receive answers, and which sync a sync-receive: by msg id, then clock.

    A msg id names one message, except when a frame was lost with its connection and
    its id came round again; then the send is the last one whose clock the receive's
    clock covers (a receive merges the clock it got, so it covers it).
    """

    def __init__(self, events: Sequence[Event]) -> None:
        self.events = events
        self.sends: dict[str, list[int]] = {}
        self.syncs: dict[str, list[int]] = {}
        self.relayed: set[str] = set()  # msgs a client received from a peer
        for i, e in enumerate(events):
            if not e.msg:
                continue
            if e.pid == SERVER and e.kind == "sync":
                self.syncs.setdefault(e.msg, []).append(i)
            elif e.pid != SERVER and e.kind == "send":
                self.sends.setdefault(e.msg, []).append(i)
            elif e.pid != SERVER and e.kind == "receive":
                self.relayed.add(e.msg)

    def source(self, e: Event) -> int | None:
        """The event ``e`` received: a send for a receive, a server sync for a sync-receive."""
        if e.kind == "receive":
            candidates = self.sends.get(e.msg or "", [])
        elif e.kind == "sync-receive":
            candidates = [
                j
                for j in self.syncs.get(e.msg or "", [])
                if e.pid in (self.events[j].to or [e.pid])
            ]
        else:
            return None
        found = [j for j in candidates if _covers(e.clock, self.events[j].clock)]
        return found[-1] if found else None

    def drawn(self, e: Event) -> bool:
        """Causal client events; server syncs, and the server's receipts of *reports*."""
        if e.pid != SERVER:
            return e.kind in CAUSAL_KINDS
        if e.kind == "sync":
            return True
        if e.kind != "receive":
            return False  # the server's join/leave: the clients' own ticks show those
        send = self.source(e)
        if send is not None:
            return self.events[send].peer == SERVER
        return e.msg not in self.relayed  # the sender's log is missing: a report unless delivered


def layout(
    events: Iterable[Event], *, name: str = "", refs: Sequence[str] | None = None
) -> Diagram:
    """Place the events of a run; see the module docstring for what is drawn where.

    Args:
        events: every event of the run, each process's in the order it logged them.
        name: the run's name, shown in the header.
        refs: where each event was logged (``"A.jsonl:4"``), parallel to ``events``;
            by default ``<pid>.jsonl:<n>``, right for a run folder without blank lines.
    """
    events = list(events)
    refs = list(refs) if refs is not None else _default_refs(events)
    if len(refs) != len(events):
        raise ValueError(f"{len(refs)} refs for {len(events)} events")
    links = _Links(events)
    clients = sorted({e.pid for e in events if e.pid != SERVER}, key=_natural_key)
    lanes = clients + ([SERVER] if any(e.pid == SERVER for e in events) else [])

    # Dots in log order: ``order[n]`` is the event of dot n, ``node[i]`` the dot of event i.
    order = [i for i, e in enumerate(events) if links.drawn(e)]
    node = {i: n for n, i in enumerate(order)}
    per_lane: dict[str, list[int]] = {pid: [] for pid in lanes}
    for n, i in enumerate(order):
        per_lane[events[i].pid].append(n)

    edges: set[tuple[int, int]] = set()
    for dots in per_lane.values():
        edges.update(itertools.pairwise(dots))
    arrows: list[Arrow] = []
    ids = _dot_ids(events, order)
    for n, i in enumerate(order):
        source = links.source(events[i])
        if source is not None and source in node and source != i:
            e = events[i]
            kind = (
                "sync" if e.kind == "sync-receive" else "report" if e.pid == SERVER else "message"
            )
            edges.add((node[source], n))
            arrows.append(Arrow(ids[node[source]], ids[n], e.msg or "", kind))
    edges |= _frontier_edges(events, order, per_lane)

    ranks, ignored = _ranks(len(order), sorted(edges))
    notes = []
    if ignored:
        where = ", ".join(refs[order[b]] for _, b in ignored[:3])
        notes.append(
            f"the logs contradict each other: {len(ignored)} happened-before edge(s) close a "
            f"cycle (into {where}{', …' if len(ignored) > 3 else ''}) and point left; "
            "a clock went back, or two runs share a folder?"
        )

    placed = [_dot(ids[n], events[i], ranks[n], refs[i]) for n, i in enumerate(order)]
    clock_keys = {k for e in events for k in e.clock}
    clock_ids = [p for p in clients if p in clock_keys]
    clock_ids += sorted(clock_keys - set(clock_ids), key=_natural_key)
    return Diagram(
        name=name,
        processes=tuple(lanes),
        events=tuple(placed),
        arrows=tuple(arrows),
        markers=tuple(_markers(events, refs, node, ranks)),
        edges=tuple(sorted(edges)),
        clock_ids=tuple(clock_ids),
        notes=tuple(notes),
    )


def _dot(id: str, e: Event, rank: int, ref: str) -> DiagramEvent:
    return DiagramEvent(
        id, e.pid, e.kind, rank, dict(e.clock), ref, e.msg, e.peer, tuple(e.to or ()), e.desc
    )


def _dot_ids(events: Sequence[Event], order: Sequence[int]) -> list[str]:
    """``"<pid>:<n>"``: the n-th dot of the lane. Unique even where a clock went back."""
    seen: dict[str, int] = {}
    ids = []
    for i in order:
        pid = events[i].pid
        seen[pid] = seen.get(pid, 0) + 1
        ids.append(f"{pid}:{seen[pid]}")
    return ids


def _frontier_edges(
    events: Sequence[Event], order: Sequence[int], per_lane: Mapping[str, Sequence[int]]
) -> set[tuple[int, int]]:
    """A sync's frontier F covers, on each client lane q, the last dot with q's entry <= F[q].

    Those dots happened before the sync, even when the server's receipt of them is not
    drawn (a relayed message), so the sync is placed right of them.
    """
    by_counter = {  # per lane: (own entry, dot), sorted
        pid: sorted((events[order[n]].clock.get(pid, 0), n) for n in dots)
        for pid, dots in per_lane.items()
        if pid != SERVER
    }
    edges = set()
    for n, i in enumerate(order):
        if events[i].pid != SERVER or events[i].kind != "sync":
            continue
        for pid, counter in events[i].clock.items():
            column = by_counter.get(pid, [])
            at = bisect.bisect_right(column, (counter, math.inf)) - 1
            if at >= 0:
                edges.add((column[at][1], n))
    return edges


def _default_refs(events: Sequence[Event]) -> list[str]:
    seen: dict[str, int] = {}
    refs = []
    for e in events:
        seen[e.pid] = seen.get(e.pid, 0) + 1
        refs.append(f"{e.pid}.jsonl:{seen[e.pid]}")
    return refs


def _ranks(n: int, edges: Sequence[tuple[int, int]]) -> tuple[list[int], list[tuple[int, int]]]:
    """Longest-path ranks (1-based), and the edges ignored to break cycles.

    Consistent logs have no cycles. Where they contradict each other, the edges that
    run backwards in log order *inside* a cycle are ignored, so those arrows point left.
    """
    successors: list[list[int]] = [[] for _ in range(n)]
    for a, b in edges:
        successors[a].append(b)
    component = _components(successors)
    ignored = [(a, b) for a, b in edges if component[a] == component[b] and a > b]
    kept: list[list[int]] = [[] for _ in range(n)]
    waiting = [0] * n
    for a, b in edges:
        if not (component[a] == component[b] and a > b):
            kept[a].append(b)
            waiting[b] += 1
    rank = [1] * n
    ready = deque(i for i in range(n) if waiting[i] == 0)
    while ready:
        a = ready.popleft()
        for b in kept[a]:
            rank[b] = max(rank[b], rank[a] + 1)
            waiting[b] -= 1
            if waiting[b] == 0:
                ready.append(b)
    return rank, ignored


def _components(successors: Sequence[Sequence[int]]) -> list[int]:
    """Strongly connected components (Tarjan's algorithm, without recursion)."""
    n = len(successors)
    index = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    component = [-1] * n
    counter = count = 0
    for root in range(n):
        if index[root] != -1:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        work = [(root, 0)]
        while work:
            v, i = work[-1]
            if i < len(successors[v]):
                work[-1] = (v, i + 1)
                w = successors[v][i]
                if index[w] == -1:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack[w] = True
                    work.append((w, 0))
                elif on_stack[w]:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
            if low[v] == index[v]:
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    component[w] = count
                    if w == v:
                        break
                count += 1
    return component


def _markers(
    events: Sequence[Event], refs: Sequence[str], node: Mapping[int, int], ranks: Sequence[int]
) -> list[Marker]:
    """Client join/leave ticks, half a rank after the lane's previous dot."""
    markers: list[Marker] = []
    last: dict[str, float] = {}
    pending: dict[str, list[int]] = {}  # ticks before a lane's first dot
    for i, e in enumerate(events):
        if i in node:
            rank = ranks[node[i]]
            for j in pending.pop(e.pid, ()):
                markers.append(_marker(events[j], refs[j], rank - 0.5))
            last[e.pid] = rank
        elif e.pid != SERVER and e.kind in ("join", "leave"):
            if e.pid in last:
                markers.append(_marker(e, refs[i], last[e.pid] + 0.5))
            else:
                pending.setdefault(e.pid, []).append(i)
    for ticks in pending.values():
        markers.extend(_marker(events[j], refs[j], 0.5) for j in ticks)
    return markers


def _marker(e: Event, ref: str, position: float) -> Marker:
    return Marker(e.pid, e.kind, position, dict(e.clock), ref, e.desc)


def load_diagram(source: str | Path) -> Diagram:
    """The diagram of a run folder or one ``.jsonl`` log, with exact line refs."""
    events: list[Event] = []
    refs: list[str] = []
    for path in log_files(source):
        for line, event in iter_events(path):
            events.append(event)
            refs.append(f"{path.name}:{line}")
    path = Path(source)
    return layout(events, name=path.name if path.is_dir() else path.stem, refs=refs)


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
    inner = ", ".join(f"{k}: {clock[k]}" for k in sorted(clock, key=_natural_key))
    return "{" + inner + "}"


def clock_label(clock: Mapping[str, int], clock_ids: Sequence[str]) -> str:
    """``[2,1,0]`` over ``clock_ids`` when there are few of them, else ``A2 B1``."""
    if len(clock_ids) <= 8:
        return "[" + ",".join(str(clock.get(k, 0)) for k in clock_ids) + "]"
    return " ".join(f"{k}{clock[k]}" for k in sorted(clock, key=_natural_key))


def _tooltip(e: DiagramEvent) -> str:
    arrow = " → " if e.kind == "send" else " ← " if e.kind in _INCOMING else " "
    head = f"{e.id}  {'server ' if e.server else ''}{e.kind}"
    if e.peer and e.peer != e.pid:
        head += arrow + e.peer
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
        if pid == SERVER and lane_y:
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
    style = 'stroke="#94a3b8" stroke-dasharray="2 3"' if pid == SERVER else 'stroke="#334155"'
    cls = "process-line server" if pid == SERVER else "process-line"
    return (
        f'<line class="{cls}" data-pid="{_esc(pid)}" x1="{_num(x0)}" y1="{_num(y)}" '
        f'x2="{_num(x1)}" y2="{_num(y)}" {style} stroke-width="1.5"/>'
    )


def lane_label_svg(pid: str, y: float, right: float) -> str:
    """The name of a process, right-aligned at ``right``; long names are cut, with a tooltip."""
    text = _esc(pid) if len(pid) <= 14 else f"<title>{_esc(pid)}</title>{_esc(pid[:13])}…"
    style = ' font-style="italic" fill="#64748b"' if pid == SERVER else ' fill="#0f172a"'
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


def write_diagram(source: str | Path, out: str | Path) -> Path:
    """Draw a run folder or ``.jsonl`` log into ``out``: ``.html`` or ``.svg`` by suffix.

    Raises:
        ValueError: ``out`` has another suffix.
        FileNotFoundError: no such log or run folder, or no logs in it.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"cannot draw a diagram as {out.name!r}: the output must end in .html or .svg"
        )
    diagram = load_diagram(source)
    text = render_html(diagram) if suffix == ".html" else render_svg(diagram)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out
