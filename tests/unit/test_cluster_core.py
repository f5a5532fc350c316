"""The sans-I/O side of cluster mode: the membership directory and the hub's
methods for other nodes' clients (no NATS here; tests/integration/test_cluster.py
runs the real thing)."""

from __future__ import annotations

from vclock import VectorClock
from vclock.cluster import Directory, Status
from vclock.hub import ClusterHub, Forward, Inbox, Outgoing
from vclock.protocol import Broadcast, Deliver, PeerJoined, PeerLeft, Welcome

from ..helpers import HubHarness


def test_the_directory_reports_joins_and_leaves_and_forgets_silent_nodes():
    directory = Directory("n1", dead_after=2.0)
    assert directory.update(Status(node="n2", clients=["A", "B"]), now=0.0) == (["A", "B"], [])
    assert directory.update(Status(node="n2", clients=["B"]), now=1.0) == ([], ["A"])
    assert directory.update(Status(node="n1", clients=["X"]), now=1.0) == ([], [])  # ourselves
    assert directory.remote_clients() == {"B": "n2"}
    assert directory.expire(now=2.5) == ([], [])
    assert directory.expire(now=3.5) == ([], ["B"])


def test_a_client_that_moved_is_not_reported_as_left_while_a_live_node_lists_it():
    directory = Directory("n1", dead_after=2.0)
    directory.update(Status(node="n2", clients=["A"]), now=0.0)
    directory.update(Status(node="n3", clients=["A"]), now=1.5)
    assert directory.expire(now=2.5) == ([], [])
    assert directory.remote_clients() == {"A": "n3"}


def test_remote_clients_are_peers_and_their_comings_and_goings_are_told():
    harness = HubHarness(ClusterHub())
    a = harness.connect("A")
    harness.run(harness.hub.remote_joined("R"))
    b = harness.connect("B")
    assert isinstance(b.received[0], Welcome) and b.received[0].peers == ["A", "R"]
    assert PeerJoined(id="R") in a.received
    harness.run(harness.hub.remote_left("R"))
    assert PeerLeft(id="R") in a.received and PeerLeft(id="R") in b.received


def test_a_send_to_a_remote_client_is_forwarded_and_a_broadcast_published():
    hub = ClusterHub()
    harness = HubHarness(hub)
    a = harness.connect("A")
    hub.remote_joined("R")
    harness.send(a, "R", "hi")
    forwards = [n for n in harness.notices if isinstance(n, Forward)]
    assert [(f.to, f.frame.seq, f.frame.body) for f in forwards] == [("R", 1, "hi")]
    assert a.errors == []
    harness.broadcast(a)
    forwards = [n for n in harness.notices if isinstance(n, Forward)]
    assert forwards[-1].to is None and forwards[-1].frame.bclock == VectorClock({"A": 1})


def test_remote_messages_are_delivered_and_their_clocks_go_into_the_frontier_only():
    hub = ClusterHub()
    harness = HubHarness(hub)
    b = harness.connect("B")
    unicast = Deliver(sender="R", seq=2, clock=VectorClock({"R": 2}))
    harness.run(hub.deliver_remote(unicast, "B"))
    broadcast = Deliver(
        sender="R", seq=3, clock=VectorClock({"R": 3}), bclock=VectorClock({"R": 1})
    )
    harness.run(hub.deliver_remote(broadcast))
    assert [m.id for m in b.messages] == ["R#2", "R#3"]
    assert hub.frontier == VectorClock({"R": 3}) and hub.broadcasts == VectorClock({"R": 1})
    # not latest: R#1 may still be on its way (relays are FIFO per receiver), and
    # a resent R#1 must not be taken for a copy because R#2 and R#3 came
    assert "R" not in hub.latest
    assert hub.deliver_remote(unicast, "gone") == []  # left meanwhile: dropped
    hub.merge_frontier(VectorClock({"Z": 9}))
    assert any(isinstance(a, Outgoing) and a.frame.clock["Z"] == 9 for a in hub.begin_sync_cycle())


def test_assigned_ids_carry_the_node_prefix():
    harness = HubHarness(ClusterHub(node_id="n1"))
    client = harness.connect(None)
    assert client.node.id == "client-n1-1"


def test_any_message_from_a_node_keeps_it_alive():
    directory = Directory("n1", dead_after=2.0)
    directory.update(Status(node="n2", clients=["A"]), now=0.0)
    directory.heard("n2", now=1.5)  # a relay, its status queued behind it
    assert directory.expire(now=3.0) == ([], [])
    assert directory.expire(now=3.6) == ([], ["A"])
    directory.heard("n2", now=4.0)  # a node taken for dead comes back by its status only
    assert directory.remote_clients() == {}


