"""The frames of the vclock wire protocol, version 1 (see docs/protocol.md).

Each frame is one JSON object on one line, tagged by its ``type`` field. Frames
are frozen msgspec Structs; unknown fields are ignored so newer peers can add
fields (always with defaults) without breaking older ones.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ..clock import VectorClock

PROTOCOL_VERSION = 1

#: The syntax of a client id: what ShiViz accepts as a host name, and readable.
CLIENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*\Z"  # \Z: no trailing newline
MAX_CLIENT_ID_LENGTH = 64

ClientId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=MAX_CLIENT_ID_LENGTH, pattern=CLIENT_ID_PATTERN)
]
Seq = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]

#: What a client asks to be told about the other clients (``hello.peers``):
#: ``"all"`` (the default, as before: every peer in ``welcome`` and one
#: ``peer_joined``/``peer_left`` per change), ``"batched"`` (every peer in
#: ``welcome``, then changes several to a ``peers_changed`` frame) or
#: ``"none"`` (no peers in ``welcome``, no notices: ask with ``who``).
PeersMode = Literal["all", "batched", "none"]
#: The most ids one ``peers`` page holds, whatever ``who.limit`` asks for.
MAX_PEERS_PAGE = 1000


class _Frame(msgspec.Struct, frozen=True, tag_field="type", omit_defaults=True, kw_only=True):
    pass


# Client -> server


class Hello(_Frame, tag="hello", frozen=True):
    """First frame of a session: the protocol version and the id the client wants.

    ``token`` authenticates the id when the server requires it. ``resume`` asks the
    server to keep this id's messages while it is away and to acknowledge its
    frames once they are durable; the client then sends ``delivered`` frames.
    ``delta`` asks for delta-encoded clocks (see :mod:`vclock.protocol.delta`).
    """

    v: int
    id: ClientId | None = None
    token: str | None = None
    resume: bool = False
    delta: bool = False  # ask for delta-encoded clocks after welcome
    peers: PeersMode = "all"  # what to be told about the other clients


class Send(_Frame, tag="send", frozen=True):
    """Send ``clock`` (and an optional ``body``) to client ``to``; ``seq`` numbers it."""

    to: ClientId
    seq: Seq
    clock: VectorClock
    body: Any = None


class Report(_Frame, tag="report", frozen=True):
    """Report the client's clock to the server alone (a send to the service)."""

    seq: Seq
    clock: VectorClock


class Broadcast(_Frame, tag="broadcast", frozen=True):
    """Send ``clock`` (and an optional ``body``) to every other client, in causal order.

    ``bclock`` counts *broadcasts* only: for each process, how many of its
    broadcasts the sender had delivered, its own entry counting this one. The
    receivers hold a broadcast back until it is causally next
    (Birman-Schiper-Stephenson; see :class:`vclock.client.ClientState`).
    """

    seq: Seq
    clock: VectorClock
    bclock: VectorClock
    body: Any = None


class Delivered(_Frame, tag="delivered", frozen=True):
    """Resume sessions: every ``deliver`` up to number ``upto`` has been handled."""

    upto: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class Who(_Frame, tag="who", frozen=True):
    """Ask for one page of the connected clients' ids, in id order, from the
    first id after ``after`` (None: from the start); answered by ``peers``."""

    after: ClientId | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] = MAX_PEERS_PAGE


class Bye(_Frame, tag="bye", frozen=True):
    """Either side ends the session; the sender closes the connection after it."""

    reason: str = ""


# Server -> client


