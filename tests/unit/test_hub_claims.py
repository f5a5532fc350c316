"""What a client's clock may say about other ids, how many ids the hub tracks, and
how much it holds for away clients (docs/protocol.md 9 and 10.4)."""

from __future__ import annotations

from vclock import ErrorCode, VectorClock
from vclock.hub import Hub
from vclock.protocol import Broadcast, Report, Send, Sync, encode_frame

from ..helpers import HarnessClient, HubHarness

MAX = 2**63 - 1


def codes(client: HarnessClient) -> list[str]:
    return [error.code for error in client.errors]


# A clock may only carry what its sender could have received


def test_inflating_another_ids_entry_is_refused_and_that_id_stays_usable() -> None:
    """One client reporting B's entry as 2**63-1 used to disable B for good: the
    frontier took it, B merged it from a sync, ticked past the counter limit, and
    every frame of B was refused from then on (and after restarts)."""
    h = HubHarness(Hub(max_lead=0))
    a, b = h.connect("A"), h.connect("B")
    h.report(b)
    h.send_frame(a, Report(seq=1, clock=VectorClock({"A": 1, "B": MAX})))
    assert codes(a) == [ErrorCode.FORGED_CLOCK]
    assert a.errors[0].seq == 1 and "'B'" in a.errors[0].message
    assert h.hub.frontier == VectorClock({"B": 1}) and "A" not in h.hub.latest
    h.sync_cycle()
    for _ in range(3):
        h.send(b, "A")
        h.send(a, "B")
    assert codes(b) == [] and codes(a) == [ErrorCode.FORGED_CLOCK]
    assert max(h.hub.frontier._entries.values()) < 100
    h.check_invariants()


def test_an_entry_up_to_what_its_id_said_is_taken() -> None:
    h = HubHarness(Hub(max_lead=0))
    a, b = h.connect("A"), h.connect("B")
    for _ in range(3):
        h.report(b)
    h.send_frame(a, Report(seq=1, clock=VectorClock({"A": 1, "B": 3})))
    h.send_frame(a, Report(seq=2, clock=VectorClock({"A": 2, "B": 4})))
    assert codes(a) == [ErrorCode.FORGED_CLOCK]
    assert h.hub.latest["A"] == VectorClock({"A": 1, "B": 3})


def test_a_lead_bounds_claims_above_what_an_id_said_without_a_ratchet() -> None:
    """A cluster node allows a lead (what a moving client may know that the node
    has not heard yet); a claim taken into the frontier does not raise the bar."""
    h = HubHarness(Hub(max_lead=10))
    a, b = h.connect("A"), h.connect("B")
    h.report(b)
    h.send_frame(a, Report(seq=1, clock=VectorClock({"A": 1, "B": 11})))
    h.send_frame(a, Report(seq=2, clock=VectorClock({"A": 2, "B": 12})))
    assert codes(a) == [ErrorCode.FORGED_CLOCK]
    assert h.hub.frontier["B"] == 11


def test_a_forged_broadcast_vector_is_refused() -> None:
    """Receivers would hold such a broadcast back for ever, waiting for broadcasts
    that were never sent."""
    h = HubHarness(Hub(max_lead=0))
    a, _ = h.connect("A"), h.connect("B")
    h.send_frame(a, Broadcast(seq=1, clock=VectorClock({"A": 1}), bclock=VectorClock({"A": 5})))
    h.send_frame(
        a, Broadcast(seq=2, clock=VectorClock({"A": 2}), bclock=VectorClock({"A": 1, "B": 3}))
    )
    assert codes(a) == [ErrorCode.FORGED_CLOCK] * 2
    h.broadcast(h.clients[a.peer])
    assert codes(a) == [ErrorCode.FORGED_CLOCK] * 2


# A bounded number of ids, so that a sync always fits in a frame


def test_inventing_ids_in_a_clock_is_refused() -> None:
    """Reports inventing 60,000 ids each grew the frontier to 1.5M entries."""
    h = HubHarness(Hub(max_lead=0))
    a = h.connect("A")
    invented = {f"ghost-{i}": 1 for i in range(1000)}
    h.send_frame(a, Report(seq=1, clock=VectorClock({"A": 1, **invented})))
    assert codes(a) == [ErrorCode.FORGED_CLOCK]
    assert len(h.hub.frontier) == 0


def test_hellos_past_max_ids_are_refused_and_silent_ones_give_their_place_back() -> None:
    h = HubHarness(Hub(max_ids=3))
    a, b, c = h.connect("A"), h.connect("B"), h.connect("C")
    h.report(a)
    h.report(b)
    d = h.connect("D")
    assert codes(d) == [ErrorCode.TOO_MANY_IDS] and d.closed is None  # may try a known id
    h.disconnect(c)  # C never sent anything: its place is free again
    e = h.connect("E")
    assert codes(e) == [] and h.hub.clients == ["A", "B", "E"]
    h.disconnect(a)  # A has a clock: it stays tracked, and may come back
    assert codes(h.connect("A")) == []


