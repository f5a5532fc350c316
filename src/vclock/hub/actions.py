"""What the hub asks its I/O layer to do, and what it reports.

Carry them out in order, with one rule: all the *store* actions of one batch
must be durable before any frame of that batch is written, so a client never
gets an ``ack`` for something a crash could lose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NewType

from ..clock import VectorClock
from ..errors import ProtocolError
from ..protocol.frames import Broadcast, Deliver, Report, Send, ServerFrame

PeerId = NewType("PeerId", int)


# Transport


@dataclass(frozen=True, slots=True)
class Outgoing:
    """Write this frame to this peer."""

    peer: PeerId
    frame: ServerFrame


@dataclass(frozen=True, slots=True)
class Close:
    """Flush, then close this peer's connection (and call ``Hub.disconnect``)."""

    peer: PeerId
    reason: str


@dataclass(frozen=True, slots=True)
class Forward:
    """Cluster mode: publish ``frame`` to the node of client ``to`` (a unicast to a
    client on another node), or to every other node when ``to`` is None (a
    broadcast). See :mod:`vclock.cluster`."""

    to: str | None
    frame: Deliver


# Store: what must survive a restart


@dataclass(frozen=True, slots=True)
class SaveClock:
    """``latest[client_id]`` is now ``clock``."""

    client_id: str
    clock: VectorClock


@dataclass(frozen=True, slots=True)
class SaveCycle:
    cycle: int


@dataclass(frozen=True, slots=True)
class SaveMessage:
    """Keep ``deliver`` (numbered ``deliver.n``) for ``receiver`` until it is acknowledged."""

    receiver: str
    deliver: Deliver


@dataclass(frozen=True, slots=True)
class SaveInbox:
    """``receiver`` is held (its messages are kept); everything up to ``acked`` is done.

    ``base``: per sender, the broadcasts ``receiver`` will never be sent from this
    inbox (relayed before it existed, or acknowledged)."""

    receiver: str
    acked: int
    base: VectorClock = VectorClock()


@dataclass(frozen=True, slots=True)
class SaveBroadcasts:
    """``sender`` has had ``count`` broadcasts relayed (the hub's broadcast frontier)."""

    sender: str
    count: int


@dataclass(frozen=True, slots=True)
class DropInbox:
    """``receiver`` left for good: forget its inbox and messages."""

    receiver: str


# Notices: facts to print, log or show


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
class Expired:
    """A held client did not come back in time: its inbox was dropped."""

    client_id: str
    dropped: int  # messages it had waiting


@dataclass(frozen=True, slots=True)
class Received:
    """A client's clock reached the server (in a ``send`` or a ``report``)."""

    peer: PeerId
    client_id: str
    address: str
    frame: Send | Report | Broadcast


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


StoreAction = SaveClock | SaveCycle | SaveMessage | SaveInbox | SaveBroadcasts | DropInbox
Notice = Joined | Left | Expired | Received | Refused | SyncCycle
Action = Outgoing | Close | Forward | StoreAction | Notice
STORE_TYPES = (SaveClock, SaveCycle, SaveMessage, SaveInbox, SaveBroadcasts, DropInbox)
