"""vclock: vector clocks you can see.

The public API is re-exported here; import from ``vclock``, not from submodules.

- The clock library: :class:`VectorClock`, ordered by happened-before
  (:class:`Ordering`), checked against :class:`ClockLimits`.
- The events an :class:`vclock.asyncio.Client` yields when you iterate over it:
  :class:`Welcomed`, :class:`Message`, :class:`Synced`, :class:`PeerChange`,
  :class:`ServerError`, :class:`Acked`, :class:`Disconnected`, :class:`Goodbye`.
  :mod:`vclock.asyncio` connects a client to a server and runs servers.
- Tracing your own program, GoVector-style: :class:`Tracer`, :func:`merge_logs`
  (more in :mod:`vclock.tracing`).
- The errors, all :class:`VClockError`; :class:`ErrorCode` names the codes of
  the protocol's ``error`` frames (docs/protocol.md).
"""

from .client import (
    Acked,
    Disconnected,
    Goodbye,
    Message,
    PeerChange,
    PeerPage,
    ServerError,
    Synced,
    Welcomed,
)
from .clock import DEFAULT_LIMITS, ClockLimits, Ordering, VectorClock
from .errors import (
    ErrorCode,
    FrameError,
    FrameTooLarge,
    HoldBackFull,
    InvalidClock,
    LimitExceeded,
    PeerError,
    ProtocolError,
    VClockError,
)
from .tools.shiviz import export_shiviz
from .tracing import SHIVIZ_REGEX, Tracer, UnpackError, merge_logs

__version__ = "0.1.0"
"""This package's version, the one source of it (pyproject.toml reads it)."""

__all__ = [
    "Acked",
    "DEFAULT_LIMITS",
    "ClockLimits",
    "Disconnected",
    "ErrorCode",
    "FrameError",
    "FrameTooLarge",
    "Goodbye",
    "HoldBackFull",
    "InvalidClock",
    "LimitExceeded",
    "Message",
    "Ordering",
    "PeerChange",
    "PeerPage",
    "PeerError",
    "SHIVIZ_REGEX",
    "ProtocolError",
    "ServerError",
    "Synced",
    "Tracer",
    "UnpackError",
    "VClockError",
    "VectorClock",
    "Welcomed",
    "__version__",
    "export_shiviz",
    "merge_logs",
]
