"""A client's side of the protocol, without I/O: its clock, its peers, the rules.

:class:`ClientState` applies the clock rules of docs/protocol.md for process ``id``:

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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from .clock import VectorClock
from .errors import ErrorCode, HoldBackFull, LimitExceeded, PeerError
from .events import message_id
from .protocol.codec import encode_frame, encode_json
from .protocol.frames import (
    MAX_PEERS_PAGE,
    PROTOCOL_VERSION,
    Ack,
    Broadcast,
    Bye,
    Deliver,
    Delivered,
    Error,
    Frame,
    Hello,
    Limits,
    PeerJoined,
    PeerLeft,
    Peers,
    PeersChanged,
    PeersMode,
    Report,
    Send,
    ServerFrame,
    Sync,
    Welcome,
    Who,
)

#: Broadcasts a node holds back at most before it ends the session with
#: :class:`~vclock.errors.HoldBackFull`: as many messages as a server keeps for
#: one away client by default (``max_inbox``), so the replay of a full inbox fits.
DEFAULT_MAX_HELD = 10_000

#: The bytes a frame takes on the wire, newline excluded (default: encoded in full).
Measure = Callable[[Frame], int]
_F = TypeVar("_F", Send, Report, Broadcast)


def _size_bound(frame: Send | Report | Broadcast) -> int:
    """At least the bytes of ``frame`` as one line, newline excluded, from its body's
    encoding alone: every character of an id (``to`` and the clocks' ids, the
    longest counted for all) at most 6 bytes in JSON, every counter and ``seq`` at
    most 19 digits; 128 bytes cover the field names and punctuation."""
    clock = frame.clock._entries
    entries, longest = len(clock), max(map(len, clock), default=0)
    if type(frame) is Broadcast:
        bclock = frame.bclock._entries
        entries += len(bclock)
        longest = max(longest, max(map(len, bclock), default=0))
    per_entry = 24 + 6 * longest  # "id":counter,
    body = getattr(frame, "body", None)
    body_bytes = 0 if body is None else len(encode_json(body))
    to = 6 * len(getattr(frame, "to", ""))
    return 128 + entries * per_entry + to + body_bytes


# Events a node reports to its user


@dataclass(frozen=True, slots=True)
class Welcomed:
    """The server welcomed us: the session starts (again, after a reconnect)."""

    id: str
    """Our id in this session."""
    peers: tuple[str, ...]
    """The other clients connected then."""
    clock: VectorClock
    """The clock the node resumes from."""


@dataclass(frozen=True, slots=True)
class Message:
    """A peer's message. ``sent_clock`` is the sender's; ``clock`` is ours after receipt."""

    sender: str
    """The sending client's id."""
    seq: int
    """The sender's sequence number of this frame."""
    sent_clock: VectorClock
    """The sender's clock when it sent the message."""
    body: Any
    """What the sender attached (any JSON value; None if nothing)."""
    clock: VectorClock
    """Our clock after the receipt."""
    broadcast: bool = False
    """A causal broadcast, delivered in causal order (docs/protocol.md 13)."""

    @property
    def id(self) -> str:
        """The message's id in event logs: ``SENDER#SEQ``."""
        return message_id(self.sender, self.seq)


@dataclass(frozen=True, slots=True)
class Synced:
    """A synchronization cycle's frontier, and our clock after merging it."""

    cycle: int
    """The server's cycle number."""
    frontier: VectorClock
    """The merge of every clock the server has seen."""
    clock: VectorClock
    """Our clock after merging the frontier."""


@dataclass(frozen=True, slots=True)
class PeerChange:
    """Another client joined or left."""

    id: str
    """The other client's id."""
    joined: bool
    """True: it joined; False: it left."""


@dataclass(frozen=True, slots=True)
class PeerPage:
    """One page of the connected clients (the answer to :meth:`ClientState.who`):
    ``next`` is the ``after`` of the next page, None on the last one."""

    ids: tuple[str, ...]
    next: str | None


