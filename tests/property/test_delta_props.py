"""Delta-encoded clocks decode to exactly the clocks that full encoding carries."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vclock import VectorClock
from vclock.protocol import (
    Connection,
    Deliver,
    Send,
    Sync,
    Welcome,
    client_frame_decoder,
    server_frame_decoder,
)

ids = st.sampled_from(["A", "B", "C", "D", "E", "F", "G", "H"])
clocks = st.dictionaries(ids, st.integers(0, 50)).map(VectorClock)


def server_to_client(delta: bool) -> tuple[Connection, Connection]:
    """A server-side and a client-side Connection after welcome (delta or not)."""
    server = Connection(client_frame_decoder())
    client = Connection(server_frame_decoder())
    welcome = Welcome(v=1, id="A", peers=[], sync_interval=1.0, delta=delta)
    server.send(welcome)
    client.receive_data(server.data_to_send())
    assert client.events_received() == [welcome]
    assert server.delta is delta and client.delta is delta
    return server, client


def frames_for(sequence: list[VectorClock]) -> list[Deliver | Sync]:
    return [
        Deliver(sender="B", seq=i + 1, clock=c) if i % 3 else Sync(cycle=i + 1, clock=c)
        for i, c in enumerate(sequence)
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(clocks, max_size=12), min_size=1, max_size=3))
def test_delta_frames_decode_to_the_full_clocks_across_reconnects(sessions):
    # Each inner list is one connection: a reconnect starts from an empty state.
    for sequence in sessions:
        frames = frames_for(sequence)
        server, client = server_to_client(delta=True)
        plain_server, plain_client = server_to_client(delta=False)
        for frame in frames:
            server.send(frame)
            plain_server.send(frame)
        delta_bytes = server.data_to_send()
        client.receive_data(delta_bytes)
        plain_client.receive_data(plain_server.data_to_send())
        assert client.events_received() == plain_client.events_received() == frames


@settings(max_examples=100, deadline=None)
@given(st.lists(clocks, min_size=1, max_size=12), st.data())
def test_client_to_server_deltas_survive_any_chunking(sequence, data):
    server, client = server_to_client(delta=True)
    frames = [Send(to="B", seq=i + 1, clock=c.tick("Z")) for i, c in enumerate(sequence)]
    for frame in frames:
        client.send(frame)
    stream = client.data_to_send()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    received = []
    for piece in pieces:
        server.receive_data(piece)
        received += server.events_received()
    assert received == frames


def test_a_delta_carries_only_changed_entries_and_zero_for_gone_ones():
    server, client = server_to_client(delta=True)
    big = VectorClock({f"P{i}": 5 for i in range(100)})
    server.send(Sync(cycle=1, clock=big))
    first = server.data_to_send()
    server.send(Sync(cycle=2, clock=big.tick("P7")))
    second = server.data_to_send()
    server.send(Sync(cycle=3, clock=VectorClock({"P7": 6})))
    third = server.data_to_send()
    assert second == b'{"type":"sync","cycle":2,"clock":{"P7":6}}\n'
    assert len(second) * 10 < len(first)
    assert b'"P0":0' in third and b'"P7"' not in third
    client.receive_data(first + second + third)
    assert [f.clock for f in client.events_received()] == [
        big,
        big.tick("P7"),
        VectorClock({"P7": 6}),
    ]


def test_a_delta_that_grows_the_clock_past_the_limit_is_a_frame_error():
    from vclock import ClockLimits, FrameError

    server = Connection(client_frame_decoder(ClockLimits(max_entries=3)))
    client = Connection(server_frame_decoder())
    server.send(Welcome(v=1, id="A", peers=[], sync_interval=1.0, delta=True))
    client.receive_data(server.data_to_send())
    client.events_received()
    for i in range(3):  # each delta adds new entries; the full clock grows to 6
        clock = VectorClock({f"X{i}": 1, f"Y{i}": 1, "Z": 1 + i})
        client.send(Send(to="B", seq=1 + i, clock=clock))
    server.receive_data(client.data_to_send())
    events = server.events_received()
    assert isinstance(events[-1], FrameError) and "limit of 3" in str(events[-1])