class Limits(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The server's limits (docs/protocol.md, section 9), announced in ``welcome``
    so a client can stay within them instead of learning them from errors."""

    max_frame_size: int  # bytes in one line, newline excluded
    max_clock_entries: int
    max_id_length: int
    max_rate: float  # frames per second; 0: no limit
    max_inbox: int  # messages held for one away client
    window: int  # numbered deliveries a resume client may leave unacknowledged
    hold_for: float  # seconds an away client's inbox is kept; 0: forever
    # Added within version 1 (absent from older servers):
    max_inbox_bytes: int | None = None  # bytes held for one away client
    max_ids: int | None = None  # distinct ids the server tracks
    max_lead: int | None = None  # how far a clock may raise another id's entry
    hello_timeout: float | None = None  # seconds from connect to welcome; 0: none
    max_hello_size: int | None = None  # bytes in a line before welcome


class Welcome(_Frame, tag="welcome", frozen=True):
    """Answer to a valid hello: the client's id, who else is connected, and the
    latest clock the server holds for this id (empty for a new id), which a client
    resumes from so that an id's clock never goes back."""

    v: int
    id: ClientId
    peers: list[str]
    sync_interval: float
    clock: VectorClock = msgspec.field(default_factory=VectorClock)
    delta: bool = False  # clocks after this frame are delta-encoded, both ways
    # broadcasts this client will never be sent (sent before it joined, or
    # acknowledged): where its causal-broadcast counts start; None means {}
    bclock: VectorClock | None = None
    limits: Limits | None = None  # the server's limits, if it announces them
    # resume sessions: True, the server kept this id's inbox (deliver.n goes on);
    # False, a new inbox (numbered from 1). None: a plain session, or an older server
    resumed: bool | None = None


class Deliver(_Frame, tag="deliver", frozen=True):
    """A peer's ``send`` or ``broadcast``, relayed with the sender's clocks unchanged."""

    sender: ClientId = msgspec.field(name="from")
    seq: Seq
    clock: VectorClock
    body: Any = None
    n: int | None = None  # resume sessions: this receiver's delivery number, 1, 2, ...
    bclock: VectorClock | None = None  # set: a broadcast (see Broadcast); None: a send


class Ack(_Frame, tag="ack", frozen=True):
    """Resume sessions: the frame numbered ``seq`` is durable on the server.

    ``duplicate`` is true when the server already had it (a resent frame); it was
    not delivered again.
    """

    seq: Seq
    duplicate: bool = False


class Sync(_Frame, tag="sync", frozen=True):
    """The frontier of synchronization cycle ``cycle``."""

    cycle: int
    clock: VectorClock


class PeerJoined(_Frame, tag="peer_joined", frozen=True):
    id: ClientId


class PeerLeft(_Frame, tag="peer_left", frozen=True):
    id: ClientId


class PeersChanged(_Frame, tag="peers_changed", frozen=True):
    """Sessions whose hello asked for ``"batched"`` peers: the net change to the
    connected clients since the last such frame (or the ``welcome``)."""

    joined: list[str] = msgspec.field(default_factory=list)
    left: list[str] = msgspec.field(default_factory=list)


class Peers(_Frame, tag="peers", frozen=True):
    """The answer to ``who``: up to ``limit`` ids of other connected clients, in
    id order; ``next`` is the ``after`` of the next page (None: the last page)."""

    ids: list[str]
    next: str | None = None


class Error(_Frame, tag="error", frozen=True):
    """What went wrong with one of the client's frames. ``code`` is machine-readable."""

    code: str
    message: str
    peer: str | None = None
    seq: int | None = None


def frame_type(frame: msgspec.Struct) -> str:
    """The ``type`` tag of a frame, e.g. ``"send"``."""
    kind = type(frame)
    tag = _TAGS.get(kind)
    if tag is None:
        tag = _TAGS[kind] = str(kind.__struct_config__.tag)
    return tag


_TAGS: dict[type, str] = {}  # frame class -> its tag, as frame_type finds them


ClientFrame = Hello | Send | Report | Broadcast | Delivered | Who | Bye
ServerFrame = (
    Welcome | Deliver | Ack | Sync | PeerJoined | PeerLeft | PeersChanged | Peers | Error | Bye
)
Frame = ClientFrame | ServerFrame
