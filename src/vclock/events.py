"""The event-log vocabulary: the words servers, clients, tools and the dashboard share.

Every process of a run writes the same records (:class:`Event`, one JSON line
each, docs/eventlog.md), names the same two special peers (the server,
:data:`SERVER_ID`, and every other client, :data:`EVERYONE`) and links a receive
to its send by the same message ids (:func:`message_id`, :func:`sync_id`). They
are defined here, once, at the bottom of the package: this module imports nothing
of vclock, so the server, the client, the tracer, the checker, the diagram and
the dashboard can all use it without pulling in one another. Writing and reading
the log files is :mod:`vclock.tools.eventlog`'s job.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "ANNOTATION_KINDS",
    "CAUSAL_KINDS",
    "EVERYONE",
    "SERVER_ID",
    "SERVER_KINDS",
    "Event",
    "message_id",
    "sync_id",
]

#: The server's ``pid`` in its own log and the ``peer`` of a report or a sync: an
#: id no client may take (docs/protocol.md, client ids).
SERVER_ID = "server"

#: The ``peer`` of a broadcast ``send``: every other client.
EVERYONE = "*"

#: The client events that tick the process's own entry by one.
CAUSAL_KINDS = frozenset({"local", "send", "receive", "sync-receive"})

#: Events that carry the clock unchanged: a client came or went.
ANNOTATION_KINDS = frozenset({"join", "leave"})

#: The kinds the server logs: its start (with the frontier it restored), a frame
#: with a clock, a sync, and the annotations.
SERVER_KINDS = frozenset({"start", "receive", "sync"}) | ANNOTATION_KINDS


class Event(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One line of an event log; the fields are described in docs/eventlog.md."""

    ts: str
    pid: str
    kind: str
    clock: dict[str, int]
    peer: str | None = None
    msg: str | None = None
    to: list[str] | None = None
    desc: str | None = None


def message_id(sender: str, seq: int) -> str:
    """The id of a message across logs and tools: ``"A#7"``."""
    return f"{sender}#{seq}"


def sync_id(cycle: int) -> str:
    """The id of a synchronization cycle's sync message: ``"sync#3"``."""
    return f"sync#{cycle}"