def test_time_this_node_could_not_listen_does_not_count_against_the_others():
    directory = Directory("n1", dead_after=2.0)
    directory.update(Status(node="n2", clients=["A"]), now=0.0)
    directory.pause(1.8, now=2.5)  # our loop was stuck from 0.7 to 2.5
    assert directory.expire(now=2.5) == ([], [])  # 0.7 s of silence we heard
    assert directory.alive("n2", now=3.5)
    assert directory.expire(now=4.0) == ([], ["A"])
    directory.update(Status(node="n3", clients=["B"]), now=5.0)
    directory.pause(10.0, now=5.5)  # never beyond now
    assert directory.nodes["n3"][0] == 5.5


def test_a_node_that_leaves_cleanly_turns_its_resume_clients_into_orphans():
    directory = Directory("n1", dead_after=2.0, orphan_ttl=4.0)
    status = Status(node="n2", clients=["A", "P"], resume=["A"], held=["R"])
    directory.update(status, now=0.0)
    leaving = Status(node="n2", clients=[], held=["A", "R"], leaving=True)
    assert directory.update(leaving, now=1.0) == ([], ["A", "P"])
    assert set(directory.orphans) == {"A", "R"}  # expected back elsewhere: relayed, not refused
    assert "n2" not in directory.nodes
    assert directory.locate("A") is None


def test_a_broadcast_resent_after_a_failover_is_relayed_again_and_dropped_as_a_copy():
    """S broadcast through another node, which died before acking it; this node
    had relayed it (so counts it) but has not stored S's clock. S's resend is
    taken and relayed again, for the nodes that may not have it; a client that
    already delivered it drops the copy."""
    hub = ClusterHub()
    harness = HubHarness(hub)
    b = harness.connect("B")
    first = Broadcast(seq=1, clock=VectorClock({"S": 1}), bclock=VectorClock({"S": 1}), body="x")
    relayed = Deliver(sender="S", seq=1, clock=first.clock, body="x", bclock=first.bclock)
    harness.run(hub.deliver_remote(relayed))
    s = harness.connect("S", resume=True)  # it moved here; the same frame, resent
    actions = harness.send_frame(s, first)
    assert [(ack.seq, ack.duplicate) for ack in s.acks] == [(1, False)]
    assert Forward(None, relayed) in actions
    assert len(b.delivers) == 2 and [m.id for m in b.messages] == ["S#1"]
    assert not s.errors


def test_a_returning_resume_client_is_told_what_it_acknowledged_not_the_nodes_counts():
    """C's node died; this node relayed S's broadcasts 1 and 2 to its own clients
    and counts them, but they are still on their way into C's inbox (relayed one
    by one by S's node). C's welcome must not count them as delivered: it says
    what C acknowledged (its inbox's base), and C delivers both when they come."""
    hub = ClusterHub()
    harness = HubHarness(hub)
    harness.connect("B")
    first, second = (
        Deliver(sender="S", seq=n, clock=VectorClock({"S": n}), bclock=VectorClock({"S": n}))
        for n in (1, 2)
    )
    for deliver in (first, second):
        harness.run(hub.deliver_remote(deliver))
    assert hub.broadcasts == VectorClock({"S": 2})
    hub.adopt_inbox("C", Inbox(acked=7, base=VectorClock()))  # as its old node stored it
    c = harness.connect("C", resume=True)
    assert c.received[0].bclock is None  # nothing counted as delivered
    for deliver in (first, second):
        harness.run(hub.deliver_remote(deliver, "C"))
    assert [m.id for m in c.messages] == ["S#1", "S#2"]


def test_node_messages_take_the_fast_path_only_for_clocks_the_careful_one_accepts():
    """Clocks between nodes are checked by builtins (the usual case) and fall back
    to the careful check otherwise: the same clocks, the same refusals."""
    from vclock.cluster.messages import Relayed, Relays, decode_message, encode_message
    from vclock.errors import FrameError

    def relayed(clock: str) -> bytes:
        return (
            b'{"type":"relays","node":"n2","reply":"r","relays":[{"id":1,'
            b'"deliver":{"type":"deliver","from":"A","seq":1,"clock":' + clock.encode() + b"}}]}"
        )

    for clock, expected in (
        ('{"A":1,"B":2}', {"A": 1, "B": 2}),
        ('{"A":1,"B":0}', {"A": 1}),  # zeros dropped, as VectorClock() does
        ("{}", {}),
    ):
        message = decode_message(relayed(clock))
        assert isinstance(message, Relays)
        assert message.relays[0].deliver.clock == VectorClock(expected)
    for bad in ('{"A":-1}', '{"A":1.5}', '{"A":true}', '{"":1}', '{"A":"1"}', "[]", "null"):
        try:
            decode_message(relayed(bad))
        except FrameError:
            continue
        raise AssertionError(f"{bad} accepted")
    again = Relayed(id=7, deliver=Deliver(sender="A", seq=1, clock=VectorClock({"A": 1})))
    assert decode_message(encode_message(Relays(node="n1", reply="r", relays=[again]))) == Relays(
        node="n1", reply="r", relays=[again]
    )


