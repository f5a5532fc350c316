"""A client's side of the protocol, without I/O: its clock, its peers, the rules.

:class:`NodeState` applies the clock rules of docs/protocol.md for process ``id``:

- local event: ``VC[id] += 1``;
- send (to a peer, or a report to the server): ``VC[id] += 1``; the frame carries VC;
- receive (a peer's message or a sync): ``VC := max(VC, C)``, then ``VC[id] += 1``.

A frame's ``seq`` is the sender's own entry after the send's tick, so ``"A#7"`` names
one message of A for good (clocks never go back: a node resumes from the clock the
server had for its id). Unicasts arrive FIFO per sender, so a node drops a unicast
``deliver`` whose ``seq`` is not above the last one it handled from that sender
(``last_seq``): a copy, as a cluster resends a relay when the node it went to
died before confirming it. The asyncio client (:mod:`vclock.asyncio.client`) drives this
class; another transport could too.

Causal broadcast (Birman, Schiper and Stephenson, 1991). Besides its clock, a
node keeps ``bdelivered``: for each process, how many of its *broadcasts* it has
delivered (its own count as delivered as soon as they are sent). A broadcast
carries the sender's ``bclock``: its ``bdelivered`` with its own entry already
counting this broadcast. A vector of broadcasts, not of all events, because the
condition below must be able to tell "the next broadcast of j" from "some later
event of j": the main clock ticks for sends, reports and receives too. A
broadcast ``m`` from ``j`` is delivered once

    m.bclock[j] == bdelivered[j] + 1   and   m.bclock[k] <= bdelivered[k] for k != j

(it is j's next broadcast, and every broadcast it depends on is delivered); until
then it waits in the hold-back queue ``held``, which is checked again after each
delivery. Delivering is a receive (merge, tick, a :class:`Message` with
``broadcast=True``). Unicast ``deliver`` frames are delivered at once, as before
(the server keeps them FIFO per sender). ``welcome.bclock`` says which
broadcasts the node will never be sent (those before it joined): they count as
delivered, or the node would wait for them forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from .clock import VectorClock
from .errors import ErrorCode, PeerError
from .protocol.frames import (
    PROTOCOL_VERSION,
    Ack,
    Broadcast,
    Bye,
    Deliver,
    Delivered,
    Error,
    Hello,
    Limits,
    PeerJoined,
    PeerLeft,
    Report,
    Send,
    ServerFrame,
    Sync,
    Welcome,
)

#: Refusals after which a frame is kept and resent on the next reconnect.
_RETRY_LATER = frozenset({ErrorCode.INBOX_FULL.value, ErrorCode.RATE_LIMITED.value})


def message_id(sender: str, seq: int) -> str:
    """The id of a message across logs and tools: ``"A#7"``."""
    return f"{sender}#{seq}"


def sync_id(cycle: int) -> str:
    """The id of a synchronization cycle's sync message: ``"sync#3"``."""
    return f"sync#{cycle}"


# Events a node reports to its user


@dataclass(frozen=True, slots=True)
class Welcomed:
    id: str
    peers: tuple[str, ...]
    clock: VectorClock  # the clock the node resumes from


@dataclass(frozen=True, slots=True)
class Message:
    """A peer's message. ``sent_clock`` is the sender's; ``clock`` is ours after receipt."""

    sender: str
    seq: int
    sent_clock: VectorClock
    body: Any
    clock: VectorClock
    broadcast: bool = False  # a causal broadcast (delivered in causal order)

    @property
    def id(self) -> str:
        return message_id(self.sender, self.seq)


@dataclass(frozen=True, slots=True)
class Synced:
    """A synchronization cycle's frontier, and our clock after merging it."""

    cycle: int
    frontier: VectorClock
    clock: VectorClock


@dataclass(frozen=True, slots=True)
class PeerChange:
    id: str
    joined: bool  # False: the peer left


@dataclass(frozen=True, slots=True)
class ServerError:
    """The server refused one of our frames; the session goes on unless it closes."""

    code: str
    message: str
    peer: str | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Goodbye:
    """The server ended the session."""

    reason: str


