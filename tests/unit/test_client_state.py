"""ClientState: one client's clock rules and peer list, without I/O."""

from __future__ import annotations

import msgspec
import pytest

from vclock import (
    ErrorCode,
    Goodbye,
    LimitExceeded,
    Message,
    PeerChange,
    PeerError,
    ServerError,
    Synced,
    VectorClock,
    Welcomed,
)
from vclock.client import ClientState
from vclock.events import message_id, sync_id
from vclock.protocol import (
    PROTOCOL_VERSION,
    Bye,
    Deliver,
    Error,
    Hello,
    PeerJoined,
    PeerLeft,
    Report,
    Send,
    Sync,
    Welcome,
    encode_frame,
)

from ..helpers import welcomed_with_limits


def welcomed(
    id: str = "A", peers: list[str] | None = None, clock: VectorClock | None = None
) -> ClientState:
    node = ClientState(id)
    node.receive(
        Welcome(
            v=PROTOCOL_VERSION,
            id=id,
            peers=peers or [],
            sync_interval=1.0,
            clock=clock or VectorClock(),
        )
    )
    return node


def test_hello_asks_for_the_configured_id():
    assert ClientState("A").hello() == Hello(v=PROTOCOL_VERSION, id="A", delta=True)
    assert ClientState(delta=False).hello() == Hello(v=PROTOCOL_VERSION)


def test_a_new_node_starts_with_the_empty_clock():
    node = ClientState("A")
    assert node.clock == VectorClock()
    assert not node.welcomed
    assert node.peers == []


# Our own events


def test_a_local_event_ticks_our_own_entry():
    node = welcomed("A")
    assert node.local_event() == VectorClock({"A": 1})
    assert node.local_event() == VectorClock({"A": 2})
    assert node.clock == VectorClock({"A": 2})


def test_send_ticks_and_carries_the_new_clock():
    node = welcomed("A")
    frame = node.send("B", body="hi")
    assert frame == Send(to="B", seq=1, clock=VectorClock({"A": 1}), body="hi")
    assert node.clock == VectorClock({"A": 1})


def test_a_sent_clock_is_a_snapshot_that_later_events_do_not_change():
    node = welcomed("A")
    frame = node.send("B")
    node.local_event()
    node.receive(Deliver(sender="B", seq=4, clock=VectorClock({"B": 4})))
    assert frame.clock == VectorClock({"A": 1})


def test_report_ticks_and_carries_the_new_clock():
    node = welcomed("A")
    node.local_event()
    assert node.report() == Report(seq=2, clock=VectorClock({"A": 2}))


def test_seq_equals_our_own_entry_after_the_tick():
    node = welcomed("A")
    node.receive(Deliver(sender="B", seq=1, clock=VectorClock({"B": 1})))
    node.local_event()
    frame = node.send("B")
    assert frame.seq == frame.clock["A"] == 3
    report = node.report()
    assert report.seq == report.clock["A"] == 4


def test_a_node_without_an_id_cannot_tick_until_welcomed():
    node = ClientState()
    with pytest.raises(RuntimeError, match="welcome"):
        node.local_event()
    node.receive(Welcome(v=1, id="client-7", peers=[], sync_interval=1.0))
    assert node.id == "client-7"
    assert node.local_event() == VectorClock({"client-7": 1})


# What the server sent


def test_welcome_sets_id_peers_and_resumes_the_clock():
    node = ClientState()
    event = node.receive(
        Welcome(
            v=1, id="A", peers=["B", "C"], sync_interval=1.0, clock=VectorClock({"A": 5, "B": 2})
        )
    )
    assert event == Welcomed("A", ("B", "C"), VectorClock({"A": 5, "B": 2}))
    assert node.welcomed and node.id == "A" and node.peers == ["B", "C"]
    assert node.send("B").seq == 6  # never reuses a seq of this id


def test_receive_merges_then_ticks():
    node = welcomed("B")
    node.local_event()
    stamped = VectorClock({"A": 3, "C": 1})
    event = node.receive(Deliver(sender="A", seq=3, clock=stamped, body={"x": 1}))
    expected = VectorClock({"A": 3, "B": 2, "C": 1})
    assert node.clock == expected
    assert event == Message("A", 3, stamped, {"x": 1}, expected)
    assert event.id == "A#3"


def test_receiving_an_older_clock_still_ticks():
    node = welcomed("B", clock=VectorClock({"A": 9, "B": 2}))
    node.receive(Deliver(sender="A", seq=1, clock=VectorClock({"A": 1})))
    assert node.clock == VectorClock({"A": 9, "B": 3})


def test_sync_merges_then_ticks():
    node = welcomed("A")
    node.local_event()
    frontier = VectorClock({"A": 1, "B": 4})
    event = node.receive(Sync(cycle=3, clock=frontier))
    assert node.clock == VectorClock({"A": 2, "B": 4})
    assert event == Synced(3, frontier, VectorClock({"A": 2, "B": 4}))


