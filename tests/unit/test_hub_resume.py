"""Resume sessions: acks, held inboxes, replay, deduplication, and a restart
through a real Store. Driven through HubHarness, real frames on the wire."""

from __future__ import annotations

import pytest

from vclock import ErrorCode, ServerError, VectorClock
from vclock.hub import (
    DropInbox,
    Expired,
    Hub,
    Inbox,
    Received,
    SaveClock,
    SaveInbox,
    SaveMessage,
    SyncCycle,
)
from vclock.protocol import Ack, Bye, Deliver, Delivered, Report, Send, Welcome, encode_frame
from vclock.store import Store

from ..helpers import HarnessClient, HubHarness, assert_same_state


@pytest.fixture
def harness() -> HubHarness:
    return HubHarness(Hub(sync_interval=2.5), store=Store(":memory:"))


def codes(client: HarnessClient) -> list[str]:
    return [error.code for error in client.errors]


def since(client: HarnessClient, start: int) -> list[object]:
    return client.received[start:]


def held_offline(harness: HubHarness, id: str = "R") -> HarnessClient:
    """A resume client that said hello once and then lost its connection."""
    client = harness.connect(id, resume=True)
    harness.disconnect(client)
    return client


# Acks


def test_a_resume_session_gets_an_ack_for_each_send_and_report(harness):
    s = harness.connect("S", resume=True)
    harness.connect("B")
    first = harness.send(s, "B")
    second = harness.report(s)
    third = harness.send(s, "B")
    assert s.acks == [Ack(seq=first.seq), Ack(seq=second.seq), Ack(seq=third.seq)]
    assert s.node.unacked == {}
    assert s.errors == []


def test_the_ack_comes_after_the_delivery_and_the_store_actions(harness):
    s = harness.connect("S", resume=True)
    b = harness.connect("B")
    send = s.node.send("B")
    actions = harness.send_frame(s, send)
    kinds = [type(a).__name__ for a in actions]
    assert kinds == ["Received", "SaveClock", "Outgoing", "Outgoing"]
    assert actions[2].peer == b.peer and isinstance(actions[2].frame, Deliver)
    assert actions[3].peer == s.peer and actions[3].frame == Ack(seq=send.seq)


def test_a_plain_session_gets_no_acks(harness):
    a = harness.connect("A")
    harness.connect("B")
    harness.send(a, "B")
    harness.report(a)
    assert a.acks == []
    assert a.errors == []


# Held inboxes


def test_a_resume_hello_holds_the_id_with_an_empty_inbox(harness):
    r = harness.connect("R", resume=True)
    assert isinstance(r.received[0], Welcome)
    assert harness.hub.inboxes == {"R": Inbox()}
    assert harness.stored == [SaveInbox("R", 0)]
    harness.check_persistence()


def test_a_plain_hello_holds_nothing(harness):
    harness.connect("A")
    assert harness.hub.inboxes == {}
    assert harness.stored == []


def test_messages_to_an_offline_held_client_are_kept_and_the_sender_is_acked(harness):
    held_offline(harness)
    s = harness.connect("S", resume=True)
    sends = [harness.send(s, "R", body=i) for i in range(3)]
    kept = harness.stored_of(SaveMessage)
    assert [(m.receiver, m.deliver.n) for m in kept] == [("R", 1), ("R", 2), ("R", 3)]
    assert [m.deliver for m in kept] == [
        Deliver(sender="S", seq=f.seq, clock=f.clock, body=f.body, n=n)
        for n, f in enumerate(sends, 1)
    ]
    assert s.acks == [Ack(seq=f.seq) for f in sends]
    assert s.errors == []  # not unknown-peer
    harness.check_persistence()


def test_a_plain_sender_to_an_offline_held_client_gets_no_error(harness):
    held_offline(harness)
    a = harness.connect("A")
    harness.send(a, "R")
    assert a.errors == [] and a.acks == []
    assert len(harness.hub.inboxes["R"].messages) == 1


