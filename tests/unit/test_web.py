"""The live dashboard: its model fed with hub actions (made up, and from a simulated run
through the real Hub) and its drawing. The web app over real HTTP is in
tests/integration/test_web_http.py.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

import vclock.tools.diagram
import vclock.web.render
from vclock.client import ClientState, Message, Synced
from vclock.clock import VectorClock
from vclock.errors import ErrorCode, PeerError
from vclock.events import EVERYONE
from vclock.hub import Hub, Joined, Left, Outgoing, PeerId, Received, Refused, SyncCycle
from vclock.protocol.frames import Deliver, Report, Send
from vclock.tracing import check_run, parse_runs
from vclock.web import LiveModel, parse_address
from vclock.web.app import pieces, sse
from vclock.web.render import LiveDrawing

T0 = 1_700_000_000.0
A, B, C = PeerId(1), PeerId(2), PeerId(3)


def vc(**entries: int) -> VectorClock:
    return VectorClock(entries)


def joined(model: LiveModel, *ids: str) -> None:
    for n, client_id in enumerate(ids, 1):
        model.observe(Joined(PeerId(n), client_id, f"127.0.0.1:{5000 + n}"), T0)


def send(model: LiveModel, peer: PeerId, sender: str, to: str, clock: VectorClock, at=T0) -> None:
    frame = Send(to=to, seq=clock[sender], clock=clock)
    model.observe(Received(peer, sender, "addr", frame), at)


def deliver(model: LiveModel, peer: PeerId, sender: str, clock: VectorClock, at=T0) -> None:
    model.observe(Outgoing(peer, Deliver(sender=sender, seq=clock[sender], clock=clock)), at)


def report(model: LiveModel, peer: PeerId, sender: str, clock: VectorClock, at=T0) -> None:
    model.observe(Received(peer, sender, "addr", Report(seq=clock[sender], clock=clock)), at)


def dots(model: LiveModel) -> dict[str, Any]:
    return {e.event.id: e for e in model.diagram.window}


def edges(model: LiveModel) -> set[tuple[str, str]]:
    return {(p, e.event.id) for e in model.diagram.window for p in e.preds}


# The model, from made-up actions


def test_rows_show_the_last_reported_clock_and_what_was_delivered():
    model = LiveModel()
    joined(model, "A", "B")
    send(model, A, "A", "B", vc(A=1))
    deliver(model, B, "A", vc(A=1))
    report(model, B, "B", vc(A=1, B=2))
    model.observe(Left(A, "A", "127.0.0.1:5001"), T0 + 1)

    a, b = model.table.clients["A"], model.table.clients["B"]
    assert (a.clock, a.sends, a.connected, a.address) == (vc(A=1), 1, False, "127.0.0.1:5001")
    assert (b.clock, b.reports, b.delivered, b.sent) == (vc(A=1, B=2), 1, 1, vc(A=1))
    assert b.connected and b.heard == T0
    assert [row.id for row in model.table.rows()] == ["A", "B"]
    assert [row.id for row in model.table.rows(since=b.version)] == ["A"]  # only A changed since


def test_a_delivery_is_an_arrow_from_the_send_to_a_hollow_dot_with_the_carried_clock():
    model = LiveModel()
    joined(model, "A", "B")
    send(model, A, "A", "B", vc(A=1))
    deliver(model, B, "A", vc(A=1))
    d = dots(model)
    assert list(d) == ["A:1", "B:1"]
    sent, got = d["A:1"].event, d["B:1"].event
    assert (sent.kind, sent.peer, sent.msg, dict(sent.clock)) == ("send", "B", "A#1", {"A": 1})
    assert (got.kind, got.peer, got.msg, dict(got.clock)) == ("deliver", "A", "A#1", {"A": 1})
    assert "not known to the server" in (got.desc or "")
    [arrow] = d["B:1"].arrows
    assert (arrow.source, arrow.target, arrow.kind) == ("A:1", "B:1", "message")
    assert got.rank == sent.rank + 1


def test_a_send_that_covers_a_delivery_follows_it_and_one_that_does_not_stays_concurrent():
    model = LiveModel()
    joined(model, "A", "B")
    send(model, B, "B", "A", vc(B=1))  # B:1
    send(model, A, "A", "B", vc(A=1))  # A:1
    deliver(model, B, "A", vc(A=1))  # B:2, hollow
    send(model, B, "B", "A", vc(B=2))  # B:3: left before A#1 arrived
    send(model, B, "B", "A", vc(A=1, B=4))  # B:4: after it (B=3 was the receive)
    e = edges(model)
    assert ("B:1", "B:2") in e  # B's last send before the delivery
    assert ("A:1", "B:2") in e
    assert ("B:2", "B:3") not in e and ("B:1", "B:3") in e
    assert ("B:2", "B:4") in e and ("B:3", "B:4") in e
    d = dots(model)
    # Concurrent (no edge), yet drawn right of B:2, not on top of it: two dots of a
    # lane never share a place (issue 15, item 5: no arrow through another dot).
    assert d["B:3"].event.rank == d["B:2"].event.rank + 1


def test_reports_go_to_the_server_lane_as_in_the_offline_diagram():
    model = LiveModel()
    joined(model, "A")
    report(model, A, "A", vc(A=1))
    d = dots(model)
    assert [(x.event.pid, x.event.kind) for x in d.values()] == [
        ("A", "send"),
        ("server", "receive"),
    ]
    assert d["A:1"].event.peer == "server"
    [arrow] = d["server:1"].arrows
    assert (arrow.source, arrow.kind) == ("A:1", "report")


def test_a_sync_cycle_draws_a_diamond_and_dashed_arrows_and_fills_the_sync_panel():
    model = LiveModel()
    joined(model, "A", "B")
    send(model, A, "A", "B", vc(A=1))
    report(model, B, "B", vc(B=1))
    frontier = vc(A=1, B=1)
    model.observe(SyncCycle(7, 2, frontier, ("A",)), T0 + 2)
    model.observe(SyncCycle(8, 2, frontier, ()), T0 + 3)  # nothing new: no dots

    s = model.table.sync
    assert (s.cycle, s.clients, s.frontier, s.synced, s.cycles, s.sent) == (
        8,
        2,
        frontier,
        (),
        2,
        1,
    )
    assert s.last_sent_cycle == 7
    d = dots(model)
    diamond = d["server:2"].event
    assert (diamond.kind, diamond.msg, diamond.to) == ("sync", "sync#7", ("A",))
    assert {("A:1", "server:2"), ("B:1", "server:2"), ("server:1", "server:2")} <= edges(model)
    got = d["A:2"]
    assert (got.event.kind, got.event.msg) == ("sync-deliver", "sync#7")
    assert [(a.source, a.kind) for a in got.arrows] == [("server:2", "sync")]
    assert model.table.clients["A"].syncs == 1 and model.table.clients["A"].sent == frontier
    assert len(model.diagram.window) == 5


def test_a_broadcast_is_an_arrow_to_every_receiver_and_is_not_put_before_the_next_delivery():
    from vclock.protocol.frames import Broadcast

    model = LiveModel()
    joined(model, "A", "B", "C")
    frame = Broadcast(seq=1, clock=vc(A=1), bclock=vc(A=1))
    model.observe(Received(A, "A", "addr", frame), T0)
    for peer in (B, C):
        model.observe(Outgoing(peer, Deliver(sender="A", seq=1, clock=vc(A=1), bclock=vc(A=1))), T0)
    send(model, C, "C", "B", vc(C=1))
    deliver(model, B, "C", vc(C=1))
    d = dots(model)
    assert d["A:1"].event.peer == EVERYONE  # the log's id, "*"; shown as a word:
    assert "\nsend A#1 -> everyone\n" in model.log.text()
    assert [a.source for a in d["B:1"].arrows] == [a.source for a in d["C:1"].arrows] == ["A:1"]
    # B may hold the broadcast back until later: no edge from it to the next delivery.
    assert ("B:1", "B:2") not in edges(model)


def test_refused_frames_are_counted_and_listed():
    model = LiveModel()
    joined(model, "A")
    error = PeerError("clock does not advance", code=ErrorCode.STALE_CLOCK)
    model.observe(Refused(A, "127.0.0.1:5001", error), T0)
    model.observe(Refused(PeerId(9), "10.0.0.9:1", error), T0)  # before hello: no id
    assert model.table.clients["A"].refused == 1
    assert [(r.who, r.code) for r in model.table.refusals] == [
        ("A", "stale-clock"),
        ("10.0.0.9:1", "stale-clock"),
    ]


def test_the_window_keeps_the_last_dots_and_says_which_scrolled_off():
    model = LiveModel(max_events=10)
    joined(model, "A", "B")
    page: set[str] = set()  # what a page holds, applying the changes as they are taken
    for n in range(1, 21):
        send(model, A, "A", "B", vc(A=n))
        deliver(model, B, "A", vc(A=n))
        if n % 3 == 0:
            changes = model.diagram.take_changes()
            assert not changes.overflow
            page = (page | {e.event.id for e in changes.added}) - set(changes.removed)
    changes = model.diagram.take_changes()
    page = (page | {e.event.id for e in changes.added}) - set(changes.removed)
    assert len(model.diagram.window) == 10
    assert model.diagram.window[0].event.id == "A:16" and model.diagram.events_seen == 40
    assert page == {e.event.id for e in model.diagram.window}
    assert model.diagram.rank_of("A:1") is None and model.diagram.rank_of("A:16") is not None
    assert model.diagram.take_changes().added == []
    # A new client's lane starts where the picture is, not at rank 1.
    model.observe(Joined(C, "C", "addr"), T0)
    floor = model.diagram.window[0].event.rank
    send(model, C, "C", "A", vc(C=1))
    assert dots(model)["C:1"].event.rank >= floor


def test_without_anyone_taking_the_changes_they_stay_bounded():
    model = LiveModel(max_events=5)
    joined(model, "A", "B")
    for n in range(1, 50):
        send(model, A, "A", "B", vc(A=n))
    changes = model.diagram.take_changes()
    assert changes.overflow and len(changes.added) <= 5


@pytest.mark.parametrize("bound", ["max_events", "max_log_bytes", "max_clients"])
def test_every_bound_must_be_at_least_one(bound: str):
    with pytest.raises(ValueError, match="must be at least 1"):
        LiveModel(**{bound: 0})


def test_rates_are_per_second_over_the_last_whole_seconds():
    model = LiveModel()
    joined(model, "A", "B")
    for n in range(1, 31):  # 10 a second for 3 seconds
        send(model, A, "A", "B", vc(A=n), at=T0 + (n - 1) / 10)
        deliver(model, B, "A", vc(A=n), at=T0 + (n - 1) / 10)
    rates = model.table.rates.rates(T0 + 3.5, window=3)
    assert rates["messages"] == rates["deliveries"] == 10
    assert model.table.rates.series("messages", T0 + 3.5)[-3:] == [10, 10, 10]


def test_the_clients_table_is_bounded_and_forgets_those_that_left_first():
    model = LiveModel(max_clients=3)
    joined(model, "A", "B", "C")
    model.observe(Left(B, "B", "addr"), T0)
    model.observe(Joined(PeerId(4), "D", "addr"), T0)
    assert list(model.table.clients) == ["A", "C", "D"]


# The ShiViz log


def test_the_shiviz_log_parses_and_loads_in_shiviz():
    model = LiveModel()
    joined(model, "A", "B")
    send(model, A, "A", "B", vc(A=1))
    deliver(model, B, "A", vc(A=1))
    send(model, B, "B", "A", vc(A=1, B=3))  # B=1, B=2 unseen: a local event, the receive
    report(model, A, "A", vc(A=2))
    text = model.shiviz_log()
    [run] = parse_runs(text)
    check_run(run.records)  # what ShiViz checks: every event of a host, numbered 1, 2, 3 ...
    assert [(r.host, r.clock[r.host]) for r in run.records if r.host == "B"] == [
        ("B", 1),
        ("B", 2),
        ("B", 3),
    ]
    seen = [r.description for r in run.records if not r.description.startswith("unseen")]
    assert seen == ["send A#1 -> B", "send A#2 -> server", "send B#3 -> A"]
    unseen = [r for r in run.records if r.description.startswith("unseen")]
    assert [r.clock for r in unseen] == [vc(B=1), vc(B=2)]  # lower bounds, before B#3


def test_the_shiviz_log_keeps_its_first_bytes_and_counts_the_rest():
    model = LiveModel(max_log_bytes=600)
    joined(model, "A", "B")
    for n in range(1, 20):
        send(model, A, "A", "B", vc(A=n))
    log = model.log
    assert log.full and log.events + log.dropped == 19 and 0 < log.size <= 600
    [run] = parse_runs(model.shiviz_log())
    check_run(run.records)
    assert len(run.records) == log.events


def test_a_huge_counter_is_not_filled_in_event_by_event():
    model = LiveModel()
    joined(model, "A", "B")
    report(model, A, "A", vc(A=10**12))
    send(model, B, "B", "A", vc(B=2))
    [run] = parse_runs(model.shiviz_log())
    assert [r.clock for r in run.records if r.host == "A"] == [vc(A=10**12)]  # left as it is
    assert len(run.records) == 3 and model.log.gaps == 1  # B's gap of one is filled


def test_events_other_clocks_count_beyond_the_last_seen_are_filled_in_at_the_end():
    model = LiveModel()
    joined(model, "A", "B")
    model.seed(["A"], {"A": vc(A=3)}, T0)  # say, clocks from before the dashboard started
    send(model, B, "B", "A", vc(A=3, B=1))
    [run] = parse_runs(model.shiviz_log())
    check_run(run.records)
    assert [(r.host, r.clock[r.host]) for r in run.records] == [
        ("A", 1),
        ("A", 2),
        ("A", 3),
        ("B", 1),
    ]
    assert all(r.description.startswith("unseen") for r in run.records[:3])


# The model, from a simulated run through the real Hub: is every edge true?


@dataclass
class _Sim:
    """Nodes around a real Hub, with a random network: frames to each node wait in its
    queue (in order, as on one TCP connection) until the node reads them."""

    hub: Hub
    model: LiveModel
    nodes: dict[str, ClientState]
    peer: dict[str, PeerId]
    queue: dict[str, deque[Any]]
    truth: dict[tuple[str, str], VectorClock]  # (receiver, msg) -> its clock after it

    def apply(self, actions: list[Any], at: float) -> None:
        by_peer = {p: c for c, p in self.peer.items()}
        for action in actions:
            if isinstance(action, Outgoing):
                self.queue[by_peer[action.peer]].append(action.frame)
            self.model.observe(action, at)


def _simulate(
    seed: int,
    steps: int = 300,
    broadcasts: bool = False,
    *,
    ids: Sequence[str] = ("A", "B", "C", "D"),
    each: Callable[[LiveModel, float], None] | None = None,
) -> _Sim:
    """``steps`` random steps of the nodes ``ids``; ``each(model, now)`` after each step."""
    rng = random.Random(seed)
    sim = _Sim(Hub(), LiveModel(), {}, {}, {c: deque() for c in ids}, {})
    for n, c in enumerate(ids, 1):
        sim.nodes[c] = ClientState(c, delta=False)
        sim.peer[c] = PeerId(n)
        sim.apply(sim.hub.connect(PeerId(n), f"addr{n}"), 0)
        sim.apply(sim.hub.receive(PeerId(n), sim.nodes[c].hello()), 0)
    for step in range(steps):
        at = T0 + step / 50
        c = rng.choice(ids)
        node = sim.nodes[c]
        roll = rng.random()
        if roll < 0.35 and sim.queue[c]:
            for event in node.receive_all(sim.queue[c].popleft()):
                if isinstance(event, Message):
                    sim.truth[(c, event.id)] = event.clock
                elif isinstance(event, Synced):
                    sim.truth[(c, f"sync#{event.cycle}")] = event.clock
        elif roll < 0.45:
            node.local_event()
        elif roll < 0.55:
            sim.apply(sim.hub.receive(sim.peer[c], node.report()), at)
        elif roll < 0.62:
            sim.apply(sim.hub.begin_sync_cycle(), at)
        elif broadcasts and roll < 0.75:
            sim.apply(sim.hub.receive(sim.peer[c], node.broadcast()), at)
        else:
            to = rng.choice([x for x in ids if x != c])
            sim.apply(sim.hub.receive(sim.peer[c], node.send(to)), at)
        if each is not None:
            each(sim.model, at)
    return sim


@pytest.mark.parametrize("broadcasts", [False, True], ids=["sends", "broadcasts"])
@pytest.mark.parametrize("seed", range(8))
def test_every_edge_the_model_draws_is_a_true_happened_before(seed: int, broadcasts: bool):
    if broadcasts and not hasattr(ClientState, "broadcast"):
        pytest.skip("this build has no causal broadcast")
    sim = _simulate(seed, broadcasts=broadcasts)
    d = dots(sim.model)

    def true_clock(dot_id: str) -> VectorClock | None:
        e = d[dot_id].event
        if e.pid == "server":
            return None  # not a client event
        if e.kind == "send":
            return VectorClock(e.clock)  # a client's own clock, as it sent it
        return sim.truth.get((e.pid, e.msg or ""))  # None: still in the network

    checked = 0
    for a, b in edges(sim.model):
        ca, cb = true_clock(a), true_clock(b)
        if ca is not None and cb is not None:
            assert ca < cb, f"{a} -> {b} drawn, but {ca} is not before {cb}"
            checked += 1
        assert d[a].event.rank < d[b].event.rank
    assert checked > 50
    # and the table shows the hub's own latest clocks
    for c in sim.nodes:
        assert sim.model.table.clients[c].clock == sim.hub.latest.get(c, VectorClock())


# The drawing


def test_the_drawing_appends_dots_drawn_by_the_offline_diagrams_rules():
    from vclock.tools.drawing import event_svg

    model = LiveModel()
    drawing = LiveDrawing(model, min_reset_interval=0)
    joined(model, "A", "B")
    send(model, A, "A", "B", vc(A=1))
    model.diagram.take_changes()
    first = drawing.snapshot(T0)
    assert first["kind"] == "reset" and first["lanes"] == ["A", "B", "server"]
    assert 'class="event kind-send"' in first["diagram"] and 'data-id="A:1"' in first["diagram"]

    deliver(model, B, "A", vc(A=1))
    update = drawing.step(model.diagram.take_changes(), T0 + 0.1)
    assert update is not None and update["kind"] == "append"
    [(serial, dot)] = update["events"]
    assert serial == model.diagram.window[-1].serial == update["upto"]
    assert dot.startswith('<g class="event kind-deliver" data-id="B:1"')
    assert 'stroke-dasharray="2.2 1.6"' in dot  # hollow, dashed rim
    [(_, arrow)] = update["arrows"]
    assert 'class="message" data-from="A:1" data-to="B:1"' in arrow
    assert update["edges"] == ["A:1", "B:1"]
    # the same function draws the same dot offline
    g = drawing._geometry
    assert g is not None
    assert event_svg.__module__ == "vclock.tools.drawing"
    assert vclock.web.render.event_svg is vclock.tools.diagram.event_svg is event_svg


def test_a_new_lane_redraws_the_window_at_most_once_a_second():
    model = LiveModel()
    drawing = LiveDrawing(model, min_reset_interval=1.0)
    joined(model, "A", "B")
    send(model, A, "A", "B", vc(A=1))
    drawing.snapshot(T0)
    model.diagram.take_changes()
    model.observe(Joined(C, "C", "addr"), T0 + 0.2)  # a new lane
    assert drawing.step(model.diagram.take_changes(), T0 + 0.2) is None  # held back
    send(model, C, "C", "A", vc(C=1))
    assert drawing.step(model.diagram.take_changes(), T0 + 0.5) is None
    again = drawing.step(model.diagram.take_changes(), T0 + 1.2)
    assert (
        again is not None
        and again["kind"] == "reset"
        and again["lanes"] == ["A", "B", "C", "server"]
    )
    assert 'data-id="C:1"' in again["diagram"]


def test_past_the_label_limit_the_dots_lose_their_labels_as_offline():
    from vclock.tools.drawing import LABEL_LIMIT

    model = LiveModel()
    drawing = LiveDrawing(model, min_reset_interval=0)
    joined(model, "A", "B")
    send(model, A, "A", "B", vc(A=1))
    assert drawing.snapshot(T0)["labelled"] is True
    for n in range(2, LABEL_LIMIT + 2):
        send(model, A, "A", "B", vc(A=n))
    update = drawing.step(model.diagram.take_changes(), T0 + 2)
    assert update is not None and update["kind"] == "reset" and update["labelled"] is False
    assert "clock-label" not in update["diagram"]


# Web addresses (the app over real HTTP: tests/integration/test_web_http.py)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        (":0", ("127.0.0.1", 0)),
        ("8080", ("127.0.0.1", 8080)),
        ("[::1]:9000", ("::1", 9000)),
        ("localhost:65535", ("localhost", 65535)),
    ],
)
def test_web_addresses(text: str, address: tuple[str, int]):
    assert parse_address(text) == address


@pytest.mark.parametrize("text", ["", "host:", "host:http", "1.2.3.4:70000", "[::1]9000"])
def test_bad_web_addresses_say_what_is_expected(text: str):
    with pytest.raises(ValueError, match="expected"):
        parse_address(text)


@pytest.mark.parametrize("size", [4, 5, 7, 16])
def test_a_stream_is_written_in_pieces_cut_between_characters(size: int):
    # Each piece is one HTTP chunk; a reader decoding chunk by chunk must not see
    # half of "é" or "🙂" (the pieces came in with the bounded stream writes).
    message = sse("update", {"text": "aé🙂b" * 50, "id": "x y"})
    parts = list(pieces(message, size))
    assert b"".join(parts) == message
    assert all(0 < len(p) <= size for p in parts)
    for part in parts:
        part.decode("utf-8")  # raises on a cut character
