"""Cluster mode: several vclock server nodes sharing clients over NATS.

Needs ``nats-py`` (``pip install vclock[cluster]``). The hub stays sans-I/O: it
returns :class:`~vclock.hub.Forward` actions for other nodes' clients and takes
their news through ``Hub.remote_joined``, ``remote_left``, ``deliver_remote``,
``merge_latest`` and ``merge_frontier``; :mod:`vclock.asyncio.server` carries
them over :class:`~vclock.cluster.backplane.Backplane`. See docs/cluster.md.
"""

from .messages import (
    WIRE_VERSION,
    Answers,
    Directory,
    Frontier,
    NodeMessage,
    Relay,
    Relayed,
    Relays,
    Status,
)

__all__ = [
    "WIRE_VERSION",
    "Answers",
    "Directory",
    "Frontier",
    "NodeMessage",
    "Relay",
    "Relayed",
    "Relays",
    "Status",
]
