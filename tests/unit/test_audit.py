"""unicast_audit: every acknowledged unicast received exactly once."""

from __future__ import annotations

import datetime as _dt

from vclock.tools.audit import unicast_audit
from vclock.tools.eventlog import Event

T0 = _dt.datetime(2026, 1, 1, tzinfo=_dt.UTC)


def ev(pid: str, kind: str, peer: str, msg: str, at: float = 0.0) -> Event:
    ts = (T0 + _dt.timedelta(seconds=at)).isoformat()
    return Event(ts=ts, pid=pid, kind=kind, clock={}, peer=peer, msg=msg)


def test_lost_and_doubled_acknowledged_messages_are_named() -> None:
    events = [
        ev("A", "send", "B", "A#1"),  # received once: fine
        ev("B", "receive", "A", "A#1"),
        ev("A", "send", "B", "A#2"),  # lost
        ev("A", "send", "B", "A#3"),  # received twice
        ev("B", "receive", "A", "A#3"),
        ev("B", "receive", "A", "A#3"),
        ev("A", "send", "B", "A#4"),  # still unacknowledged: may be missing
        ev("A", "send", "server", "A#5"),  # a report: not a unicast
        ev("A", "send", "*", "A#6"),  # a broadcast
        ev("A", "send", "X", "A#7"),  # X left for good: not audited
        ev("A", "send", "B", "A#8", at=10),  # too late to tell
    ]
    before = T0 + _dt.timedelta(seconds=5)
    found = unicast_audit(events, receivers={"A", "B"}, unacked={"A#4"}, before=before)
    assert found == [("B", "A#2", 0), ("B", "A#3", 2)]
