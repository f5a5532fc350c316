"""The Hub, driven through HubHarness: N in-memory clients, real frames on the wire."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vclock import ErrorCode, FrameError, Goodbye, PeerChange, PeerError, VectorClock
from vclock.auth import Authenticator
from vclock.clock import merge_all
from vclock.errors import FATAL_CODES
from vclock.events import SERVER_ID
from vclock.hub import (
    STORE_TYPES,
    TRANSITIONS,
    Action,
    Close,
    Hub,
    Joined,
    Left,
    Outgoing,
    PeerId,
    Received,
    Refused,
    SaveCycle,
    SessionState,
    SyncCycle,
    next_state,
)
from vclock.protocol import (
    PROTOCOL_VERSION,
    Bye,
    Deliver,
    Error,
    Hello,
    Limits,
    PeerJoined,
    PeerLeft,
    Report,
    Send,
    Sync,
    Welcome,
)

from ..helpers import HarnessClient, HubHarness, frame_error


@pytest.fixture
def harness() -> HubHarness:
    return HubHarness(Hub(sync_interval=2.5))


def codes(client: HarnessClient) -> list[str]:
    return [error.code for error in client.errors]


def without_store(actions: list[Action]) -> list[Action]:
    """The frames, closes and notices of a batch (its store actions left out)."""
    return [action for action in actions if not isinstance(action, STORE_TYPES)]


# hello and welcome


def test_hello_is_answered_with_welcome(harness):
    a = harness.connect("A")
    assert a.received == [
        Welcome(
            v=PROTOCOL_VERSION,
            id="A",
            peers=[],
            sync_interval=2.5,
            clock=VectorClock(),
            delta=a.node.delta,
        )
    ]
    assert a.node.welcomed
    assert harness.hub.clients == ["A"]
    assert harness.notices_of(Joined) == [Joined(a.peer, "A", a.address)]


@pytest.mark.parametrize("delta", [True, False])
def test_welcome_agrees_to_delta_clocks_when_hello_asks(harness, delta):
    a = harness.connect("A", delta=delta)
    b = harness.connect("B", delta=delta)
    assert a.received[0].delta is delta
    assert a.conn.delta is delta and a.client_conn.delta is delta
    send = harness.send(a, "B", body="x")
    assert b.delivers[-1].clock == send.clock  # the full clock, however encoded


def test_welcome_lists_the_peers_already_connected(harness):
    harness.connect("A")
    harness.connect("B")
    c = harness.connect("C")
    assert c.received[0].peers == ["A", "B"]
    assert c.node.peers == ["A", "B"]


def test_a_new_client_is_announced_to_the_others(harness):
    a = harness.connect("A")
    b = harness.connect("B")
    harness.connect("C")
    assert a.received[1:] == [PeerJoined(id="B"), PeerJoined(id="C")]
    assert b.received[1:] == [PeerJoined(id="C")]
    assert a.node.peers == ["B", "C"]


def test_a_hello_without_id_gets_an_assigned_id(harness):
    first = harness.connect(None)
    second = harness.connect(None)
    assert first.received[0].id == "client-1"
    assert second.received[0].id == "client-2"
    assert first.node.id == "client-1"
    assert harness.hub.clients == ["client-1", "client-2"]


def test_an_assigned_id_never_reuses_an_id_the_hub_has_a_clock_for(harness):
    taken = harness.connect("client-1")
    harness.report(taken)
    harness.disconnect(taken)
    assert harness.connect(None).node.id == "client-2"


def test_a_returning_id_resumes_from_its_latest_clock(harness):
    a = harness.connect("A")
    b = harness.connect("B")
    harness.send(a, "B")
    harness.report(a)
    harness.send(b, "A")
    latest = harness.hub.latest["A"]
    harness.disconnect(a)

    again = harness.connect("A")
    welcome = again.received[0]
    assert welcome.clock == latest
    assert again.node.clock == latest
    harness.report(again)  # resumes past its old entry, so not stale
    assert again.errors == []
    assert harness.hub.latest["A"]["A"] == latest["A"] + 1


def test_a_duplicate_id_is_refused_and_closed(harness):
    harness.connect("A")
    dup = harness.connect("A")
    (error,) = dup.received
    assert error.code == ErrorCode.DUPLICATE_ID
    assert error.peer == "A"
    assert dup.closed is not None
    assert not dup.node.welcomed
    assert harness.hub.clients == ["A"]
    assert [r.error.code for r in harness.notices_of(Refused)] == [ErrorCode.DUPLICATE_ID]


def test_the_reserved_server_id_is_refused_as_invalid(harness):
    client = harness.connect(SERVER_ID)
    (error,) = client.received
    assert error.code == ErrorCode.INVALID_ID
    assert client.closed is not None
    assert harness.hub.clients == []


def test_an_unsupported_version_is_refused_and_closed(harness):
    client = harness.connect("A", hello=False)
    actions = harness.send_frame(client, Hello(v=PROTOCOL_VERSION + 1, id="A"))
    (error,) = client.received
    assert error.code == ErrorCode.UNSUPPORTED_VERSION
    assert str(PROTOCOL_VERSION + 1) in error.message
    assert isinstance(actions[-1], Close) and actions[-1].peer == client.peer
    assert client.closed is not None
    assert harness.hub.clients == []


def test_a_send_before_hello_is_unexpected_and_the_session_continues(harness):
    client = harness.connect("A", hello=False)
    harness.connect("B")
    harness.send(client, "B")
    assert codes(client) == [ErrorCode.UNEXPECTED_FRAME]
    assert "awaiting-hello" in client.errors[0].message
    assert client.closed is None
    assert "A" not in harness.hub.latest

    harness.send_frame(client, client.node.hello())
    assert isinstance(client.received[-1], Welcome)
    assert harness.hub.clients == ["B", "A"]


def test_a_second_hello_is_unexpected(harness):
    a = harness.connect("A")
    harness.send_frame(a, Hello(v=PROTOCOL_VERSION, id="A2"))
    assert codes(a) == [ErrorCode.UNEXPECTED_FRAME]
    assert a.closed is None
    assert harness.hub.clients == ["A"]


# send, deliver, report


def test_send_is_delivered_with_the_sender_clock_unchanged(harness):
    a = harness.connect("A")
    b = harness.connect("B")
    send = harness.send(a, "B", body={"text": "hi"})
    deliver = b.received[-1]
    assert deliver == Deliver(sender="A", seq=send.seq, clock=send.clock, body={"text": "hi"})
    assert a.received[-1] == PeerJoined(id="B")  # the sender gets no echo
    (received,) = harness.notices_of(Received)
    assert received == Received(a.peer, "A", a.address, send)


def test_the_receiver_merges_and_ticks_on_delivery(harness):
    a = harness.connect("A")
    b = harness.connect("B")
    harness.report(b)
    send = harness.send(a, "B")
    assert b.node.clock == VectorClock({"B": 1}).merge(send.clock).tick("B")


def test_send_to_an_unknown_peer_is_refused_but_the_clock_still_counts(harness):
    a = harness.connect("A")
    send = harness.send(a, "Z")
    (error,) = a.errors
    assert error.code == ErrorCode.UNKNOWN_PEER
    assert error.peer == "Z"
    assert error.seq == send.seq
    assert "'Z'" in error.message
    assert harness.hub.latest["A"] == send.clock
    assert harness.hub.frontier == send.clock
    assert a.closed is None


def test_a_clock_that_does_not_advance_is_stale(harness):
    a = harness.connect("A")
    first = harness.report(a)
    harness.send_frame(a, Report(seq=first.seq, clock=first.clock))
    (error,) = a.errors
    assert error.code == ErrorCode.STALE_CLOCK
    assert error.seq == first.seq
    assert harness.hub.latest["A"] == first.clock
    assert a.closed is None


def test_a_stale_send_is_not_delivered(harness):
    a = harness.connect("A")
    b = harness.connect("B")
    harness.report(a)
    harness.send_frame(a, Send(to="B", seq=1, clock=VectorClock({"A": 1})))
    assert codes(a) == [ErrorCode.STALE_CLOCK]
    assert not any(isinstance(f, Deliver) for f in b.received)


def test_report_updates_latest_and_frontier(harness):
    a = harness.connect("A")
    b = harness.connect("B")
    ra = harness.report(a)
    rb = harness.report(b)
    assert harness.hub.latest == {"A": ra.clock, "B": rb.clock}
    assert harness.hub.frontier == VectorClock({"A": 1, "B": 1})
    assert [n.frame for n in harness.notices_of(Received)] == [ra, rb]


def test_latest_is_the_maximum_of_every_clock_received(harness):
    a, x, y = harness.connect("A"), harness.connect("X"), harness.connect("Y")
    harness.send_frame(x, Report(seq=5, clock=VectorClock({"X": 5})))
    harness.send_frame(y, Report(seq=1, clock=VectorClock({"Y": 1})))
    harness.send_frame(a, Report(seq=1, clock=VectorClock({"A": 1, "X": 5})))
    harness.send_frame(a, Report(seq=2, clock=VectorClock({"A": 2, "Y": 1})))
    assert harness.hub.latest["A"] == VectorClock({"A": 2, "X": 5, "Y": 1})


# bye, disconnect, shutdown


def test_bye_closes_the_session(harness):
    a = harness.connect("A")
    b = harness.connect("B")
    actions = harness.send_frame(a, Bye(reason="done"))
    assert actions == [Close(a.peer, "done")]
    assert a.closed == "done"
    assert harness.hub.clients == ["B"]
    assert b.received[-1] == PeerLeft(id="A")


def test_bye_before_hello_closes_quietly(harness):
    a = harness.connect("A")
    lurker = harness.connect(None, hello=False)
    harness.send_frame(lurker, Bye())
    assert lurker.closed == "client said bye"
    assert a.received == [a.received[0]]  # nothing announced


def test_disconnect_tells_the_others_once(harness):
    a = harness.connect("A")
    b = harness.connect("B")
    c = harness.connect("C")
    actions = harness.disconnect(a)
    assert actions[0] == Left(a.peer, "A", a.address)
    assert [(o.peer, o.frame) for o in actions[1:]] == [
        (b.peer, PeerLeft(id="A")),
        (c.peer, PeerLeft(id="A")),
    ]
    assert b.node.peers == ["C"]
    assert harness.hub.disconnect(a.peer) == []
    assert harness.hub.clients == ["B", "C"]


def test_disconnect_before_hello_announces_nothing(harness):
    a = harness.connect("A")
    lurker = harness.connect(None, hello=False)
    assert harness.disconnect(lurker) == []
    assert a.received == [a.received[0]]


def test_a_peer_cannot_be_connected_twice(harness):
    a = harness.connect("A")
    with pytest.raises(ValueError):
        harness.hub.connect(a.peer, "elsewhere")


def test_shutdown_says_bye_and_closes_every_connection(harness):
    a = harness.connect("A")
    b = harness.connect("B")
    lurker = harness.connect(None, hello=False)
    actions = harness.hub.shutdown("maintenance")
    assert actions == [
        Outgoing(a.peer, Bye(reason="maintenance")),
        Close(a.peer, "maintenance"),
        Outgoing(b.peer, Bye(reason="maintenance")),
        Close(b.peer, "maintenance"),
        Outgoing(lurker.peer, Bye(reason="maintenance")),
        Close(lurker.peer, "maintenance"),
    ]
    harness.run(actions)
    assert all(c.closed == "maintenance" for c in (a, b, lurker))
    assert Goodbye("maintenance") in a.events and Goodbye("maintenance") in b.events
    assert harness.hub.clients == []


# Bad frames


def test_a_frame_error_is_answered_to_that_peer_only(harness):
    a = harness.connect("A")
    b = harness.connect("B")
    before = list(b.received)
    actions = harness.receive(a, FrameError("bad clock", path="$.clock"))
    assert actions[0] == Outgoing(a.peer, Error(code="bad-frame", message="bad clock"))
    assert isinstance(actions[1], Refused) and actions[1].peer == a.peer
    assert len(actions) == 2  # not fatal: no Close
    assert b.received == before
    assert a.closed is None


def test_bad_bytes_on_the_wire_become_a_bad_frame_error(harness):
    a = harness.connect("A", delta=False)
    harness.send_bytes(a, b'{"type":"report","seq":1,"clock":{"A":-1}}\n')
    (error,) = a.errors
    assert error.code == ErrorCode.BAD_FRAME
    assert "$.clock" in error.message


def test_an_oversized_frame_is_refused_and_the_next_frame_still_works():
    harness = HubHarness(max_frame_size=100, delta=False)  # delta: see section 12 tests
    a = harness.connect("A")
    harness.send_bytes(a, b'{"type":"bye","reason":"' + b"x" * 1000 + b'"}\n')
    assert codes(a) == [ErrorCode.FRAME_TOO_LARGE]
    assert "100" in a.errors[0].message
    assert a.closed is None
    harness.report(a)
    assert harness.hub.latest["A"] == VectorClock({"A": 1})


def every_error_code_scenario() -> dict[ErrorCode, tuple[HarnessClient, list[str]]]:
    """One client per error code, which has been sent that code (last), and the
    codes it should have been sent in all."""
    h = HubHarness(max_frame_size=200)
    a = h.connect("A")
    seen: dict[ErrorCode, HarnessClient] = {}
    seen[ErrorCode.BAD_FRAME] = c = h.connect("bad", delta=False)
    h.send_bytes(c, b"{not json\n")
    seen[ErrorCode.FRAME_TOO_LARGE] = c = h.connect("large", delta=False)
    h.send_bytes(c, b"[" * 300 + b"\n")
    seen[ErrorCode.UNSUPPORTED_VERSION] = c = h.connect(None, hello=False)
    h.send_frame(c, Hello(v=99))
    seen[ErrorCode.INVALID_ID] = h.connect(SERVER_ID)
    seen[ErrorCode.DUPLICATE_ID] = h.connect("A")
    seen[ErrorCode.UNEXPECTED_FRAME] = c = h.connect("early", hello=False)
    h.send(c, "A")
    seen[ErrorCode.UNKNOWN_PEER] = c = h.connect("lost")
    h.send(c, "nobody")
    seen[ErrorCode.STALE_CLOCK] = c = h.connect("stale")
    h.send_frame(c, h.report(c))
    # What the I/O layer finds itself, it hands to the hub as a PeerError.
    seen[ErrorCode.RATE_LIMITED] = c = h.connect("fast")
    h.receive(c, PeerError("more than 10 frames per second", code=ErrorCode.RATE_LIMITED))
    seen[ErrorCode.SLOW_CONSUMER] = c = h.connect("slow")
    h.receive(c, PeerError("more than 1000 bytes unread", code=ErrorCode.SLOW_CONSUMER))
    seen[ErrorCode.HELLO_TIMEOUT] = c = h.connect("silent", hello=False)
    h.receive(c, PeerError("no hello welcomed within 10 s", code=ErrorCode.HELLO_TIMEOUT))
    seen[ErrorCode.SERVER_BUSY] = c = h.connect("hoarder")
    h.receive(c, PeerError("your unfinished line is the largest", code=ErrorCode.SERVER_BUSY))
    # The server writes this one itself, before the hub knows the connection;
    # the hub would treat it the same.
    seen[ErrorCode.TOO_MANY_CONNECTIONS] = c = h.connect("crowd", hello=False)
    h.receive(c, PeerError("too many", code=ErrorCode.TOO_MANY_CONNECTIONS))
    assert a.errors == []
    # Hub options
    guarded = HubHarness(Hub(auth=Authenticator({"A": "right"})))
    seen[ErrorCode.AUTH_FAILED] = guarded.connect("A", token="wrong")
    small = HubHarness(Hub(max_inbox=2, max_errors=3))
    small.disconnect(small.connect("R", resume=True))
    seen[ErrorCode.INBOX_FULL] = c = small.connect("S")
    for _ in range(3):
        small.send(c, "R")
    seen[ErrorCode.TOO_MANY_ERRORS] = c = small.connect("messy", delta=False)
    for _ in range(3):
        small.send_bytes(c, b"{not json\n")
    seen[ErrorCode.FORGED_CLOCK] = c = h.connect("forger")
    h.send_frame(c, Report(seq=1, clock=VectorClock({"forger": 1, "A": 2_000_000})))
    seen[ErrorCode.TOO_MANY_IDS] = HubHarness(Hub(max_ids=0)).connect("new")
    seen[ErrorCode.TOO_MANY_HELD] = HubHarness(Hub(max_held=0)).connect("R", resume=True)
    roomless = HubHarness(Hub(max_held_bytes=10))
    roomless.disconnect(roomless.connect("R", resume=True))
    seen[ErrorCode.STORE_FULL] = c = roomless.connect("S")
    roomless.send(c, "R")
    expected = {code: [code] for code in seen}
    seen[ErrorCode.DELTA_LOST] = c = h.connect("lost-delta", delta=True)
    h.send_bytes(c, b"{not json\n")
    expected[ErrorCode.TOO_MANY_ERRORS] = [ErrorCode.BAD_FRAME] * 3 + [ErrorCode.TOO_MANY_ERRORS]
    expected[ErrorCode.DELTA_LOST] = [ErrorCode.BAD_FRAME, ErrorCode.DELTA_LOST]
    return {code: (client, expected[code]) for code, client in seen.items()}


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_error_code_is_sent_in_some_scenario(code):
    client, expected = every_error_code_scenario()[code]
    assert codes(client) == expected
    assert (client.closed is not None) == (code in FATAL_CODES)


# Hardening: authentication, I/O-layer errors, error budget


@pytest.fixture
def guarded() -> HubHarness:
    return HubHarness(Hub(auth=Authenticator({"A": "right", "B": "other"})))


def test_a_hello_with_the_right_token_is_welcomed(guarded):
    a = guarded.connect("A", token="right")
    assert isinstance(a.received[0], Welcome)
    assert a.errors == [] and a.closed is None
    assert guarded.hub.clients == ["A"]


@pytest.mark.parametrize(
    ("id", "token"),
    [("A", "wrong"), ("A", None), ("Z", "right"), ("A", "other"), (None, "right")],
    ids=["wrong-token", "no-token", "unknown-id", "someone-elses-token", "no-id"],
)
def test_an_auth_failure_says_nothing_about_which_part_was_wrong(guarded, id, token):
    client = guarded.connect(id, token=token)
    (error,) = client.received  # no welcome
    assert error == Error(code=ErrorCode.AUTH_FAILED, message="authentication failed")
    assert client.closed is not None
    assert guarded.hub.clients == []
    assert "A" not in guarded.hub.latest


def test_a_shared_secret_lets_any_id_in():
    h = HubHarness(Hub(auth=Authenticator({"*": "team"})))
    a = h.connect("anyone", token="team")
    b = h.connect("else", token="nope")
    nameless = h.connect(None, token="team")  # with auth, a hello must name its id
    assert isinstance(a.received[0], Welcome) and a.closed is None
    assert codes(b) == [ErrorCode.AUTH_FAILED] and b.closed is not None
    assert codes(nameless) == [ErrorCode.AUTH_FAILED] and nameless.closed is not None
    assert h.hub.clients == ["anyone"]


def test_rate_limited_frames_are_refused_but_the_session_goes_on(harness):
    a = harness.connect("A")
    actions = harness.receive(a, PeerError("too fast", code=ErrorCode.RATE_LIMITED))
    assert actions[0] == Outgoing(a.peer, Error(code="rate-limited", message="too fast"))
    assert not any(isinstance(x, Close) for x in actions)
    harness.report(a)
    assert harness.hub.latest["A"] == VectorClock({"A": 1})
    assert a.closed is None


def test_a_slow_consumer_is_closed_and_the_others_are_told(harness):
    a = harness.connect("A")
    b = harness.connect("B")
    actions = harness.receive(a, PeerError("not reading", code=ErrorCode.SLOW_CONSUMER))
    assert Close(a.peer, "not reading") in actions
    assert a.closed == "not reading"
    assert harness.hub.clients == ["B"]
    assert b.received[-1] == PeerLeft(id="A")


def test_too_many_refused_frames_close_the_session():
    h = HubHarness(Hub(max_errors=3), delta=False)
    a = h.connect("A")
    h.send_bytes(a, b"{not json\n")
    h.send_frame(a, Hello(v=PROTOCOL_VERSION, id="A"))  # unexpected-frame
    assert a.closed is None
    actions = h.send_bytes(a, b"{not json\n")
    assert codes(a) == ["bad-frame", "unexpected-frame", "bad-frame", "too-many-errors"]
    assert "3 refused frames" in a.errors[-1].message
    assert isinstance(actions[-1], Close) and actions[-1].peer == a.peer
    assert a.closed is not None
    assert h.hub.clients == []


def test_unknown_peer_and_inbox_full_are_not_held_against_the_sender():
    h = HubHarness(Hub(max_errors=2, max_inbox=1), delta=False)
    h.disconnect(h.connect("R", resume=True))
    a = h.connect("A")
    for _ in range(4):
        h.send(a, "nobody")
    h.send(a, "R")  # kept
    for _ in range(3):
        h.send(a, "R")  # inbox full
    assert codes(a) == ["unknown-peer"] * 4 + ["inbox-full"] * 3
    assert a.closed is None
    h.send_bytes(a, b"{not json\n")
    assert a.closed is None  # one counted error of two allowed


def test_the_error_budget_is_per_session():
    h = HubHarness(Hub(max_errors=2), delta=False)
    a = h.connect("A")
    h.send_bytes(a, b"{not json\n")
    h.disconnect(a)
    again = h.connect("A")
    h.send_bytes(again, b"{not json\n")
    assert again.closed is None
    h.send_bytes(again, b"{not json\n")
    assert again.closed is not None


# Synchronization cycles


def test_the_frontier_is_the_pointwise_maximum_of_latest(harness):
    a = harness.connect("A")
    b = harness.connect("B")
    harness.send(a, "B")
    harness.send(b, "A")
    harness.report(a)
    assert harness.hub.frontier == merge_all(harness.hub.latest.values())
    assert harness.hub.frontier == VectorClock({"A": 3, "B": 2})


def test_sync_goes_only_to_connected_clients_lacking_something(harness):
    a = harness.connect("A")
    b = harness.connect("B")
    c = harness.connect("C")
    harness.report(a)
    harness.report(b)
    actions = without_store(harness.sync_cycle())
    frontier = VectorClock({"A": 1, "B": 1})
    sync = Sync(cycle=1, clock=frontier)
    assert actions[0] == SyncCycle(1, 3, frontier, ("A", "B", "C"))
    assert actions[1:] == [Outgoing(a.peer, sync), Outgoing(b.peer, sync), Outgoing(c.peer, sync)]
    assert c.node.clock == frontier.tick("C")


def test_a_client_that_reported_everything_gets_no_sync(harness):
    a = harness.connect("A")
    b = harness.connect("B")
    harness.report(a)
    actions = harness.sync_cycle()
    assert actions[0].synced == ("B",)
    assert not any(isinstance(f, Sync) for f in a.received)
    assert Sync(cycle=1, clock=VectorClock({"A": 1})) in b.received


def test_a_client_that_was_delivered_everything_gets_no_sync(harness):
    a = harness.connect("A")
    harness.connect("B")
    harness.send(a, "B")
    (notice,) = [a for a in harness.sync_cycle() if isinstance(a, SyncCycle)]
    assert notice.synced == ()


def test_a_second_cycle_without_news_sends_nothing(harness):
    a = harness.connect("A")
    harness.connect("B")
    harness.report(a)
    harness.sync_cycle()
    actions = harness.sync_cycle()
    assert without_store(actions) == [SyncCycle(2, 2, VectorClock({"A": 1}), ())]


def test_every_cycle_stores_its_number_and_nothing_else(harness):
    a = harness.connect("A")
    harness.connect("B")
    harness.report(a)
    first = harness.sync_cycle()
    second = harness.sync_cycle()
    assert [x for x in first if isinstance(x, STORE_TYPES)] == [SaveCycle(1)]
    assert [x for x in second if isinstance(x, STORE_TYPES)] == [SaveCycle(2)]
    assert harness.batches[-2:] == [[SaveCycle(1)], [SaveCycle(2)]]


def test_sync_cycle_notice_counts_cycles_and_clients(harness):
    harness.connect("A")
    (first,) = without_store(harness.sync_cycle())
    (second,) = without_store(harness.sync_cycle())
    assert first == SyncCycle(cycle=1, clients=1, frontier=VectorClock(), synced=())
    assert second.cycle == 2
    assert harness.hub.cycle == 2
    assert harness.notices_of(SyncCycle) == [first, second]


def test_the_frontier_keeps_a_client_after_it_disconnects(harness):
    a = harness.connect("A")
    b = harness.connect("B")
    harness.report(a)
    harness.disconnect(a)
    assert harness.hub.frontier == VectorClock({"A": 1})
    actions = without_store(harness.sync_cycle())
    assert actions[0] == SyncCycle(1, 1, VectorClock({"A": 1}), ("B",))
    assert actions[1:] == [Outgoing(b.peer, Sync(cycle=1, clock=VectorClock({"A": 1})))]


def test_a_client_that_joins_later_is_synced_with_the_whole_frontier(harness):
    a = harness.connect("A")
    harness.report(a)
    harness.sync_cycle()
    late = harness.connect("L")
    harness.sync_cycle()
    assert late.received[-1] == Sync(cycle=2, clock=VectorClock({"A": 1}))
    assert late.node.clock == VectorClock({"A": 1, "L": 1})


def test_news_from_one_client_reaches_the_others_at_the_next_cycle(harness):
    a = harness.connect("A")
    b = harness.connect("B")
    c = harness.connect("C")
    harness.report(a)
    harness.sync_cycle()
    harness.report(b)
    actions = harness.sync_cycle()
    assert actions[0].synced == ("A", "C")
    assert b.node.clock >= harness.hub.frontier
    assert a.node.clock >= harness.hub.frontier and c.node.clock >= harness.hub.frontier


# The session state table


def test_the_state_table_allows_only_hello_and_bye_before_hello():
    allowed = {tag for (state, tag) in TRANSITIONS if state is SessionState.AWAITING_HELLO}
    assert allowed == {"hello", "bye"}


def test_next_state_names_state_and_frame_when_refusing():
    with pytest.raises(PeerError) as info:
        next_state(SessionState.CLOSED, "send")
    assert info.value.code is ErrorCode.UNEXPECTED_FRAME
    assert "'send'" in str(info.value) and "closed" in str(info.value)
    assert "nothing" in str(info.value)


def test_frames_after_bye_are_ignored():
    hub = Hub()
    peer = PeerId(1)
    hub.connect(peer, "x")
    hub.receive(peer, Hello(v=1, id="A"))
    hub.receive(peer, Bye())
    assert hub.receive(peer, Report(seq=1, clock=VectorClock({"A": 1}))) == []
    assert hub.receive(peer, frame_error()) == []
    assert "A" not in hub.latest


@pytest.mark.parametrize(
    "fatal",
    [
        PeerError("slow", code=ErrorCode.SLOW_CONSUMER),
        Hello(v=PROTOCOL_VERSION + 1, id="A"),
    ],
    ids=["slow-consumer", "unsupported-version"],
)
def test_frames_after_a_fatal_error_are_ignored(fatal):
    hub = Hub()
    hub.connect(PeerId(1), "x")
    if not isinstance(fatal, Hello):
        hub.receive(PeerId(1), Hello(v=1, id="A"))
    actions = hub.receive(PeerId(1), fatal)
    assert isinstance(actions[-1], Close)
    # What was already read from that connection is dropped, not answered.
    assert hub.receive(PeerId(1), Report(seq=1, clock=VectorClock({"A": 1}))) == []
    assert hub.receive(PeerId(1), frame_error()) == []
    assert "A" not in hub.latest


def test_frames_after_too_many_errors_are_ignored():
    hub = Hub(max_errors=1)
    hub.connect(PeerId(1), "x")
    actions = hub.receive(PeerId(1), frame_error())
    codes = [a.frame.code for a in actions if isinstance(a, Outgoing)]
    assert codes == ["bad-frame", "too-many-errors"] and isinstance(actions[-1], Close)
    assert hub.receive(PeerId(1), Hello(v=1, id="A")) == []
    assert hub.clients == []


# Randomized: invariants over random traffic


@st.composite
def scenarios(draw):
    n = draw(st.integers(2, 5))
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["send", "send", "report", "sync", "local"]),
                st.integers(0, n - 1),
                st.integers(0, n - 1),
            ),
            max_size=25,
        )
    )
    return n, steps


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.booleans())
def test_random_traffic_keeps_the_clock_invariants(scenario, delta):
    n, steps = scenario
    harness = HubHarness(delta=delta)
    clients = [harness.connect(f"P{i}") for i in range(n)]
    for op, i, j in steps:
        sender, target = clients[i], clients[j]
        if op == "send":
            harness.send(sender, target.node.id, body=[i, j])
        elif op == "report":
            harness.report(sender)
        elif op == "local":
            sender.node.local_event()
            sender.own_events += 1
        else:
            harness.sync_cycle()
            for client in clients:
                assert harness.hub.frontier <= client.node.clock
        harness.check_invariants()
    assert harness.notices_of(Refused) == []
    assert all(c.errors == [] and c.closed is None for c in clients)
    for client in clients:
        assert harness.hub.latest.get(client.node.id, VectorClock()) <= client.node.clock


def test_the_harness_invariant_check_can_fail(harness):
    a = harness.connect("A")
    harness.report(a)
    a.own_events += 1  # pretend an event the clock does not show
    with pytest.raises(AssertionError):
        harness.check_invariants()


def test_nodes_see_peers_join_and_leave(harness):
    a = harness.connect("A")
    b = harness.connect("B")
    harness.disconnect(b)
    assert a.events[1:] == [PeerChange("B", joined=True), PeerChange("B", joined=False)]
    assert a.node.peers == []


def test_welcome_announces_the_limits_the_hub_was_given():
    limits = Limits(
        max_frame_size=100, max_clock_entries=8, max_id_length=4, max_rate=10.0,
        max_inbox=3, window=2, hold_for=60.0,
    )  # fmt: skip
    harness = HubHarness(Hub(limits=limits))
    a = harness.connect("A")
    welcome = next(f for f in a.received if isinstance(f, Welcome))
    assert welcome.limits == limits
    assert a.node.limits == limits  # the client keeps them
    plain = HubHarness(Hub()).connect("B")
    assert next(f for f in plain.received if isinstance(f, Welcome)).limits is None


# Delta-encoded connections stay in step after every refusal (protocol section 12)


def test_every_refusal_leaves_both_ends_of_a_delta_connection_agreeing():
    """Frames refused by the hub (bad seq, stale clock, unknown peer, a bad ``to``)
    were decoded, so both delta references moved; the clocks that follow, relayed
    to B, are exactly what A sent."""
    harness = HubHarness(Hub(), delta=True)
    a, b = harness.connect("A"), harness.connect("B")
    harness.send(a, "B")
    refused = [
        Send(to="B", seq=5, clock=VectorClock({"A": 4, "Z": 1})),  # seq is not the own entry
        Send(to="B", seq=1, clock=VectorClock({"A": 1, "Y": 3})),  # stale
        Send(to="nobody", seq=2, clock=VectorClock({"A": 2})),  # unknown peer (counts)
    ]
    for frame in refused:
        harness.send_frame(a, frame)
    harness.send_frame(a, Send(to="a b", seq=3, clock=VectorClock({"A": 3, "X": 9})))
    assert codes(a) == ["bad-frame", "stale-clock", "unknown-peer", "bad-frame"]
    a.node.clock = VectorClock({"A": 3})
    for _ in range(3):
        sent = harness.send(a, "B")
        assert b.delivers[-1].clock == sent.clock
    assert a.closed is None


def test_a_line_whose_clock_is_lost_on_a_delta_connection_closes_it_with_delta_lost():
    harness = HubHarness(Hub(), delta=True, max_frame_size=200)
    a, b = harness.connect("A"), harness.connect("B")
    harness.send(a, "B", body="x" * 300)  # A's encoder moved on; the server skipped it
    assert codes(a) == ["frame-too-large", "delta-lost"]
    assert a.closed is not None and "delta-lost" not in a.closed
    assert harness.hub.clients == ["B"]
    assert b.closed is None
    refusals = [n.error.code for n in harness.notices_of(Refused)]
    assert refusals == [ErrorCode.FRAME_TOO_LARGE, ErrorCode.DELTA_LOST]


def test_a_plain_connection_survives_the_same_line():
    harness = HubHarness(Hub(), delta=False, max_frame_size=200)
    a, _ = harness.connect("A"), harness.connect("B")
    harness.send(a, "B", body="x" * 300)
    assert codes(a) == ["frame-too-large"]
    assert a.closed is None