def test_a_returning_held_client_gets_its_inbox_after_welcome_in_order(harness):
    r = held_offline(harness)
    a = harness.connect("A")
    b = harness.connect("B")
    sent = [harness.send(a, "R", "a1"), harness.send(b, "R", "b1"), harness.send(a, "R", "a2")]
    start = len(r.received)
    harness.reconnect(r)
    welcome, *replayed = since(r, start)
    assert isinstance(welcome, Welcome) and welcome.id == "R"
    assert replayed == [
        Deliver(sender=s, seq=f.seq, clock=f.clock, body=f.body, n=n)
        for n, (s, f) in enumerate(zip("ABA", sent, strict=True), 1)
    ]
    assert [m.body for m in r.messages] == ["a1", "b1", "a2"]
    assert r.node.clock >= a.node.clock.merge(b.node.clock)
    harness.check_invariants()


def test_a_connected_held_client_gets_numbered_deliveries_that_are_also_kept(harness):
    r = harness.connect("R", resume=True)
    a = harness.connect("A")
    harness.send(a, "R")
    harness.send(a, "R")
    assert [d.n for d in r.delivers] == [1, 2]
    assert [m.deliver.n for m in harness.stored_of(SaveMessage)] == [1, 2]
    assert [d.n for d in harness.hub.inboxes["R"].messages] == [1, 2]


def test_a_plain_client_gets_unnumbered_deliveries(harness):
    b = harness.connect("B")
    a = harness.connect("A")
    harness.send(a, "B")
    assert [d.n for d in b.delivers] == [None]
    assert harness.stored_of(SaveMessage) == []


def test_replayed_deliveries_already_handled_are_ignored_by_the_node(harness):
    r = harness.connect("R", resume=True)
    a = harness.connect("A")
    harness.send(a, "R", 1)
    harness.send(a, "R", 2)
    harness.reconnect(r)  # never acknowledged: replayed
    harness.send(a, "R", 3)
    assert [d.n for d in r.delivers] == [1, 2, 1, 2, 3]
    assert [m.body for m in r.messages] == [1, 2, 3]
    harness.check_invariants()


def test_a_disconnect_keeps_the_inbox_and_stores_nothing(harness):
    r = harness.connect("R", resume=True)
    a = harness.connect("A")
    harness.send(a, "R")
    before = list(harness.stored)
    harness.disconnect(r)
    assert harness.stored == before
    assert len(harness.hub.inboxes["R"].messages) == 1


def test_a_resume_hello_does_not_reset_an_existing_inbox(harness):
    r = harness.connect("R", resume=True)
    a = harness.connect("A")
    harness.send(a, "R")
    harness.send(a, "R")
    harness.acknowledge(r)
    harness.reconnect(r)
    assert harness.stored_of(SaveInbox) == [SaveInbox("R", 0), SaveInbox("R", 2)]
    harness.send(a, "R")
    assert r.delivers[-1].n == 3  # numbering goes on
    harness.check_persistence()


def test_replay_counts_as_known_so_no_sync_repeats_it(harness):
    r = held_offline(harness)
    a = harness.connect("A")
    harness.send(a, "R")
    harness.reconnect(r)
    (notice, *_) = [x for x in harness.sync_cycle() if isinstance(x, SyncCycle)]
    assert "R" not in notice.synced


# delivered


def test_delivered_drops_the_messages_up_to_k(harness):
    r = harness.connect("R", resume=True)
    a = harness.connect("A")
    for i in range(3):
        harness.send(a, "R", i)
    actions = harness.acknowledge(r, upto=2)
    assert actions == [SaveInbox("R", 2)]
    inbox = harness.hub.inboxes["R"]
    assert inbox.acked == 2 and [d.n for d in inbox.messages] == [3]
    harness.check_persistence()
    start = len(r.received)
    harness.reconnect(r)
    assert [d.n for d in since(r, start) if isinstance(d, Deliver)] == [3]


def test_delivered_for_everything_empties_the_inbox(harness):
    r = harness.connect("R", resume=True)
    a = harness.connect("A")
    harness.send(a, "R")
    harness.acknowledge(r)
    assert harness.hub.inboxes["R"] == Inbox(acked=1)
    start = len(r.received)
    harness.reconnect(r)
    assert [type(f) for f in since(r, start)] == [Welcome]