@dataclass(frozen=True, slots=True)
class ServerError:
    """The server refused one of our frames; the session goes on unless it closes.

    ``frame`` is the refused frame when the node still had it (a resume session
    keeps its frames until they are answered). It is never resent automatically
    (docs/protocol.md 7.2): to try again, send its body again, as a new frame.
    """

    code: str
    """The error code (:class:`~vclock.errors.ErrorCode`, docs/protocol.md 5)."""
    message: str
    """What the server said, for people."""
    peer: str | None = None
    """The peer the refused frame was for, if any."""
    seq: int | None = None
    """The refused frame's sequence number, if it had one."""
    frame: Send | Report | Broadcast | None = None
    """The refused frame itself, if the node still had it."""


@dataclass(frozen=True, slots=True)
class Goodbye:
    """The server ended the session."""

    reason: str
    """Why, as the server said it."""


@dataclass(frozen=True, slots=True)
class Acked:
    """Resume sessions: our frame ``seq`` is durable on the server."""

    seq: int
    """The acknowledged frame's sequence number."""
    duplicate: bool
    """The server had it already (a resend after a reconnect)."""


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection was lost; a reconnecting node is trying to get it back."""

    reason: str
    """What happened to the connection."""


ClientEvent = (
    Welcomed
    | Message
    | Synced
    | PeerChange
    | PeerPage
    | ServerError
    | Goodbye
    | Acked
    | Disconnected
)


class SavedClient(msgspec.Struct, kw_only=True):
    """What a node keeps on disk between runs (``vclock client --state FILE``)."""

    id: str
    clock: VectorClock
    delivered: int = 0
    unacked: list[Send | Report | Broadcast] = msgspec.field(default_factory=list)
    bdelivered: VectorClock = msgspec.field(default_factory=VectorClock)
    held: list[Deliver] = msgspec.field(default_factory=list)  # broadcasts held back
    # broadcasts we will never be sent, not counted yet: a held one comes first
    bskip: VectorClock = msgspec.field(default_factory=VectorClock)
    last_seq: dict[str, int] = msgspec.field(default_factory=dict)  # unicasts, per sender
    # The event-log lines of the events this state includes, saved before they are
    # appended to the log: a crash in between is repaired on restart (write-ahead).
    journal: list[str] = msgspec.field(default_factory=list)


class ClientState:
    """One client's protocol state.

    Args:
        id: the id to ask for in ``hello``; ``None`` lets the server pick one.
        token: the token for servers that require authentication.
        resume: ask for a resume session: the server keeps our messages while we
            are away and acknowledges our frames; we deduplicate deliveries by
            their number and resend what was not acknowledged after a reconnect.
        delta: ask for delta-encoded clocks (fewer bytes with many processes).
        max_held: causal broadcasts held back at most (:class:`HoldBackFull` past it).
        peers: what to be told about the other clients (docs/protocol.md 4.5):
            ``"all"`` (every change, as it happens), ``"batched"`` (the same,
            several changes to a frame) or ``"none"`` (nothing: :attr:`peers`
            stays empty; ask with :meth:`who`). Either way the events are
            :class:`PeerChange`, one per id.
    """

    def __init__(
        self,
        id: str | None = None,
        *,
        token: str | None = None,
        resume: bool = False,
        delta: bool = True,
        max_held: int = DEFAULT_MAX_HELD,
        peers: PeersMode = "all",
    ) -> None:
        self.id = id
        self.peers_mode: PeersMode = peers
        self.token = token
        self.resume = resume
        self.delta = delta
        self.max_held = max_held
        self.clock = VectorClock()
        self.peers: list[str] = []
        self.welcomed = False
        self.delivered = 0  # resume: the last delivery number handled (its inbox's)
        self.ack_due = False  # resume: deliveries handled since the last `delivered` frame
        self.unacked: dict[int, Send | Report | Broadcast] = {}  # resume: seq -> frame
        self.bdelivered = VectorClock()  # broadcasts delivered, per sender (own included)
        self.held: list[Deliver] = []  # broadcasts received but not yet causally next
        #: per sender, broadcasts we will never be sent (welcome.bclock) that are not
        #: counted as delivered yet, because a held broadcast of theirs comes first
        self.bskip = VectorClock()
        self.last_seq: dict[str, int] = {}  # per sender: the seq of its last unicast handled
        self.limits: Limits | None = None  # the server's, if its welcome announced them

    def hello(self) -> Hello:
        """The first frame of every session (a new one after each reconnect)."""
        self.welcomed = False
        return Hello(
            v=PROTOCOL_VERSION,
            id=self.id,
            token=self.token,
            resume=self.resume,
            delta=self.delta,
            peers=self.peers_mode,
        )

    def save(self) -> SavedClient:
        """The state to persist so a restarted node carries on where it stopped."""
        return SavedClient(
            id=self._own_id(),
            clock=self.clock,
            delivered=self.delivered,
            unacked=list(self.unacked.values()),
            bdelivered=self.bdelivered,
            held=list(self.held),
            last_seq=dict(self.last_seq),
            bskip=self.bskip,
        )

    def restore(self, saved: SavedClient) -> None:
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
        self.bskip = self.bskip.merge(saved.bskip)

    def to_resend(self) -> list[Send | Report | Broadcast]:
        """After a reconnect's welcome: the frames to send again, in order."""
        return list(self.unacked.values())

    # Our own events

    def local_event(self) -> VectorClock:
        """Record a local event; returns the new clock."""
        self.clock = self.clock.tick(self._own_id())
        return self.clock

    def send(self, to: str, body: Any = None, *, measure: Measure | None = None) -> Send:
        """Tick for a send and build the ``send`` frame carrying a copy of our clock.

        ``measure`` tells a frame's size on the wire (see :meth:`check_limits`).

        Raises:
            LimitExceeded: the frame is over the server's limits; nothing changed.
        """
        own = self._own_id()
        clock = self.clock.tick(own)
        frame = Send(to=to, seq=clock._entries[own], clock=clock, body=body)
        return self._sent(frame, measure)

    def report(self, *, measure: Measure | None = None) -> Report:
        """Tick for a send to the server and build the ``report`` frame.

        Raises:
            LimitExceeded: the frame is over the server's limits; nothing changed.
        """
        clock = self.clock.tick(self._own_id())
        frame = Report(seq=clock[self._own_id()], clock=clock)
        return self._sent(frame, measure)

    def broadcast(self, body: Any = None, *, measure: Measure | None = None) -> Broadcast:
        """Tick for a broadcast to every other client and build the ``broadcast`` frame.

        Our own broadcast counts as delivered to us at once (it is in our past).

        Raises:
            LimitExceeded: the frame is over the server's limits; nothing changed.
        """
        own = self._own_id()
        clock = self.clock.tick(own)
        bclock = self.bdelivered.tick(own)
        frame = Broadcast(seq=clock[own], clock=clock, bclock=bclock, body=body)
        frame = self._sent(frame, measure)
        self.bdelivered = bclock
        return frame

    def check_limits(
        self, frame: Send | Report | Broadcast, measure: Measure | None = None
    ) -> None:
        """Refuse a frame the server would refuse for its size (docs/protocol.md 9.1,
        9.2), judged by the limits its ``welcome`` announced (none: no check).

        The server cannot decode such a frame, so on a delta-encoded connection
        it would not move its reference while ours moved (section 12): every
        later clock would be read wrong. ``measure(frame)`` gives the bytes the
        frame takes on the wire; the default, its full encoding, is the most it
        can take (a resend opens a new connection with a full clock).

        Raises:
            LimitExceeded: too many clock entries, or too many bytes.
        """
        limits = self.limits
        if limits is None:
            return
        entries = len(frame.clock._entries)
        if type(frame) is Broadcast:
            entries = max(entries, len(frame.bclock._entries))
        if entries > limits.max_clock_entries:
            raise LimitExceeded("max_clock_entries", entries, limits.max_clock_entries)
        if measure is None and _size_bound(frame) <= limits.max_frame_size:
            return  # fits for sure: no need to encode the whole frame to count it
        size = measure(frame) if measure is not None else len(encode_frame(frame)) - 1
        if size > limits.max_frame_size:
            raise LimitExceeded("max_frame_size", size, limits.max_frame_size)

    def _sent(self, frame: _F, measure: Measure | None) -> _F:
        """Take a frame built from a ticked clock as sent, once it passed the limits."""
        self.check_limits(frame, measure)
        self.clock = frame.clock
        if self.resume:
            self.unacked[frame.seq] = frame
        return frame

    def who(self, after: str | None = None, limit: int = MAX_PEERS_PAGE) -> Who:
        """The frame asking for one page of the connected clients' ids, in id
        order, after ``after``; the server answers with a :class:`PeerPage`."""
        return Who(after=after, limit=limit)

    def delivered_frame(self) -> Delivered:
        """Resume sessions: the frame acknowledging every delivery handled so far."""
        self.ack_due = False
        return Delivered(upto=self.delivered)

    def bye(self, reason: str = "") -> Bye:
        """The frame that ends the session for good.

        The server drops a held inbox on it, and the id's next inbox numbers its
        deliveries from 1 again: ``delivered`` starts again from 0 (protocol 7.7).
        """
        self.delivered = 0
        self.ack_due = False
        return Bye(reason=reason)

    # What the server sent

    def receive(self, frame: ServerFrame) -> ClientEvent | None:
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

    def receive_all(self, frame: ServerFrame) -> list[ClientEvent]:
        """Apply one frame from the server; every event it causes, in order.

        Empty for a replayed delivery already handled, and for a broadcast that is
        held back (or was delivered before). A broadcast, or a ``welcome``, may
        release held-back broadcasts: each is a :class:`Message` in the list.

        Raises:
            PeerError: the server broke the protocol (a frame before ``welcome``).
        """
        if isinstance(frame, Deliver) and frame.bclock is not None:
            return self._receive_broadcast(frame)
        if isinstance(frame, PeersChanged) and self.welcomed:
            return self._peers_changed(frame)
        event = self._receive_one(frame)
        events: list[ClientEvent] = [] if event is None else [event]
        if isinstance(frame, Welcome):
            events += self._welcome_broadcasts(frame.bclock, frame.resumed)
        return events

    def _receive_one(self, frame: ServerFrame) -> ClientEvent | None:
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
                if frame.resumed is False:
                    # A new inbox (the old one was dropped, or lost with the
                    # server's memory): its numbers start again from 1 (7.7).
                    self.delivered = 0
                return Welcomed(frame.id, tuple(frame.peers), self.clock)
            case Deliver():
                if frame.n is not None and frame.n <= self.delivered:
                    return None
                self._handled(frame.n)
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
            case Peers():
                return PeerPage(tuple(frame.ids), frame.next)
            case Error():
                # Whatever the code, the error is the frame's answer: resent later
                # with its old seq it would be taken for a duplicate (7.2, 7.3), so
                # it is handed to the application, which may send it again anew.
                refused = self.unacked.pop(frame.seq, None) if frame.seq is not None else None
                return ServerError(frame.code, frame.message, frame.peer, frame.seq, refused)
            case Ack():
                for seq in [seq for seq in self.unacked if seq <= frame.seq]:
                    del self.unacked[seq]
                return Acked(frame.seq, frame.duplicate)
            case Bye():
                return Goodbye(frame.reason)
        raise AssertionError(f"unhandled frame {frame!r}")  # pragma: no cover

    def _peers_changed(self, frame: PeersChanged) -> list[ClientEvent]:
        """A batch of changes: one :class:`PeerChange` per id, left ones first
        (the frame is a net change: no id is in both lists)."""
        gone = set(frame.left)
        present = set(self.peers) - gone
        self.peers = [p for p in self.peers if p not in gone]
        self.peers += [p for p in frame.joined if p not in present]
        events: list[ClientEvent] = [PeerChange(i, joined=False) for i in frame.left]
        return events + [PeerChange(i, joined=True) for i in frame.joined]

    # Causal broadcast (Birman-Schiper-Stephenson)

    def _receive_broadcast(self, frame: Deliver) -> list[ClientEvent]:
        if not self.welcomed:
            raise PeerError("server sent Deliver before welcome", code=ErrorCode.UNEXPECTED_FRAME)
        if frame.n is not None and frame.n <= self.delivered:
            return []
        assert frame.bclock is not None
        sender, count = frame.sender, frame.bclock[frame.sender]
        if count <= self.bdelivered[sender] or any(
            held.sender == sender and held.bclock is not None and held.bclock[sender] == count
            for held in self.held
        ):
            self._handled(frame.n)
            return []  # delivered before (or counted as such by welcome.bclock), or held
        if len(self.held) >= self.max_held and not self.deliverable(frame):
            # Not taken (nor acknowledged): a resume session's inbox keeps it.
            raise HoldBackFull(len(self.held), self.max_held, self._waiting_for(self.held[0]))
        self._handled(frame.n)
        self.held.append(frame)
        return self._release_held()

    def _handled(self, n: int | None) -> None:
        """A numbered delivery was taken (delivered, held back or dropped as a copy)."""
        if n is not None:
            self.delivered = n
            self.ack_due = self.resume

    def _waiting_for(self, frame: Deliver) -> str:
        """The first broadcast that held-back ``frame`` waits for, in words."""
        assert frame.bclock is not None
        sender = frame.sender
        missing = [(sender, self.bdelivered[sender] + 1)]
        missing += [
            (pid, self.bdelivered[pid] + 1)
            for pid, count in frame.bclock.items()
            if pid != sender and count > self.bdelivered[pid]
        ]
        if frame.bclock[sender] == self.bdelivered[sender] + 1:
            del missing[0]  # it is its sender's next one: it waits for another's
        pid, number = missing[0]
        return f"broadcast {number} of {pid!r} ({message_id(sender, frame.seq)} is held)"

    def deliverable(self, frame: Deliver) -> bool:
        """The BSS condition: ``frame`` is its sender's next broadcast, and every
        broadcast it depends on has been delivered."""
        assert frame.bclock is not None
        sender, delivered = frame.sender, self.bdelivered
        if frame.bclock[sender] != delivered[sender] + 1:
            return False
        return all(count <= delivered[pid] for pid, count in frame.bclock.items() if pid != sender)

    def _release_held(self) -> list[ClientEvent]:
        """Deliver every held broadcast that has become deliverable, in causal order,
        counting the broadcasts of ``bskip`` as delivered as soon as they are next."""
        events: list[ClientEvent] = []
        while True:
            events += self._deliver_deliverable()
            if not self._skip_missing():
                return events

    def _deliver_deliverable(self) -> list[ClientEvent]:
        events: list[ClientEvent] = []
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

    def _welcome_broadcasts(
        self, baseline: VectorClock | None, resumed: bool | None
    ) -> list[ClientEvent]:
        """Count the broadcasts we will never be sent as delivered.

        A resume node that still holds broadcasts back keeps its counts when the
        server kept its inbox: the inbox replays whatever they wait for. Otherwise
        (a new node, a plain session, which misses what was sent while it was
        away, or a new inbox, ``resumed`` false, as the old one and whatever it
        still had are gone) we start from the server's counts.

        A held broadcast those counts cover reached us all the same: it is
        delivered (in causal order), never dropped. Only the broadcasts we lack
        are counted as delivered, up to just below each held one.
        """
        if not baseline or (self.resume and self.held and resumed is not False):
            return []
        self.bskip = self.bskip.merge(baseline)
        return self._release_held()

    def _skip_missing(self) -> bool:
        """Count the broadcasts of ``bskip`` as delivered, for each sender up to
        just below its first held broadcast (that one reached us: it is delivered
        in its turn, never dropped). True if any was counted."""
        if not self.bskip:
            return False
        held: dict[str, list[int]] = {}
        for frame in self.held:
            assert frame.bclock is not None
            held.setdefault(frame.sender, []).append(frame.bclock[frame.sender])
        skipped: dict[str, int] = {}
        pending: dict[str, int] = {}
        for pid, count in self.bskip.items():
            mine = self.bdelivered[pid]
            above = [n for n in held.get(pid, ()) if n > mine]
            upto = min(count, min(above) - 1) if above else count
            if upto > mine:
                skipped[pid] = upto
            if count > max(mine, upto):
                pending[pid] = count
        self.bskip = VectorClock._trusted(pending)
        if not skipped:
            return False
        self.bdelivered = self.bdelivered.merge(VectorClock._trusted(skipped))
        return True

    def _own_id(self) -> str:
        if self.id is None:
            raise RuntimeError("the server has not assigned this node an id yet; wait for welcome")
        return self.id