def test_ids_are_bounded_by_what_fits_in_one_frame() -> None:
    """A sync (and an honest client's full clock) always fits in max_frame_size."""
    size = 2048
    h = HubHarness(Hub(max_frame_size=size))
    clients = [h.connect(f"{i:0>60}") for i in range(200)]
    welcomed = [c for c in clients if not c.errors]
    assert 5 < len(welcomed) < len(clients)
    for client in welcomed:
        h.report(client)
        client.node.clock = client.node.clock.tick(client.node.id or "")
    for client in welcomed:  # counters as large as they can be
        h.hub.latest[client.node.id or ""] = VectorClock({client.node.id or "": 2**63 - 1})
    from vclock.clock import merge_all

    worst = merge_all(h.hub.latest.values())
    assert len(encode_frame(Sync(cycle=2**62, clock=worst))) <= size
    assert len(encode_frame(Send(to="x" * 64, seq=MAX, clock=worst))) <= size


def test_a_node_with_a_lead_still_bounds_the_ids_it_tracks() -> None:
    h = HubHarness(Hub(max_lead=5, max_ids=10))
    a = h.connect("A")
    h.send_frame(a, Report(seq=1, clock=VectorClock({"A": 1, "B": 2, "C": 3})))
    assert codes(a) == []  # ids it never heard of, within the lead: taken
    many = {f"X{i}": 1 for i in range(20)}
    h.send_frame(a, Report(seq=2, clock=VectorClock({"A": 2, **many})))
    assert codes(a) == [ErrorCode.TOO_MANY_IDS]
    assert len(h.hub.frontier) == 3


# What is held for away clients: bounded, each message counted once


def ghosts(h: HubHarness, n: int) -> None:
    for i in range(n):
        h.disconnect(h.connect(f"ghost{i}", resume=True))


def test_held_clients_are_capped() -> None:
    h = HubHarness(Hub(max_held=3))
    ghosts(h, 3)
    late = h.connect("late", resume=True)
    assert codes(late) == [ErrorCode.TOO_MANY_HELD] and late.closed is None
    assert codes(h.connect("plain")) == []
    back = h.connect("ghost1", resume=True)  # already held: welcome
    assert codes(back) == []


def test_a_broadcast_held_by_many_inboxes_counts_once_against_the_total() -> None:
    """300 ghost inboxes times eight 256 KiB broadcasts grew the database by
    677 MiB: the bytes held are counted (and stored) once per message."""
    body = "x" * 10_000
    h = HubHarness(Hub(max_held_bytes=35_000))
    ghosts(h, 20)
    a = h.connect("A")
    for _ in range(3):
        h.broadcast(a, body)
    assert codes(a) == []
    assert 30_000 < h.hub.holding.held.total < 35_000
    h.broadcast(a, body)
    assert codes(a) == [ErrorCode.STORE_FULL]
    assert all(len(inbox.messages) == 3 for inbox in h.hub.inboxes.values())


def test_an_inbox_is_capped_in_bytes_and_delivered_frees_them() -> None:
    h = HubHarness(Hub(max_inbox_bytes=25_000))
    r = h.connect("R", resume=True)
    h.disconnect(r)
    a = h.connect("A")
    h.send(a, "R", "x" * 10_000)
    h.send(a, "R", "x" * 10_000)
    h.send(a, "R", "x" * 10_000)
    assert codes(a) == [ErrorCode.INBOX_FULL]
    assert "bytes" in a.errors[0].message
    h.reconnect(r)
    h.acknowledge(r)
    assert h.hub.inboxes["R"].nbytes == 0 and h.hub.holding.held.total == 0
    h.send(a, "R", "x" * 10_000)
    assert codes(a) == [ErrorCode.INBOX_FULL]


def test_held_bytes_are_counted_again_after_a_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from vclock.store import Store

    h = HubHarness(Hub(max_lead=0), store=Store(tmp_path / "data"))
    ghosts(h, 5)
    a = h.connect("A")
    h.broadcast(a, "x" * 5000)
    total = h.hub.holding.held.total
    hub = h.restart()
    assert hub.holding.held.total == total
    assert all(inbox.nbytes == total for inbox in hub.inboxes.values())


def test_a_server_that_lost_its_memory_takes_honest_clocks_ahead_of_it():
    """After a restart without storage the clients' clocks are ahead of everything
    the server heard; the default lead takes them (the strict 0 would refuse)."""
    h = HubHarness(Hub())
    a = h.connect("A")
    h.send_frame(a, Report(seq=41, clock=VectorClock({"A": 41, "B": 37, "C": 40})))
    assert codes(a) == []
    assert h.hub.frontier == VectorClock({"A": 41, "B": 37, "C": 40})
    # ... and still refuses the poison, and any raise of more than the lead.
    h.send_frame(a, Report(seq=42, clock=VectorClock({"A": 42, "B": MAX})))
    h.send_frame(a, Report(seq=43, clock=VectorClock({"A": 43, "C": 40 + 1_000_001})))
    assert codes(a) == [ErrorCode.FORGED_CLOCK] * 2


def test_broadcast_counts_get_no_lead_on_one_server_but_do_in_a_cluster() -> None:
    """The chaos run's find: with the default max_lead a bclock counting a million
    broadcasts never relayed was taken, and every receiver waited for ever."""
    from vclock.hub import ClusterHub

    h = HubHarness(Hub())
    a, _ = h.connect("A"), h.connect("B")
    forged = Broadcast(seq=1, clock=VectorClock({"A": 1}), bclock=VectorClock({"A": 1, "B": 1}))
    h.send_frame(a, forged)
    assert codes(a) == [ErrorCode.FORGED_CLOCK]
    node = HubHarness(ClusterHub())
    c = node.connect("A")
    node.send_frame(c, forged)  # B's broadcast may still be on its way to this node
    assert codes(c) == []