def test_an_older_delivered_does_not_move_acked_back(harness):
    r = harness.connect("R", resume=True)
    a = harness.connect("A")
    harness.send(a, "R")
    harness.send(a, "R")
    harness.acknowledge(r, upto=2)
    assert harness.acknowledge(r, upto=1) == [SaveInbox("R", 2)]
    assert r.errors == []


@pytest.mark.parametrize("upto", [3, 4, 1000])
def test_delivered_beyond_what_was_sent_is_a_bad_frame(harness, upto):
    r = harness.connect("R", resume=True)
    a = harness.connect("A")
    harness.send(a, "R")
    harness.send(a, "R")
    before = list(harness.stored)
    harness.acknowledge(r, upto=upto)
    (error,) = r.errors
    assert error.code == ErrorCode.BAD_FRAME
    assert f"upto={upto}" in error.message and "only 2" in error.message
    assert r.closed is None
    assert harness.stored == before
    assert len(harness.hub.inboxes["R"].messages) == 2


def test_delivered_with_nothing_sent_is_a_bad_frame_unless_zero(harness):
    r = harness.connect("R", resume=True)
    harness.acknowledge(r, upto=0)
    assert r.errors == []
    harness.acknowledge(r, upto=1)
    assert codes(r) == [ErrorCode.BAD_FRAME]


def test_delivered_from_a_plain_session_is_unexpected(harness):
    a = harness.connect("A")
    harness.send_frame(a, Delivered(upto=0))
    (error,) = a.errors
    assert error.code == ErrorCode.UNEXPECTED_FRAME
    assert "resume" in error.message
    assert a.closed is None
    assert harness.stored == []


def test_delivered_before_hello_is_unexpected(harness):
    lurker = harness.connect("R", hello=False)
    harness.send_frame(lurker, Delivered(upto=0))
    assert codes(lurker) == [ErrorCode.UNEXPECTED_FRAME]


# Resent frames and seq


def test_a_resent_send_of_a_resume_session_is_acked_as_duplicate_and_not_delivered(harness):
    s = harness.connect("S", resume=True)
    b = harness.connect("B")
    send = harness.send(s, "B")
    stored = list(harness.stored)
    notices = list(harness.notices)
    actions = harness.send_frame(s, send)
    assert [(a.peer, a.frame) for a in actions] == [(s.peer, Ack(seq=send.seq, duplicate=True))]
    assert s.acks == [Ack(seq=send.seq), Ack(seq=send.seq, duplicate=True)]
    assert len(b.delivers) == 1
    assert harness.stored == stored and harness.notices == notices
    assert s.errors == []


def test_a_resent_send_to_a_held_client_is_not_kept_twice(harness):
    held_offline(harness)
    s = harness.connect("S", resume=True)
    send = harness.send(s, "R")
    harness.send_frame(s, send)
    assert len(harness.hub.inboxes["R"].messages) == 1
    assert len(harness.stored_of(SaveMessage)) == 1


def test_a_resent_report_of_a_resume_session_is_acked_as_duplicate(harness):
    s = harness.connect("S", resume=True)
    report = harness.report(s)
    actions = harness.send_frame(s, report)
    assert [a.frame for a in actions] == [Ack(seq=report.seq, duplicate=True)]
    assert len(harness.notices_of(Received)) == 1


def test_an_older_frame_resent_after_a_newer_one_is_a_duplicate(harness):
    s = harness.connect("S", resume=True)
    b = harness.connect("B")
    first = harness.send(s, "B", 1)
    harness.send(s, "B", 2)
    harness.send_frame(s, first)
    assert s.acks[-1] == Ack(seq=first.seq, duplicate=True)
    assert [d.body for d in b.delivers] == [1, 2]


def test_a_resent_frame_of_a_plain_session_is_stale(harness):
    a = harness.connect("A")
    b = harness.connect("B")
    send = harness.send(a, "B")
    harness.send_frame(a, send)
    (error,) = a.errors
    assert error.code == ErrorCode.STALE_CLOCK and error.seq == send.seq
    assert len(b.delivers) == 1


