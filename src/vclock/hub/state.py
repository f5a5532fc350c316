"""The life of one client session on the hub, as a table.

Theory of operation: a connection starts AWAITING_HELLO. A valid ``hello`` makes it
ACTIVE, where it may ``send``, ``report``, ``broadcast``, ask ``who`` is connected and
(resume sessions) acknowledge ``delivered`` frames any number of times. A ``bye`` from
either state ends it (CLOSED). Anything else is a protocol error *for that client
only*: the hub answers with an ``unexpected-frame`` error and the state does not
change. A dropped connection is not a frame; the hub handles it in ``disconnect``.

Everything that decides which frame is allowed when lives in TRANSITIONS, and
docs/protocol.md draws its state diagram from this same table. :class:`Session`
is one connection as the hub sees it; :class:`HubState` is what the hub keeps
across restarts (vclock.store).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..clock import VectorClock
from ..errors import ErrorCode, PeerError
from .clocks import Known
from .inbox import Inbox


class SessionState(enum.Enum):
    AWAITING_HELLO = "awaiting-hello"
    ACTIVE = "active"
    CLOSED = "closed"

    # Members are singletons: hash by identity, in C (Enum's hashes the name in
    # Python, once per frame in next_state's table lookup).
    __hash__ = object.__hash__


#: (state, frame type tag) -> next state
TRANSITIONS: dict[tuple[SessionState, str], SessionState] = {
    (SessionState.AWAITING_HELLO, "hello"): SessionState.ACTIVE,
    (SessionState.AWAITING_HELLO, "bye"): SessionState.CLOSED,
    (SessionState.ACTIVE, "send"): SessionState.ACTIVE,
    (SessionState.ACTIVE, "report"): SessionState.ACTIVE,
    (SessionState.ACTIVE, "broadcast"): SessionState.ACTIVE,
    (SessionState.ACTIVE, "delivered"): SessionState.ACTIVE,
    (SessionState.ACTIVE, "who"): SessionState.ACTIVE,
    (SessionState.ACTIVE, "bye"): SessionState.CLOSED,
}


def next_state(state: SessionState, frame_type: str) -> SessionState:
    """The state after a frame of type ``frame_type`` arrives in ``state``.

    Raises:
        PeerError: ``unexpected-frame``, naming the state and the frame.
    """
    try:
        return TRANSITIONS[state, frame_type]
    except KeyError:
        allowed = sorted(tag for (s, tag) in TRANSITIONS if s is state)
        raise PeerError(
            f"a {frame_type!r} frame is not allowed while the session is {state.value}"
            f" (allowed: {', '.join(allowed) or 'nothing'})",
            code=ErrorCode.UNEXPECTED_FRAME,
        ) from None


@dataclass(slots=True)
class HubState:
    """Everything the hub must get back after a restart (see vclock.store)."""

    cycle: int = 0
    latest: dict[str, VectorClock] = field(default_factory=dict)
    inboxes: dict[str, Inbox] = field(default_factory=dict)
    broadcasts: VectorClock = field(default_factory=VectorClock)  # relayed, per sender


@dataclass(slots=True)
class Session:
    """One connection as the hub sees it."""

    address: str
    state: SessionState = SessionState.AWAITING_HELLO
    client_id: str | None = None
    resume: bool = False
    errors: int = 0
    known: Known = field(default_factory=Known)  # what this client has or was sent
