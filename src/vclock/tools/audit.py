"""Did every acknowledged message arrive exactly once? An audit of a run's logs.

The checker (:mod:`vclock.tools.checker`) judges the clocks; this judges
delivery. A unicast ``send`` to one of ``receivers`` that its sender no longer
holds unacknowledged (``unacked``: the message ids still in the senders'
``--state`` files at the end) must have been received exactly once. Sends made
at or after ``before`` are left out: their receivers may have been stopping.
``receivers`` must be clients that never left for good (no ``bye``) while the run
went on: a send to one that did is refused with ``unknown-peer``, which drops it
from ``unacked`` too, and the logs do not record refusals.
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from collections.abc import Iterable

from .eventlog import Event


def unicast_audit(
    events: Iterable[Event], *, receivers: set[str], unacked: set[str], before: _dt.datetime
) -> list[tuple[str, str, int]]:
    """``(receiver, message id, times received)`` for every acknowledged unicast to
    ``receivers`` sent before ``before`` that was not received exactly once; empty
    when all were."""
    events = list(events)
    received = Counter((e.pid, e.msg) for e in events if e.kind == "receive" and e.msg)
    acked = [
        (e.peer, e.msg)
        for e in events
        if e.kind == "send"
        and e.peer in receivers
        and e.msg is not None
        and e.msg not in unacked
        and _dt.datetime.fromisoformat(e.ts) < before
    ]
    return [(to, msg, received[to, msg]) for to, msg in acked if received[to, msg] != 1]