def test_a_batch_of_relays_decodes_to_what_was_encoded_fast_path_or_not():
    """Relays are decoded by msgspec-checked twins (no Python per clock) and fall
    back to the careful decoder: both give what was encoded, frontier included,
    and neither leaves objects for the garbage collector to track."""
    import gc

    from vclock.cluster.messages import Relayed, Relays, decode_message, encode_message

    batch = Relays(
        node="n1",
        reply="r",
        relays=[
            Relayed(
                id=1,
                deliver=Deliver(sender="A", seq=3, clock=VectorClock({"A": 3, "B": 1}), body=[1]),
                to="B",
            ),
            Relayed(
                id=2,
                deliver=Deliver(
                    sender="A", seq=4, clock=VectorClock({"A": 4}), bclock=VectorClock({"A": 1})
                ),
            ),
        ],
        frontier=VectorClock({"A": 4, "B": 2}),
    )
    data = encode_message(batch)
    assert decode_message(data) == batch
    odd = data.replace(b'"B":1', b'"B":1,"C":0')  # a zero: the careful decoder drops it
    assert odd != data and decode_message(odd) == batch
    assert not gc.is_tracked(decode_message(data))


def test_a_batch_is_delivered_with_its_nodes_frontier_taken_in_once():
    """The relaying node sends its frontier with each batch (at or above every
    clock in it); the receiving node takes that into its frontier instead of
    merging the relayed clocks one by one, and delivers each relay as before."""
    harness = HubHarness(ClusterHub())
    b = harness.connect("B")
    relays: list[tuple[Deliver, str | None]] = [
        (Deliver(sender="A", seq=n, clock=VectorClock({"A": n, "B": 1})), "B") for n in (1, 2)
    ]
    harness.run(harness.hub.deliver_relays(relays, VectorClock({"A": 5, "B": 1, "C": 2})))
    assert [m.id for m in b.messages] == ["A#1", "A#2"]
    assert harness.hub.frontier == VectorClock({"A": 5, "B": 1, "C": 2})
    harness.run(
        harness.hub.deliver_relays([(Deliver(sender="A", seq=6, clock=VectorClock({"A": 6})), "B")])
    )
    assert harness.hub.frontier == VectorClock({"A": 6, "B": 1, "C": 2})  # no frontier: each clock


def test_the_directory_locates_clients_as_the_lists_change():
    directory = Directory("n1", dead_after=2.0)
    directory.update(Status(node="n2", clients=["A"], held=["H"]), now=0.0)
    assert directory.locate("A") == "n2" and directory.locate("H") == "n2"
    directory.update(Status(node="n3", clients=["A"], wire=2), now=1.0)  # A moved: both list it
    assert directory.locate("A") == "n3"  # the most recently heard
    directory.heard("n2", now=1.5)
    assert directory.locate("A") == "n2"
    assert directory.wire == {"n2": 1, "n3": 2}
    directory.update(Status(node="n2", clients=[]), now=2.0)
    assert directory.locate("A") == "n3" and directory.locate("H") is None
    directory.expire(now=5.0)  # both silent: forgotten
    assert directory.locate("A") is None and directory.wire == {}


def test_a_cluster_node_collects_young_garbage_every_10000_allocations_not_700():
    """A node keeps relays in flight and decodes batches of them at once; the
    default threshold (700) made the collector move hundreds of live ones into
    the older generations every time (docs/performance.md, section 7)."""
    import gc

    from vclock.asyncio.cluster_link import GC_THRESHOLD, collect_less_often

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        collect_less_often()
        assert gc.get_threshold() == (GC_THRESHOLD, 10, 10) == (10_000, 10, 10)
        gc.set_threshold(50_000, 10, 10)
        collect_less_often()  # never lowers it
        assert gc.get_threshold() == (50_000, 10, 10)
    finally:
        gc.set_threshold(*before)
