"""delivery_audit: every acknowledged unicast and broadcast received exactly once."""

from __future__ import annotations

import datetime as _dt

from vclock.events import Event
from vclock.tools.audit import delivery_audit

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
    found = delivery_audit(events, receivers={"A", "B"}, unacked={"A#4"}, before=before)
    assert found == [("B", "A#2", 0), ("B", "A#3", 2)]


def test_an_acknowledged_broadcast_must_reach_every_other_receiver_once() -> None:
    events = [
        ev("A", "send", "*", "A#1"),  # before every receiver had joined: not judged
        ev("A", "send", "*", "A#2", at=2),  # B has it, C does not
        ev("B", "receive", "A", "A#2", at=2),
        ev("A", "send", "*", "A#3", at=3),  # both have it once: fine
        ev("B", "receive", "A", "A#3", at=3),
        ev("C", "receive", "A", "A#3", at=3),
        ev("C", "send", "*", "C#4", at=3),  # C's own is not expected at C
        ev("A", "receive", "C", "C#4", at=4),
        ev("B", "receive", "C", "C#4", at=4),
        ev("B", "receive", "C", "C#4", at=4),  # twice at B
    ]
    since, before = T0 + _dt.timedelta(seconds=1), T0 + _dt.timedelta(seconds=5)
    found = delivery_audit(
        events, receivers={"A", "B", "C"}, unacked=set(), before=before, since=since
    )
    assert found == [("C", "A#2", 0), ("B", "C#4", 2)]
    assert delivery_audit(events, receivers={"A", "B", "C"}, unacked=set(), before=before) == []