@pytest.mark.parametrize("resume", [False, True], ids=["plain", "resume"])
@pytest.mark.parametrize(
    "frame",
    [
        Send(to="B", seq=2, clock=VectorClock({"A": 1})),
        Send(to="B", seq=1, clock=VectorClock({"A": 2})),
        Send(to="B", seq=1, clock=VectorClock({"B": 1})),
        Report(seq=3, clock=VectorClock({"A": 1})),
    ],
    ids=["seq-above", "seq-below", "no-own-entry", "report"],
)
def test_a_seq_that_is_not_the_own_clock_entry_is_a_bad_frame(harness, resume, frame):
    a = harness.connect("A", resume=resume)
    b = harness.connect("B")
    stored = list(harness.stored)
    harness.send_frame(a, frame)
    (error,) = a.errors
    assert error.code == ErrorCode.BAD_FRAME and error.seq == frame.seq
    assert "own clock entry" in error.message
    assert a.acks == [] and b.delivers == []
    assert "A" not in harness.hub.latest
    assert harness.stored == stored


# Leaving for good


def test_bye_from_a_held_client_drops_its_inbox(harness):
    r = harness.connect("R", resume=True)
    s = harness.connect("S", resume=True)
    harness.send(s, "R")
    actions = harness.send_frame(r, Bye(reason="done"))
    assert DropInbox("R") in actions
    assert "R" not in harness.hub.inboxes
    harness.check_persistence()
    send = harness.send(s, "R")
    (error,) = s.errors
    assert error.code == ErrorCode.UNKNOWN_PEER and error.seq == send.seq
    assert s.acks[-1].seq != send.seq
    assert len(harness.stored_of(SaveMessage)) == 1


def test_bye_from_a_plain_client_drops_nothing(harness):
    a = harness.connect("A")
    actions = harness.send_frame(a, Bye())
    assert not any(isinstance(x, DropInbox) for x in actions)


def test_a_plain_hello_for_an_id_with_an_inbox_replays_it_then_drops_it(harness):
    held_offline(harness)
    a = harness.connect("A")
    harness.send(a, "R", "x")
    harness.send(a, "R", "y")
    plain = harness.connect("R")
    welcome, *rest = plain.received
    assert isinstance(welcome, Welcome)
    assert [d.body for d in rest] == ["x", "y"]
    assert harness.stored[-1] == DropInbox("R")
    assert "R" not in harness.hub.inboxes
    harness.check_persistence()
    harness.disconnect(plain)
    harness.send(a, "R")
    assert codes(a) == [ErrorCode.UNKNOWN_PEER]


# Persistence and restart


def test_the_store_follows_the_hub_through_resume_traffic(harness):
    r = held_offline(harness)
    s = harness.connect("S", resume=True)
    harness.send(s, "R")
    harness.report(s)
    harness.check_persistence()
    harness.reconnect(r)
    harness.acknowledge(r)
    harness.sync_cycle()
    harness.check_persistence()
    assert SaveClock("S", s.node.clock) in harness.stored


def restart_scenario(store: Store) -> tuple[HubHarness, dict[str, HarnessClient]]:
    h = HubHarness(Hub(sync_interval=2.5), store=store)
    r = held_offline(h, "R")
    q = h.connect("Q", resume=True)
    a = h.connect("A", resume=True)
    b = h.connect("B")
    for i in range(3):
        h.send(a, "R", f"a{i}")
    h.send(b, "R", "b0")
    h.send(a, "Q", "q0")
    h.send(b, "A", "to-a")
    h.acknowledge(q)
    h.report(b)
    h.sync_cycle()
    h.sync_cycle()
    h.reconnect(r)
    h.acknowledge(r, upto=1)  # a0 done; a1, a2, b0 still kept
    h.disconnect(r)
    h.send(a, "R", "a3")
    return h, {"R": r, "Q": q, "A": a, "B": b}


@pytest.mark.parametrize("where", ["memory", "folder"])
def test_a_restarted_hub_has_the_same_state(tmp_path, where):
    store = Store(":memory:" if where == "memory" else tmp_path / "state")
    h, _ = restart_scenario(store)
    old = h.hub
    if where == "folder":
        store.close()
        h.store = Store(tmp_path / "state")
    new = h.restart()
    assert new is not old
    assert new.latest == old.latest
    assert new.cycle == old.cycle == 2
    assert new.frontier == old.frontier
    assert_same_state(new.state, old.state)
    assert [d.body for d in new.inboxes["R"].messages] == ["a1", "a2", "b0", "a3"]
    assert new.inboxes["Q"] == Inbox(acked=1)
    assert new.clients == []