def test_peers_list_follows_joins_and_leaves():
    node = welcomed("A", peers=["B"])
    assert node.receive(PeerJoined(id="C")) == PeerChange("C", joined=True)
    assert node.peers == ["B", "C"]
    node.receive(PeerJoined(id="C"))
    assert node.peers == ["B", "C"]
    assert node.receive(PeerLeft(id="B")) == PeerChange("B", joined=False)
    assert node.peers == ["C"]
    node.receive(PeerLeft(id="Z"))
    assert node.peers == ["C"]


def test_peer_changes_do_not_touch_the_clock():
    node = welcomed("A")
    node.receive(PeerJoined(id="B"))
    node.receive(PeerLeft(id="B"))
    assert node.clock == VectorClock()


def test_an_error_frame_becomes_a_server_error():
    node = welcomed("A")
    event = node.receive(Error(code="unknown-peer", message="no Z", peer="Z", seq=2))
    assert event == ServerError("unknown-peer", "no Z", "Z", 2)
    assert node.clock == VectorClock()


def test_bye_becomes_goodbye():
    assert welcomed("A").receive(Bye(reason="maintenance")) == Goodbye("maintenance")


@pytest.mark.parametrize(
    "frame",
    [
        Deliver(sender="B", seq=1, clock=VectorClock({"B": 1})),
        Sync(cycle=1, clock=VectorClock()),
        PeerJoined(id="B"),
        PeerLeft(id="B"),
    ],
)
def test_frames_before_welcome_raise_peer_error(frame):
    node = ClientState("A")
    with pytest.raises(PeerError) as info:
        node.receive(frame)
    assert info.value.code is ErrorCode.UNEXPECTED_FRAME
    assert type(frame).__name__ in str(info.value)
    assert node.clock == VectorClock() and node.peers == []


def test_errors_and_bye_are_allowed_before_welcome():
    node = ClientState("A")
    assert node.receive(Error(code="duplicate-id", message="taken")) == ServerError(
        "duplicate-id", "taken"
    )
    assert node.receive(Bye(reason="x")) == Goodbye("x")
    assert not node.welcomed


def test_message_and_sync_ids_are_readable():
    assert message_id("A", 7) == "A#7"
    assert sync_id(3) == "sync#3"


def test_a_unicast_copy_is_dropped_by_its_seq():
    """A cluster resends a relay when the node it went to died unconfirmed; the
    copy (maybe with a new delivery number) must not be received twice."""
    node = welcomed("B", peers=["A"])
    first = Deliver(sender="A", seq=3, clock=VectorClock({"A": 3}), n=1)
    assert isinstance(node.receive(first), Message)
    clock = node.clock
    assert node.receive(first) is None  # same number: a replay
    again = Deliver(sender="A", seq=3, clock=VectorClock({"A": 3}), n=2)
    assert node.receive(again) is None  # new number, same message: a copy
    assert node.delivered == 2  # still counted, so the server can drop it
    assert node.clock == clock  # no merge, no tick
    older = Deliver(sender="A", seq=2, clock=VectorClock({"A": 2}))
    assert node.receive(older) is None  # FIFO per sender: older is a copy too
    later = Deliver(sender="A", seq=4, clock=VectorClock({"A": 4}))
    assert isinstance(node.receive(later), Message)
    other = Deliver(sender="C", seq=1, clock=VectorClock({"C": 1}))
    assert isinstance(node.receive(other), Message)  # per sender


def test_the_last_seq_per_sender_survives_a_restart():
    node = welcomed("B", peers=["A"])
    node.receive(Deliver(sender="A", seq=5, clock=VectorClock({"A": 5})))
    restarted = ClientState("B")
    restarted.restore(node.save())
    restarted.receive(Welcome(v=PROTOCOL_VERSION, id="B", peers=["A"], sync_interval=1.0))
    assert restarted.receive(Deliver(sender="A", seq=5, clock=VectorClock({"A": 5}))) is None


# Resume sessions: which inbox the delivery numbers belong to (protocol 7.7)


def resumed_welcome(resumed: bool | None) -> Welcome:
    return Welcome(v=PROTOCOL_VERSION, id="B", peers=[], sync_interval=1.0, resumed=resumed)


def handled_five() -> ClientState:
    node = ClientState("B", resume=True)
    node.receive(resumed_welcome(False))
    for n in range(1, 6):
        node.receive(Deliver(sender="A", seq=n, clock=VectorClock({"A": n}), n=n))
    assert node.delivered == 5
    return node


def test_a_new_inbox_numbers_from_one_so_the_node_starts_again_from_zero():
    node = handled_five()
    node.hello()
    node.receive(resumed_welcome(False))
    assert node.delivered == 0
    event = node.receive(Deliver(sender="A", seq=6, clock=VectorClock({"A": 6}), n=1))
    assert isinstance(event, Message) and node.delivered == 1


@pytest.mark.parametrize("resumed", [True, None])  # kept, or an older server's welcome
def test_a_kept_inbox_keeps_the_delivery_number(resumed):
    node = handled_five()
    node.hello()
    node.receive(resumed_welcome(resumed))
    assert node.delivered == 5
    assert node.receive(Deliver(sender="A", seq=5, clock=VectorClock({"A": 5}), n=5)) is None


