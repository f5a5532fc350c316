"""What the hub does with a refused frame: an ``error`` frame for that client,
and the end of its session when it cannot go on (a fatal code, a delta-encoded
connection that lost its reference, the session's error budget used up).
"""

from __future__ import annotations

from ..errors import ErrorCode, FrameError, PeerError, ProtocolError
from ..protocol.frames import Error
from .actions import Action, Close, Outgoing, PeerId, Refused
from .state import Session, SessionState

#: Errors that are a normal race or a full receiver, not the client misbehaving.
FORGIVEN = frozenset({ErrorCode.UNKNOWN_PEER, ErrorCode.INBOX_FULL, ErrorCode.STORE_FULL})


def refuse(peer: PeerId, session: Session, exc: ProtocolError, max_errors: int) -> list[Action]:
    """The error frame for ``exc``, and the end of the session if it cannot go
    on (a fatal code, a lost delta reference, the error budget used up)."""
    actions: list[Action] = [
        Outgoing(peer, error_frame(exc)),
        Refused(peer, session.address, exc),
    ]
    last: PeerError | None = None
    if exc.fatal:
        session.state = SessionState.CLOSED
        return actions + [Close(peer, str(exc))]
    if isinstance(exc, FrameError) and exc.delta_lost:
        last = PeerError(
            "that line's clock could not be read, so this delta-encoded connection"
            " lost its previous clock (protocol section 12); closing it: reconnect",
            code=ErrorCode.DELTA_LOST,
        )
    elif exc.code not in FORGIVEN:
        session.errors += 1
        if session.errors >= max_errors:
            last = PeerError(
                f"{session.errors} refused frames; closing the connection",
                code=ErrorCode.TOO_MANY_ERRORS,
            )
    if last is None:
        return actions
    session.state = SessionState.CLOSED
    return actions + [
        Outgoing(peer, error_frame(last)),
        Refused(peer, session.address, last),
        Close(peer, str(last)),
    ]


def error_frame(exc: ProtocolError) -> Error:
    return Error(
        code=exc.code.value,
        message=str(exc),
        peer=getattr(exc, "peer", None),
        seq=getattr(exc, "seq", None),
    )
