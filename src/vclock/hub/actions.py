"""What the hub asks its I/O layer to do, and what it reports.

Carry them out in order, with one rule: all the *store* actions of one batch
must be durable before any frame of that batch is written, so a client never
gets an ``ack`` for something a crash could lose.
"""

from __future__ import annotations

from typing import NewType

import msgspec

from ..clock import VectorClock
from ..errors import ProtocolError
from ..protocol.frames import Broadcast, Deliver, Report, Send, ServerFrame

PeerId = NewType("PeerId", int)


class _Action(msgspec.Struct, frozen=True):
    """An action: a frozen msgspec Struct, cheap to make (several per message)."""


# Transport


class Outgoing(_Action, frozen=True):
    """Write this frame to this peer."""

    peer: PeerId
    frame: ServerFrame


class Close(_Action, frozen=True):
    """Flush, then close this peer's connection (and call ``Hub.disconnect``)."""

    peer: PeerId
    reason: str


class Forward(_Action, frozen=True):
    """Cluster mode: publish ``frame`` to the node of client ``to`` (a unicast to a
    client on another node), or to every other node when ``to`` is None (a
    broadcast). See :mod:`vclock.cluster`."""

    to: str | None
    frame: Deliver


# Store: what must survive a restart


class SaveClock(_Action, frozen=True):
    """``latest[client_id]`` is now ``clock``."""

    client_id: str
    clock: VectorClock


class SaveCycle(_Action, frozen=True):
    cycle: int


class SaveMessage(_Action, frozen=True):
    """Keep ``deliver`` (numbered ``deliver.n``) for ``receiver`` until it is acknowledged."""

    receiver: str
    deliver: Deliver


class SaveInbox(_Action, frozen=True):
    """``receiver`` is held (its messages are kept); everything up to ``acked`` is done.

    ``base``: per sender, the broadcasts ``receiver`` will never be sent from this
    inbox (relayed before it existed, or acknowledged)."""

    receiver: str
    acked: int
    base: VectorClock = VectorClock()


class SaveBroadcasts(_Action, frozen=True):
    """``sender`` has had ``count`` broadcasts relayed (the hub's broadcast frontier)."""

    sender: str
    count: int


class DropInbox(_Action, frozen=True):
    """``receiver`` left for good: forget its inbox and messages."""

    receiver: str


# Notices: facts to print, log or show


class Joined(_Action, frozen=True):
    peer: PeerId
    client_id: str
    address: str


class Left(_Action, frozen=True):
    peer: PeerId
    client_id: str
    address: str


class Expired(_Action, frozen=True):
    """A held client did not come back in time: its inbox was dropped."""

    client_id: str
    dropped: int  # messages it had waiting


class Received(_Action, frozen=True):
    """A client's clock reached the server (in a ``send`` or a ``report``)."""

    peer: PeerId
    client_id: str
    address: str
    frame: Send | Report | Broadcast


class Refused(_Action, frozen=True):
    """A frame from this peer was refused; the peer got an ``error`` frame."""

    peer: PeerId
    address: str
    error: ProtocolError


class SyncCycle(_Action, frozen=True):
    cycle: int
    clients: int  # connected clients
    frontier: VectorClock
    synced: tuple[str, ...]  # ids sent a sync this cycle


StoreAction = SaveClock | SaveCycle | SaveMessage | SaveInbox | SaveBroadcasts | DropInbox
Notice = Joined | Left | Expired | Received | Refused | SyncCycle
Action = Outgoing | Close | Forward | StoreAction | Notice
STORE_TYPES = (SaveClock, SaveCycle, SaveMessage, SaveInbox, SaveBroadcasts, DropInbox)
