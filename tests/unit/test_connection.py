"""Connection: bytes in, frames out (and back), independent of how TCP splits them."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vclock import FrameError, FrameTooLarge, VectorClock
from vclock.protocol import (
    Bye,
    Connection,
    Deliver,
    Hello,
    Report,
    Send,
    Welcome,
    client_frame_decoder,
    encode_frame,
    server_frame_decoder,
)

from ..helpers import client_frames


def server_side(max_frame_size: int = 1024) -> Connection:
    return Connection(client_frame_decoder(), max_frame_size=max_frame_size)


def normalized(events: list[object]) -> list[object]:
    """Frames as-is, errors by type (an oversized line's size depends on the split)."""
    return [type(e).__name__ if isinstance(e, FrameError) else e for e in events]


REPORT = Report(seq=1, clock=VectorClock({"A": 1}))


def test_received_bytes_become_frames():
    conn = server_side()
    conn.receive_data(encode_frame(REPORT) + encode_frame(Bye(reason="done")))
    assert conn.events_received() == [REPORT, Bye(reason="done")]


def test_events_received_empties_the_queue():
    conn = server_side()
    conn.receive_data(encode_frame(REPORT))
    assert conn.events_received() == [REPORT]
    assert conn.events_received() == []


def test_a_frame_split_across_chunks_arrives_once_complete():
    conn = server_side()
    line = encode_frame(REPORT)
    conn.receive_data(line[:10])
    assert conn.events_received() == []
    conn.receive_data(line[10:])
    assert conn.events_received() == [REPORT]


def test_a_bad_line_becomes_a_frame_error_in_stream_order():
    conn = server_side()
    conn.receive_data(b"garbage\n" + encode_frame(REPORT) + b'{"type":"send"}\n')
    first, second, third = conn.events_received()
    assert isinstance(first, FrameError)
    assert second == REPORT
    assert isinstance(third, FrameError) and third.path == "$"


def test_an_oversized_line_gives_one_frame_too_large_and_later_frames_still_decode():
    conn = server_side(max_frame_size=64)
    conn.receive_data(b'{"type":"bye","reason":"' + b"x" * 500 + b'"}\n' + encode_frame(REPORT))
    events = conn.events_received()
    assert len(events) == 2
    assert isinstance(events[0], FrameTooLarge)
    assert events[0].limit == 64 and events[0].size > 64
    assert events[1] == REPORT


def test_blank_lines_are_ignored():
    conn = server_side()
    conn.receive_data(b"\n\r\n  \n" + encode_frame(REPORT) + b"\n\n")
    assert conn.events_received() == [REPORT]


def test_eof_in_the_middle_of_a_frame_is_a_frame_error():
    conn = server_side()
    conn.receive_data(encode_frame(REPORT)[:-5])
    assert conn.events_received() == []
    conn.receive_eof()
    assert conn.eof_received
    (event,) = conn.events_received()
    assert type(event) is FrameError


def test_eof_between_frames_adds_no_event():
    conn = server_side()
    conn.receive_data(encode_frame(REPORT))
    assert not conn.eof_received
    conn.receive_eof()
    assert conn.eof_received
    assert conn.events_received() == [REPORT]


def test_data_to_send_returns_queued_frames_then_nothing():
    conn = Connection(server_frame_decoder())
    deliver = Deliver(sender="A", seq=1, clock=VectorClock({"A": 1}))
    assert conn.data_to_send() == b""
    conn.send(deliver)
    conn.send(Bye())
    assert conn.data_to_send() == encode_frame(deliver) + encode_frame(Bye())
    assert conn.data_to_send() == b""


def test_what_one_end_sends_the_other_end_receives():
    client = Connection(server_frame_decoder())
    server = server_side()
    send = Send(to="B", seq=2, clock=VectorClock({"A": 2}), body=[1, "two"])
    client.send(send)
    server.receive_data(client.data_to_send())
    assert server.events_received() == [send]


# Chunking independence, with hypothesis


@st.composite
def chunked(draw, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=10)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def events_for(chunks: list[bytes], max_frame_size: int) -> list[object]:
    conn = server_side(max_frame_size)
    events: list[object] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        events += conn.events_received()
    conn.receive_eof()
    return normalized(events + conn.events_received())


lines = st.one_of(
    client_frames.map(encode_frame),
    st.sampled_from([b"\n", b"  \r\n", b"not json\n", b'{"type":"send"}\n', b"x" * 300 + b"\n"]),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lines, max_size=8), st.binary(max_size=20), st.data())