def test_saying_bye_starts_the_delivery_numbers_again():
    node = handled_five()
    assert node.bye("done") == Bye(reason="done")
    assert node.delivered == 0 and not node.ack_due


def test_the_per_sender_seq_outlives_the_inbox():
    node = handled_five()
    node.hello()
    node.receive(resumed_welcome(False))
    copy = Deliver(sender="A", seq=5, clock=VectorClock({"A": 5}), n=1)
    assert node.receive(copy) is None  # a seq of A's it handled: still a copy
    assert node.delivered == 1  # but number 1 of the new inbox is taken


def test_a_numbered_delivery_makes_an_acknowledgement_due_in_resume_sessions_only():
    node = handled_five()
    assert node.ack_due
    assert node.delivered_frame().upto == 5 and not node.ack_due
    plain = welcomed("B")
    plain.receive(Deliver(sender="A", seq=1, clock=VectorClock({"A": 1}), n=1))
    assert not plain.ack_due  # a plain session's replay: its inbox is gone already


# Refused frames are answered by their error (protocol 7.2)


@pytest.mark.parametrize("code", ["inbox-full", "rate-limited", "unknown-peer", "bad-frame"])
def test_a_frame_refused_with_its_seq_is_never_resent_and_goes_to_the_application(code):
    node = ClientState("A", resume=True)
    node.receive(Welcome(v=PROTOCOL_VERSION, id="A", peers=["B"], sync_interval=1.0))
    refused = node.send("B", body="again?")
    kept = node.send("B", body="later")
    event = node.receive(Error(code=code, message="no", peer="B", seq=refused.seq))
    assert event == ServerError(code, "no", "B", refused.seq, refused)
    assert node.to_resend() == [kept]


# The server's limits, checked before a frame is made (protocol 9.1, 9.2, 12)


def limited(max_frame_size: int = 200, max_clock_entries: int = 3) -> ClientState:
    return welcomed_with_limits(
        max_frame_size=max_frame_size, max_clock_entries=max_clock_entries, resume=True
    )


@pytest.mark.parametrize("kind", ["send", "broadcast"])
def test_a_frame_over_max_frame_size_is_refused_before_the_tick(kind):
    node = limited(max_frame_size=200)
    node.send("B", body="small")
    clock, bdelivered, unacked = node.clock, node.bdelivered, dict(node.unacked)
    with pytest.raises(LimitExceeded) as info:
        if kind == "send":
            node.send("B", body="x" * 200)
        else:
            node.broadcast(body="x" * 200)
    assert info.value.limit == "max_frame_size" and info.value.maximum == 200
    assert info.value.size > 200
    assert "max_frame_size is 200" in str(info.value)
    assert (node.clock, node.bdelivered, node.unacked) == (clock, bdelivered, unacked)
    assert node.send("B", body="fits").seq == 2  # the session goes on, no seq lost


def test_a_send_to_a_very_long_id_is_measured_not_guessed():
    """The client skips encoding a frame that surely fits; a ``to`` of any length
    counts in that guess (else the server would get an oversized line and, on a
    delta connection, the session would be lost)."""
    node = limited(max_frame_size=2000)
    with pytest.raises(LimitExceeded) as info:
        node.send("B" * 5000, body="")
    assert info.value.limit == "max_frame_size" and info.value.size > 5000


def test_the_size_is_the_encoded_line_without_its_newline():
    node = limited(max_frame_size=1000)
    line = len(encode_frame(Send(to="B", seq=1, clock=VectorClock({"A": 1}), body="")))
    node.limits = msgspec.structs.replace(node.limits, max_frame_size=line - 1)
    assert node.send("B", body="").seq == 1  # exactly the limit: accepted
    node.limits = msgspec.structs.replace(node.limits, max_frame_size=line - 2)
    with pytest.raises(LimitExceeded):
        node.send("B", body="")


def test_a_clock_over_max_clock_entries_is_refused_before_the_tick():
    node = limited(max_clock_entries=3)
    node.receive(Sync(cycle=1, clock=VectorClock({"B": 1, "C": 1})))  # A, B, C
    clock = node.clock
    node.report()  # three entries: fine
    node.receive(Sync(cycle=2, clock=VectorClock({"D": 1})))
    clock = node.clock
    with pytest.raises(LimitExceeded) as info:
        node.report()
    assert (info.value.limit, info.value.size, info.value.maximum) == ("max_clock_entries", 4, 3)
    assert node.clock == clock


def test_measure_says_how_big_a_frame_is_on_the_wire():
    node = limited(max_frame_size=100)
    with pytest.raises(LimitExceeded):
        node.send("B", body="x" * 30, measure=lambda frame: 101)
    assert node.send("B", body="x" * 500, measure=lambda frame: 100).seq == 1


def test_without_announced_limits_nothing_is_checked():
    node = welcomed("A")
    assert node.send("B", body="x" * 2_000_000).seq == 1
