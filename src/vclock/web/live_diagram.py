"""The live diagram: a bounded window of dots, arrows and ticks, built from what the
server saw.

:class:`LiveDiagram` is sans-I/O like the hub: :class:`vclock.web.LiveModel` tells it
what the hub did, with the time; nothing here reads a clock. :mod:`.render` draws it.

**What the server knows, and so what is drawn.** The server sees each client's
*sends* and *reports* with the clock they carry, and knows what it *delivered*
(a peer's message, a sync) and when. It never sees a client's local events, nor
its clock after a receive. So:

- a client's sends and reports are dots on its lane, with their clocks. A delivery
  is an arrow from the send to a **hollow dot** on the receiver's lane, and a sync a
  dashed arrow from the server's sync diamond to a hollow dot: the hollow dot
  carries the clock the message carried, because the receiver's clock after it is
  unknown;
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
rank of its predecessors, and more than the rank of the dot before it on its lane
(which it may be concurrent with: a send that left before a delivery arrived), so
two dots never share a place. Every edge points from an older dot to a newer one,
so ranks are computed once, as dots arrive, and never move.

The window keeps the last ``max_events`` dots; what scrolled off is said in the
next :meth:`LiveDiagram.take_changes`.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..clock import VectorClock
from ..events import SERVER_ID, message_id, sync_id
from ..hub import SyncCycle
from ..protocol.frames import Deliver
from ..tools.spacetime import Arrow, DiagramEvent, Marker

__all__ = ["DiagramChanges", "Entry", "LiveDiagram"]


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
    """What happened to the diagram since the last :meth:`LiveDiagram.take_changes`.

    When ``overflow`` is set, too much happened to list: draw the window afresh.
    """

    added: list[Entry] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # ids of dots that scrolled off
    markers: list[tuple[int, Marker]] = field(default_factory=list)  # (serial, marker)
    markers_removed: int = 0  # every marker up to this serial scrolled off
    overflow: bool = False


@dataclass(slots=True)
class _Lane:
    """Per client: the dots the next one on its lane follows."""

    dots: int = 0  # dots so far, for ids "A:1", "A:2" ...
    last_rank: int = 0  # of its newest dot: the next one goes right of it
    last_out: str | None = None  # its last send or report
    last_out_rank: int = 0
    last_out_count: int = 0  # that clock's own entry
    last_in_rank: int = 0
    #: The last delivery or sync to it that is taken in on arrival: anything but a
    #: causal broadcast, which the client may hold back until its turn.
    last_prompt: str | None = None
    last_prompt_rank: int = 0
    #: deliveries not yet known to have arrived: (dot id, rank, clock delivered)
    pending: deque[tuple[str, int, VectorClock]] = field(default_factory=lambda: deque(maxlen=256))


class LiveDiagram:
    """The window of the live diagram.

    Args:
        max_events: dots kept; older ones scroll off.
    """

    def __init__(self, *, max_events: int = 2000) -> None:
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self.max_events = max_events
        self.events_seen = 0  # dots ever added
        self.window: deque[Entry] = deque()
        self.markers: deque[tuple[int, Marker]] = deque()  # (serial, marker)
        self._serials = itertools.count(1)
        self._rank: dict[str, int] = {}
        self._lanes: dict[str, _Lane] = {}
        self._server = _Lane()
        self._sends: dict[str, str] = {}  # msg id -> the dot of its send
        self._changes = DiagramChanges()

    # Output

    def take_changes(self) -> DiagramChanges:
        """What the diagram gained and lost since the last call."""
        changes, self._changes = self._changes, DiagramChanges()
        return changes

    def rank_of(self, dot_id: str) -> int | None:
        """The rank of a dot in the window; None once it scrolled off."""
        return self._rank.get(dot_id)

    # What the hub did

    def joined(self, client_id: str, clock: VectorClock, address: str, now: float) -> None:
        """A join tick: ``clock`` is the client's last reported one."""
        lane = self._lane(client_id)
        at = max(lane.last_out_rank, lane.last_in_rank, self._server.last_out_rank, self._floor())
        self._marker(Marker(client_id, "join", at + 0.5, clock.to_dict(), _stamp(now), address))

    def left(self, client_id: str, clock: VectorClock, address: str, now: float) -> None:
        """A leave tick: ``clock`` is the client's last reported one."""
        lane = self._lane(client_id)
        at = max(lane.last_out_rank, lane.last_in_rank, self._floor())
        self._marker(Marker(client_id, "leave", at + 0.5, clock.to_dict(), _stamp(now), address))

    def sent(self, client_id: str, seq: int, clock: VectorClock, to: str, now: float) -> None:
        """A send ``to`` a peer or to everyone, or a report (``to`` the server), which
        the server's receipt of it follows on the server lane, as in the offline diagram."""
        msg = message_id(client_id, seq)
        lane = self._lane(client_id)
        preds = [lane.last_out] if lane.last_out else []
        ranks = [lane.last_out_rank]
        arrived = None  # the newest delivery this clock shows has arrived
        while lane.pending and lane.pending[0][2] <= clock:
            arrived = lane.pending.popleft()
        if arrived is not None:
            preds.append(arrived[0])
            ranks.append(arrived[1])
        dot = self._add(client_id, "send", clock, now, preds, ranks, msg=msg, peer=to)
        lane.last_out, lane.last_out_rank = dot.event.id, dot.event.rank
        lane.last_out_count = clock[client_id]
        if to != SERVER_ID:
            self._sends[msg] = dot.event.id
            return
        server = self._server
        preds = [dot.event.id] + ([server.last_out] if server.last_out else [])
        got = self._add(
            SERVER_ID,
            "receive",
            clock,
            now,
            preds,
            [dot.event.rank, server.last_out_rank],
            msg=msg,
            peer=client_id,
            arrows=[Arrow(dot.event.id, "", msg, "report")],
        )
        server.last_out, server.last_out_rank = got.event.id, got.event.rank

    def delivered(self, receiver: str, deliver: Deliver, now: float) -> None:
        msg = message_id(deliver.sender, deliver.seq)
        broadcast = getattr(deliver, "bclock", None) is not None
        what = "broadcast" if broadcast else "message"
        source = self._sends.get(msg)
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

    def sync_cycle(self, cycle: SyncCycle, now: float) -> None:
        """A cycle that sent syncs: the server's diamond, and a hollow dot per client."""
        if not cycle.synced:
            return
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

    # Dots and ticks

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
        lane.last_in_rank = entry.event.rank
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
        # that starts late (a new client) starts where the picture is. And right of the
        # lane's newest dot, even when that one is concurrent with this one (a send that
        # left before a delivery arrived): two dots of a lane never share a place.
        rank = max([self._floor(), lane.last_rank + 1, *(r + 1 for r in ranks)])
        lane.last_rank = rank
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
            self._sends.pop(event.msg, None)
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

    def _floor(self) -> int:
        """The rank of the oldest dot in the window (1 when there is none)."""
        return self.window[0].event.rank if self.window else 1

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
