"""Did every acknowledged message arrive exactly once? An audit of a run's logs.

The checker (:mod:`vclock.tools.checker`) judges the clocks; this judges
delivery. A unicast ``send`` to one of ``receivers`` that its sender no longer
holds unacknowledged (``unacked``: the message ids still in the senders'
``--state`` files at the end) must have been received exactly once; so must an
acknowledged broadcast (peer ``*``) by every one of ``receivers`` but its
sender, if it was sent at or after ``since`` (when every receiver had joined:
one that joins later is not sent the broadcasts before it). Messages sent at or
after ``before`` are left out: their receivers may have been stopping.
``receivers`` must be clients that never left for good (no ``bye``) while the
run went on: a send to one that did is refused with ``unknown-peer``, which
drops it from ``unacked`` too, and the logs do not record refusals.
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from collections.abc import Iterable

from ..events import EVERYONE, Event


def delivery_audit(
    events: Iterable[Event],
    *,
    receivers: set[str],
    unacked: set[str],
    before: _dt.datetime,
    since: _dt.datetime | None = None,
) -> list[tuple[str, str, int]]:
    """``(receiver, message id, times received)`` for every acknowledged message
    to ``receivers`` that was not received exactly once; empty when all were.
    Broadcasts are judged only with ``since``."""
    events = list(events)
    received = Counter((e.pid, e.msg) for e in events if e.kind == "receive" and e.msg)
    expected: list[tuple[str, str]] = []
    for e in events:
        if e.kind != "send" or e.msg is None or e.msg in unacked:
            continue
        sent = _dt.datetime.fromisoformat(e.ts)
        if sent >= before:
            continue
        if e.peer in receivers:
            expected.append((e.peer, e.msg))
        elif e.peer == EVERYONE and since is not None and sent >= since:
            expected += [(to, e.msg) for to in sorted(receivers - {e.pid})]
    return [(to, msg, received[to, msg]) for to, msg in expected if received[to, msg] != 1]
