"""Causal broadcast under any network schedule: whatever the order and delay in
which broadcasts reach each node, every node delivers them in causal order, and
once everything has arrived, every node has delivered everything.

A simulated network of NodeStates (no hub): each broadcast is put in flight to
every other node, and hypothesis picks which in-flight message arrives next.
The run is logged as vclock events and judged by the trace checker with causal
delivery required (broadcasts are the only messages, so happened-before is the
broadcast causality BSS promises to respect)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vclock.client import ClientState, Message
from vclock.events import Event
from vclock.protocol import PROTOCOL_VERSION, Deliver, Welcome
from vclock.tools.checker import check

TS = "2024-01-01T00:00:00+00:00"


class Network:
    def __init__(self, ids: list[str]) -> None:
        self.nodes = {i: ClientState(i) for i in ids}
        for i, node in self.nodes.items():
            node.receive_all(Welcome(v=PROTOCOL_VERSION, id=i, peers=[], sync_interval=1.0))
        self.in_flight: list[tuple[str, Deliver]] = []
        self.events: list[Event] = []
        self.delivered: dict[str, list[str]] = {i: [] for i in ids}
        self.sent: list[str] = []

    def broadcast(self, sender: str) -> None:
        frame = self.nodes[sender].broadcast()
        msg = f"{sender}#{frame.seq}"
        self.sent.append(msg)
        self.events.append(
            Event(ts=TS, pid=sender, kind="send", clock=frame.clock.to_dict(), peer="*", msg=msg)
        )
        deliver = Deliver(sender=sender, seq=frame.seq, clock=frame.clock, bclock=frame.bclock)
        self.in_flight += [(to, deliver) for to in self.nodes if to != sender]

    def arrive(self, index: int) -> None:
        to, deliver = self.in_flight.pop(index % len(self.in_flight))
        for event in self.nodes[to].receive_all(deliver):
            assert isinstance(event, Message) and event.broadcast
            self.delivered[to].append(event.id)
            self.events.append(
                Event(
                    ts=TS,
                    pid=to,
                    kind="receive",
                    clock=event.clock.to_dict(),
                    peer=event.sender,
                    msg=event.id,
                )
            )


steps = st.lists(
    st.one_of(
        st.tuples(st.just("broadcast"), st.integers(0, 3)),
        st.tuples(st.just("arrive"), st.integers(0, 1000)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(steps=steps, drain=st.lists(st.integers(0, 1000), max_size=200), size=st.integers(2, 4))
def test_any_arrival_order_gives_causal_delivery_and_everything_delivered(steps, drain, size):
    ids = ["A", "B", "C", "D"][:size]
    net = Network(ids)
    for kind, value in steps:
        if kind == "broadcast":
            net.broadcast(ids[value % size])
        elif net.in_flight:
            net.arrive(value)
    for value in drain:  # the rest arrives in a random order
        if not net.in_flight:
            break
        net.arrive(value)
    while net.in_flight:
        net.arrive(len(net.in_flight) - 1)  # newest first: the worst order left
    report = check(net.events, require_causal_delivery=True, causal_scope="broadcast")
    assert report.ok, report.violations
    for i in ids:
        others = [m for m in net.sent if not m.startswith(f"{i}#")]
        assert sorted(net.delivered[i]) == sorted(others)
        assert net.nodes[i].held == []