def test_after_a_restart_a_resumed_client_gets_its_messages(harness):
    h, clients = restart_scenario(harness.store)
    r, a = clients["R"], clients["A"]
    h.restart()
    start = len(r.received)
    h.reconnect(r)
    welcome, *replayed = since(r, start)
    assert isinstance(welcome, Welcome)
    assert [(d.n, d.body) for d in replayed] == [(2, "a1"), (3, "a2"), (4, "b0"), (5, "a3")]
    assert [m.body for m in r.messages] == ["a0", "a1", "a2", "b0", "a3"]
    h.reconnect(a)
    h.send(a, "R", "a4")
    assert r.delivers[-1].n == 6 and r.messages[-1].body == "a4"
    assert a.errors == [] and r.errors == []
    h.sync_cycle()
    assert h.hub.cycle == 3
    h.check_persistence()
    h.check_invariants()


def test_a_restarted_hub_resumes_the_clock_of_every_id(harness):
    h, clients = restart_scenario(harness.store)
    a = clients["A"]
    latest = h.hub.latest["A"]
    h.restart()
    h.reconnect(a)
    (welcome,) = [f for f in a.received if isinstance(f, Welcome)][-1:]
    assert welcome == Welcome(
        v=1, id="A", peers=[], sync_interval=2.5, clock=latest, delta=True, resumed=True
    )
    report = h.report(a)
    assert report.seq == latest["A"] + 1
    assert a.acks[-1] == Ack(seq=report.seq)


def test_an_ack_lost_in_a_crash_is_answered_as_duplicate_after_the_restart(harness):
    r = held_offline(harness)
    s = harness.connect("S", resume=True)
    send = s.node.send("R", "once")
    actions = harness.hub.receive(s.peer, send)  # stored, but the server dies before writing
    harness.store.apply([a for a in actions if isinstance(a, SaveClock | SaveMessage)])
    harness.restart()
    harness.reconnect(s)  # resends the unacknowledged send
    assert s.acks == [Ack(seq=send.seq, duplicate=True)]
    assert s.node.unacked == {}
    harness.reconnect(r)
    assert [m.body for m in r.messages] == ["once"]


def test_a_frame_lost_before_it_was_stored_is_taken_as_new_after_the_restart(harness):
    r = held_offline(harness)
    s = harness.connect("S", resume=True)
    send = s.node.send("R", "late")
    harness.hub.receive(s.peer, send)  # the server dies before the commit
    harness.restart()
    assert "S" not in harness.hub.latest
    harness.reconnect(s)
    assert s.acks == [Ack(seq=send.seq)]
    harness.reconnect(r)
    assert [m.body for m in r.messages] == ["late"]


# Inbox limit


def test_an_inbox_full_send_is_answered_by_its_error_and_sent_again_as_new(harness):
    h = HubHarness(Hub(max_inbox=1), store=harness.store)
    r = held_offline(h)
    s = h.connect("S", resume=True)
    h.send(s, "R", "first")
    refused = h.send(s, "R", "second")
    (error,) = s.errors
    assert error.code == ErrorCode.INBOX_FULL
    assert error.peer == "R" and error.seq == refused.seq
    assert s.acks == [Ack(seq=refused.seq - 1)]
    assert h.hub.latest["S"]["S"] == refused.seq - 1  # its clock was not taken in
    assert h.stored_of(SaveClock)[-1] == SaveClock("S", VectorClock({"S": refused.seq - 1}))
    # The error is the frame's answer (7.2): never resent, handed to the application.
    assert s.node.unacked == {}
    (event,) = [e for e in s.events if isinstance(e, ServerError)]
    assert event.frame == refused
    h.reconnect(r)
    h.acknowledge(r)
    again = h.send(s, "R", event.frame.body)  # the application sends it again, anew
    assert again.seq > refused.seq and s.acks[-1] == Ack(seq=again.seq)
    assert [m.body for m in r.messages] == ["first", "second"]
    h.check_persistence()


