"""The trace checker's model of a run, and the happened-before graph built from it.

The trace checker (:mod:`vclock.tools.checker`): are the clocks in a run's event
logs causally consistent? :func:`~vclock.tools.checker.check` reads a run folder of
``<pid>.jsonl`` logs (or one file, or a list of :class:`~vclock.events.Event`)
and returns a :class:`~vclock.tools.checker.report.CheckReport`;
:func:`~vclock.tools.checker.report.format_report` turns it into text. Pure
functions: no printing, no time.

This docstring is the checker's reference; the other modules point here.

``graph``      (this one) the model, and :class:`HappenedBefore`: event positions,
               message ids, matching sends to receives, the graph, its timestamps
``records``    the logs loaded as records (:class:`~.records.Rec`); clock helpers
``rules``      the rules on records and messages, and the checker that runs them all
``causality``  the rules on the graph: ``cycle``, ``causality``, ``fifo`` and
               ``causal-delivery``
``report``     :data:`~.report.RULES`, the report types and ``format_report``

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
``start``/``receive``/``sync`` record, and these edges: each process's program
order (the server's too, from each ``start`` on); each send to its receive; each
send or report to the server's ``receive`` of it; each server ``sync`` to the
``sync-receive`` events of it; to a server ``start``, implied edges (below) from
the events its restored frontier names (a crash can store a frame and lose its
log line). A
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
                   received since its last ``start`` and the frontier that start
                   restored
``start-frontier`` a server ``start`` restored an entry no client ever sent
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
``torn-line``      (warning) a log's last line was cut off by a crash while it was
                   written (no ``\\n``, not an event): that event is left out and
                   the rest of the run is checked (docs/eventlog.md)

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

from ...events import ANNOTATION_KINDS, CAUSAL_KINDS, SERVER_ID
from .records import Rec, merge_into
from .report import Summary

__all__ = ["HappenedBefore"]


class HappenedBefore:
    """The happened-before graph of one run's records, with its graph timestamps.

    The constructor builds it all and judges nothing: it numbers each process's
    causal events (``Rec.proc``, ``Rec.pos``), indexes sends and syncs by msg id,
    matches each receive to its send (``Rec.source``), adds the edges of the
    module doc (implied ones where a receive has no source) and computes the graph
    timestamps (``counts``). The rules read it.
    """

    def __init__(self, records: list[Rec]) -> None:
        self.server: list[Rec] = []
        by_pid: dict[str, list[Rec]] = {}
        for rec in records:
            if rec.pid == SERVER_ID:
                self.server.append(rec)
            else:
                by_pid.setdefault(rec.pid, []).append(rec)
        self.has_server = bool(self.server)
        self.pids = sorted(by_pid)
        self.index = {pid: proc for proc, pid in enumerate(self.pids)}
        self.records = [by_pid[pid] for pid in self.pids]  # per process, all records
        self.causal: list[list[Rec]] = [[] for _ in self.pids]  # per process, causal only
        self.start: list[Rec | None] = [None for _ in self.pids]  # a first join or leave
        self.initial: list[dict[str, int]] = [{} for _ in self.pids]  # resumed clock
        self.prefmax: list[list[int]] = [[] for _ in self.pids]  # max own entry so far
        self.by_own: list[dict[int, Rec]] = [{} for _ in self.pids]
        self.sends: dict[str, Rec] = {}  # msg -> the first well-formed send of it
        # msg -> the first server sync of it in each server run (a server without
        # --data numbers its cycles from 1 again after a restart)
        self.syncs: dict[str, list[Rec]] = {}
        self.server_run: dict[int, int] = {}  # id(server record) -> its run, from 0
        # the graph
        self.nodes: list[Rec] = []
        self.preds: list[list[int]] = []
        self.succs: list[list[int]] = []
        self.implied: set[tuple[int, int]] = set()
        self.counts: list[list[int] | None] = []  # None: on or after a cycle
        self.stuck: list[int] = []  # the nodes without counts
        for proc in range(len(self.pids)):
            self._number(proc)
        self._index_messages()
        self._build()
        self._timestamps()

    @property
    def cyclic(self) -> bool:
        return bool(self.stuck)

    def proc(self, pid: str) -> int | None:
        return self.index.get(pid)

    def ordered(self, a: Rec, b: Rec) -> bool:
        """a happened before b, or is b (neither on or after a cycle)."""
        return self.counts[b.node][a.proc] >= a.pos  # type: ignore[index]

    # Event positions and message ids

    def _number(self, proc: int) -> None:
        pid = self.pids[proc]
        causal = self.causal[proc]
        for index, rec in enumerate(self.records[proc]):
            rec.proc = proc
            if rec.kind in ANNOTATION_KINDS:
                if index == 0:
                    self.start[proc] = rec
                    self.initial[proc] = {q: n for q, n in rec.clock.items() if q != pid}
                continue
            if rec.kind not in CAUSAL_KINDS:
                continue
            causal.append(rec)
            rec.pos = len(causal)
            self.by_own[proc].setdefault(rec.own, rec)
            best = self.prefmax[proc][-1] if self.prefmax[proc] else 0
            self.prefmax[proc].append(max(best, rec.own))

    def _index_messages(self) -> None:
        for causal in self.causal:
            for rec in causal:
                if rec.kind == "send" and rec.msg and rec.event.peer:
                    self.sends.setdefault(rec.msg, rec)
        run = 0
        for index, rec in enumerate(self.server):
            if rec.kind == "start" and index:
                run += 1
            self.server_run[id(rec)] = run
            if rec.kind == "sync" and rec.msg:
                same = self.syncs.setdefault(rec.msg, [])
                if not same or self.server_run[id(same[-1])] != run:
                    same.append(rec)

    # The graph

    def _add_node(self, rec: Rec) -> None:
        rec.node = len(self.nodes)
        self.nodes.append(rec)
        self.preds.append([])
        self.succs.append([])

    def _edge(self, a: Rec, b: Rec, *, implied: bool = False) -> None:
        self.preds[b.node].append(a.node)
        self.succs[a.node].append(b.node)
        if implied:
            self.implied.add((a.node, b.node))

    def _build(self) -> None:
        for causal in self.causal:
            for index, rec in enumerate(causal):
                self._add_node(rec)
                if index:
                    self._edge(causal[index - 1], rec)
        last: Rec | None = None
        for rec in self.server:
            if rec.kind in ("start", "receive", "sync"):
                self._add_node(rec)
                if rec.kind == "start":
                    # A new server run knows what it restored (logged or not) and
                    # nothing else of the runs before: no program-order edge.
                    self._implied_edges(rec, None)
                elif last is not None:
                    self._edge(last, rec)
                last = rec
        for causal in self.causal:
            for index, rec in enumerate(causal):
                if rec.kind not in ("receive", "sync-receive"):
                    continue
                rec.source = self._source(rec)
                if rec.source is not None:
                    self._edge(rec.source, rec)
                else:
                    self._implied_edges(rec, causal[index - 1] if index else None)
        for rec in self.server:
            if rec.kind == "receive":
                rec.source = self._source(rec)
                if rec.source is not None:
                    self._edge(rec.source, rec)

    def _source(self, rec: Rec) -> Rec | None:
        """The send a receive got (the sync a sync-receive got), if the logs have it."""
        if rec.kind == "sync-receive":
            return self._sync_of(rec) if self.has_server else None
        if rec.pid != SERVER_ID and not rec.event.peer:
            return None  # malformed: a client receive names its sender
        return self.sends.get(rec.msg or "")

    def _sync_of(self, rec: Rec) -> Rec | None:
        """The sync a sync-receive got: of the server runs that sent one with its
        msg, the first that sent it to this client with a clock it covers."""
        candidates = self.syncs.get(rec.msg or "", [])
        for sync in candidates:
            if rec.pid in (sync.event.to or ()) and all(
                rec.clock.get(q, 0) >= n for q, n in sync.clock.items()
            ):
                return sync
        return candidates[0] if candidates else None

    def _implied_edges(self, rec: Rec, prev: Rec | None) -> None:
        """Edges from the events ``rec``'s clock says it learnt of (see the module doc)."""
        if prev is not None:
            before = prev.clock
        else:
            before = self.initial[rec.proc] if rec.pid != SERVER_ID else {}
        for q, n in rec.clock.items():
            if q == rec.pid or n <= before.get(q, 0):
                continue
            proc = self.proc(q)
            source = self.by_own[proc].get(n) if proc is not None else None
            if source is not None:
                self._edge(source, rec, implied=True)

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
        self.stuck = [node for node, vector in enumerate(counts) if vector is None]

    def expected(self, vector: list[int]) -> dict[str, int]:
        """The clock an event with graph timestamp ``vector`` should have."""
        clock: dict[str, int] = {}
        for proc, count in enumerate(vector):
            if count:
                own = self.prefmax[proc][count - 1]
                if own:
                    clock[self.pids[proc]] = own
                if self.initial[proc]:
                    merge_into(clock, self.initial[proc])
        return clock

    def summary(self) -> Summary:
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
