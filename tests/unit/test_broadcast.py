"""Causal broadcast: the hub's fan-out and the clients' Birman-Schiper-Stephenson
delivery (docs/protocol.md, section 13)."""

from __future__ import annotations

import pytest

from vclock import HoldBackFull, Message, VectorClock
from vclock.client import ClientState, SavedClient
from vclock.events import Event
from vclock.hub import Hub, SaveBroadcasts
from vclock.protocol import (
    PROTOCOL_VERSION,
    Broadcast,
    Connection,
    Deliver,
    Welcome,
    client_frame_decoder,
    server_frame_decoder,
)
from vclock.store import MEMORY, Store
from vclock.tools.checker import check

from ..helpers import HubHarness, assert_same_state


def vc(**entries: int) -> VectorClock:
    return VectorClock(entries)


def welcomed(id: str, bclock: VectorClock | None = None, resume: bool = False) -> ClientState:
    node = ClientState(id, resume=resume)
    node.receive_all(Welcome(v=PROTOCOL_VERSION, id=id, peers=[], sync_interval=1.0, bclock=bclock))
    return node


def bcast(sender: str, seq: int, clock: VectorClock, bclock: VectorClock, n: int | None = None):
    return Deliver(sender=sender, seq=seq, clock=clock, bclock=bclock, body=f"{sender}#{seq}", n=n)


# The client side: ClientState


def test_a_broadcast_ticks_both_vectors_once():
    node = welcomed("A")
    frame = node.broadcast("hi")
    assert frame == Broadcast(seq=1, clock=vc(A=1), bclock=vc(A=1), body="hi")
    node.send("B")
    frame = node.broadcast()
    assert (frame.seq, frame.clock, frame.bclock) == (3, vc(A=3), vc(A=2))


def test_the_next_broadcast_of_a_sender_with_nothing_missing_is_delivered_at_once():
    node = welcomed("C")
    events = node.receive_all(bcast("A", 1, vc(A=1), vc(A=1)))
    assert [e.id for e in events] == ["A#1"]
    assert events[0] == Message("A", 1, vc(A=1), "A#1", vc(A=1, C=1), broadcast=True)
    assert node.bdelivered == vc(A=1)


def test_a_broadcast_waits_for_the_broadcasts_it_depends_on():
    node = welcomed("C")
    b1 = bcast("B", 2, vc(A=1, B=2), vc(A=1, B=1))  # B had delivered A#1
    assert node.receive_all(b1) == []
    assert node.held == [b1]
    events = node.receive_all(bcast("A", 1, vc(A=1), vc(A=1)))
    assert [e.id for e in events] == ["A#1", "B#2"]
    assert node.held == []
    assert node.clock == vc(A=1, B=2, C=2)


def test_broadcasts_of_one_sender_are_delivered_in_their_order():
    node = welcomed("C")
    a3 = bcast("A", 3, vc(A=3), vc(A=3))
    a2 = bcast("A", 2, vc(A=2), vc(A=2))
    assert node.receive_all(a3) == []
    assert node.receive_all(a2) == []
    events = node.receive_all(bcast("A", 1, vc(A=1), vc(A=1)))
    assert [e.id for e in events] == ["A#1", "A#2", "A#3"]


def test_a_broadcast_delivered_before_is_dropped_without_a_tick():
    node = welcomed("C")
    a1 = bcast("A", 1, vc(A=1), vc(A=1))
    node.receive_all(a1)
    clock = node.clock
    assert node.receive_all(a1) == []
    assert node.clock == clock


def test_unicast_is_not_held_back_behind_a_broadcast():
    node = welcomed("C")
    assert node.receive_all(bcast("B", 2, vc(A=1, B=2), vc(A=1, B=1))) == []
    events = node.receive_all(Deliver(sender="B", seq=3, clock=vc(A=1, B=3)))
    assert [(e.id, e.broadcast) for e in events] == [("B#3", False)]


def test_welcome_bclock_counts_earlier_broadcasts_as_delivered():
    node = welcomed("C", bclock=vc(A=4))
    assert node.bdelivered == vc(A=4)
    events = node.receive_all(bcast("A", 9, vc(A=9), vc(A=5)))
    assert [e.id for e in events] == ["A#9"]