@pytest.mark.parametrize("later", ["send", "report"])
def test_a_refused_frame_is_not_resent_behind_a_later_accepted_one(harness, later):
    # Defect: frames refused with inbox-full (or rate-limited) stayed unacknowledged
    # and were resent after a reconnect with their old seq. When a later frame had
    # been accepted (its ack lost with the connection), the server took the resend
    # for a duplicate: acknowledged, never delivered.
    h = HubHarness(Hub(max_inbox=1), store=harness.store)
    r = held_offline(h)
    h.connect("B")
    s = h.connect("S", resume=True)
    h.send(s, "R", "first")
    refused = h.send(s, "R", "second")
    frame = s.node.send("B", "later") if later == "send" else s.node.report()
    s.client_conn.send(frame)
    s.conn.receive_data(s.client_conn.data_to_send())
    actions = h.hub.receive(s.peer, s.conn.next_event())
    s.closed = "connection lost"  # before the ack of the later frame arrives
    h.run(actions)
    h.disconnect(s)
    h.reconnect(s)
    # Only the later frame is resent (its ack was lost): a true duplicate.
    assert [a for a in s.acks if a.duplicate] == [Ack(seq=frame.seq, duplicate=True)]
    assert refused.seq not in [a.seq for a in s.acks]
    h.reconnect(r)
    assert [m.body for m in r.messages] == ["first"]  # and S's application was told


# welcome.resumed: does the numbering of deliver.n go on?


def test_welcome_says_whether_a_resume_session_found_its_inbox(harness):
    r = harness.connect("R", resume=True)
    harness.disconnect(r)
    harness.reconnect(r)
    plain = harness.connect("P")
    welcomes = [f for f in r.received if isinstance(f, Welcome)]
    assert [w.resumed for w in welcomes] == [False, True]  # a new inbox, then kept
    (welcome,) = [f for f in plain.received if isinstance(f, Welcome)]
    assert welcome.resumed is None
    assert b'"resumed"' not in encode_frame(welcome)  # absent: as from older servers


def inbox_numbers_restart(harness: HubHarness, lose: str) -> tuple[HarnessClient, HarnessClient]:
    """R handles five deliveries, then its inbox is lost (``lose``); A sends again."""
    r = harness.connect("R", resume=True)
    a = harness.connect("A", resume=True)
    for i in range(5):
        harness.send(a, "R", f"old{i}")
    harness.acknowledge(r)
    assert r.node.delivered == 5
    if lose == "bye":
        harness.send_frame(r, Bye(reason="done"))  # the server closes: the inbox goes
    elif lose == "restart":  # a server without durable storage
        harness.hub = Hub()
        for client in (r, a):
            client.closed = "server restarted"
    else:  # the hold limit passed
        harness.disconnect(r)
        harness.hub.drop_held("R")
    harness.reconnect(r)
    if lose == "restart":
        harness.reconnect(a)
    for i in range(3):
        harness.send(a, "R", f"new{i}")
    return r, a


@pytest.mark.parametrize("lose", ["bye", "restart", "expired"])
def test_a_resume_client_on_a_new_inbox_handles_every_new_message(harness, lose):
    # Defect: the node kept its old delivery number; the new inbox numbers from 1,
    # so it dropped the next five messages as replays.
    r, _ = inbox_numbers_restart(harness, lose)
    welcome = [f for f in r.received if isinstance(f, Welcome)][-1]
    assert welcome.resumed is False
    assert [d.n for d in r.delivers[-3:]] == [1, 2, 3]
    assert [m.body for m in r.messages] == [f"old{i}" for i in range(5)] + ["new0", "new1", "new2"]
    assert r.node.delivered == 3
    harness.acknowledge(r)
    assert harness.hub.inboxes["R"].acked == 3


def test_a_kept_inbox_goes_on_numbering_and_replays_are_still_dropped(harness):
    r = harness.connect("R", resume=True)
    a = harness.connect("A")
    harness.send(a, "R", 1)
    harness.send(a, "R", 2)
    harness.reconnect(r)  # not acknowledged: 1 and 2 are replayed, and dropped
    harness.send(a, "R", 3)
    assert [f.resumed for f in r.received if isinstance(f, Welcome)] == [False, True]
    assert [m.body for m in r.messages] == [1, 2, 3]
    assert r.node.delivered == 3