def test_events_do_not_depend_on_how_tcp_splits_the_bytes(line_list, tail, data):
    stream = b"".join(line_list) + tail
    limit = 256
    whole = events_for([stream], limit)
    byte_by_byte = events_for([stream[i : i + 1] for i in range(len(stream))], limit)
    random_chunks = events_for(data.draw(chunked(stream)), limit)
    assert whole == byte_by_byte == random_chunks


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(client_frames, max_size=8), st.data())
def test_valid_frames_arrive_intact_whatever_the_chunking(frames, data):
    stream = b"".join(encode_frame(f) for f in frames)
    limit = max([len(encode_frame(f)) for f in frames], default=1)
    assert events_for([stream], limit) == frames
    assert events_for([stream[i : i + 1] for i in range(len(stream))], limit) == frames
    assert events_for(data.draw(chunked(stream)), limit) == frames


# Delta-encoded connections: both ends agree on the previous clock after a bad line


def delta_pair(max_frame_size: int = 1024, entries: int = 65_536) -> tuple[Connection, Connection]:
    """(client's end, server's end) of one connection with delta encoding on."""
    from vclock import ClockLimits

    client = Connection(server_frame_decoder())
    server = Connection(
        client_frame_decoder(ClockLimits(max_entries=entries)), max_frame_size=max_frame_size
    )
    client.enable_delta()
    server.enable_delta()
    return client, server


def carry(client: Connection, server: Connection, frame: object) -> object:
    client.send(frame)  # type: ignore[arg-type]
    server.receive_data(client.data_to_send())
    (event,) = server.events_received()
    return event


def test_a_refused_line_whose_clock_can_be_read_still_moves_the_delta_reference():
    """The client's encoder moved on for a frame the server cannot decode (here an
    invalid ``to``): the server must move too, or every later clock is wrong."""
    client, server = delta_pair()
    bad = carry(client, server, Send(to="a b", seq=1, clock=VectorClock({"A": 1, "B": 5})))
    assert isinstance(bad, FrameError) and not bad.delta_lost
    good = Send(to="B", seq=2, clock=VectorClock({"A": 2, "B": 5}))
    assert carry(client, server, good) == good


def test_an_oversized_line_on_a_delta_connection_loses_the_reference():
    client, server = delta_pair(max_frame_size=64)
    big = Send(to="B", seq=1, clock=VectorClock({"A": 1}), body="x" * 100)
    error = carry(client, server, big)
    assert isinstance(error, FrameTooLarge) and error.delta_lost


def test_a_clock_over_the_entry_limit_on_a_delta_connection_loses_the_reference():
    client, server = delta_pair(entries=2)
    first = Report(seq=1, clock=VectorClock({"A": 1, "B": 1}))
    assert carry(client, server, first) == first
    error = carry(client, server, Report(seq=2, clock=VectorClock({"A": 2, "B": 1, "C": 1})))
    assert isinstance(error, FrameError) and error.delta_lost


def test_a_bad_line_without_a_clock_leaves_the_reference_alone():
    client, server = delta_pair()
    server.receive_data(b'{"type":"sned"}\nnot json\n')
    unknown, garbage = server.events_received()
    assert isinstance(unknown, FrameError) and not unknown.delta_lost
    assert isinstance(garbage, FrameError) and garbage.delta_lost  # can't tell: lost
    client2, server2 = delta_pair()
    server2.receive_data(b'{"type":"sned"}\n')
    server2.events_received()
    frame = Report(seq=1, clock=VectorClock({"A": 1}))
    assert carry(client2, server2, frame) == frame


def test_a_plain_connection_never_loses_anything():
    conn = server_side(max_frame_size=16)
    conn.receive_data(b"x" * 40 + b"\nnot json\n")
    assert all(not e.delta_lost for e in conn.events_received())  # type: ignore[union-attr]


