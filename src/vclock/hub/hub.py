"""The hub: registry, routing and synchronization for many clients, without I/O.

The I/O layer owns connections and gives each an opaque :data:`PeerId`. It tells
the hub what happened (:meth:`Hub.connect`, :meth:`Hub.receive`,
:meth:`Hub.disconnect`, and :meth:`Hub.begin_sync_cycle` when its timer fires)
and carries out the actions the hub returns, in order:

- :class:`Outgoing`: write this frame to this peer;
- :class:`Close`: flush, then close this peer's connection (and call ``disconnect``);
- notices (:class:`Joined`, :class:`Left`, :class:`Received`, :class:`Refused`,
  :class:`SyncCycle`): facts to print, log or show; nothing to send.

The clock rules (docs/protocol.md): the hub relays a ``send`` with the sender's
clock unchanged; ``latest[i]`` is the pointwise max of every clock received from
client ``i`` and survives its disconnection; a synchronization cycle sends the
frontier F (the max of all ``latest[i]``, kept incrementally) to each connected
client that has not been sent, nor itself reported, everything in F.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import NewType

from ..clock import VectorClock
from ..errors import ErrorCode, FrameError, PeerError, ProtocolError
from ..protocol.frames import (
    PROTOCOL_VERSION,
    Bye,
    ClientFrame,
    Deliver,
    Error,
    Hello,
    PeerJoined,
    PeerLeft,
    Report,
    Send,
    ServerFrame,
    Sync,
    Welcome,
    frame_type,
)
from .state import SessionState, next_state

PeerId = NewType("PeerId", int)

#: The id the server uses for itself in logs; no client may take it.
SERVER_ID = "server"


@dataclass(frozen=True, slots=True)
class Outgoing:
    peer: PeerId
    frame: ServerFrame


@dataclass(frozen=True, slots=True)
class Close:
    peer: PeerId
    reason: str


@dataclass(frozen=True, slots=True)
class Joined:
    peer: PeerId
    client_id: str
    address: str


@dataclass(frozen=True, slots=True)
class Left:
    peer: PeerId
    client_id: str
    address: str


@dataclass(frozen=True, slots=True)
class Received:
    """A client's clock reached the server (in a ``send`` or a ``report``)."""

    peer: PeerId
    client_id: str
    address: str
    frame: Send | Report


@dataclass(frozen=True, slots=True)
class Refused:
    """A frame from this peer was refused; the peer got an ``error`` frame."""

    peer: PeerId
    address: str
    error: ProtocolError


@dataclass(frozen=True, slots=True)
class SyncCycle:
    cycle: int
    clients: int  # connected clients
    frontier: VectorClock
    synced: tuple[str, ...]  # ids sent a sync this cycle


Action = Outgoing | Close | Joined | Left | Received | Refused | SyncCycle


@dataclass(slots=True)
class _Session:
    address: str
    state: SessionState = SessionState.AWAITING_HELLO
    client_id: str | None = None
    known: VectorClock = field(default_factory=VectorClock)  # what this client has or was sent