# Flow control: at most `window` unacknowledged deliveries


@pytest.fixture
def windowed() -> HubHarness:
    return HubHarness(Hub(window=2), store=Store(":memory:"))


def test_a_connected_held_client_gets_at_most_window_unacknowledged(windowed):
    r = windowed.connect("R", resume=True)
    a = windowed.connect("A")
    for i in range(5):
        windowed.send(a, "R", i)
    assert [d.n for d in r.delivers] == [1, 2]
    assert len(windowed.hub.inboxes["R"].messages) == 5  # all kept
    actions = windowed.acknowledge(r)
    assert actions[0] == SaveInbox("R", 2)  # stored before the next ones go out
    assert [d.n for d in r.delivers] == [1, 2, 3, 4]
    windowed.acknowledge(r, upto=3)
    assert [d.n for d in r.delivers] == [1, 2, 3, 4, 5]
    windowed.acknowledge(r)
    assert [m.body for m in r.messages] == [0, 1, 2, 3, 4]
    assert not windowed.hub.inboxes["R"].messages
    assert a.errors == []


def test_the_replay_on_return_is_windowed_too(windowed):
    r = held_offline(windowed)
    a = windowed.connect("A")
    for i in range(5):
        windowed.send(a, "R", i)
    start = len(r.received)
    windowed.reconnect(r)
    assert [type(f).__name__ for f in since(r, start)] == ["Welcome", "Deliver", "Deliver"]
    windowed.acknowledge(r, upto=1)
    assert [d.n for d in r.delivers] == [1, 2, 3]


def test_a_return_replays_what_was_sent_but_not_acknowledged(windowed):
    r = windowed.connect("R", resume=True)
    a = windowed.connect("A")
    for i in range(3):
        windowed.send(a, "R", i)
    windowed.reconnect(r)  # 1 and 2 were sent, never acknowledged
    assert [d.n for d in r.delivers] == [1, 2, 1, 2]
    assert [m.body for m in r.messages] == [0, 1]


def test_after_a_restart_the_window_starts_from_what_was_acknowledged(windowed):
    r = windowed.connect("R", resume=True)
    a = windowed.connect("A")
    for i in range(4):
        windowed.send(a, "R", i)
    windowed.acknowledge(r, upto=1)
    windowed.restart()
    start = len(r.received)
    windowed.reconnect(r)
    assert [d.n for d in since(r, start) if isinstance(d, Deliver)] == [2, 3]
    windowed.acknowledge(r)
    assert [m.body for m in r.messages] == [0, 1, 2, 3]


def test_a_plain_hello_gets_the_whole_inbox_whatever_the_window(windowed):
    held_offline(windowed)
    a = windowed.connect("A")
    for i in range(5):
        windowed.send(a, "R", i)
    plain = windowed.connect("R")
    assert [d.body for d in plain.delivers] == [0, 1, 2, 3, 4]
    assert "R" not in windowed.hub.inboxes


# Hold limit (the server decides when; the hub drops)


def test_dropping_a_held_inbox_after_the_hold_limit_makes_the_id_unknown(harness):
    held_offline(harness)
    s = harness.connect("S", resume=True)
    harness.send(s, "R")
    harness.send(s, "R")
    actions = harness.hub.drop_held("R")
    assert actions == [DropInbox("R"), Expired("R", dropped=2)]
    harness.run(actions)
    assert "R" not in harness.hub.inboxes
    late = harness.send(s, "R")
    assert [(e.code, e.seq) for e in s.errors] == [("unknown-peer", late.seq)]
    harness.check_persistence()


def test_only_an_away_held_client_can_be_dropped(harness):
    harness.connect("R", resume=True)  # here: its inbox stays
    harness.connect("P")  # plain: holds nothing
    assert harness.hub.drop_held("R") == []
    assert harness.hub.drop_held("P") == []
    assert harness.hub.drop_held("nobody") == []
    assert "R" in harness.hub.inboxes
