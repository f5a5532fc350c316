"""vclock: vector clocks you can see.

The public API is re-exported here; import from ``vclock``, not from submodules.
"""

from .client import Goodbye, Message, PeerChange, PeerPage, ServerError, Synced, Welcomed
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

__all__ = [
    "DEFAULT_LIMITS",
    "ClockLimits",
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
