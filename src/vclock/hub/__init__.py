"""The sans-I/O hub: client registry, routing and synchronization cycles."""

from .actions import (
    STORE_TYPES,
    Action,
    Close,
    DropInbox,
    Joined,
    Left,
    Notice,
    Outgoing,
    PeerId,
    Received,
    Refused,
    SaveClock,
    SaveCycle,
    SaveInbox,
    SaveMessage,
    StoreAction,
    SyncCycle,
)
from .hub import SERVER_ID, Hub, HubState, Inbox
from .limits import TokenBucket
from .state import TRANSITIONS, SessionState, next_state

__all__ = [
    "SERVER_ID",
    "STORE_TYPES",
    "TRANSITIONS",
    "Action",
    "Close",
    "DropInbox",
    "Hub",
    "HubState",
    "Inbox",
    "Joined",
    "Left",
    "Notice",
    "Outgoing",
    "PeerId",
    "Received",
    "Refused",
    "SaveClock",
    "SaveCycle",
    "SaveInbox",
    "SaveMessage",
    "SessionState",
    "StoreAction",
    "SyncCycle",
    "TokenBucket",
    "next_state",
]