def test_a_plain_reconnect_skips_what_was_missed_while_away():
    node = welcomed("C")
    assert node.receive_all(bcast("A", 2, vc(A=2), vc(A=2))) == []  # A#1 was lost
    node.hello()
    events = node.receive_all(
        Welcome(v=PROTOCOL_VERSION, id="C", peers=[], sync_interval=1.0, bclock=vc(A=3))
    )
    # A#1 and A#3 will never come: counted as delivered. A#2, covered too, was
    # received: delivered, not dropped.
    assert [type(e).__name__ for e in events] == ["Welcomed", "Message"]
    assert events[1].id == "A#2"
    assert node.held == [] and node.bdelivered == vc(A=3)


def test_a_baseline_delivers_covered_held_broadcasts_in_causal_order():
    node = welcomed("C")
    a3 = bcast("A", 3, vc(A=3, B=2), vc(A=3, B=2))  # after B's second
    b2 = bcast("B", 2, vc(B=2), vc(B=2))
    a5 = bcast("A", 5, vc(A=5), vc(A=5, X=1))  # waits for X's first, not covered
    for frame in (a3, b2, a5):
        assert node.receive_all(frame) == []
    node.hello()
    events = node.receive_all(
        Welcome(v=PROTOCOL_VERSION, id="C", peers=[], sync_interval=1.0, bclock=vc(A=9, B=4))
    )
    assert [e.id for e in events if isinstance(e, Message)] == ["B#2", "A#3"]
    assert node.held == [a5]  # still waiting: its A count is the next one here
    assert node.bdelivered == vc(A=4, B=4)
    assert node.bskip == vc(A=9)  # A's 6th to 9th never come: counted after A#5
    assert [e.id for e in node.receive_all(bcast("X", 1, vc(X=1), vc(X=1)))] == ["X#1", "A#5"]
    assert node.bdelivered == vc(A=9, B=4, X=1) and node.bskip == VectorClock()
    assert [e.id for e in node.receive_all(bcast("A", 12, vc(A=12), vc(A=10)))] == ["A#12"]


def test_a_resume_node_with_held_broadcasts_keeps_its_counts_on_welcome():
    node = welcomed("C", resume=True)
    node.receive_all(bcast("A", 2, vc(A=2), vc(A=2), n=1))
    node.hello()
    node.receive_all(
        Welcome(v=PROTOCOL_VERSION, id="C", peers=[], sync_interval=1.0, bclock=vc(A=2))
    )
    assert node.bdelivered == VectorClock()
    assert len(node.held) == 1


def test_saved_state_keeps_the_broadcast_vector_and_the_hold_back_queue():
    node = welcomed("C", resume=True)
    node.receive_all(bcast("A", 1, vc(A=1), vc(A=1), n=1))
    node.receive_all(bcast("B", 2, vc(B=2, A=3), vc(A=3, B=1), n=2))
    node.broadcast()
    saved = node.save()
    again = ClientState("C", resume=True)
    again.restore(SavedClient(**{f: getattr(saved, f) for f in saved.__struct_fields__}))
    assert again.bdelivered == vc(A=1, C=1)
    assert again.held == node.held
    assert [f.seq for f in again.to_resend()] == [node.clock["C"]]


def test_bclock_survives_a_delta_encoded_connection():
    server = Connection(client_frame_decoder())
    client = Connection(server_frame_decoder())
    for conn in (server, client):
        conn.enable_delta()
    frame = bcast("A", 3, vc(A=3, B=2), vc(A=1, B=1))
    client.receive_data(server.encode(Deliver(sender="A", seq=1, clock=vc(A=1, B=9))))
    client.receive_data(server.encode(frame))
    assert client.events_received()[1] == frame


# The server side: the Hub


@pytest.fixture
def harness() -> HubHarness:
    return HubHarness(Hub(sync_interval=2.5))


