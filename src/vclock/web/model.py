"""What the dashboard knows: a bounded model of the service, fed with the hub's actions.

:class:`LiveModel` is sans-I/O like the hub: :meth:`LiveModel.observe` takes one
action (the notices of :mod:`vclock.hub.actions` and the frames the server sent) and
the time, and updates the model; nothing here reads a clock, opens a socket or
starts a task. :class:`vclock.web.Dashboard` feeds it from ``Server.observe``.

**What the server knows, and so what is shown.** The server sees each client's
*sends* and *reports* with the clock they carry, and knows what it *delivered*
(a peer's message, a sync) and when. It never sees a client's local events, nor
its clock after a receive. So:

- a client's clock in the table is the **last clock it reported** (in a send or a
  report): ``latest[id]`` of the hub, the pointwise max of those clocks. The
  client's real clock may be ahead by its unreported local events and receives;
- on the diagram, a client's sends and reports are dots on its lane, with their
  clocks. A delivery is an arrow from the send to a **hollow dot** on the
  receiver's lane, and a sync a dashed arrow from the server's sync diamond to a
  hollow dot: the hollow dot carries the clock the message carried, because the
  receiver's clock after it is unknown;
- the edges (what a click lights up as causal past and future) are only those the
  server can vouch for: a client's sends in order; send → delivery; a client's
  deliveries in order (one connection, read in order; but not from a causal
  broadcast, which the client may hold back); the client's last send before a
  delivery → the delivery; a delivery → the first later send whose clock covers
  what was delivered (that knowledge reached the client through the delivery or
  after it on the same connection); the server's own events in order; each
  client's last send → a sync whose frontier holds it. A delivery and a later send
  that does not cover it stay unordered: the send may have left before the message
  arrived. (tests/unit/test_web.py checks every edge against a simulated run.)

x is causal, as in the offline diagram: a dot's rank is one more than the largest
rank of its predecessors. Every edge points from an older dot to a newer one, so
ranks are computed once, as dots arrive, and never move.

Everything is bounded: the diagram keeps the last ``max_events`` dots, the
ShiViz log its first ``max_log_bytes``, the table ``max_clients`` clients (those
that left go first).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..clock import VectorClock
from ..events import EVERYONE, SERVER_ID, message_id, sync_id
from ..hub import Action, Joined, Left, Outgoing, PeerId, Received, Refused, SyncCycle
from ..protocol.frames import Deliver, Report
from ..tools.drawing import peer_label
from ..tools.spacetime import Arrow, DiagramEvent, Marker
from .shivizlog import ShivizLog

__all__ = [
    "ClientView",
    "DiagramChanges",
    "Entry",
    "LiveModel",
    "RateMeter",
    "Refusal",
    "SyncView",
]

#: Rates shown on the page: messages relayed, reports, deliveries, syncs sent, refusals.
RATE_NAMES = ("messages", "reports", "deliveries", "syncs", "cycles", "refused")


@dataclass(slots=True)
class ClientView:
    """One row of the clients table."""

    id: str
    address: str = ""
    connected: bool = True
    #: The last clock the client reported (its ``latest`` on the hub); its real
    #: clock may be ahead by local events and receives the server does not see.
    clock: VectorClock = field(default_factory=VectorClock)
    #: The max of every clock the server sent it (deliveries and syncs).
    sent: VectorClock = field(default_factory=VectorClock)
    sends: int = 0  # messages to peers
    reports: int = 0  # clocks to the server alone
    delivered: int = 0  # peer messages the server delivered to it
    syncs: int = 0
    refused: int = 0
    since: float = 0.0  # when it (last) joined
    heard: float | None = None  # when its last clock arrived
    version: int = 0  # the model's change counter at its last change


@dataclass(slots=True)
class SyncView:
    """The last synchronization cycle, and totals over the run."""

    cycle: int = 0
    at: float | None = None
    clients: int = 0
    frontier: VectorClock = field(default_factory=VectorClock)
    synced: tuple[str, ...] = ()
    cycles: int = 0  # cycles seen
    sent: int = 0  # syncs sent, over all cycles
    last_sent_cycle: int | None = None  # the last cycle that sent any


@dataclass(frozen=True, slots=True)
class Refusal:
    at: float
    who: str  # client id, or address before hello
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Entry:
    """One dot of the live diagram, the arrows into it and its direct predecessors.

    ``event.rank`` is absolute (from the start of the run); ``serial`` orders dots.
    """

    serial: int
    event: DiagramEvent
    arrows: tuple[Arrow, ...]
    preds: tuple[str, ...]


@dataclass(slots=True)
class DiagramChanges:
    """What happened to the diagram since the last :meth:`LiveModel.take_changes`.

    When ``overflow`` is set, too much happened to list: draw the window afresh.
    """

    added: list[Entry] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # ids of dots that scrolled off
    markers: list[tuple[int, Marker]] = field(default_factory=list)  # (serial, marker)
    markers_removed: int = 0  # every marker up to this serial scrolled off
    overflow: bool = False


class RateMeter:
    """Counts per whole second, over the last ``history`` seconds."""

    def __init__(self, names: Sequence[str], history: int = 60) -> None:
        self.names = tuple(names)
        self.history = history
        self._buckets: deque[tuple[int, dict[str, int]]] = deque()

    def add(self, name: str, now: float, n: int = 1) -> None:
        second = int(now)
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append((second, dict.fromkeys(self.names, 0)))
            while self._buckets and self._buckets[0][0] <= second - self.history:
                self._buckets.popleft()
        self._buckets[-1][1][name] += n

    def rates(self, now: float, window: int = 5) -> dict[str, float]:
        """Per second, over the last ``window`` whole seconds (the current one excluded)."""
        second = int(now)
        totals = dict.fromkeys(self.names, 0)
        for at, counts in self._buckets:
            if second - window <= at < second:
                for name, n in counts.items():
                    totals[name] += n
        return {name: round(total / window, 2) for name, total in totals.items()}

    def series(self, name: str, now: float) -> list[int]:
        """Counts of ``name`` in each of the last ``history`` whole seconds, oldest first."""
        second = int(now)
        by_second = {at: counts[name] for at, counts in self._buckets}
        return [by_second.get(at, 0) for at in range(second - self.history, second)]


@dataclass(slots=True)
class _Lane:
    """Per client: the dots the next one on its lane follows."""

    dots: int = 0  # dots so far, for ids "A:1", "A:2" ...
    last_out: str | None = None  # its last send or report
    last_out_rank: int = 0
    last_out_count: int = 0  # that clock's own entry
    last_in: str | None = None  # the last delivery or sync to it
    last_in_rank: int = 0
    #: The last delivery or sync to it that is taken in on arrival: anything but a
    #: causal broadcast, which the client may hold back until its turn.
    last_prompt: str | None = None
    last_prompt_rank: int = 0
    #: deliveries not yet known to have arrived: (dot id, rank, clock delivered)
    pending: deque[tuple[str, int, VectorClock]] = field(default_factory=lambda: deque(maxlen=256))


class LiveModel:
    """The dashboard's model of the service. Feed it with :meth:`observe`.

    Args:
        max_events: dots kept for the live diagram; older ones scroll off.
        max_log_bytes: the size of the ShiViz log kept for the download (its start).
        max_clients: rows kept in the clients table; clients that left go first.
        resolve: maps a :data:`~vclock.hub.PeerId` to its client id, for peers that
            joined before the model saw their ``Joined`` (``Server.hub.client_id``).
    """

    def __init__(
        self,
        *,
        max_events: int = 2000,
        max_log_bytes: int = 16 << 20,
        max_clients: int = 1000,
        resolve: Callable[[PeerId], str | None] | None = None,
    ) -> None:
        if max_events < 1 or max_clients < 1:
            raise ValueError("max_events and max_clients must be at least 1")
        self.max_events = max_events
        self.max_clients = max_clients
        self._resolve = resolve
        self.version = 0  # bumped by every change; rows carry the version of theirs
        self.clients: dict[str, ClientView] = {}
        self.sync = SyncView()
        self.rates = RateMeter(RATE_NAMES)
        self.refusals: deque[Refusal] = deque(maxlen=8)
        self.recent_cycles: deque[SyncCycle] = deque(maxlen=5)
        self.cycle_times: deque[float] = deque(maxlen=5)
        self.events_seen = 0  # dots ever added
        self._peers: dict[PeerId, str] = {}
        # The diagram window
        self.window: deque[Entry] = deque()
        self.markers: deque[tuple[int, Marker]] = deque()  # (serial, marker)
        self._serials = itertools.count(1)
        self._rank: dict[str, int] = {}
        self._lanes: dict[str, _Lane] = {}
        self._server = _Lane()
        self._sends: dict[tuple[str, int], str] = {}  # (sender, seq) -> dot id
        self._changes = DiagramChanges()
        #: What the server saw, for the ShiViz download (see vclock.web.shivizlog).
        self.log = ShivizLog(max_log_bytes)

    # Input

    def observe(self, action: Action, now: float) -> None:
        """Take in one action of the hub, carried out at ``now`` (seconds since the epoch)."""
        match action:
            case Joined(peer=peer, client_id=client_id, address=address):
                self._joined(peer, client_id, address, now)
            case Left(peer=peer, client_id=client_id):
                self._left(peer, client_id, now)
            case Received(client_id=client_id, frame=frame):
                self._received(client_id, frame, now)
            case Outgoing(peer=peer, frame=Deliver() as deliver):
                receiver = self._client_of(peer)
                if receiver is not None:
                    self._delivered(receiver, deliver, now)
            case SyncCycle():
                self._sync_cycle(action, now)
            case Refused(peer=peer, address=address, error=error):
                who = self._client_of(peer)
                if who is not None and who in self.clients:
                    self._row(who).refused += 1
                self.refusals.append(Refusal(now, who or address, error.code.value, str(error)))
                self.rates.add("refused", now)
                self.version += 1
            case _:
                pass  # other frames, closes and store actions show nothing new

    def seed(self, clients: Iterable[str], latest: dict[str, VectorClock], now: float) -> None:
        """Start from a running server: its connected ``clients`` and ``latest`` clocks."""
        for client_id in clients:
            row = self._row(client_id)
            row.connected = True
            row.since = now
            row.clock = latest.get(client_id, VectorClock())

    # Output

    def take_changes(self) -> DiagramChanges:
        """What the diagram gained and lost since the last call."""
        changes, self._changes = self._changes, DiagramChanges()
        return changes

    def rows(self, since: int = -1) -> list[ClientView]:
        """The clients table, in the order they first appeared; only rows changed after
        version ``since`` when given."""
        return [row for row in self.clients.values() if row.version > since]

    def shiviz_log(self) -> str:
        """The client events the server saw, as one ShiViz execution with its header
        (the events it did not see are there as ``unseen``; see :mod:`.shivizlog`)."""
        return self.log.text()

    def rank_of(self, dot_id: str) -> int | None:
        """The rank of a dot in the window; None once it scrolled off."""
        return self._rank.get(dot_id)

    # Notices

    def _joined(self, peer: PeerId, client_id: str, address: str, now: float) -> None:
        self._peers[peer] = client_id
        row = self._row(client_id)
        row.connected = True
        row.address = address
        row.since = now
        lane = self._lane(client_id)
        at = max(lane.last_out_rank, lane.last_in_rank, self._server.last_out_rank, self._floor())
        self._marker(Marker(client_id, "join", at + 0.5, row.clock.to_dict(), _stamp(now), address))

    def _left(self, peer: PeerId, client_id: str, now: float) -> None:
        self._peers.pop(peer, None)
        row = self._row(client_id)
        row.connected = False
        lane = self._lane(client_id)
        at = max(lane.last_out_rank, lane.last_in_rank, self._floor())
        self._marker(
            Marker(client_id, "leave", at + 0.5, row.clock.to_dict(), _stamp(now), row.address)
        )

    def _received(self, client_id: str, frame: Any, now: float) -> None:
        """A send (``to`` a peer), a report (to the server), or a broadcast (to everyone)."""
        row = self._row(client_id)
        row.clock = row.clock.merge(frame.clock)
        row.heard = now
        msg = message_id(client_id, frame.seq)
        report = isinstance(frame, Report)
        to = SERVER_ID if report else getattr(frame, "to", None) or EVERYONE
        if report:
            row.reports += 1
            self.rates.add("reports", now)
        else:
            row.sends += 1
            self.rates.add("messages", now)
        self.log.add(client_id, frame.clock, f"send {msg} -> {peer_label(to)}")

        lane = self._lane(client_id)
        preds = [lane.last_out] if lane.last_out else []
        ranks = [lane.last_out_rank]
        arrived = None  # the newest delivery this clock shows has arrived
        while lane.pending and lane.pending[0][2] <= frame.clock:
            arrived = lane.pending.popleft()
        if arrived is not None:
            preds.append(arrived[0])
            ranks.append(arrived[1])
        dot = self._add(client_id, "send", frame.clock, now, preds, ranks, msg=msg, peer=to)
        lane.last_out, lane.last_out_rank = dot.event.id, dot.event.rank
        lane.last_out_count = frame.clock[client_id]
        if not report:
            self._sends[(client_id, frame.seq)] = dot.event.id
            return
        # A report: the server's receipt of it, on the server lane, as in the offline diagram.
        server = self._server
        preds = [dot.event.id] + ([server.last_out] if server.last_out else [])
        got = self._add(
            SERVER_ID,
            "receive",
            frame.clock,
            now,
            preds,
            [dot.event.rank, server.last_out_rank],
            msg=msg,
            peer=client_id,
            arrows=[Arrow(dot.event.id, "", msg, "report")],
        )
        server.last_out, server.last_out_rank = got.event.id, got.event.rank

    def _delivered(self, receiver: str, deliver: Deliver, now: float) -> None:
        row = self._row(receiver)
        row.delivered += 1
        row.sent = row.sent.merge(deliver.clock)
        self.rates.add("deliveries", now)
        msg = message_id(deliver.sender, deliver.seq)
        broadcast = getattr(deliver, "bclock", None) is not None
        what = "broadcast" if broadcast else "message"
        source = self._sends.get((deliver.sender, deliver.seq))
        arrows = [Arrow(source, "", msg, "message")] if source in self._rank else []
        self._incoming(
            receiver,
            "deliver",
            deliver.clock,
            now,
            [source] if source in self._rank else [],
            msg=msg,
            peer=deliver.sender,
            arrows=arrows,
            desc=f"the server delivered {what} {msg} to {receiver}; the clock shown is the one "
            f"it carried: {receiver}'s clock after it is not known to the server",
            held=broadcast,
        )

    def _sync_cycle(self, cycle: SyncCycle, now: float) -> None:
        s = self.sync
        s.cycle, s.at, s.clients = cycle.cycle, now, cycle.clients
        s.frontier, s.synced = cycle.frontier, cycle.synced
        s.cycles += 1
        self.recent_cycles.append(cycle)
        self.cycle_times.append(now)
        self.rates.add("cycles", now)
        self.version += 1
        if not cycle.synced:
            return
        s.sent += len(cycle.synced)
        s.last_sent_cycle = cycle.cycle
        self.rates.add("syncs", now, len(cycle.synced))
        # The sync diamond follows the server's previous event and, on each lane, the
        # last send its frontier holds.
        server = self._server
        preds = [server.last_out] if server.last_out else []
        ranks = [server.last_out_rank]
        for pid, lane in self._lanes.items():
            if lane.last_out is not None and lane.last_out_count <= cycle.frontier[pid]:
                preds.append(lane.last_out)
                ranks.append(lane.last_out_rank)
        msg = sync_id(cycle.cycle)
        diamond = self._add(
            SERVER_ID, "sync", cycle.frontier, now, preds, ranks, msg=msg, to=cycle.synced
        )
        server.last_out, server.last_out_rank = diamond.event.id, diamond.event.rank
        for client_id in cycle.synced:
            row = self._row(client_id)
            row.syncs += 1
            row.sent = row.sent.merge(cycle.frontier)
            self._incoming(
                client_id,
                "sync-deliver",
                cycle.frontier,
                now,
                [diamond.event.id],
                msg=msg,
                peer=SERVER_ID,
                arrows=[Arrow(diamond.event.id, "", msg, "sync")],
                desc=f"the server sent {client_id} the frontier of cycle {cycle.cycle}; "
                f"{client_id}'s clock after it is not known to the server",
            )

    # The diagram

    def _incoming(
        self,
        client_id: str,
        kind: str,
        clock: VectorClock,
        now: float,
        sources: list[str],
        *,
        msg: str,
        peer: str,
        arrows: list[Arrow],
        desc: str,
        held: bool = False,
    ) -> None:
        """A delivery or sync to ``client_id``: after its last send the server had when it
        sent this, and after the previous one it took in on arrival (one connection, read
        in order). A ``held`` one (a causal broadcast, which the client may hold back)
        is not put before the next."""
        lane = self._lane(client_id)
        preds = list(sources)
        ranks = [self._rank[s] for s in sources]
        before = ((lane.last_prompt, lane.last_prompt_rank), (lane.last_out, lane.last_out_rank))
        for dot, rank in before:
            if dot is not None:
                preds.append(dot)
                ranks.append(rank)
        entry = self._add(
            client_id, kind, clock, now, preds, ranks, msg=msg, peer=peer, arrows=arrows, desc=desc
        )
        lane.last_in, lane.last_in_rank = entry.event.id, entry.event.rank
        if not held:
            lane.last_prompt, lane.last_prompt_rank = entry.event.id, entry.event.rank
        lane.pending.append((entry.event.id, entry.event.rank, clock))

    def _add(
        self,
        pid: str,
        kind: str,
        clock: VectorClock,
        now: float,
        preds: list[str],
        ranks: list[int],
        *,
        msg: str | None = None,
        peer: str | None = None,
        to: Sequence[str] = (),
        arrows: Sequence[Arrow] = (),
        desc: str | None = None,
    ) -> Entry:
        lane = self._server if pid == SERVER_ID else self._lane(pid)
        lane.dots += 1
        dot_id = f"{pid}:{lane.dots}"
        # One more than any predecessor; and not left of the window, so that a lane
        # that starts late (a new client) starts where the picture is.
        rank = max([self._floor(), *(r + 1 for r in ranks)])
        event = DiagramEvent(
            dot_id, pid, kind, rank, clock.to_dict(), _stamp(now), msg, peer, tuple(to), desc
        )
        entry = Entry(
            next(self._serials),
            event,
            tuple(Arrow(a.source, dot_id, a.msg, a.kind) for a in arrows),
            tuple(p for p in preds if p in self._rank),
        )
        self._rank[dot_id] = rank
        self.window.append(entry)
        self.events_seen += 1
        self._changes.added.append(entry)
        while len(self.window) > self.max_events:
            self._evict(self.window.popleft())
        if len(self._changes.added) > self.max_events:  # nobody is taking them: start afresh
            self._changes = DiagramChanges(overflow=True)
        return entry

    def _evict(self, entry: Entry) -> None:
        event = entry.event
        del self._rank[event.id]
        if event.kind == "send" and event.msg and event.pid != SERVER_ID:
            sender, _, seq = event.msg.rpartition("#")
            self._sends.pop((sender, int(seq)), None)
        if not self._changes.overflow:
            self._changes.removed.append(event.id)
        floor = self._floor()
        while self.markers and self.markers[0][1].position < floor - 1:
            self._changes.markers_removed = self.markers.popleft()[0]

    def _marker(self, marker: Marker) -> None:
        item = (next(self._serials), marker)
        self.markers.append(item)
        self._changes.markers.append(item)
        if len(self.markers) > self.max_events:
            self._changes.markers_removed = self.markers.popleft()[0]

    # Bookkeeping

    def _floor(self) -> int:
        """The rank of the oldest dot in the window (1 when there is none)."""
        return self.window[0].event.rank if self.window else 1

    def _client_of(self, peer: PeerId) -> str | None:
        client_id = self._peers.get(peer)
        if client_id is None and self._resolve is not None:
            client_id = self._resolve(peer)
        return client_id

    def _row(self, client_id: str) -> ClientView:
        self.version += 1
        row = self.clients.get(client_id)
        if row is None:
            row = self.clients[client_id] = ClientView(client_id)
            if len(self.clients) > self.max_clients:
                self._forget_a_client()
        row.version = self.version
        return row

    def _forget_a_client(self) -> None:
        gone = next((r.id for r in self.clients.values() if not r.connected), None)
        if gone is None:
            gone = next(iter(self.clients))
        del self.clients[gone]

    def _lane(self, client_id: str) -> _Lane:
        lane = self._lanes.get(client_id)
        if lane is None:
            lane = self._lanes[client_id] = _Lane()
        return lane


def _stamp(now: float) -> str:
    """Wall time as ``HH:MM:SS.mmm`` (UTC), for tooltips."""
    seconds = now % 86400
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:06.3f} UTC"
