"""The hub's in-place clocks (hub/clocks.py): the frontier and what each client
knows change in place, yet never change a clock the hub handed out."""

from __future__ import annotations

from vclock import VectorClock
from vclock.clock import merge_all
from vclock.hub import Hub, Outgoing
from vclock.hub.clocks import Frontier, Known
from vclock.protocol import Sync, Welcome

from ..helpers import HubHarness


def test_known_copies_a_shared_clock_before_raising_it():
    shared = VectorClock({"A": 2, "B": 1})
    known = Known(shared)
    known.merge(VectorClock({"A": 1}))  # raises nothing: still shared, no copy
    known.merge(VectorClock({"B": 5, "C": 1}))
    assert shared == VectorClock({"A": 2, "B": 1}) and shared.total == 3
    assert known.clock == VectorClock({"A": 2, "B": 5, "C": 1}) and known.total == 8
    known.reset(shared)
    assert known.clock == shared and known.total == 3


def test_a_frontier_snapshot_stays_as_it_was():
    frontier = Frontier(VectorClock({"A": 1}))
    before = frontier.clock
    frontier.raise_to(frontier.gains(VectorClock({"A": 3, "B": 1})))
    assert before == VectorClock({"A": 1})
    assert frontier.clock == VectorClock({"A": 3, "B": 1}) and frontier.total == 4
    assert frontier.gains(VectorClock({"A": 2, "B": 2})) == {"B": 2}


def test_syncs_and_welcomes_keep_their_clocks_while_messages_flow():
    harness = HubHarness(Hub())
    a, b, c = (harness.connect(name) for name in "ABC")
    harness.send(a, "B")
    harness.send(b, "C")
    synced = [action.frame for action in harness.sync_cycle() if isinstance(action, Outgoing)]
    frontier = harness.hub.frontier
    copies = [dict(frame.clock.items()) for frame in synced]
    assert synced and all(isinstance(frame, Sync) for frame in synced)
    harness.disconnect(a)
    harness.reconnect(a)
    again = a
    (welcome, *_) = [frame for frame in reversed(again.received) if isinstance(frame, Welcome)]
    welcomed = dict(welcome.clock.items())
    for _ in range(3):  # every sender, receiver and the frontier move on
        harness.send(again, "B")
        harness.send(b, "C")
        harness.send(c, "A")
    assert [dict(frame.clock.items()) for frame in synced] == copies
    assert dict(welcome.clock.items()) == welcomed
    assert frontier == VectorClock(copies[0])
    assert harness.hub.frontier == merge_all(harness.hub.latest.values())
    harness.check_invariants()
    (first, *_) = [action for action in harness.sync_cycle() if isinstance(action, Outgoing)]
    assert first.frame.clock == harness.hub.frontier


def test_a_clients_own_clocks_count_once_the_total_is_read():
    """The hub hands Known the sender's latest clock per message (no merge then);
    the sync cycle's read of ``total`` takes it in."""
    known = Known(VectorClock({"A": 1, "C": 2}))
    known.sent(VectorClock({"A": 2, "B": 1}))
    known.sent(VectorClock({"A": 3, "B": 1}))  # its latest: at least the one before
    assert known.total == 6
    assert known.clock == VectorClock({"A": 3, "B": 1, "C": 2})
    known.reset(VectorClock({"A": 3}))
    assert known.total == 3  # a reset forgets what was pending
