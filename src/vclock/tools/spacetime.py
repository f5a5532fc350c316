"""The layout of a space-time diagram: which dots, arrows and ticks, and where.

:func:`layout` turns the events of a log (:mod:`vclock.tools.eventlog`) into a
:class:`Diagram`, plain data that :mod:`vclock.tools.diagram` draws and the live
dashboard (:mod:`vclock.web`) extends. Nothing here draws or prints.

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
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..events import ANNOTATION_KINDS, CAUSAL_KINDS, SERVER_ID, Event
from .tracelog import read_trace

__all__ = [
    "Arrow",
    "Diagram",
    "DiagramEvent",
    "Marker",
    "clock_order",
    "lane_order",
    "layout",
    "load_diagram",
    "natural_key",
]


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
        return self.pid == SERVER_ID


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


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort ``c2`` before ``c10``."""
    parts = re.split(r"(\d+)", text, flags=re.ASCII)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts if p)


def lane_order(pids: Iterable[str], *, server: bool) -> list[str]:
    """The lanes top to bottom: the clients in natural order, then the server's if ``server``."""
    return sorted(set(pids) - {SERVER_ID}, key=natural_key) + ([SERVER_ID] if server else [])


def clock_order(lanes: Sequence[str], ids: Iterable[str]) -> list[str]:
    """The order of the entries in a ``[1,0,2]`` clock label: ``ids`` that have a lane,
    in lane order, then the others in natural order."""
    ids = set(ids)
    ordered = [p for p in lanes if p in ids]
    return ordered + sorted(ids - set(ordered), key=natural_key)


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
            if e.pid == SERVER_ID and e.kind == "sync":
                self.syncs.setdefault(e.msg, []).append(i)
            elif e.pid != SERVER_ID and e.kind == "send":
                self.sends.setdefault(e.msg, []).append(i)
            elif e.pid != SERVER_ID and e.kind == "receive":
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
        if e.pid != SERVER_ID:
            return e.kind in CAUSAL_KINDS
        if e.kind == "sync":
            return True
        if e.kind != "receive":
            return False  # the server's join/leave: the clients' own ticks show those
        send = self.source(e)
        if send is not None:
            return self.events[send].peer == SERVER_ID
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
    lanes = lane_order((e.pid for e in events), server=any(e.pid == SERVER_ID for e in events))
    clients = [p for p in lanes if p != SERVER_ID]

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
                "sync"
                if e.kind == "sync-receive"
                else "report"
                if e.pid == SERVER_ID
                else "message"
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
    clock_ids = clock_order(clients, (k for e in events for k in e.clock))
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
        if pid != SERVER_ID
    }
    edges = set()
    for n, i in enumerate(order):
        if events[i].pid != SERVER_ID or events[i].kind != "sync":
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
        elif e.pid != SERVER_ID and e.kind in ANNOTATION_KINDS:
            if e.pid in last:
                markers.append(_marker(e, refs[i], last[e.pid] + 0.5))
            else:
                pending.setdefault(e.pid, []).append(i)
    for ticks in pending.values():
        markers.extend(_marker(events[j], refs[j], 0.5) for j in ticks)
    return markers


def _marker(e: Event, ref: str, position: float) -> Marker:
    return Marker(e.pid, e.kind, position, dict(e.clock), ref, e.desc)


def load_diagram(
    source: str | Path | Sequence[str | Path], *, execution: str | None = None
) -> Diagram:
    """The diagram of one execution of some logs, with exact line refs.

    ``source``: a run folder or ``.jsonl`` log, GoVector/ShiViz logs (messages read
    from the clocks), or a list of them (:func:`vclock.tools.tracelog.read_trace`).
    ``execution`` picks one of several executions by label.
    """
    sources = [source] if isinstance(source, str | Path) else list(source)
    trace = read_trace(sources)
    chosen = trace.execution(execution)
    name = trace.name if not chosen.label or chosen.label == trace.name else chosen.label
    return layout(chosen.events, name=name, refs=chosen.refs)
