"""Every exception vclock raises on purpose.

The hierarchy::

    VClockError
    ├── InvalidClock (also ValueError)    a clock that breaks the rules or the limits
    ├── LimitExceeded (also ValueError)   a frame we were about to send is over the server's limits
    ├── HoldBackFull                       a client's causal-broadcast hold-back queue is full
    └── ProtocolError                      the wire protocol was broken; carries a wire `code`
        ├── FrameError                     a line that is not a valid frame (with a JSON path)
        │   └── FrameTooLarge              a line longer than the size limit
        └── PeerError                      a valid frame that the hub refuses (unknown peer, ...)

The sans-I/O core raises these and the hub turns them into an ``error`` frame
for the one peer at fault, at the single place where peer input enters
(:meth:`vclock.hub.Hub.receive`). Any other exception escaping the core is a bug.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """The ``code`` field of an ``error`` frame (see docs/protocol.md)."""

    BAD_FRAME = "bad-frame"
    FRAME_TOO_LARGE = "frame-too-large"
    UNSUPPORTED_VERSION = "unsupported-version"
    INVALID_ID = "invalid-id"
    DUPLICATE_ID = "duplicate-id"
    UNEXPECTED_FRAME = "unexpected-frame"
    UNKNOWN_PEER = "unknown-peer"
    STALE_CLOCK = "stale-clock"
    AUTH_FAILED = "auth-failed"
    RATE_LIMITED = "rate-limited"
    INBOX_FULL = "inbox-full"
    TOO_MANY_ERRORS = "too-many-errors"
    SLOW_CONSUMER = "slow-consumer"
    DELTA_LOST = "delta-lost"
    FORGED_CLOCK = "forged-clock"
    TOO_MANY_IDS = "too-many-ids"
    TOO_MANY_HELD = "too-many-held"
    STORE_FULL = "store-full"
    HELLO_TIMEOUT = "hello-timeout"
    TOO_MANY_CONNECTIONS = "too-many-connections"
    SERVER_BUSY = "server-busy"


#: Codes after which the server closes the connection.
FATAL_CODES = frozenset(
    {
        ErrorCode.UNSUPPORTED_VERSION,
        ErrorCode.INVALID_ID,
        ErrorCode.DUPLICATE_ID,
        ErrorCode.AUTH_FAILED,
        ErrorCode.TOO_MANY_ERRORS,
        ErrorCode.SLOW_CONSUMER,
        ErrorCode.DELTA_LOST,
        ErrorCode.HELLO_TIMEOUT,
        ErrorCode.TOO_MANY_CONNECTIONS,
        ErrorCode.SERVER_BUSY,
    }
)


class VClockError(Exception):
    """Base class of every vclock error."""


class InvalidClock(VClockError, ValueError):
    """A vector clock with a bad id or counter, or over a configured limit."""


class LimitExceeded(VClockError, ValueError):
    """A frame this client was about to send is over a limit the server announced
    in ``welcome.limits`` (``limit`` names it: ``max_frame_size`` or
    ``max_clock_entries``), so the server would refuse it.

    Raised before anything happens: no tick, no event logged, nothing sent, and the
    connection's delta-encoding reference unmoved (docs/protocol.md, section 12).
    The session goes on; send something smaller.
    """

    def __init__(self, limit: str, size: int, maximum: int, what: str = "frame") -> None:
        self.limit = limit
        self.size = size
        self.maximum = maximum
        unit = "bytes" if limit == "max_frame_size" else "clock entries"
        super().__init__(
            f"this {what} would be {size} {unit}; the server's {limit} is {maximum};"
            " it was not sent"
        )


class HoldBackFull(VClockError):
    """A client's causal-broadcast hold-back queue reached its cap (``limit``
    broadcasts waiting for ones that have not arrived; ``waiting`` says what the
    oldest one waits for).

    The broadcast that did not fit, and everything after it, is neither taken
    nor acknowledged (a resume session's inbox keeps them on the server); the
    broadcasts already held stay held (and in the state file). The session ends:
    reading on would only meet the same wall.
    """

    def __init__(self, held: int, limit: int, waiting: str) -> None:
        self.held = held
        self.limit = limit
        self.waiting = waiting
        super().__init__(
            f"{held} causal broadcasts are held back (the limit is {limit}),"
            f" the oldest waiting for {waiting}; ending the session"
        )


class ProtocolError(VClockError):
    """The protocol was broken. ``code`` is the wire error code sent to the peer."""

    code: ErrorCode = ErrorCode.BAD_FRAME

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def fatal(self) -> bool:
        """True when the connection cannot go on after this error."""
        return self.code in FATAL_CODES


class FrameError(ProtocolError):
    """A line could not be decoded into a frame; ``path`` locates the bad field.

    ``delta_lost`` is set by a delta-encoded :class:`~vclock.protocol.Connection`
    when the line's clock could not be read either: the two ends of the
    connection no longer agree on the previous clock, so the session cannot go on
    (docs/protocol.md, section 12).
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.delta_lost = False


class FrameTooLarge(FrameError):
    """A line longer than ``limit`` bytes; it is discarded, never buffered whole."""

    code = ErrorCode.FRAME_TOO_LARGE

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"frame of at least {size} bytes exceeds the limit of {limit} bytes")


class PeerError(ProtocolError):
    """A well-formed frame the hub refuses; ``peer``/``seq`` name what it was about."""

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode,
        peer: str | None = None,
        seq: int | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.peer = peer
        self.seq = seq
