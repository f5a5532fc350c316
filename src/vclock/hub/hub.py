"""The hub: registry, routing and synchronization for many clients, without I/O.

The I/O layer owns connections and gives each an opaque :data:`PeerId`. It tells
the hub what happened (:meth:`Hub.connect`, :meth:`Hub.receive`,
:meth:`Hub.disconnect`, and :meth:`Hub.begin_sync_cycle` when its timer fires)
and carries out the actions the hub returns (:mod:`vclock.hub.actions`): frames
to write, connections to close, state to store, and notices to print or log.

The clock rules (docs/protocol.md): the hub relays a ``send`` with the sender's
clock unchanged; ``latest[i]`` is the pointwise max of every clock received from
client ``i`` and survives its disconnection; a synchronization cycle sends the
frontier F (the max of all ``latest[i]``, kept incrementally) to each connected
client that has not been sent, nor itself reported, everything in F.

Resume sessions (``hello.resume``) add at-least-once delivery: the hub numbers
each message to a held client (``deliver.n``), keeps it in the client's inbox
until a ``delivered`` frame covers it, replays the inbox when the client comes
back, and acknowledges the client's own frames (``ack``) once stored; a resent
frame it already has is acknowledged as a duplicate and not delivered twice.

Causal broadcast (``broadcast``): the hub fans a broadcast out to every other
connected or held client as a ``deliver`` carrying the sender's broadcast
vector ``bclock``; the *clients* hold broadcasts back until they are causally
next (Birman-Schiper-Stephenson, :class:`vclock.node.NodeState`). The hub only
keeps, per sender, how many broadcasts it relayed (``broadcasts``), so that a
newcomer's ``welcome.bclock`` says which broadcasts it will never be sent.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from ..auth import Authenticator
from ..clock import VectorClock, merge_all
from ..errors import ErrorCode, FrameError, PeerError, ProtocolError
from ..protocol.codec import encode_json
from ..protocol.frames import (
    PROTOCOL_VERSION,
    Ack,
    Broadcast,
    Bye,
    ClientFrame,
    Deliver,
    Delivered,
    Error,
    Hello,
    Limits,
    PeerJoined,
    PeerLeft,
    Report,
    Send,
    Sync,
    Welcome,
    frame_type,
)
from .actions import (
    Action,
    Close,
    DropInbox,
    Expired,
    Forward,
    Joined,
    Left,
    Outgoing,
    PeerId,
    Received,
    Refused,
    SaveBroadcasts,
    SaveClock,
    SaveCycle,
    SaveInbox,
    SaveMessage,
    SyncCycle,
)
from .inbox import HeldBytes, Inbox
from .state import SessionState, next_state

#: The id the server uses for itself in logs; no client may take it.
SERVER_ID = "server"
#: Numbered deliveries a resume client may leave unacknowledged (flow control).
DEFAULT_WINDOW = 256

#: The longest line a client may send, by default (the protocol's 1 MiB).
DEFAULT_MAX_FRAME_SIZE = 1024 * 1024
#: How far a clock may carry another id's entry past what that id reported itself
#: (docs/protocol.md 9.7). Not 0: a server that lost its memory, a cluster node that
#: hears an id's reports late, and apps that also pass clocks outside vclock all
#: see honest clocks ahead of what the server heard. Any bound keeps an id usable:
#: each of its own reports lets others raise it by at most this much.
DEFAULT_MAX_LEAD = 1_000_000
#: What a frame carries besides its clock and body ("type", "to", "seq", ...).
_FRAME_OVERHEAD = 256

#: Errors that are a normal race or a full receiver, not the client misbehaving.
_FORGIVEN = frozenset({ErrorCode.UNKNOWN_PEER, ErrorCode.INBOX_FULL, ErrorCode.STORE_FULL})


def _entry_bytes(client_id: str) -> int:
    """The most bytes one clock entry of this id can take on the wire:
    ``"id":9223372036854775807,``."""
    return len(encode_json(client_id)) + 21


@dataclass(slots=True)
class HubState:
    """Everything the hub must get back after a restart (see vclock.store)."""

    cycle: int = 0
    latest: dict[str, VectorClock] = field(default_factory=dict)
    inboxes: dict[str, Inbox] = field(default_factory=dict)
    broadcasts: VectorClock = field(default_factory=VectorClock)  # relayed, per sender


@dataclass(slots=True)
class _Session:
    address: str
    state: SessionState = SessionState.AWAITING_HELLO
    client_id: str | None = None
    resume: bool = False
    errors: int = 0
    known: VectorClock = field(default_factory=VectorClock)  # what this client has or was sent


class Hub:
    """Routes clocks between clients and runs synchronization cycles.

    Args:
        sync_interval: seconds between cycles, told to clients in ``welcome``
            (the timer itself belongs to the I/O layer).
        auth: when set, every hello must carry an id and a token it accepts.
        max_errors: refused frames a session may send before it is closed
            (``unknown-peer`` and ``inbox-full`` are not held against it).
        max_inbox: messages kept for one held client; past that, senders get
            ``inbox-full``.
        max_inbox_bytes: bytes kept for one held client (``inbox-full`` too).
        max_held_bytes: bytes kept for all held clients together, each message
            counted once however many inboxes hold it; past that, senders get
            ``store-full``.
        max_held: held clients at once; a resume hello for one more gets
            ``too-many-held``.
        max_ids: ids the hub keeps track of (every id it has a clock entry for,
            and every connected one); a hello for one more gets ``too-many-ids``.
            Fewer when a clock with an entry for each would not fit in
            ``max_frame_size`` bytes: a sync, and an honest client's full clock,
            always fit in a frame.
        max_frame_size: the longest line the I/O layer accepts (see max_ids).
        max_lead: how far above what the hub has heard from an id itself
            (its own entry in its own frames) another client's clock may put
            that id's entry (``forged-clock`` beyond). 0 for one server: every
            entry a client can honestly know came through it. A cluster node
            allows a lead for what a client that changed nodes knows and the new
            node has not heard yet.
        window: deliveries a resume client may have unacknowledged; more wait in
            its inbox until ``delivered`` frames make room (flow control, so a
            long replay never swamps a client).
        max_id_length: the longest id a hello may ask for (the server's clock
            limit, so that a welcomed client's clocks are accepted).
        state: what a previous run left (see :mod:`vclock.store`); default empty.
        cluster: this hub is one node of a cluster (:mod:`vclock.cluster`): it
            returns :class:`Forward` actions for messages to clients of other
            nodes, and the I/O layer tells it about them with the ``remote_*``
            methods.
        id_prefix: put after ``client-`` in assigned ids (cluster nodes use
            their node id, so that assigned ids differ across nodes).
        limits: announced in every ``welcome`` (the server's limits, most of
            them enforced by the I/O layer); None announces nothing.
    """

    def __init__(
        self,
        *,
        sync_interval: float = 5.0,
        auth: Authenticator | None = None,
        max_errors: int = 20,
        max_inbox: int = 10_000,
        window: int = DEFAULT_WINDOW,
        max_id_length: int = 64,
        state: HubState | None = None,
        cluster: bool = False,
        id_prefix: str = "",
        limits: Limits | None = None,
        max_inbox_bytes: int = 64 << 20,
        max_held_bytes: int = 1 << 30,
        max_held: int = 10_000,
        max_ids: int = 65_536,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_lead: int = DEFAULT_MAX_LEAD,
    ) -> None:
        self.sync_interval = sync_interval
        self.limits = limits
        self.auth = auth
        self.max_errors = max_errors
        self.max_inbox = max_inbox
        self.max_inbox_bytes = max_inbox_bytes
        self.max_held_bytes = max_held_bytes
        self.max_held = max_held
        self.max_ids = max_ids
        self.max_lead = max_lead
        self._id_budget = max_frame_size - _FRAME_OVERHEAD
        self.window = window
        self.max_id_length = max_id_length
        state = state or HubState()
        self.cycle = state.cycle
        self.latest = state.latest
        self.inboxes = state.inboxes
        self.broadcasts = state.broadcasts
        self.frontier = merge_all(self.latest.values())
        #: per id, the highest own entry heard from that id itself (in its frames)
        self.said: dict[str, int] = {i: clock[i] for i, clock in self.latest.items()}
        #: every id with an entry in the frontier or ``said``, or connected, and
        #: the most bytes its entry can take (``max_ids``)
        self._ids: dict[str, int] = {}
        self._ids_bytes = 0
        self._track(self.frontier._entries)
        self._track(self.said)
        self.held = HeldBytes()
        for inbox in self.inboxes.values():
            self.held.count(inbox)
        self._sessions: dict[PeerId, _Session] = {}
        self._by_id: dict[str, PeerId] = {}
        self._auto_ids = itertools.count(1)
        self.cluster = cluster
        self.id_prefix = id_prefix
        self._remote: dict[str, None] = {}  # clients of other nodes, in join order
        #: Cluster mode: away resume clients whose inbox another node keeps.
        self.remote_held: set[str] = set()

    @property
    def clients(self) -> list[str]:
        """The ids of the connected clients, in the order they joined."""
        return list(self._by_id)

    @property
    def remote_clients(self) -> list[str]:
        """Cluster mode: the clients connected to other nodes."""
        return list(self._remote)

    def peer_of(self, client_id: str) -> PeerId | None:
        """The connection of client ``client_id`` here (None: not connected here)."""
        return self._by_id.get(client_id)

    def client_id(self, peer: PeerId) -> str | None:
        """The id of the client on connection ``peer`` (None before its hello)."""
        session = self._sessions.get(peer)
        return session.client_id if session is not None else None

    @property
    def state(self) -> HubState:
        """The durable part of the hub (shared, not copied)."""
        return HubState(self.cycle, self.latest, self.inboxes, self.broadcasts)

    # Events from the I/O layer

    def connect(self, peer: PeerId, address: str) -> list[Action]:
        """A connection was accepted. ``address`` is for messages (``HOST:PORT``)."""
        if peer in self._sessions:
            raise ValueError(f"peer {peer} is already connected")
        self._sessions[peer] = _Session(address)
        return []

    def receive(self, peer: PeerId, event: ClientFrame | ProtocolError) -> list[Action]:
        """A frame arrived from ``peer``, or a protocol error was found in its input
        (a line that failed to decode, a rate limit hit by the I/O layer).

        This is the one entry point for client input: a protocol error becomes an
        ``error`` frame to that peer (and a ``Close`` if the session cannot go on),
        and never affects another client.
        """
        session = self._sessions[peer]
        if session.state is SessionState.CLOSED:
            return []  # closing: the rest of what it sent is ignored
        try:
            if isinstance(event, ProtocolError):
                raise event
            state = next_state(session.state, frame_type(event))
            actions = self._handle(peer, session, event)
            session.state = state
            return actions
        except ProtocolError as exc:
            return self._refuse(peer, session, exc)

    def disconnect(self, peer: PeerId) -> list[Action]:
        """The connection is gone (closed by either side, or lost). Idempotent.

        A held client's inbox stays: its messages wait for it to come back.
        """
        session = self._sessions.pop(peer, None)
        if session is None or session.client_id is None:
            return []
        client_id = session.client_id
        del self._by_id[client_id]
        if client_id not in self.said and client_id not in self.frontier._entries:
            self._untrack(client_id)  # reserved at hello, never used
        actions: list[Action] = [Left(peer, client_id, session.address)]
        left = PeerLeft(id=client_id)
        actions += [Outgoing(other, left) for other in self._by_id.values()]
        return actions

    def drop_held(self, client_id: str) -> list[Action]:
        """Drop the inbox of ``client_id`` if it is held and the client away: the
        server's hold limit passed (the hub reads no clock; the server decides).
        From then on a ``send`` to it gets ``unknown-peer``, as after a ``bye``."""
        inbox = self.inboxes.get(client_id)
        if inbox is None or client_id in self._by_id:
            return []
        self._drop_inbox(client_id)
        return [DropInbox(client_id), Expired(client_id, len(inbox.messages))]

    def begin_sync_cycle(self) -> list[Action]:
        """Run one synchronization cycle: send the frontier to whoever lacks part of it."""
        self.cycle += 1
        frontier = self.frontier
        actions: list[Action] = [SaveCycle(self.cycle)]
        synced: list[str] = []
        sync = Sync(cycle=self.cycle, clock=frontier)
        for client_id, peer in self._by_id.items():
            session = self._sessions[peer]
            # known <= frontier always holds (every clock it merges went into the
            # frontier too), so it lacks something exactly when the totals differ.
            if session.known.total != frontier.total:
                session.known = frontier
                synced.append(client_id)
                actions.append(Outgoing(peer, sync))
        actions.insert(0, SyncCycle(self.cycle, len(self._by_id), frontier, tuple(synced)))
        return actions

    def shutdown(self, reason: str = "server shutting down") -> list[Action]:
        """Say bye to every connection; the I/O layer then closes them."""
        bye = Bye(reason=reason)
        actions: list[Action] = []
        for peer in self._sessions:
            actions += [Outgoing(peer, bye), Close(peer, reason)]
        return actions

    # Events from the cluster (vclock.cluster): other nodes and their clients

    def free_id(self) -> str:
        """An id to assign to a client whose hello has none (``client-N``)."""
        return self._free_id()

    def remote_joined(self, client_id: str) -> list[Action]:
        """A client connected to another node: tell the local clients."""
        if client_id in self._remote or client_id in self._by_id:
            return []
        self._remote[client_id] = None
        joined = PeerJoined(id=client_id)
        return [Outgoing(peer, joined) for peer in self._by_id.values()]

    def remote_left(self, client_id: str) -> list[Action]:
        """A client of another node left (or its node died)."""
        if client_id not in self._remote:
            return []
        del self._remote[client_id]
        if client_id in self._by_id:
            return []
        left = PeerLeft(id=client_id)
        return [Outgoing(peer, left) for peer in self._by_id.values()]

    def deliver_remote(self, deliver: Deliver, to: str | None = None) -> list[Action]:
        """Another node relays a message: a broadcast (``to`` None, ``deliver.bclock``
        set) for every local client but its sender, or a unicast for client ``to``.

        The sender's clock is taken into the frontier only, not into ``latest``:
        ``latest`` says which of a client's frames this node has already taken
        (a resent one at or below it is acked as a duplicate), and relays arrive
        in per-receiver order, so a later frame of the sender may be here before
        an earlier one that is still on its way, or lost with its node. A client
        that moves here resumes from the clock the cluster stored for it
        (:meth:`merge_latest`). A unicast for a client that is neither here nor
        held here is dropped: it left while the message travelled.
        """
        self._set_frontier(self.frontier.merge(deliver.clock))
        self._heard(deliver.sender, deliver.clock[deliver.sender])
        actions: list[Action] = []
        if to is None:
            if deliver.bclock is None:
                return actions
            return actions + self._fan_out(deliver)
        inbox = self.inboxes.get(to)
        target = self._by_id.get(to)
        if inbox is not None:
            actions += self._hold(to, inbox, deliver, self.held.size(deliver)[0])
        elif target is not None:
            actions.append(Outgoing(target, msgspec.structs.replace(deliver, n=None)))
            receiver = self._sessions[target]
            receiver.known = receiver.known.merge(deliver.clock)
        return actions

    def merge_latest(self, client_id: str, clock: VectorClock) -> None:
        """Take in the clock the cluster stored for ``client_id``, which is moving
        here (in memory only: the node that accepted its frames stored it, once
        everything they caused was durable)."""
        latest = self.latest.get(client_id)
        if latest is not None and clock <= latest:
            return
        self.latest[client_id] = clock if latest is None else latest.merge(clock)
        self._set_frontier(self.frontier.merge(clock))
        self._heard(client_id, clock[client_id])

    def adopt_inbox(self, client_id: str, inbox: Inbox | None) -> None:
        """Cluster mode: the inbox of ``client_id`` as the cluster stores it (None:
        not held), read before its hello; it replaces what this node had."""
        if client_id in self.inboxes:
            self._drop_inbox(client_id)
        if inbox is not None:
            self.held.count(inbox)
            self.inboxes[client_id] = inbox

    def forget_inbox(self, client_id: str) -> None:
        """Cluster mode: ``client_id`` is back on another node, which now keeps its
        inbox; drop this node's copy (nothing to store: the inbox lives on)."""
        if client_id not in self._by_id and client_id in self.inboxes:
            self._drop_inbox(client_id)

    def merge_frontier(self, clock: VectorClock, said: VectorClock | None = None) -> None:
        """Take in another node's frontier (the next cycle syncs to the cluster's)
        and what it heard from each id itself (``said``, for ``max_lead``)."""
        self._set_frontier(self.frontier.merge(clock))
        if said is not None:
            for client_id, count in said._entries.items():
                self._heard(client_id, count)

    # Frame handlers

    def _handle(self, peer: PeerId, session: _Session, frame: ClientFrame) -> list[Action]:
        match frame:
            case Hello():
                return self._hello(peer, session, frame)
            case Send():
                return self._send(peer, session, frame)
            case Broadcast():
                return self._broadcast(peer, session, frame)
            case Report():
                actions = self._update(peer, session, frame)
                if session.resume:
                    actions.append(Outgoing(peer, Ack(seq=frame.seq, duplicate=not actions)))
                return actions
            case Delivered():
                return self._delivered(peer, session, frame)
            case Bye():
                close = Close(peer, frame.reason or "client said bye")
                client_id = session.client_id
                if client_id is not None and client_id in self.inboxes:
                    self._drop_inbox(client_id)
                    return [close, DropInbox(client_id)]  # leaving for good
                return [close]
        raise AssertionError(f"unhandled frame {frame!r}")  # pragma: no cover

    def _hello(self, peer: PeerId, session: _Session, hello: Hello) -> list[Action]:
        if hello.v != PROTOCOL_VERSION:
            raise PeerError(
                f"protocol version {hello.v} is not supported;"
                f" this server speaks {PROTOCOL_VERSION}",
                code=ErrorCode.UNSUPPORTED_VERSION,
            )
        if self.auth is not None and not self.auth.check(hello.id, hello.token):
            # Say nothing about which part was wrong.
            raise PeerError("authentication failed", code=ErrorCode.AUTH_FAILED)
        client_id = hello.id if hello.id is not None else self._free_id()
        if client_id == SERVER_ID:
            raise PeerError(f"the id {SERVER_ID!r} is reserved", code=ErrorCode.INVALID_ID)
        if len(client_id) > self.max_id_length:
            raise PeerError(
                f"ids on this server are at most {self.max_id_length} characters",
                code=ErrorCode.INVALID_ID,
            )
        if client_id in self._by_id:
            raise PeerError(
                f"a client named {client_id!r} is already connected; pick another id",
                code=ErrorCode.DUPLICATE_ID,
                peer=client_id,
            )
        if client_id not in self._ids and not self._room_for_id(client_id):
            raise PeerError(
                f"this server keeps track of {len(self._ids)} ids, as many as fit in"
                f" one clock of {self.max_ids} entries and {self._id_budget} bytes;"
                " it takes no new id (use one it knows)",
                code=ErrorCode.TOO_MANY_IDS,
            )
        if hello.resume and client_id not in self.inboxes and len(self.inboxes) >= self.max_held:
            raise PeerError(
                f"this server already holds messages for {self.max_held} clients;"
                " it holds no more (connect without resume, or later)",
                code=ErrorCode.TOO_MANY_HELD,
            )
        self._track([client_id])
        peers = list(self._by_id)
        self._remote.pop(client_id, None)  # it moved here from another node
        everyone = peers + [r for r in self._remote if r not in self._by_id]
        session.client_id = client_id
        session.resume = hello.resume
        session.known = self.latest.get(client_id, VectorClock())
        self._by_id[client_id] = peer
        inbox = self.inboxes.get(client_id)
        welcome = Welcome(
            v=PROTOCOL_VERSION,
            id=client_id,
            peers=everyone,
            sync_interval=self.sync_interval,
            clock=session.known,
            delta=hello.delta,
            limits=self.limits,
            # Resume sessions: does the numbering of deliver.n go on (the inbox was
            # kept) or start again from 1 (a new inbox: the old one was dropped
            # by bye or --hold-for, or lost with a server without durable storage)?
            resumed=(inbox is not None) if hello.resume else None,
        )
        actions: list[Action] = [Outgoing(peer, welcome), Joined(peer, client_id, session.address)]
        joined = PeerJoined(id=client_id)
        actions += [Outgoing(self._by_id[other], joined) for other in peers]
        baseline = self._broadcast_baseline(inbox, hello.resume)
        if baseline:
            welcome = msgspec.structs.replace(welcome, bclock=baseline)
            actions[0] = Outgoing(peer, welcome)
        if inbox is not None and hello.resume:  # what arrived while it was away
            inbox.sent = inbox.acked
            actions += self._release(peer, session, inbox)
        elif inbox is not None:  # it no longer wants holding: these are the last
            for deliver in inbox.messages:
                session.known = session.known.merge(deliver.clock)
                actions.append(Outgoing(peer, deliver))
            self._drop_inbox(client_id)
            actions.append(DropInbox(client_id))
        elif hello.resume:
            self.inboxes[client_id] = Inbox(base=self.broadcasts)
            actions.append(SaveInbox(client_id, 0, self.broadcasts))
        return actions

    def _send(self, peer: PeerId, session: _Session, frame: Send) -> list[Action]:
        client_id = session.client_id
        assert client_id is not None
        inbox = self.inboxes.get(frame.to)
        deliver = Deliver(sender=client_id, seq=frame.seq, clock=frame.clock, body=frame.body)
        size = 0
        if inbox is not None and self._is_new(session, frame):
            # Refused before its clock is taken in, so that the same frame, sent
            # again later, is new to the server (not acked as a duplicate and lost).
            size = self._room_for(deliver, [(frame.to, inbox)])
        actions = self._update(peer, session, frame)
        if not actions:  # a resent frame the server already has
            return [Outgoing(peer, Ack(seq=frame.seq, duplicate=True))]
        target = self._by_id.get(frame.to)
        if inbox is not None:
            actions += self._hold(frame.to, inbox, deliver, size)
            target = None  # sent (or waiting for room) by _hold
        elif target is None and (frame.to in self._remote or frame.to in self.remote_held):
            actions.append(Forward(frame.to, deliver))  # its node delivers it
        elif target is None:
            # The clock still counts as received; only the delivery fails.
            unknown = PeerError(
                f"no client named {frame.to!r} is connected",
                code=ErrorCode.UNKNOWN_PEER,
                peer=frame.to,
                seq=frame.seq,
            )
            return actions + self._refuse(peer, session, unknown)
        if target is not None:
            actions.append(Outgoing(target, deliver))
            receiver = self._sessions[target]
            receiver.known = receiver.known.merge(frame.clock)  # it was sent this clock
        if session.resume:
            actions.append(Outgoing(peer, Ack(seq=frame.seq)))
        return actions

    def _broadcast(self, peer: PeerId, session: _Session, frame: Broadcast) -> list[Action]:
        client_id = session.client_id
        assert client_id is not None
        if not self._is_new(session, frame):  # a resent frame the server already has
            return [Outgoing(peer, Ack(seq=frame.seq, duplicate=True))]
        relayed = self.broadcasts[client_id]
        # A resume session's broadcast that was relayed already is a resend after a
        # failover (its first node died before acking it): relayed again, as some
        # may not have it; the clients that do drop the copy (docs/protocol.md 13.3).
        if frame.bclock[client_id] <= relayed and not session.resume:
            raise PeerError(
                f"bclock {frame.bclock} does not count this broadcast: {client_id!r} has had"
                f" {relayed} broadcasts relayed, so its own entry must be above that",
                code=ErrorCode.BAD_FRAME,
                seq=frame.seq,
            )
        deliver = Deliver(
            sender=client_id, seq=frame.seq, clock=frame.clock, body=frame.body, bclock=frame.bclock
        )
        # refused whole, as a send to a full inbox
        held = [
            (receiver, inbox) for receiver, inbox in self.inboxes.items() if receiver != client_id
        ]
        size = self._room_for(deliver, held) if held else 0
        actions = self._update(peer, session, frame)
        actions += self._fan_out(deliver, size)
        if self.cluster:
            actions.append(Forward(None, deliver))
        if session.resume:
            actions.append(Outgoing(peer, Ack(seq=frame.seq)))
        return actions

    def _fan_out(self, deliver: Deliver, size: int | None = None) -> list[Action]:
        """Relay a broadcast to every connected or held client but its sender
        (``size``: what it takes in an inbox, if known)."""
        sender = deliver.sender
        assert deliver.bclock is not None
        count = deliver.bclock[sender]
        actions: list[Action] = []
        if count > self.broadcasts[sender]:
            self.broadcasts = _counted(self.broadcasts, deliver)
            actions.append(SaveBroadcasts(sender, count))
        for client_id, inbox in self.inboxes.items():
            if client_id == sender:
                continue
            if size is None:
                size = self.held.size(deliver)[0]
            actions += self._hold(client_id, inbox, deliver, size)
        for client_id, target in self._by_id.items():
            if client_id == sender or client_id in self.inboxes:
                continue
            actions.append(Outgoing(target, deliver))
            receiver = self._sessions[target]
            receiver.known = receiver.known.merge(deliver.clock)
        return actions

    def _broadcast_baseline(self, inbox: Inbox | None, resume: bool) -> VectorClock | None:
        """What goes in ``welcome.bclock``: per sender, the broadcasts this client
        will not be sent. A resume client whose inbox is kept: what that inbox
        says (not this node's counts: in a cluster, broadcasts this node counted
        may still be on their way into the inbox). Otherwise everything relayed
        so far, except what waits in its inbox (those come next, in order)."""
        if resume and inbox is not None:
            return inbox.base or None
        base = self.broadcasts.to_dict()
        if inbox is not None:
            for deliver in inbox.messages:
                if deliver.bclock is not None and (deliver.n or 0) > inbox.acked:
                    sender = deliver.sender
                    base[sender] = min(base.get(sender, 0), deliver.bclock[sender] - 1)
        return VectorClock(base) if any(base.values()) else None

    def _update(
        self, peer: PeerId, session: _Session, frame: Send | Report | Broadcast
    ) -> list[Action]:
        """Take in the clock of a send or report. Returns no actions for a resent
        frame of a resume session (already taken in)."""
        if not self._is_new(session, frame):
            return []
        client_id = session.client_id
        assert client_id is not None
        frontier = self._check_claims(client_id, frame)
        latest = self.latest.get(client_id)
        clock = frame.clock if latest is None else latest.merge(frame.clock)
        self.latest[client_id] = clock
        self._set_frontier(frontier)
        self._heard(client_id, frame.seq)
        session.known = session.known.merge(frame.clock)
        return [Received(peer, client_id, session.address, frame), SaveClock(client_id, clock)]

    def _check_claims(self, client_id: str, frame: Send | Report | Broadcast) -> VectorClock:
        """What a frame says about *other* ids must be what the hub has heard: an
        entry of another id at most what that id said itself (plus ``max_lead``),
        no new id past ``max_ids``, and a broadcast vector at most the broadcasts
        relayed. Returns the frontier with the frame's clock in.

        One merge and two totals tell, in O(1) beyond the merge, that nothing but
        the sender's own entry goes above the frontier (which is, on one server,
        exactly what each id said: every entry got in through this check); only a
        frame that does is looked at entry by entry.

        Raises:
            PeerError: ``forged-clock`` or ``too-many-ids``.
        """
        clock, frontier = frame.clock, self.frontier
        merged = frontier.merge(clock)
        own_gain = max(0, clock[client_id] - frontier[client_id])
        if merged.total - frontier.total > own_gain:
            for pid, count in clock._entries.items():
                ceiling = max(frontier[pid], self.said.get(pid, 0) + self.max_lead)
                if count > ceiling and pid != client_id:
                    raise PeerError(
                        f"clock {_short(clock)} gives {pid!r} {count} events, but the server"
                        f" has heard of {self.said.get(pid, 0)} from {pid!r} itself;"
                        " a clock can only carry what its sender received",
                        code=ErrorCode.FORGED_CLOCK,
                        seq=frame.seq,
                    )
            new = [pid for pid in clock._entries if pid not in self._ids]
            if new and not self._room_for_id(*new):
                raise PeerError(
                    f"clock {_short(clock)} names {len(new)} id(s) this server does not"
                    f" know, and it keeps track of no more than {len(self._ids)}",
                    code=ErrorCode.TOO_MANY_IDS,
                    seq=frame.seq,
                )
        if isinstance(frame, Broadcast):
            relayed = self.broadcasts
            for pid, count in frame.bclock._entries.items():
                most = relayed[pid] + self.max_lead + (1 if pid == client_id else 0)
                if count > most:
                    raise PeerError(
                        f"bclock {_short(frame.bclock)} counts {count} broadcasts of {pid!r},"
                        f" but {relayed[pid]} were relayed; receivers would wait for ever",
                        code=ErrorCode.FORGED_CLOCK,
                        seq=frame.seq,
                    )
        return merged

    def _is_new(self, session: _Session, frame: Send | Report | Broadcast) -> bool:
        """Check a send or report's seq; False for a resent frame of a resume session.

        Raises:
            PeerError: ``bad-frame`` (seq is not the own entry) or ``stale-clock``.
        """
        client_id = session.client_id
        assert client_id is not None
        if frame.seq != frame.clock[client_id]:
            raise PeerError(
                f"seq {frame.seq} must equal the sender's own clock entry,"
                f" {frame.clock[client_id]}",
                code=ErrorCode.BAD_FRAME,
                seq=frame.seq,
            )
        latest = self.latest.get(client_id)
        if latest is not None and frame.seq <= latest[client_id]:
            if session.resume:
                return False
            raise PeerError(
                f"clock {frame.clock} does not advance {client_id!r} past"
                f" {latest[client_id]}, the latest the server has; tick before each send",
                code=ErrorCode.STALE_CLOCK,
                seq=frame.seq,
            )
        return True

    def _release(self, peer: PeerId, session: _Session, inbox: Inbox) -> list[Action]:
        """Send the inbox's next messages, as far as the window allows."""
        actions: list[Action] = []
        limit = inbox.acked + self.window
        for deliver in inbox.messages:
            n = deliver.n or 0
            if n <= inbox.sent:
                continue
            if n > limit:
                break
            session.known = session.known.merge(deliver.clock)
            actions.append(Outgoing(peer, deliver))
            inbox.sent = n
        return actions

    def _delivered(self, peer: PeerId, session: _Session, frame: Delivered) -> list[Action]:
        client_id = session.client_id
        assert client_id is not None
        inbox = self.inboxes.get(client_id)
        if inbox is None:
            raise PeerError(
                "'delivered' is only for sessions that said resume in hello",
                code=ErrorCode.UNEXPECTED_FRAME,
            )
        if frame.upto >= inbox.next_n:
            raise PeerError(
                f"delivered upto={frame.upto}, but only {inbox.next_n - 1} were sent",
                code=ErrorCode.BAD_FRAME,
            )
        while inbox.messages and (inbox.messages[0].n or 0) <= frame.upto:
            done = inbox.messages.popleft()
            self.held.release(inbox, done)
            if done.bclock is not None:
                inbox.base = _counted(inbox.base, done)
        inbox.acked = max(inbox.acked, frame.upto)
        inbox.sent = max(inbox.sent, inbox.acked)
        actions: list[Action] = [SaveInbox(client_id, inbox.acked, inbox.base)]
        return actions + self._release(peer, session, inbox)

    # Held messages and the ids the hub keeps track of

    def _hold(self, receiver: str, inbox: Inbox, deliver: Deliver, size: int) -> list[Action]:
        """Keep ``deliver`` in ``receiver``'s inbox (numbered) and send it if it can."""
        deliver = msgspec.structs.replace(deliver, n=inbox.next_n)
        self.held.hold(inbox, deliver, size)
        actions: list[Action] = [SaveMessage(receiver, deliver)]
        target = self._by_id.get(receiver)
        if target is not None:
            actions += self._release(target, self._sessions[target], inbox)
        return actions

    def _room_for(self, deliver: Deliver, inboxes: list[tuple[str, Inbox]]) -> int:
        """Check that every one of ``inboxes`` may hold ``deliver`` (and the server as
        a whole); returns the bytes it takes in one inbox.

        Raises:
            PeerError: ``inbox-full`` (an inbox's message count or bytes) or
                ``store-full`` (the bytes held for everyone).
        """
        size, adds = self.held.size(deliver)
        for receiver, inbox in inboxes:
            if len(inbox.messages) >= self.max_inbox:
                why = f"already has {self.max_inbox} messages waiting"
            elif inbox.nbytes + size > self.max_inbox_bytes:
                why = f"has {inbox.nbytes} bytes waiting; {size} more pass {self.max_inbox_bytes}"
            else:
                continue
            raise PeerError(
                f"{receiver!r} {why}; try later",
                code=ErrorCode.INBOX_FULL,
                peer=receiver,
                seq=deliver.seq,
            )
        if self.held.total + adds > self.max_held_bytes:
            raise PeerError(
                f"the server holds {self.held.total} bytes for away clients; {adds} more"
                f" pass its limit of {self.max_held_bytes}; try later",
                code=ErrorCode.STORE_FULL,
                peer=inboxes[0][0] if len(inboxes) == 1 else None,
                seq=deliver.seq,
            )
        return size

    def _drop_inbox(self, client_id: str) -> None:
        self.held.forget(self.inboxes.pop(client_id))

    def _set_frontier(self, frontier: VectorClock) -> None:
        if len(frontier) > len(self.frontier):
            self._track(frontier._entries)
        self.frontier = frontier

    def _heard(self, client_id: str, count: int) -> None:
        """``client_id`` itself said it had ``count`` events."""
        if count > self.said.get(client_id, 0):
            if client_id not in self.said:
                self._track([client_id])
            self.said[client_id] = count

    def _room_for_id(self, *client_ids: str) -> bool:
        if len(self._ids) + len(client_ids) > self.max_ids:
            return False
        more = sum(_entry_bytes(client_id) for client_id in client_ids)
        return self._ids_bytes + more <= self._id_budget

    def _track(self, client_ids: Iterable[str]) -> None:
        ids = self._ids
        for client_id in client_ids:
            if client_id not in ids:
                ids[client_id] = cost = _entry_bytes(client_id)
                self._ids_bytes += cost

    def _untrack(self, client_id: str) -> None:
        self._ids_bytes -= self._ids.pop(client_id, 0)

    # Private helpers

    def _refuse(self, peer: PeerId, session: _Session, exc: ProtocolError) -> list[Action]:
        actions: list[Action] = [
            Outgoing(peer, _error_frame(exc)),
            Refused(peer, session.address, exc),
        ]
        if exc.fatal:
            session.state = SessionState.CLOSED
            return actions + [Close(peer, str(exc))]
        if isinstance(exc, FrameError) and exc.delta_lost:
            lost = PeerError(
                "that line's clock could not be read, so this delta-encoded connection"
                " lost its previous clock (protocol section 12); closing it: reconnect",
                code=ErrorCode.DELTA_LOST,
            )
            session.state = SessionState.CLOSED
            return actions + [
                Outgoing(peer, _error_frame(lost)),
                Refused(peer, session.address, lost),
                Close(peer, str(lost)),
            ]
        if exc.code not in _FORGIVEN:
            session.errors += 1
            if session.errors >= self.max_errors:
                last = PeerError(
                    f"{session.errors} refused frames; closing the connection",
                    code=ErrorCode.TOO_MANY_ERRORS,
                )
                actions += [
                    Outgoing(peer, _error_frame(last)),
                    Refused(peer, session.address, last),
                ]
                actions.append(Close(peer, str(last)))
                session.state = SessionState.CLOSED
        return actions

    def _free_id(self) -> str:
        while True:
            candidate = f"client-{self.id_prefix}{next(self._auto_ids)}"
            taken = self._by_id.keys() | self.latest.keys() | self.inboxes.keys()
            if candidate not in taken:
                return candidate


def _counted(counts: VectorClock, deliver: Deliver) -> VectorClock:
    """Broadcast counts that include the broadcast ``deliver`` (its sender's count)."""
    assert deliver.bclock is not None
    sender = deliver.sender
    return counts.merge(VectorClock._trusted({sender: deliver.bclock[sender]}))


def _short(clock: VectorClock, most: int = 8) -> str:
    """A clock for a message: at most ``most`` entries."""
    if len(clock) <= most:
        return str(clock)
    shown = VectorClock._trusted(dict(clock.items()[:most]))
    return f"{str(shown)[:-1]}, ... {len(clock) - most} more}}"


def _error_frame(exc: ProtocolError) -> Error:
    return Error(
        code=exc.code.value,
        message=str(exc),
        peer=getattr(exc, "peer", None),
        seq=getattr(exc, "seq", None),
    )