def test_the_hub_relays_a_broadcast_to_every_other_client_with_its_bclock(harness):
    a, b, c = (harness.connect(i) for i in "ABC")
    frame = harness.broadcast(a, "all")
    for client in (b, c):
        assert client.delivers == [
            Deliver(sender="A", seq=1, clock=frame.clock, body="all", bclock=frame.bclock)
        ]
        assert [(m.id, m.broadcast) for m in client.messages] == [("A#1", True)]
    assert a.delivers == []
    assert harness.hub.latest["A"] == frame.clock
    assert harness.hub.broadcasts == vc(A=1)
    assert SaveBroadcasts("A", 1) in harness.stored
    harness.check_invariants()


def test_a_late_joiner_is_told_which_broadcasts_it_missed(harness):
    a, b = harness.connect("A"), harness.connect("B")
    harness.broadcast(a)
    harness.broadcast(b)
    harness.broadcast(a)
    c = harness.connect("C")
    welcome = c.received[0]
    assert isinstance(welcome, Welcome) and welcome.bclock == vc(A=2, B=1)
    harness.broadcast(b)
    assert [m.id for m in c.messages] == ["B#" + str(b.node.clock["B"])]
    harness.check_invariants()


def test_the_first_welcome_has_no_bclock_until_someone_broadcast(harness):
    a = harness.connect("A")
    assert a.received[0].bclock is None


def test_a_broadcast_whose_bclock_does_not_advance_is_refused(harness):
    a, _ = harness.connect("A"), harness.connect("B")
    harness.broadcast(a)
    a.node.bdelivered = VectorClock()  # a client that lost its broadcast count
    harness.broadcast(a)
    assert [e.code for e in a.errors] == ["bad-frame"]


def test_held_clients_get_broadcasts_in_their_inbox_and_in_causal_order(harness):
    a, b = harness.connect("A", resume=True), harness.connect("B", resume=True)
    c = harness.connect("C", resume=True)
    harness.disconnect(c)
    harness.broadcast(a)  # C is away: kept for it
    harness.broadcast(b)  # depends on A's
    harness.reconnect(c)
    assert [m.id for m in c.messages] == ["A#1", "B#2"]
    assert all(m.broadcast for m in c.messages)
    assert [ack.seq for ack in a.acks] == [1]
    harness.check_invariants()


def test_a_resent_broadcast_is_acknowledged_as_a_duplicate(harness):
    a, b = harness.connect("A", resume=True), harness.connect("B")
    frame = harness.broadcast(a)
    harness.send_frame(a, frame)
    assert [(ack.seq, ack.duplicate) for ack in a.acks] == [(1, False), (1, True)]
    assert len(b.delivers) == 1


def test_the_broadcast_counts_survive_a_restart():
    store = Store(MEMORY)
    harness = HubHarness(Hub(), store=store)
    a, _ = harness.connect("A"), harness.connect("B")
    harness.broadcast(a)
    harness.broadcast(a)
    assert_same_state(store.load(), harness.hub.state)
    assert store.load().broadcasts == vc(A=2)
    harness.restart()
    c = harness.connect("C")
    assert c.received[0].bclock == vc(A=2)


# The checker understands broadcasts


def ev(pid: str, kind: str, clock: dict[str, int], **fields) -> Event:
    return Event(ts="2024-01-01T00:00:00+00:00", pid=pid, kind=kind, clock=clock, **fields)


def test_the_checker_matches_a_broadcast_with_every_receive_and_flags_late_ones():
    events = [
        ev("A", "send", {"A": 1}, peer="*", msg="A#1"),
        ev("B", "receive", {"A": 1, "B": 1}, peer="A", msg="A#1"),
        ev("B", "send", {"A": 1, "B": 2}, peer="*", msg="B#2"),
        ev("C", "receive", {"A": 1, "B": 2, "C": 1}, peer="B", msg="B#2"),
        ev("C", "receive", {"A": 1, "B": 2, "C": 2}, peer="A", msg="A#1"),
    ]
    report = check(events, require_causal_delivery=True, causal_scope="broadcast")
    assert [v.rule for v in report.violations] == ["causal-delivery"]
    ordered = events[:3] + [
        ev("C", "receive", {"A": 1, "C": 1}, peer="A", msg="A#1"),
        ev("C", "receive", {"A": 1, "B": 2, "C": 2}, peer="B", msg="B#2"),
    ]
    assert check(ordered, require_causal_delivery=True, causal_scope="broadcast").ok


