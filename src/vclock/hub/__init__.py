"""The sans-I/O hub: client registry, routing and synchronization cycles."""

from .hub import (
    SERVER_ID,
    Action,
    Close,
    Hub,
    Joined,
    Left,
    Outgoing,
    PeerId,
    Received,
    Refused,
    SyncCycle,
)
from .state import TRANSITIONS, SessionState, next_state

__all__ = [
    "SERVER_ID",
    "TRANSITIONS",
    "Action",
    "Close",
    "Hub",
    "Joined",
    "Left",
    "Outgoing",
    "PeerId",
    "Received",
    "Refused",
    "SessionState",
    "SyncCycle",
    "next_state",
]
