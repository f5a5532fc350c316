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

The hub's parts, one concern each: :mod:`.state` (the session table, what
survives a restart), :mod:`.admission` (hello: who may join, the welcome),
:mod:`.clocks` (the frontier and what each client knows, changed in place),
:mod:`.ids` (what a frame's clock may say about each id),
:mod:`.inbox` (resume inboxes: hold, release by window, acknowledge),
:mod:`.refusals` (error frames and the error budget), :mod:`.members` (who is
connected and who is told), :mod:`.cluster` (the hub of a cluster node). Causal
broadcast: the hub fans a ``broadcast`` out with its ``bclock``; the *clients*
hold it back until it is causally next (13.2).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from ..auth import Authenticator
from ..clock import VectorClock, merge_all
from ..errors import ErrorCode, PeerError, ProtocolError
from ..protocol.connection import DEFAULT_MAX_FRAME_SIZE
from ..protocol.frames import (
    Ack,
    Broadcast,
    Bye,
    ClientFrame,
    Deliver,
    Delivered,
    Hello,
    Limits,
    Report,
    Send,
    Sync,
    Who,
    frame_type,
)
from .actions import (
    Action,
    Close,
    DropInbox,
    Expired,
    Left,
    Outgoing,
    PeerId,
    Received,
    SaveBroadcasts,
    SaveClock,
    SaveCycle,
    SaveInbox,
    SaveMessage,
    SyncCycle,
)
from .admission import Admission
from .clocks import Frontier
from .ids import DEFAULT_MAX_LEAD, IdLedger
from .inbox import DEFAULT_WINDOW, Inbox, Inboxes, count_broadcast
from .members import Members
from .refusals import refuse
from .state import HubState, Session, SessionState, next_state


class Hub(Admission):
    """Routes clocks between clients and runs synchronization cycles.

    Args:
        sync_interval: seconds between cycles, told to clients in ``welcome``
            (the timer itself belongs to the I/O layer).
        auth: when set, every hello must carry an id and a token it accepts.
        max_errors: refused frames a session may send before it is closed
            (``unknown-peer``, ``inbox-full`` and ``store-full`` are not held
            against it).
        max_inbox, max_inbox_bytes, max_held, max_held_bytes, window: the limits
            of the held clients' inboxes (:class:`.inbox.Inboxes`).
        max_ids, max_frame_size, max_lead, max_id_length: the ids the hub keeps
            track of and what a clock may say about them (:class:`.ids.IdLedger`).
        state: what a previous run left (see :mod:`vclock.store`); default empty.
        limits: announced in every ``welcome`` (the server's limits, most of
            them enforced by the I/O layer); None announces nothing.

    A cluster node uses :class:`~vclock.hub.cluster.ClusterHub`, which fills in
    the three hooks at the end of this class.
    """

    def __init__(
        self,
        *,
        sync_interval: float = 5.0,
        auth: Authenticator | None = None,
        max_errors: int = 20,
        max_inbox: int = 10_000,
        max_inbox_bytes: int = 64 << 20,
        max_held: int = 10_000,
        max_held_bytes: int = 1 << 30,
        window: int = DEFAULT_WINDOW,
        max_ids: int = 65_536,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_lead: int = DEFAULT_MAX_LEAD,
        max_id_length: int = 64,
        state: HubState | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.sync_interval = sync_interval
        self.limits = limits
        self.auth = auth
        self.max_errors = max_errors
        state = state or HubState()
        self.cycle = state.cycle
        self.latest = state.latest
        self.broadcasts = state.broadcasts
        self._front = Frontier(merge_all(self.latest.values()))
        self.holding = Inboxes(
            state.inboxes,
            max_inbox=max_inbox,
            max_inbox_bytes=max_inbox_bytes,
            max_held=max_held,
            max_held_bytes=max_held_bytes,
            window=window,
        )
        #: the held clients' inboxes (``holding.by_id``: the same dict)
        self.inboxes = state.inboxes
        self.ids = IdLedger(
            max_ids=max_ids,
            max_frame_size=max_frame_size,
            max_lead=max_lead,
            max_id_length=max_id_length,
        )
        self.ids.track(self._front.entries)
        for client_id, clock in self.latest.items():
            self.ids.heard(client_id, clock[client_id])
        self._sessions: dict[PeerId, Session] = {}
        self._by_id: dict[str, PeerId] = {}
        self.members = Members()  # call peer_notices() when members.due, now and then
        self._auto_ids = itertools.count(1)
        self.id_prefix = ""  # put after "client-" in assigned ids

    @property
    def clients(self) -> list[str]:
        """The ids of the connected clients, in the order they joined."""
        return list(self._by_id)

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
        self._sessions[peer] = Session(address)
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
            return refuse(peer, session, exc, self.max_errors)

    def disconnect(self, peer: PeerId) -> list[Action]:
        """The connection is gone (closed by either side, or lost). Idempotent.

        A held client's inbox stays: its messages wait for it to come back.
        """
        session = self._sessions.pop(peer, None)
        if session is None or session.client_id is None:
            return []
        client_id = session.client_id
        del self._by_id[client_id]
        if client_id not in self._front.entries:
            self.ids.untrack(client_id)  # reserved at hello, never used
        return [Left(peer, client_id, session.address), *self.members.leave(client_id, peer)]

    def drop_held(self, client_id: str) -> list[Action]:
        """Drop the inbox of ``client_id`` if it is held and the client away: the
        server's hold limit passed (the hub reads no clock; the server decides).
        From then on a ``send`` to it gets ``unknown-peer``, as after a ``bye``."""
        if client_id in self._by_id:
            return []
        inbox = self.holding.drop(client_id)
        if inbox is None:
            return []
        return [DropInbox(client_id), Expired(client_id, len(inbox.messages))]

    def peer_notices(self) -> list[Action]:
        """The ``peers_changed`` frames since the last call (for sessions that
        asked for ``"batched"`` peers); the I/O layer calls it when
        ``members.due``, as often as it wants them to hear (:mod:`.members`)."""
        return self.members.notices()

    def begin_sync_cycle(self) -> list[Action]:
        """Run one synchronization cycle: send the frontier to whoever lacks part of it."""
        self.cycle += 1
        frontier = self.frontier
        total = frontier.total
        actions: list[Action] = [SaveCycle(self.cycle)]
        synced: list[str] = []
        sync = Sync(cycle=self.cycle, clock=frontier)
        for client_id, peer in self._by_id.items():
            session = self._sessions[peer]
            # known <= frontier always holds (every clock it merges went into the
            # frontier too), so it lacks something exactly when the totals differ.
            if session.known.total != total:
                session.known.reset(frontier)
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

    # Frame handlers

    def _handle(self, peer: PeerId, session: Session, frame: ClientFrame) -> list[Action]:
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
            case Who():
                return [Outgoing(peer, self.members.page(frame, session.client_id or ""))]
            case Bye():
                close = Close(peer, frame.reason or "client said bye")
                client_id = session.client_id
                if client_id is not None and self.holding.drop(client_id) is not None:
                    return [close, DropInbox(client_id)]  # leaving for good
                return [close]
        raise AssertionError(f"unhandled frame {frame!r}")  # pragma: no cover

    def _send(self, peer: PeerId, session: Session, frame: Send) -> list[Action]:
        client_id = session.client_id
        assert client_id is not None
        to = frame.to
        deliver = Deliver(sender=client_id, seq=frame.seq, clock=frame.clock, body=frame.body)
        size = None
        if to in self.inboxes and self._is_new(session, frame):
            # Refused before its clock is taken in, so that the same frame, sent
            # again later, is new to the server (not acked as a duplicate and lost).
            size = self.holding.room_for(deliver, [to])
        actions = self._update(peer, session, frame)
        if not actions:  # a resent frame the server already has
            return [Outgoing(peer, Ack(seq=frame.seq, duplicate=True))]
        if to in self.inboxes or to in self._by_id:
            actions += self._deliver(to, deliver, size)
        elif self._elsewhere(to):
            actions += self._relay(deliver, to)  # its node delivers it
        else:
            # The clock still counts as received; only the delivery fails.
            unknown = PeerError(
                f"no client named {to!r} is connected",
                code=ErrorCode.UNKNOWN_PEER,
                peer=to,
                seq=frame.seq,
            )
            return actions + refuse(peer, session, unknown, self.max_errors)
        if session.resume:
            actions.append(Outgoing(peer, Ack(seq=frame.seq)))
        return actions

    def _broadcast(self, peer: PeerId, session: Session, frame: Broadcast) -> list[Action]:
        client_id = session.client_id
        assert client_id is not None
        if not self._is_new(session, frame):  # a resent frame the server already has
            return [Outgoing(peer, Ack(seq=frame.seq, duplicate=True))]
        self.ids.check_count(client_id, frame, self.broadcasts, session.resume)
        deliver = Deliver(
            sender=client_id, seq=frame.seq, clock=frame.clock, body=frame.body, bclock=frame.bclock
        )
        held = [receiver for receiver in self.inboxes if receiver != client_id]
        # refused whole, as a send to a full inbox
        size = self.holding.room_for(deliver, held) if held else None
        actions = self._update(peer, session, frame)
        actions += self._fan_out(deliver, size)
        actions += self._relay(deliver, None)
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
            self.broadcasts = count_broadcast(self.broadcasts, deliver)
            actions.append(SaveBroadcasts(sender, count))
        receivers = [*self.inboxes, *(c for c in self._by_id if c not in self.inboxes)]
        for receiver in receivers:
            if receiver != sender:
                actions += self._deliver(receiver, deliver, size)
        return actions

    def _deliver(self, receiver: str, deliver: Deliver, size: int | None = None) -> list[Action]:
        """The one delivery path, for sends, broadcasts and relays from other nodes:
        into the receiver's inbox if it is held (numbered, and sent as far as its
        window allows), else to its connection; nothing if it is neither."""
        inbox = self.inboxes.get(receiver)
        peer = self._by_id.get(receiver)
        if inbox is not None:
            held = self.holding.hold(inbox, deliver, size)
            actions: list[Action] = [SaveMessage(receiver, held)]
            return actions + (self._release(peer, inbox) if peer is not None else [])
        if peer is None:
            return []
        self._sessions[peer].known.merge(deliver.clock)  # it was sent this clock
        return [Outgoing(peer, deliver)]

    def _release(self, peer: PeerId, inbox: Inbox) -> list[Action]:
        """Send the inbox's next messages, as far as the window allows."""
        session = self._sessions[peer]
        actions: list[Action] = []
        for deliver in self.holding.due(inbox):
            session.known.merge(deliver.clock)
            actions.append(Outgoing(peer, deliver))
        return actions

    def _update(
        self, peer: PeerId, session: Session, frame: Send | Report | Broadcast
    ) -> list[Action]:
        """Take in the clock of a send or report. Returns no actions for a resent
        frame of a resume session (already taken in)."""
        if not self._is_new(session, frame):
            return []
        client_id = session.client_id
        assert client_id is not None
        latest = self.latest.get(client_id)
        gains = self.ids.check(client_id, frame, self._front, self.broadcasts)
        clock = frame.clock
        if latest is not None and not latest._le(clock):  # else the max is the clock
            clock = latest.merge(clock)
        self.latest[client_id] = clock
        self._raise_frontier(gains)
        self.ids.heard(client_id, frame.seq)
        session.known.sent(clock)
        return [Received(peer, client_id, session.address, frame), SaveClock(client_id, clock)]

    def _is_new(self, session: Session, frame: Send | Report | Broadcast) -> bool:
        """Check a frame's seq; False for a resent frame of a resume session."""
        client_id = session.client_id
        assert client_id is not None
        return self.ids.is_new(client_id, frame, self.latest.get(client_id), session.resume)

    def _delivered(self, peer: PeerId, session: Session, frame: Delivered) -> list[Action]:
        client_id = session.client_id
        assert client_id is not None
        inbox = self.holding.acknowledge(client_id, frame.upto)
        actions: list[Action] = [SaveInbox(client_id, inbox.acked, inbox.base)]
        return actions + self._release(peer, inbox)

    @property
    def frontier(self) -> VectorClock:
        """The pointwise maximum of every client's latest clock (and, on a cluster
        node, of what the other nodes relayed): what a sync cycle sends."""
        return self._front.clock

    def _raise_frontier(self, gains: dict[str, int]) -> None:
        """Raise the frontier's entries to ``gains`` (entries above it)."""
        self.ids.track(gains)  # new ids passed IdLedger.check
        self._front.raise_to(gains)

    def _merge_frontier(self, clock: VectorClock) -> None:
        """Take ``clock`` into the frontier (a cluster node: what others relay)."""
        self._raise_frontier(self._front.gains(clock))

    # Hooks for a cluster node (vclock.hub.cluster.ClusterHub): one server has
    # no other nodes, so nobody is elsewhere and nothing is relayed.

    def _elsewhere(self, client_id: str) -> bool:
        """Whether another node delivers to ``client_id``."""
        return False

    def _relay(self, deliver: Deliver, to: str | None) -> list[Action]:
        """The actions that take a message to the other nodes (``to`` None: a
        broadcast, for all of them)."""
        return []

    def _arrived(self, client_id: str) -> Iterable[str]:
        """``client_id`` says hello here; returns the clients of other nodes."""
        return ()