@dataclass(frozen=True, slots=True)
class Acked:
    """Resume sessions: our frame ``seq`` is durable on the server."""

    seq: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection was lost; a reconnecting node is trying to get it back."""

    reason: str


Event = Welcomed | Message | Synced | PeerChange | ServerError | Goodbye | Acked | Disconnected


class SavedNode(msgspec.Struct, kw_only=True):
    """What a node keeps on disk between runs (``vclock client --state FILE``)."""

    id: str
    clock: VectorClock
    delivered: int = 0
    unacked: list[Send | Report | Broadcast] = msgspec.field(default_factory=list)
    bdelivered: VectorClock = msgspec.field(default_factory=VectorClock)
    held: list[Deliver] = msgspec.field(default_factory=list)  # broadcasts held back
    last_seq: dict[str, int] = msgspec.field(default_factory=dict)  # unicasts, per sender
    # The event-log lines of the events this state includes, saved before they are
    # appended to the log: a crash in between is repaired on restart (write-ahead).
    journal: list[str] = msgspec.field(default_factory=list)


class NodeState:
    """One client's protocol state.

    Args:
        id: the id to ask for in ``hello``; ``None`` lets the server pick one.
        token: the token for servers that require authentication.
        resume: ask for a resume session: the server keeps our messages while we
            are away and acknowledges our frames; we deduplicate deliveries by
            their number and resend what was not acknowledged after a reconnect.
        delta: ask for delta-encoded clocks (fewer bytes with many processes).
    """

    def __init__(
        self,
        id: str | None = None,
        *,
        token: str | None = None,
        resume: bool = False,
        delta: bool = True,
    ) -> None:
        self.id = id
        self.token = token
        self.resume = resume
        self.delta = delta
        self.clock = VectorClock()
        self.peers: list[str] = []
        self.welcomed = False
        self.delivered = 0  # resume: the last delivery number handled
        self.unacked: dict[int, Send | Report | Broadcast] = {}  # resume: seq -> frame
        self.bdelivered = VectorClock()  # broadcasts delivered, per sender (own included)
        self.held: list[Deliver] = []  # broadcasts received but not yet causally next
        self.last_seq: dict[str, int] = {}  # per sender: the seq of its last unicast handled
        self.limits: Limits | None = None  # the server's, if its welcome announced them

    def hello(self) -> Hello:
        """The first frame of every session (a new one after each reconnect)."""
        self.welcomed = False
        return Hello(
            v=PROTOCOL_VERSION, id=self.id, token=self.token, resume=self.resume, delta=self.delta
        )

    def save(self) -> SavedNode:
        """The state to persist so a restarted node carries on where it stopped."""
        return SavedNode(
            id=self._own_id(),
            clock=self.clock,
            delivered=self.delivered,
            unacked=list(self.unacked.values()),
            bdelivered=self.bdelivered,
            held=list(self.held),
            last_seq=dict(self.last_seq),
        )

    def restore(self, saved: SavedNode) -> None:
        """Carry on from a saved state (before the first hello)."""
        if self.id is not None and saved.id != self.id:
            raise ValueError(f"the saved state is for {saved.id!r}, not {self.id!r}")
        self.id = saved.id
        self.clock = self.clock.merge(saved.clock)
        self.delivered = max(self.delivered, saved.delivered)
        self.unacked = {frame.seq: frame for frame in saved.unacked}
        self.bdelivered = self.bdelivered.merge(saved.bdelivered)
        self.held = list(saved.held)
        self.last_seq = dict(saved.last_seq)

    def to_resend(self) -> list[Send | Report | Broadcast]:
        """After a reconnect's welcome: the frames to send again, in order."""
        return list(self.unacked.values())

    # Our own events

    def local_event(self) -> VectorClock:
        """Record a local event; returns the new clock."""
        self.clock = self.clock.tick(self._own_id())
        return self.clock

    def send(self, to: str, body: Any = None) -> Send:
        """Tick for a send and build the ``send`` frame carrying a copy of our clock."""
        clock = self.local_event()
        frame = Send(to=to, seq=clock[self._own_id()], clock=clock, body=body)
        if self.resume:
            self.unacked[frame.seq] = frame
        return frame

    def report(self) -> Report:
        """Tick for a send to the server and build the ``report`` frame."""
        clock = self.local_event()
        frame = Report(seq=clock[self._own_id()], clock=clock)
        if self.resume:
            self.unacked[frame.seq] = frame
        return frame

    def broadcast(self, body: Any = None) -> Broadcast:
        """Tick for a broadcast to every other client and build the ``broadcast`` frame.

        Our own broadcast counts as delivered to us at once (it is in our past).
        """
        clock = self.local_event()
        own = self._own_id()
        self.bdelivered = self.bdelivered.tick(own)
        frame = Broadcast(seq=clock[own], clock=clock, bclock=self.bdelivered, body=body)
        if self.resume:
            self.unacked[frame.seq] = frame
        return frame

    def delivered_frame(self) -> Delivered:
        """Resume sessions: the frame acknowledging every delivery handled so far."""
        return Delivered(upto=self.delivered)

    # What the server sent

    def receive(self, frame: ServerFrame) -> Event | None:
        """Apply one frame from the server and say what happened (``None``: a
        delivery we already handled, replayed after a reconnect; ignore it).

        A broadcast can release several held-back broadcasts at once, or none:
        use :meth:`receive_all`, which returns every event. This method returns
        the last of them (None when there are none), for frames that are not
        broadcasts it is the same as ``receive_all`` with one event.

        Raises:
            PeerError: the server broke the protocol (a frame before ``welcome``).
        """
        events = self.receive_all(frame)
        return events[-1] if events else None

    def receive_all(self, frame: ServerFrame) -> list[Event]:
        """Apply one frame from the server; every event it causes, in order.

        Empty for a replayed delivery already handled, and for a broadcast that is
        held back (or was delivered before). A broadcast, or a ``welcome``, may
        release held-back broadcasts: each is a :class:`Message` in the list.

        Raises:
            PeerError: the server broke the protocol (a frame before ``welcome``).
        """
        if isinstance(frame, Deliver) and frame.bclock is not None:
            return self._receive_broadcast(frame)
        event = self._receive_one(frame)
        events: list[Event] = [] if event is None else [event]
        if isinstance(frame, Welcome):
            events += self._welcome_broadcasts(frame.bclock)
        return events

    def _receive_one(self, frame: ServerFrame) -> Event | None:
        if not self.welcomed and not isinstance(frame, Welcome | Error | Bye):
            raise PeerError(
                f"server sent {type(frame).__name__} before welcome",
                code=ErrorCode.UNEXPECTED_FRAME,
            )
        match frame:
            case Welcome():
                self.welcomed = True
                self.id = frame.id
                self.peers = list(frame.peers)
                self.limits = frame.limits
                self.clock = self.clock.merge(frame.clock)
                return Welcomed(frame.id, tuple(frame.peers), self.clock)
            case Deliver():
                if frame.n is not None:
                    if frame.n <= self.delivered:
                        return None
                    self.delivered = frame.n
                if frame.seq <= self.last_seq.get(frame.sender, 0):
                    return None  # had it: a copy (a relay resent after a node failed)
                self.last_seq[frame.sender] = frame.seq
                self.clock = self.clock.receive(frame.clock, self._own_id())
                return Message(frame.sender, frame.seq, frame.clock, frame.body, self.clock)
            case Sync():
                self.clock = self.clock.receive(frame.clock, self._own_id())
                return Synced(frame.cycle, frame.clock, self.clock)
            case PeerJoined():
                if frame.id not in self.peers:
                    self.peers.append(frame.id)
                return PeerChange(frame.id, joined=True)
            case PeerLeft():
                if frame.id in self.peers:
                    self.peers.remove(frame.id)
                return PeerChange(frame.id, joined=False)
            case Error():
                if frame.seq is not None and frame.code not in _RETRY_LATER:
                    self.unacked.pop(frame.seq, None)  # refused for good: never resend
                return ServerError(frame.code, frame.message, frame.peer, frame.seq)
            case Ack():
                for seq in [seq for seq in self.unacked if seq <= frame.seq]:
                    del self.unacked[seq]
                return Acked(frame.seq, frame.duplicate)
            case Bye():
                return Goodbye(frame.reason)
        raise AssertionError(f"unhandled frame {frame!r}")  # pragma: no cover

    # Causal broadcast (Birman-Schiper-Stephenson)

    def _receive_broadcast(self, frame: Deliver) -> list[Event]:
        if not self.welcomed:
            raise PeerError("server sent Deliver before welcome", code=ErrorCode.UNEXPECTED_FRAME)
        if frame.n is not None:
            if frame.n <= self.delivered:
                return []
            self.delivered = frame.n
        assert frame.bclock is not None
        if frame.bclock[frame.sender] <= self.bdelivered[frame.sender]:
            return []  # delivered before (or counted as such by welcome.bclock)
        self.held.append(frame)
        return self._release_held()

    def deliverable(self, frame: Deliver) -> bool:
        """The BSS condition: ``frame`` is its sender's next broadcast, and every
        broadcast it depends on has been delivered."""
        assert frame.bclock is not None
        sender, delivered = frame.sender, self.bdelivered
        if frame.bclock[sender] != delivered[sender] + 1:
            return False
        return all(count <= delivered[pid] for pid, count in frame.bclock.items() if pid != sender)

    def _release_held(self) -> list[Event]:
        """Deliver every held broadcast that has become deliverable, in causal order."""
        events: list[Event] = []
        progress = True
        while progress:
            progress = False
            for index, frame in enumerate(self.held):
                assert frame.bclock is not None
                if frame.bclock[frame.sender] <= self.bdelivered[frame.sender]:
                    del self.held[index]  # a duplicate, already covered
                    progress = True
                    break
                if self.deliverable(frame):
                    del self.held[index]
                    events.append(self._deliver_broadcast(frame))
                    progress = True
                    break
        return events

    def _deliver_broadcast(self, frame: Deliver) -> Message:
        assert frame.bclock is not None
        self.bdelivered = self.bdelivered.merge(
            VectorClock._trusted({frame.sender: frame.bclock[frame.sender]})
        )
        self.clock = self.clock.receive(frame.clock, self._own_id())
        return Message(frame.sender, frame.seq, frame.clock, frame.body, self.clock, broadcast=True)

    def _welcome_broadcasts(self, baseline: VectorClock | None) -> list[Event]:
        """Count the broadcasts we will never be sent as delivered.

        A resume node that still holds broadcasts back keeps its counts: the
        server's inbox replays whatever they wait for. Otherwise (a new node, or a
        plain session, which misses what was sent while it was away) we start
        from the server's counts, and held broadcasts they cover are dropped.
        """
        if not baseline or (self.resume and self.held):
            return []
        self.bdelivered = self.bdelivered.merge(baseline)
        return self._release_held()

    def _own_id(self) -> str:
        if self.id is None:
            raise RuntimeError("the server has not assigned this node an id yet; wait for welcome")
        return self.id
