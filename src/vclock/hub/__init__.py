"""The sans-I/O hub: client registry, routing and synchronization cycles."""

from .actions import (
    STORE_TYPES,
    Action,
    Close,
    DropInbox,
    Expired,
    Forward,
    Joined,
    Left,
    Notice,
    Outgoing,
    PeerId,
    Received,
    Refused,
    SaveBroadcasts,
    SaveClock,
    SaveCycle,
    SaveInbox,
    SaveMessage,
    StoreAction,
    SyncCycle,
)
from .cluster import ClusterHub
from .hub import Hub
from .ids import DEFAULT_MAX_LEAD, IdLedger
from .inbox import DEFAULT_WINDOW, HeldBytes, Inbox, Inboxes
from .state import TRANSITIONS, HubState, SessionState, next_state

__all__ = [
    "DEFAULT_MAX_LEAD",
    "DEFAULT_WINDOW",
    "STORE_TYPES",
    "TRANSITIONS",
    "Action",
    "Close",
    "ClusterHub",
    "DropInbox",
    "Expired",
    "Forward",
    "HeldBytes",
    "Hub",
    "HubState",
    "IdLedger",
    "Inbox",
    "Inboxes",
    "Joined",
    "Left",
    "Notice",
    "Outgoing",
    "PeerId",
    "Received",
    "Refused",
    "SaveBroadcasts",
    "SaveClock",
    "SaveCycle",
    "SaveInbox",
    "SaveMessage",
    "SessionState",
    "StoreAction",
    "SyncCycle",
    "next_state",
]