class Hub:
    """Routes clocks between clients and runs synchronization cycles.

    Args:
        sync_interval: seconds between cycles, told to clients in ``welcome``
            (the timer itself belongs to the I/O layer).
    """

    def __init__(self, *, sync_interval: float = 5.0) -> None:
        self.sync_interval = sync_interval
        self.cycle = 0
        self.frontier = VectorClock()
        self.latest: dict[str, VectorClock] = {}
        self._sessions: dict[PeerId, _Session] = {}
        self._by_id: dict[str, PeerId] = {}
        self._auto_ids = itertools.count(1)

    @property
    def clients(self) -> list[str]:
        """The ids of the connected clients, in the order they joined."""
        return list(self._by_id)

    # Events from the I/O layer

    def connect(self, peer: PeerId, address: str) -> list[Action]:
        """A connection was accepted. ``address`` is for messages (``HOST:PORT``)."""
        if peer in self._sessions:
            raise ValueError(f"peer {peer} is already connected")
        self._sessions[peer] = _Session(address)
        return []

    def receive(self, peer: PeerId, event: ClientFrame | FrameError) -> list[Action]:
        """A frame (or a line that failed to decode) arrived from ``peer``.

        This is the one entry point for client input: a protocol error becomes an
        ``error`` frame to that peer (and a ``Close`` if the session cannot go on),
        and never affects another client.
        """
        session = self._sessions[peer]
        try:
            if isinstance(event, FrameError):
                raise event
            state = next_state(session.state, frame_type(event))
            actions = self._handle(peer, session, event)
            session.state = state
            return actions
        except ProtocolError as exc:
            return self._refuse(peer, session, exc)

    def disconnect(self, peer: PeerId) -> list[Action]:
        """The connection is gone (closed by either side, or lost). Idempotent."""
        session = self._sessions.pop(peer, None)
        if session is None or session.client_id is None:
            return []
        client_id = session.client_id
        del self._by_id[client_id]
        actions: list[Action] = [Left(peer, client_id, session.address)]
        left = PeerLeft(id=client_id)
        actions += [Outgoing(other, left) for other in self._by_id.values()]
        return actions

    def begin_sync_cycle(self) -> list[Action]:
        """Run one synchronization cycle: send the frontier to whoever lacks part of it."""
        self.cycle += 1
        frontier = self.frontier
        actions: list[Action] = []
        synced: list[str] = []
        sync = Sync(cycle=self.cycle, clock=frontier)
        for client_id, peer in self._by_id.items():
            session = self._sessions[peer]
            if not frontier <= session.known:
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

    # Frame handlers

    def _handle(self, peer: PeerId, session: _Session, frame: ClientFrame) -> list[Action]:
        match frame:
            case Hello():
                return self._hello(peer, session, frame)
            case Send():
                actions = self._update(peer, session, frame)
                target = self._by_id.get(frame.to)
                if target is None:
                    # The clock still counts as received; only the delivery fails.
                    unknown = PeerError(
                        f"no client named {frame.to!r} is connected",
                        code=ErrorCode.UNKNOWN_PEER,
                        peer=frame.to,
                        seq=frame.seq,
                    )
                    return actions + self._refuse(peer, session, unknown)
                assert session.client_id is not None
                deliver = Deliver(
                    sender=session.client_id, seq=frame.seq, clock=frame.clock, body=frame.body
                )
                actions.append(Outgoing(target, deliver))
                receiver = self._sessions[target]
                receiver.known = receiver.known.merge(frame.clock)  # it was sent this clock
                return actions
            case Report():
                return self._update(peer, session, frame)
            case Bye():
                return [Close(peer, frame.reason or "client said bye")]
        raise AssertionError(f"unhandled frame {frame!r}")  # pragma: no cover

    def _hello(self, peer: PeerId, session: _Session, hello: Hello) -> list[Action]:
        if hello.v != PROTOCOL_VERSION:
            raise PeerError(
                f"protocol version {hello.v} is not supported; this server speaks {PROTOCOL_VERSION}",
                code=ErrorCode.UNSUPPORTED_VERSION,
            )
        client_id = hello.id if hello.id is not None else self._free_id()
        if client_id == SERVER_ID:
            raise PeerError(f"the id {SERVER_ID!r} is reserved", code=ErrorCode.INVALID_ID)
        if client_id in self._by_id:
            raise PeerError(
                f"a client named {client_id!r} is already connected; pick another id",
                code=ErrorCode.DUPLICATE_ID,
                peer=client_id,
            )
        peers = list(self._by_id)
        session.client_id = client_id
        session.known = self.latest.get(client_id, VectorClock())
        self._by_id[client_id] = peer
        welcome = Welcome(
            v=PROTOCOL_VERSION,
            id=client_id,
            peers=peers,
            sync_interval=self.sync_interval,
            clock=session.known,
        )
        actions: list[Action] = [Outgoing(peer, welcome), Joined(peer, client_id, session.address)]
        joined = PeerJoined(id=client_id)
        actions += [Outgoing(self._by_id[other], joined) for other in peers]
        return actions

    def _update(self, peer: PeerId, session: _Session, frame: Send | Report) -> list[Action]:
        client_id = session.client_id
        assert client_id is not None
        latest = self.latest.get(client_id)
        if latest is not None and frame.clock[client_id] <= latest[client_id]:
            raise PeerError(
                f"clock {frame.clock} does not advance {client_id!r} past"
                f" {latest[client_id]}, the latest the server has; tick before each send",
                code=ErrorCode.STALE_CLOCK,
                seq=frame.seq,
            )
        self.latest[client_id] = frame.clock if latest is None else latest.merge(frame.clock)
        self.frontier = self.frontier.merge(frame.clock)
        session.known = session.known.merge(frame.clock)
        return [Received(peer, client_id, session.address, frame)]

    # Private helpers

    def _refuse(self, peer: PeerId, session: _Session, exc: ProtocolError) -> list[Action]:
        error = Error(
            code=exc.code.value,
            message=str(exc),
            peer=getattr(exc, "peer", None),
            seq=getattr(exc, "seq", None),
        )
        actions: list[Action] = [Outgoing(peer, error), Refused(peer, session.address, exc)]
        if exc.fatal:
            actions.append(Close(peer, str(exc)))
        return actions

    def _free_id(self) -> str:
        while True:
            candidate = f"client-{next(self._auto_ids)}"
            if candidate not in self._by_id and candidate not in self.latest:
                return candidate