def test_the_checker_refuses_a_receive_of_ones_own_broadcast():
    events = [
        ev("A", "send", {"A": 1}, peer="*", msg="A#1"),
        ev("A", "receive", {"A": 2}, peer="A", msg="A#1"),
    ]
    assert "unmatched-receive" in {v.rule for v in check(events).violations}


def test_a_unicast_may_overtake_a_held_broadcast_of_the_same_sender():
    events = [
        ev("A", "send", {"A": 1}, peer="*", msg="A#1"),
        ev("A", "send", {"A": 2}, peer="B", msg="A#2"),
        ev("B", "receive", {"A": 2, "B": 1}, peer="A", msg="A#2"),
        ev("B", "receive", {"A": 2, "B": 2}, peer="A", msg="A#1"),
    ]
    report = check(events, require_causal_delivery=True, causal_scope="broadcast")
    assert report.ok, report.violations
    assert not check(events, require_causal_delivery=True).ok  # all messages: not causal


# The hold-back queue has a cap (HoldBackFull); a new inbox brings the baseline


def full_queue(max_held: int = 3) -> ClientState:
    """C holds ``max_held`` broadcasts of X, which all wait for X's first."""
    node = ClientState("C", resume=True, max_held=max_held)
    node.receive_all(Welcome(v=PROTOCOL_VERSION, id="C", peers=[], sync_interval=1.0))
    for n in range(1, max_held + 1):
        assert node.receive_all(bcast("X", n + 1, vc(X=n + 1), vc(X=n + 1), n=n)) == []
    return node


def test_a_full_hold_back_queue_refuses_the_next_broadcast_without_taking_it():
    node = full_queue(3)
    held, clock = list(node.held), node.clock
    with pytest.raises(HoldBackFull) as info:
        node.receive_all(bcast("Y", 1, vc(Y=1, X=5), vc(Y=1, X=5), n=4))
    assert (info.value.held, info.value.limit) == (3, 3)
    assert "broadcast 1 of 'X' (X#2 is held)" in str(info.value)
    # Not taken: not counted for `delivered`, so the server keeps it for later.
    assert node.delivered == 3 and node.held == held and node.clock == clock


def test_a_full_hold_back_queue_still_takes_what_needs_no_holding():
    node = full_queue(3)
    assert node.receive_all(bcast("X", 2, vc(X=2), vc(X=2), n=4)) == []  # a copy of one held
    assert node.delivered == 4
    events = node.receive_all(bcast("X", 1, vc(X=1), vc(X=1), n=5))  # the one they wait for
    assert [e.id for e in events] == ["X#1", "X#2", "X#3", "X#4"]
    assert node.held == [] and node.delivered == 5


def test_a_resume_node_on_a_new_inbox_takes_the_baseline_despite_held_broadcasts():
    # The old inbox, and the X#1 it still had for C, are gone: waiting is vain.
    node = full_queue(3)
    node.hello()
    events = node.receive_all(
        Welcome(
            v=PROTOCOL_VERSION, id="C", peers=[], sync_interval=1.0, bclock=vc(X=6), resumed=False
        )
    )
    assert [e.id for e in events if isinstance(e, Message)] == ["X#2", "X#3", "X#4"]
    assert node.held == [] and node.bdelivered == vc(X=6) and node.delivered == 0


def test_a_broadcast_whose_bclock_does_not_count_it_is_refused_with_its_seq():
    """Protocol section 5: bad-frame carries the seq of a broadcast refused for its
    bclock, so the sender knows which one (the doc said only a bad seq did)."""
    h = HubHarness(Hub())
    a = h.connect("A")
    h.connect("B")
    h.broadcast(a)
    stale = Broadcast(seq=2, clock=VectorClock({"A": 2}), bclock=VectorClock({"A": 1}))
    h.send_frame(a, stale)
    (error,) = a.errors
    assert (error.code, error.seq) == ("bad-frame", 2)
    assert "does not count this broadcast" in error.message