def test_measure_gives_the_line_size_and_leaves_the_delta_reference_alone():
    def delta_client() -> Connection:
        conn = Connection(server_frame_decoder())
        conn.enable_delta()
        return conn

    client, twin = delta_client(), delta_client()
    server = server_side(max_frame_size=1 << 20)
    server.enable_delta()
    first = Send(to="B", seq=1, clock=VectorClock({"A": 1, "B": 7, "C": 2}), body="x")
    big = Send(to="B", seq=2, clock=VectorClock({"A": 2, "B": 8, "C": 2}), body="y" * 500)
    after = Send(to="B", seq=3, clock=VectorClock({"A": 3, "B": 8, "C": 2}))
    server.receive_data(client.encode(first))
    twin.encode(first)
    size = client.measure(big)
    assert size == len(twin.encode(big)) - 1  # its delta-encoded line, newline excluded
    assert size < len(encode_frame(big)) - 1
    # Measured, then dropped (too large, say): the next frame is a delta against
    # `first`, as the server expects.
    server.receive_data(client.encode(after))
    assert server.events_received() == [first, after]


def test_measure_without_delta_is_the_full_line():
    conn = Connection(server_frame_decoder())
    assert conn.measure(REPORT) == len(encode_frame(REPORT)) - 1


# Before welcome: short lines only (max_hello_size), and the switch is exact


def greeting(max_hello_size: int = 64, max_frame_size: int = 1024) -> Connection:
    return Connection(
        client_frame_decoder(), max_frame_size=max_frame_size, max_hello_size=max_hello_size
    )


HELLO_LINE = encode_frame(Hello(v=1, id="A"))
BIG = Report(seq=1, clock=VectorClock({"A": 1, "x" * 60: 1, "y" * 60: 1}))


def test_before_welcome_a_line_over_max_hello_size_is_too_large():
    conn = greeting(max_hello_size=20)
    conn.receive_data(HELLO_LINE)
    (event,) = conn.events_received()
    assert isinstance(event, FrameTooLarge) and event.limit == 20


def test_after_the_welcome_is_encoded_the_full_limit_applies_from_the_next_line():
    conn = greeting()
    conn.receive_data(HELLO_LINE + encode_frame(BIG))
    assert conn.next_event() == Hello(v=1, id="A")
    conn.encode(Welcome(v=1, id="A", peers=[], sync_interval=5.0))
    assert conn.events_received() == [BIG]


def test_without_a_welcome_the_next_line_is_still_measured_against_max_hello_size():
    conn = greeting()
    conn.receive_data(HELLO_LINE + encode_frame(BIG))
    assert conn.next_event() == Hello(v=1, id="A")
    (event,) = conn.events_received()
    assert isinstance(event, FrameTooLarge)


def test_buffered_counts_what_is_held_before_and_after_welcome():
    conn = greeting()
    conn.receive_data(HELLO_LINE + b'{"type":"rep')
    assert conn.next_event() == Hello(v=1, id="A")
    conn.encode(Welcome(v=1, id="A", peers=[], sync_interval=5.0))
    assert conn.events_received() == []
    assert conn.buffered == len(b'{"type":"rep')
    conn.discard_buffered()
    assert conn.buffered == 0


def test_blank_lines_are_handed_over_once():
    conn = greeting()
    conn.receive_data(b"\n\n" + HELLO_LINE + b"\n")
    conn.events_received()
    assert conn.take_blank_lines() == 3
    assert conn.take_blank_lines() == 0


def test_eof_before_welcome_reports_the_torn_line():
    conn = greeting()
    conn.receive_data(HELLO_LINE[:-5])
    conn.receive_eof()
    (event,) = conn.events_received()
    assert type(event) is FrameError and "middle of a" in str(event)


def events_with_welcome(chunks: list[bytes]) -> list[object]:
    """A server's view: it encodes a welcome right after each hello it reads."""
    conn = greeting(max_hello_size=64, max_frame_size=256)
    events: list[object] = []
    for chunk in [*chunks, None]:
        if chunk is None:
            conn.receive_eof()
        else:
            conn.receive_data(chunk)
        while (event := conn.next_event()) is not None:
            events.append(event)
            if isinstance(event, Hello):
                conn.encode(Welcome(v=1, id="A", peers=[], sync_interval=5.0))
    return normalized(events)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lines | st.just(HELLO_LINE), max_size=8), st.binary(max_size=20), st.data())
def test_the_hello_limit_does_not_depend_on_how_tcp_splits_the_bytes(line_list, tail, data):
    stream = b"".join(line_list) + tail
    whole = events_with_welcome([stream])
    byte_by_byte = events_with_welcome([stream[i : i + 1] for i in range(len(stream))])
    assert whole == byte_by_byte == events_with_welcome(data.draw(chunked(stream)))
