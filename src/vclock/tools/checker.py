"""The trace checker: are the clocks in a run's event logs causally consistent?

:func:`check` reads a run folder of ``<pid>.jsonl`` logs (or one file, or a list of
:class:`~vclock.tools.eventlog.Event`) and returns a :class:`CheckReport`;
:func:`format_report` turns it into text. Pure functions: no printing, no time.

The model (how a vclock run looks in its logs)
----------------------------------------------
*Client* processes (every pid but ``"server"``) have causal events ``local``,
``send``, ``receive`` and ``sync-receive``, in file order. ``join`` and ``leave``
are annotations: the rules ignore them, except that they must carry the clock
unchanged. A first record that is a ``join`` carries the clock the process resumed
from, so its first causal event may start above 1.

A client ``send`` with peer P and msg M is received by P's ``receive`` with msg M;
a send with peer ``"server"`` is a report, received only by the server; a send
with peer ``"*"`` is a causal broadcast, received (at most once) by any client
but its sender. A send never received is fine (in flight, or refused).

The *server* log is optional and the server has no clock entry of its own. Its
``receive`` records are the client frames it got (msg, peer = sender, the clock
received); its ``sync`` records are sync messages (msg ``"sync#k"``, clock = the
frontier F, ``to`` = the recipients).

The happened-before graph has a node per client causal event and per server
``receive``/``sync`` record, and these edges: each process's program order (the
server's too); each send to its receive; each send or report to the server's
``receive`` of it; each server ``sync`` to the ``sync-receive`` events of it. A
relayed message is a *direct* edge from send to receive: the server relays the
sender's clock unchanged, so routing it through the server's program order would
invent causality. Server records are nodes, but only client events are compared.

When a receive has no matching send in the logs (or the run has no server log,
so sync-receives have no sync), its clock says what it learnt; the checker adds an
*implied* edge from each event whose own entry the clock names beyond the
process's previous clock. Sound when the clock is right, and it keeps one missing
record from turning every later event into a causality violation.

Rules (``Violation.rule``), see :data:`RULES`
---------------------------------------------
``own-entry``      each causal event raises the process's own entry by exactly one
``clock-regressed`` no other entry of a process's clock ever goes down
``annotation-clock`` a join or leave (after the first record) changes the clock
``unmatched-receive`` a receive (client or server) or sync-receive with no such
                   send or sync in the logs, or one that was sent to someone else
``receive-clock``  a receive's clock is not >= the send's (a sync-receive's not >=
                   the frontier; not >= its own previous clock is ``clock-regressed``);
                   the server logged another clock than was sent
``sync-frontier``  a server sync's frontier is not the max of the clocks it had
                   received (one server run per log folder)
``duplicate-message`` a msg id sent twice, or received twice by one process
``malformed``      an unknown kind, a send or receive without msg or peer, a send
                   whose msg is not ``<pid>#<own entry>``
``cycle``          the happened-before graph has a cycle (a receive before its send)
``causality``      the core check: e happened before f iff V(e) < V(f)
``fifo``           two messages from one sender to one receiver delivered out of
                   send order (unicasts and broadcasts are separate streams: a
                   broadcast held back for causal order may follow a later unicast)
``causal-delivery`` (warning unless ``require_causal_delivery``) a receiver got m1
                   after m2 although send(m1) happened before send(m2); with
                   ``causal_scope="broadcast"`` only pairs of broadcasts count, the
                   order vclock guarantees in every topology (docs/cluster.md)

How the core check works
------------------------
One topological pass (Kahn's algorithm) over the graph gives each node its graph
timestamp G: G[p] = how many of client p's causal events are in the node's
inclusive causal past (a pointwise max over its predecessors). Read through the
logged own entries (``G[p]`` events of p are known = the largest own entry among
p's first ``G[p]`` events) this is the clock the event should have. By the
characterization theorem, with own entries rising by one, "expected == logged for
every client event" is equivalent to "e -> f iff V(e) < V(f) for every pair", so the
checker reports each event whose clock differs (naming the entries and the events
behind them) and one concrete witness pair, in O(events x processes) instead of
comparing all pairs. ``concurrent_pairs`` comes from the same timestamps: each
ordered pair (e -> f) is counted once, at f, as |past(f)| = sum(G(f)) - 1.

Causal delivery uses them too: send(m1) -> send(m2) iff G(send m2)[s1] >= the
position of send(m1) among s1's events. Walking a receiver's deliveries in order and
keeping, per process, the furthest of its events known to any delivered message's
send, a new delivery from s1 is late iff its send's position is at most that mark.

Note: one vclock server relaying over TCP in the order it processes frames
delivers causally in practice; the guarantee the protocol states is per-sender
FIFO, so causal-delivery findings are warnings by default.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .eventlog import CAUSAL_KINDS, Event, iter_events, log_files

__all__ = [
    "RULES",
    "CheckReport",
    "EventRef",
    "Summary",
    "Violation",
    "check",
    "format_report",
]

SERVER = "server"  # vclock.hub.SERVER_ID; not imported, to keep tools off the hub
BROADCAST = "*"  # the peer of a broadcast send: every other client
ANNOTATIONS = frozenset({"join", "leave"})
SERVER_KINDS = frozenset({"receive", "sync"}) | ANNOTATIONS

#: Rule name -> what it checks. The names are stable: tests and tools match on them.
RULES: dict[str, str] = {
    "own-entry": "each causal event raises the process's own entry by exactly one",
    "clock-regressed": "no entry of a process's clock goes down",
    "annotation-clock": "join and leave carry the clock unchanged",
    "unmatched-receive": "every receive has its send (every sync-receive its sync)",
    "receive-clock": "a receive's clock is >= the clock sent",
    "sync-frontier": "a sync's frontier is the max of the clocks the server received",
    "duplicate-message": "a message is sent once and received at most once by each process",
    "malformed": "records have the fields their kind needs",
    "cycle": "happened-before has no cycle",
    "causality": "e happened before f iff V(e) < V(f)",
    "fifo": "messages from one sender to one receiver are delivered in send order",
    "causal-delivery": "messages are delivered in an order consistent with happened-before",
}

#: How many violations and warnings :func:`format_report` lists.
REPORT_LIMIT = 50


@dataclass(frozen=True, slots=True)
class EventRef:
    """Where an event is: file name and line, plus enough to recognize it.

    Events given as a list (not files) are numbered as if each process's events
    were written to ``<pid>.jsonl``, one per line.
    """

    file: str
    line: int
    pid: str
    kind: str
    msg: str | None = None

    def __str__(self) -> str:
        what = f"{self.pid} {self.kind}" + (f" {self.msg}" if self.msg else "")
        return f"{self.file}:{self.line} ({what})"


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str  # a key of RULES
    message: str  # names the events, e.g. "B.jsonl:12 (B receive A#3)"
    events: list[EventRef] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Summary:
    processes: int  # client processes
    events: int  # client causal events
    messages: int  # client sends, reports to the server included
    receives: int  # client receive events
    syncs: int  # client sync-receive events
    concurrent_pairs: int | None  # unordered pairs of concurrent client events; None on a cycle
    server_log: bool  # whether the logs include the server's


@dataclass(frozen=True, slots=True)
class CheckReport:
    """The outcome of :func:`check`.

    ``violations`` fail the check. ``delivery_violations`` holds every
    causal-delivery finding; they are in ``violations`` too when the check was run
    with ``require_causal_delivery=True``, and in ``warnings`` otherwise.
    """

    violations: list[Violation]
    delivery_violations: list[Violation]
    summary: Summary
    require_causal_delivery: bool = False

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def warnings(self) -> list[Violation]:
        return [] if self.require_causal_delivery else list(self.delivery_violations)


def check(
    source: str | Path | Iterable[Event],
    *,
    require_causal_delivery: bool = False,
    causal_scope: str = "all",
) -> CheckReport:
    """Check the event logs of one run.

    Args:
        source: a run folder of ``<pid>.jsonl`` files, one such file, or events
            (each process's events in its file order).
        require_causal_delivery: fail on causal-delivery violations instead of
            reporting them as warnings (per-sender FIFO violations always fail).
        causal_scope: ``"all"`` checks causal delivery over every message;
            ``"broadcast"`` only between broadcasts (peer ``"*"``), which clients
            deliver in causal order whatever the topology.

    Raises:
        FileNotFoundError: no such file, or a folder without ``.jsonl`` files.
        ValueError: a line that is not an event (naming the file and line).
    """
    if causal_scope not in ("all", "broadcast"):
        raise ValueError(f"causal_scope must be 'all' or 'broadcast', not {causal_scope!r}")
    return _Checker(_load(source), broadcasts_only=causal_scope == "broadcast").run(
        require_causal_delivery
    )


def format_report(report: CheckReport) -> str:
    """The report as plain text: the verdict first, then counts, then findings."""
    s = report.summary
    warnings = report.warnings
    if report.ok:
        verdict = "OK: causally consistent"
        if not s.events:
            verdict += " (no causal events)"
        elif warnings:
            verdict += f" ({_plural(len(warnings), 'warning')})"
    else:
        verdict = f"FAILED: {_plural(len(report.violations), 'violation')}"
    pairs = "n/a (cycle)" if s.concurrent_pairs is None else str(s.concurrent_pairs)
    lines = [
        verdict,
        f"  processes         {s.processes}",
        f"  events            {s.events}",
        f"  messages          {s.messages}",
        f"  receives          {s.receives}",
        f"  syncs             {s.syncs}",
        f"  concurrent pairs  {pairs}",
        f"  server log        {'yes' if s.server_log else 'no (sync-receives checked by clock)'}",
    ]
    room = REPORT_LIMIT
    for title, items in (("Violations:", report.violations), ("Warnings:", warnings)):
        if not items:
            continue
        lines.append(title)
        if title == "Warnings:":
            lines.append(
                "  (causal delivery is not guaranteed by vclock, only per-sender FIFO;"
                " check with require_causal_delivery to fail on these)"
            )
        shown = items[: max(room, 0)]
        lines += [f"  [{v.rule}] {v.message}" for v in shown]
        room -= len(shown)
        if len(items) > len(shown):
            lines.append(f"  ... and {len(items) - len(shown)} more")
    return "\n".join(lines)


# Loading


class _Rec:
    """One record, with what the checker learns about it."""

    __slots__ = ("ref", "event", "clock", "node", "proc", "pos")

    def __init__(self, ref: EventRef, event: Event) -> None:
        self.ref = ref
        self.event = event
        self.clock = {pid: count for pid, count in event.clock.items() if count}
        self.node = -1  # index in the graph, -1 for annotations
        self.proc = -1  # index of the client process, -1 for the server
        self.pos = 0  # 1-based position among the process's causal events

    @property
    def pid(self) -> str:
        return self.event.pid

    @property
    def kind(self) -> str:
        return self.event.kind

    @property
    def msg(self) -> str | None:
        return self.event.msg

    @property
    def own(self) -> int:
        return self.clock.get(self.event.pid, 0)

    def __str__(self) -> str:
        return str(self.ref)


def _load(source: str | Path | Iterable[Event]) -> list[_Rec]:
    records: list[_Rec] = []
    if isinstance(source, str | Path):
        for path in log_files(source):
            for line, event in iter_events(path):
                records.append(_Rec(_ref(path.name, line, event), event))
    else:
        lines: dict[str, int] = {}
        for event in source:
            line = lines[event.pid] = lines.get(event.pid, 0) + 1
            records.append(_Rec(_ref(f"{event.pid}.jsonl", line, event), event))
    return records


def _ref(file: str, line: int, event: Event) -> EventRef:
    return EventRef(file, line, event.pid, event.kind, event.msg)


# The checker


class _Checker:
    def __init__(self, records: list[_Rec], *, broadcasts_only: bool = False) -> None:
        self.broadcasts_only = broadcasts_only
        self.violations: list[Violation] = []
        self.delivery: list[Violation] = []
        self.server: list[_Rec] = []
        by_pid: dict[str, list[_Rec]] = {}
        for rec in records:
            if rec.pid == SERVER:
                self.server.append(rec)
            else:
                by_pid.setdefault(rec.pid, []).append(rec)
        self.has_server = bool(self.server)
        self.pids = sorted(by_pid)
        self.index = {pid: proc for proc, pid in enumerate(self.pids)}
        self.records = [by_pid[pid] for pid in self.pids]  # per process, all records
        self.causal: list[list[_Rec]] = [[] for _ in self.pids]  # per process, causal only
        self.initial: list[dict[str, int]] = [{} for _ in self.pids]  # resumed clock
        self.prefmax: list[list[int]] = [[] for _ in self.pids]  # max own entry so far
        self.by_own: list[dict[int, _Rec]] = [{} for _ in self.pids]
        self.sends: dict[str, _Rec] = {}
        self.syncs: dict[str, _Rec] = {}
        # the graph
        self.nodes: list[_Rec] = []
        self.preds: list[list[int]] = []
        self.succs: list[list[int]] = []
        self.implied: set[tuple[int, int]] = set()
        self.counts: list[list[int] | None] = []
        self.deliveries: list[list[tuple[_Rec, _Rec]]] = [[] for _ in self.pids]
        self.cyclic = False

    def fail(self, rule: str, message: str, *events: _Rec) -> None:
        self.violations.append(Violation(rule, message, [e.ref for e in events]))

    def run(self, require_causal_delivery: bool) -> CheckReport:
        for proc in range(len(self.pids)):
            self._check_process(proc)
        self._index_messages()
        self._build_graph()
        self._timestamps()
        self._check_causality()
        self._check_delivery()
        violations = sorted(self.violations, key=_where)
        delivery = sorted(self.delivery, key=_where)
        if require_causal_delivery:
            violations = sorted(violations + delivery, key=_where)
        return CheckReport(violations, delivery, self._summary(), require_causal_delivery)

    # Per process: own entry, monotonicity, annotations

    def _check_process(self, proc: int) -> None:
        pid = self.pids[proc]
        prev: _Rec | None = None  # previous causal event
        clock: dict[str, int] | None = None  # the process's clock so far
        base = 0
        for index, rec in enumerate(self.records[proc]):
            rec.proc = proc
            if rec.kind in ANNOTATIONS:
                if index == 0:
                    clock = rec.clock
                    base = rec.own
                    self.initial[proc] = {q: n for q, n in rec.clock.items() if q != pid}
                elif rec.clock != (clock or {}):
                    self.fail(
                        "annotation-clock",
                        f"{rec}: a {rec.kind} carries {_fmt(rec.clock)}, but the clock was"
                        f" {_fmt(clock or {})} (join and leave carry the clock unchanged)",
                        rec,
                    )
                continue
            if rec.kind not in CAUSAL_KINDS:
                self.fail("malformed", f"{rec}: unknown kind {rec.kind!r}", rec)
                continue
            causal = self.causal[proc]
            causal.append(rec)
            rec.pos = len(causal)
            before = prev.own if prev is not None else base
            if rec.own != before + 1:
                how = "repeats" if rec.own == before else "skips" if rec.own > before else "lowers"
                if prev is not None:
                    after = f"{pid}:{before} at {prev}"
                else:
                    after = "the start" if not base else f"{pid}:{base} at the join"
                self.fail(
                    "own-entry",
                    f"{rec}: own entry {pid}:{rec.own} {how} the count; expected {before + 1}"
                    f" (one more than {after})",
                    rec,
                    *([prev] if prev is not None else []),
                )
            if clock:
                down = {q: n for q, n in clock.items() if q != pid and rec.clock.get(q, 0) < n}
                if down:
                    was = prev if prev is not None else self.records[proc][0]
                    self.fail(
                        "clock-regressed",
                        f"{rec}: clock {_fmt(rec.clock)} went down from {_fmt(clock)} at {was}"
                        f" in {_entries(down, rec.clock)}",
                        rec,
                        was,
                    )
            clock = rec.clock
            prev = rec
            self.by_own[proc].setdefault(rec.own, rec)
            best = self.prefmax[proc][-1] if self.prefmax[proc] else 0
            self.prefmax[proc].append(max(best, rec.own))

    # Messages

    def _index_messages(self) -> None:
        for causal in self.causal:
            for rec in causal:
                if rec.kind != "send":
                    continue
                if not rec.msg or not rec.event.peer:
                    self.fail("malformed", f"{rec}: a send needs a msg and a peer", rec)
                    continue
                if rec.msg != f"{rec.pid}#{rec.own}":
                    self.fail(
                        "malformed",
                        f"{rec}: msg {rec.msg} should name the sender's own entry,"
                        f" {rec.pid}#{rec.own}",
                        rec,
                    )
                self._unique(self.sends, rec)
        for rec in self.server:
            if rec.kind not in SERVER_KINDS:
                self.fail("malformed", f"{rec}: unknown server kind {rec.kind!r}", rec)
            elif rec.kind == "sync":
                if not rec.msg:
                    self.fail("malformed", f"{rec}: a sync needs a msg", rec)
                else:
                    self._unique(self.syncs, rec)

    def _unique(self, index: dict[str, _Rec], rec: _Rec) -> None:
        assert rec.msg is not None
        first = index.setdefault(rec.msg, rec)
        if first is not rec:
            self.fail(
                "duplicate-message", f"{rec}: {rec.msg} was already sent by {first}", rec, first
            )

    # The happened-before graph

    def _add_node(self, rec: _Rec) -> None:
        rec.node = len(self.nodes)
        self.nodes.append(rec)
        self.preds.append([])
        self.succs.append([])

    def _edge(self, a: _Rec, b: _Rec, *, implied: bool = False) -> None:
        self.preds[b.node].append(a.node)
        self.succs[a.node].append(b.node)
        if implied:
            self.implied.add((a.node, b.node))

    def _build_graph(self) -> None:
        for causal in self.causal:
            for index, rec in enumerate(causal):
                self._add_node(rec)
                if index:
                    self._edge(causal[index - 1], rec)
        last: _Rec | None = None
        for rec in self.server:
            if rec.kind in ("receive", "sync"):
                self._add_node(rec)
                if last is not None:
                    self._edge(last, rec)
                last = rec
        for causal in self.causal:
            received: set[str] = set()
            for index, rec in enumerate(causal):
                if rec.kind == "receive":
                    self._client_receive(rec, causal[index - 1] if index else None, received)
                elif rec.kind == "sync-receive":
                    self._sync_receive(rec, causal[index - 1] if index else None, received)
        self._server_records()

    def _client_receive(self, rec: _Rec, prev: _Rec | None, received: set[str]) -> None:
        if not rec.msg or not rec.event.peer:
            self.fail("malformed", f"{rec}: a receive needs a msg and a peer", rec)
            self._implied_edges(rec, prev)
            return
        send = self.sends.get(rec.msg)
        if send is None:
            self.fail("unmatched-receive", f"{rec}: no send of {rec.msg} in the logs", rec)
            self._implied_edges(rec, prev)
            return
        self._edge(send, rec)
        if rec.event.peer != send.pid:
            self.fail(
                "malformed", f"{rec}: peer {rec.event.peer} is not the sender of {send}", rec, send
            )
        if send.event.peer == BROADCAST and send.pid == rec.pid:
            self.fail("unmatched-receive", f"{rec}: {send} was its own broadcast", rec, send)
        elif send.event.peer not in (rec.pid, BROADCAST):
            to = "a report to the server" if send.event.peer == SERVER else f"to {send.event.peer}"
            self.fail("unmatched-receive", f"{rec}: {send} was {to}, not to {rec.pid}", rec, send)
        elif rec.msg in received:
            self.fail("duplicate-message", f"{rec}: {rec.msg} was received twice", rec, send)
        else:
            received.add(rec.msg)
            self.deliveries[rec.proc].append((rec, send))
        self._not_below(rec, send, "the clock sent by")

    def _sync_receive(self, rec: _Rec, prev: _Rec | None, received: set[str]) -> None:
        if not self.has_server:
            self._implied_edges(rec, prev)
            return
        sync = self.syncs.get(rec.msg or "")
        if sync is None:
            self.fail("unmatched-receive", f"{rec}: no sync {rec.msg} in the server log", rec)
            self._implied_edges(rec, prev)
            return
        self._edge(sync, rec)
        if sync.event.to is not None and rec.pid not in sync.event.to:
            self.fail(
                "unmatched-receive",
                f"{rec}: {sync} was sent to {', '.join(sync.event.to) or 'nobody'},"
                f" not to {rec.pid}",
                rec,
                sync,
            )
        elif rec.msg in received:
            self.fail("duplicate-message", f"{rec}: {rec.msg} was received twice", rec, sync)
        received.add(rec.msg or "")
        self._not_below(rec, sync, "the frontier of")

    def _server_records(self) -> None:
        frontier: dict[str, int] = {}
        received: set[str] = set()
        for rec in self.server:
            if rec.kind == "receive":
                send = self.sends.get(rec.msg or "")
                if send is None:
                    self.fail("unmatched-receive", f"{rec}: no send of {rec.msg} in the logs", rec)
                else:
                    self._edge(send, rec)
                    if rec.msg in received:
                        self.fail(
                            "duplicate-message", f"{rec}: {rec.msg} was received twice", rec, send
                        )
                    if rec.clock != send.clock:
                        self.fail(
                            "receive-clock",
                            f"{rec}: the server logged {_fmt(rec.clock)}, but {send} sent"
                            f" {_fmt(send.clock)}",
                            rec,
                            send,
                        )
                received.add(rec.msg or "")
                _merge_into(frontier, rec.clock)
            elif rec.kind == "sync" and rec.clock != frontier:
                self.fail(
                    "sync-frontier",
                    f"{rec}: frontier {_fmt(rec.clock)} is not {_fmt(frontier)}, the max of the"
                    f" clocks the server had received",
                    rec,
                )

    def _not_below(self, rec: _Rec, source: _Rec, what: str) -> None:
        low = {q: n for q, n in source.clock.items() if rec.clock.get(q, 0) < n}
        if low:
            self.fail(
                "receive-clock",
                f"{rec}: clock {_fmt(rec.clock)} is below {what} {source} {_fmt(source.clock)}:"
                + ", ".join(
                    f" {q}:{rec.clock.get(q, 0)} < {q}:{n}" for q, n in sorted(low.items())
                ),
                rec,
                source,
            )

    def _implied_edges(self, rec: _Rec, prev: _Rec | None) -> None:
        """Edges from the events ``rec``'s clock says it learnt of (see the module doc)."""
        before = prev.clock if prev is not None else self.initial[rec.proc]
        for q, n in rec.clock.items():
            if q == rec.pid or n <= before.get(q, 0):
                continue
            proc = self._proc(q)
            source = self.by_own[proc].get(n) if proc is not None else None
            if source is not None:
                self._edge(source, rec, implied=True)

    def _proc(self, pid: str) -> int | None:
        return self.index.get(pid)

    # Graph timestamps

    def _timestamps(self) -> None:
        """Kahn's algorithm; counts[node][p] = p's causal events in the node's past."""
        width = len(self.pids)
        preds, succs = self.preds, self.succs
        indegree = [len(p) for p in preds]
        counts: list[list[int] | None] = [None] * len(self.nodes)
        queue = deque(i for i, d in enumerate(indegree) if d == 0)
        while queue:
            node = queue.popleft()
            parents = preds[node]
            if not parents:
                vector = [0] * width
            else:
                vector = list(counts[parents[0]])  # type: ignore[arg-type]
                for parent in parents[1:]:
                    vector = list(map(max, vector, counts[parent]))  # type: ignore[arg-type]
            rec = self.nodes[node]
            if rec.proc >= 0:
                vector[rec.proc] = rec.pos
            counts[node] = vector
            for child in succs[node]:
                indegree[child] -= 1
                if indegree[child] == 0:
                    queue.append(child)
        self.counts = counts
        stuck = [node for node, vector in enumerate(counts) if vector is None]
        if stuck:
            self.cyclic = True
            self._report_cycle(stuck)

    def _report_cycle(self, stuck: list[int]) -> None:
        # Every stuck node has a stuck predecessor: walk back until a node repeats.
        seen: dict[int, int] = {}
        path: list[int] = []
        node = stuck[0]
        while node not in seen:
            seen[node] = len(path)
            path.append(node)
            node = next(p for p in self.preds[node] if self.counts[p] is None)
        loop = path[seen[node] :][::-1]  # forward order
        loop.append(loop[0])
        steps = [str(self.nodes[loop[0]])]
        for a, b in zip(loop, loop[1:], strict=False):
            arrow = " -(its clock)-> " if (a, b) in self.implied else " -> "
            steps.append(arrow + str(self.nodes[b]))
        self.fail(
            "cycle",
            f"happened-before has a cycle: {''.join(steps)}; {_plural(len(stuck), 'event')}"
            f" on or after it are not checked against their causal past",
            *(self.nodes[n] for n in loop[:-1]),
        )

    def _expected(self, vector: list[int]) -> dict[str, int]:
        """The clock an event with graph timestamp ``vector`` should have."""
        clock: dict[str, int] = {}
        for proc, count in enumerate(vector):
            if count:
                own = self.prefmax[proc][count - 1]
                if own:
                    clock[self.pids[proc]] = own
                if self.initial[proc]:
                    _merge_into(clock, self.initial[proc])
        return clock

    # The core check

    def _check_causality(self) -> None:
        witnessed = False
        for causal in self.causal:
            for rec in causal:
                vector = self.counts[rec.node]
                if vector is None:  # on or after a cycle
                    continue
                expected = self._expected(vector)
                if expected == rec.clock:
                    continue
                message, involved = self._difference(rec, expected)
                if not witnessed:
                    witnessed = True
                    witness = self._witness(rec, expected)
                    if witness is not None:
                        a, b, ordered = witness
                        message += f". Witness: {a} " + (
                            f"happened before {b}, but {_fmt(a.clock)} is not below"
                            if ordered
                            else f"did not happen before {b}, but {_fmt(a.clock)} is below"
                        )
                        message += f" {_fmt(b.clock)}"
                        involved += [a, b]
                self.fail("causality", message, *_unique_recs(involved))

    def _difference(self, rec: _Rec, expected: dict[str, int]) -> tuple[str, list[_Rec]]:
        """Say which entries of ``rec``'s clock differ from ``expected``, naming events."""
        parts: list[str] = []
        involved = [rec]
        for q in sorted(expected.keys() | rec.clock.keys()):
            got, want = rec.clock.get(q, 0), expected.get(q, 0)
            if got == want:
                continue
            proc = self._proc(q)
            other = self.by_own[proc].get(max(got, want)) if proc is not None else None
            if other is not None:
                involved.append(other)
            if got > want and other is not None:
                parts.append(f"{q}:{got}, but {other} is not in its past (only {q}:{want} is)")
            elif got > want:
                parts.append(
                    f"{q}:{got}, but no event of {q} has own entry {got}"
                    f" (only {q}:{want} happened before it)"
                )
            elif other is not None:
                parts.append(f"{q}:{got}, but {other} ({q}:{want}) happened before it")
            else:
                parts.append(f"{q}:{got}, but {q}:{want} happened before it")
        message = f"{rec}: clock {_fmt(rec.clock)} disagrees with its causal past: "
        return message + "; ".join(parts), involved

    def _witness(self, rec: _Rec, expected: dict[str, int]) -> tuple[_Rec, _Rec, bool] | None:
        """A pair (a, b), one of them ``rec``, where "a happened before b" and
        "V(a) < V(b)" disagree; the processes whose entries differ are tried first.
        O(events x processes), so it is only run once."""
        differ = [
            q
            for q in sorted(expected.keys() | rec.clock.keys())
            if expected.get(q, 0) != rec.clock.get(q, 0)
        ]
        near = [self._proc(q) for q in differ]
        order = [p for p in near if p is not None]
        order += [p for p in range(len(self.pids)) if p not in order]
        for proc in order:
            for other in self.causal[proc]:
                if other is rec or self.counts[other.node] is None:
                    continue
                for a, b in ((other, rec), (rec, other)):
                    ordered = self.counts[b.node][a.proc] >= a.pos  # type: ignore[index]
                    if ordered != _below(a.clock, b.clock):
                        return a, b, ordered
        return None

    # Delivery order

    def _check_delivery(self) -> None:
        width = len(self.pids)
        for deliveries in self.deliveries:
            # (sender, broadcast?) -> its latest delivery: FIFO per stream
            latest: dict[tuple[int, bool], tuple[_Rec, _Rec]] = {}
            known = [0] * width  # furthest event of each process in a delivered send's past
            known_by: list[tuple[_Rec, _Rec] | None] = [None] * width
            for receive, send in deliveries:
                vector = self.counts[send.node]
                if vector is None or self.counts[receive.node] is None:
                    continue
                sender = send.proc
                stream = (sender, send.event.peer == BROADCAST)
                last = latest.get(stream)
                scoped = stream[1] or not self.broadcasts_only
                if last is not None and send.pos < last[1].pos:
                    self.fail(
                        "fifo",
                        f"{receive} comes after {last[0]}, but {send} was sent before {last[1]}",
                        receive,
                        send,
                        *last,
                    )
                elif scoped and known[sender] >= send.pos:
                    earlier = known_by[sender]
                    assert earlier is not None
                    self.delivery.append(
                        Violation(
                            "causal-delivery",
                            f"{receive} comes after {earlier[0]}, but {send} happened before"
                            f" {earlier[1]}",
                            [receive.ref, send.ref, earlier[0].ref, earlier[1].ref],
                        )
                    )
                if last is None or send.pos > last[1].pos:
                    latest[stream] = (receive, send)
                if not scoped:
                    continue
                for proc in range(width):
                    if vector[proc] > known[proc]:
                        known[proc] = vector[proc]
                        known_by[proc] = (receive, send)

    def _summary(self) -> Summary:
        events = sum(len(c) for c in self.causal)
        kinds = [rec.kind for causal in self.causal for rec in causal]
        pairs: int | None = None
        if not self.cyclic:
            ordered = 0
            for causal in self.causal:
                for rec in causal:
                    ordered += sum(self.counts[rec.node]) - 1  # type: ignore[arg-type]
            pairs = events * (events - 1) // 2 - ordered
        return Summary(
            processes=len(self.pids),
            events=events,
            messages=kinds.count("send"),
            receives=kinds.count("receive"),
            syncs=kinds.count("sync-receive"),
            concurrent_pairs=pairs,
            server_log=self.has_server,
        )


# Helpers


def _where(violation: Violation) -> tuple[str, int]:
    if not violation.events:
        return ("", 0)
    ref = violation.events[0]
    return (ref.file, ref.line)


def _fmt(clock: Mapping[str, int]) -> str:
    return "{" + ", ".join(f"{q}:{n}" for q, n in sorted(clock.items()) if n) + "}"


def _entries(entries: Mapping[str, int], clock: Mapping[str, int]) -> str:
    return ", ".join(f"{q} ({n} -> {clock.get(q, 0)})" for q, n in sorted(entries.items()))


def _merge_into(clock: dict[str, int], other: Mapping[str, int]) -> None:
    for q, n in other.items():
        if n > clock.get(q, 0):
            clock[q] = n


def _below(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """V(a) < V(b), for zero-free clocks."""
    return a != b and all(n <= b.get(q, 0) for q, n in a.items())


def _unique_recs(recs: list[_Rec]) -> list[_Rec]:
    seen: set[int] = set()
    out: list[_Rec] = []
    for rec in recs:
        if id(rec) not in seen:
            seen.add(id(rec))
            out.append(rec)
    return out


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
