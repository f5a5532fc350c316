"""Codec properties: frames round-trip, and no input makes decode fail any other
way than FrameError (the fuzz invariant, written as a hypothesis property)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vclock import ClockLimits, FrameError, InvalidClock, LimitExceeded, VectorClock
from vclock.clock import _owned_entries, _validated
from vclock.protocol import client_frame_decoder, encode_frame, server_frame_decoder
from vclock.protocol.frames import Broadcast, Bye, Hello, Report, Send

from ..helpers import client_frames, server_frames, welcomed_with_limits

CLIENT = client_frame_decoder()
SERVER = server_frame_decoder()

props = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@props
@given(client_frames)
def test_client_frames_round_trip(frame):
    line = encode_frame(frame)
    assert CLIENT.decode(line) == frame
    assert encode_frame(CLIENT.decode(line)) == line


@props
@given(server_frames)
def test_server_frames_round_trip(frame):
    line = encode_frame(frame)
    assert SERVER.decode(line) == frame
    assert encode_frame(SERVER.decode(line)) == line


@props
@given(st.one_of(client_frames, server_frames))
def test_an_encoded_frame_is_exactly_one_line(frame):
    line = encode_frame(frame)
    assert line.endswith(b"\n") and line.count(b"\n") == 1


def _decodes_or_frame_error(line: bytes) -> None:
    """The fuzz invariant: a frame, or a FrameError; any other exception fails the test."""
    for decoder, kinds in [(CLIENT, (Hello, Send, Report, Bye)), (SERVER, None)]:
        try:
            frame = decoder.decode(line)
        except FrameError as exc:
            assert str(exc)
            continue
        if kinds is not None:
            assert isinstance(frame, kinds)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_to_a_frame_or_raise_frame_error(data):
    _decodes_or_frame_error(data)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='{}[]":,0123456789.-+eE truefalsnl\\u', max_size=120))
def test_json_like_text_decodes_to_a_frame_or_raises_frame_error(text):
    _decodes_or_frame_error(text.encode())


@st.composite
def mutated_frame_lines(draw):
    """A valid frame line with a few bytes flipped, dropped, inserted or cut off."""
    line = bytearray(encode_frame(draw(st.one_of(client_frames, server_frames))))
    for _ in range(draw(st.integers(1, 4))):
        if not line:
            break
        at = draw(st.integers(0, len(line) - 1))
        kind = draw(st.sampled_from(["flip", "drop", "insert", "truncate", "repeat"]))
        if kind == "flip":
            line[at] = draw(st.integers(0, 255))
        elif kind == "drop":
            del line[at : at + draw(st.integers(1, 5))]
        elif kind == "insert":
            line[at:at] = draw(
                st.binary(min_size=1, max_size=5)
                | st.sampled_from([b"[", b"{", b'"', b"-1", b"1e999", b"null"])
            )
        elif kind == "truncate":
            del line[at:]
        else:
            line[at:at] = line[at : at + draw(st.integers(1, 10))]
    return bytes(line)


@props
@given(mutated_frame_lines())
def test_mutated_frames_decode_to_a_frame_or_raise_frame_error(line):
    _decodes_or_frame_error(line)


@props
@given(st.integers(1, 3000), st.sampled_from([b"[", b'{"a":', b"[{", b'{"type":"send","body":[']))
def test_nesting_at_any_depth_decodes_or_raises_frame_error(depth, opener):
    line = b'{"type":"send","to":"B","seq":1,"clock":{},"body":' + opener * depth
    _decodes_or_frame_error(line)


_json_values = st.one_of(
    st.integers(min_value=-3, max_value=2**64),
    st.sampled_from([0, 1, 2**63 - 1, 2**63, True, False, None, 1.0, "1", [], {}]),
)
_json_clocks = st.dictionaries(
    st.text(min_size=0, max_size=6), _json_values, max_size=12
) | st.dictionaries(st.sampled_from(["", "A", "B", "id-that-is-long"]), _json_values)


@settings(max_examples=500, deadline=None)
@given(_json_clocks, st.booleans())
def test_the_fast_clock_check_accepts_exactly_what_the_careful_one_accepts(obj, keep_zeros):
    """Every frame's clock goes through ``_owned_entries``: it may skip the copy,
    but never accept, refuse or change anything ``_validated`` would not."""
    limits = ClockLimits(max_entries=10, max_id_length=5, max_counter=2**63 - 1)
    try:
        expected = _validated(obj, limits, keep_zeros=keep_zeros)
    except InvalidClock as exc:
        with pytest.raises(InvalidClock) as fast:
            _owned_entries(dict(obj), limits, keep_zeros=keep_zeros)
        assert str(fast.value) == str(exc)
        return
    got = _owned_entries(dict(obj), limits, keep_zeros=keep_zeros)
    assert got == expected
    assert [type(v) for v in got.values()] == [int] * len(got)


_ids = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=4)
_bodies = st.none() | st.text(max_size=300) | st.dictionaries(_ids, st.integers(), max_size=5)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(_ids, st.integers(min_value=1, max_value=2**63 - 1), max_size=6),
    _bodies,
    st.sampled_from(["send", "broadcast", "report"]),
    st.integers(min_value=1, max_value=4000),
)
def test_a_client_refuses_a_frame_exactly_when_its_line_is_over_max_frame_size(
    entries, body, kind, max_frame_size
):
    """The client skips encoding a frame that surely fits (a bound from its body
    alone); the verdict must be the one the encoded line's length gives."""
    node = welcomed_with_limits(
        max_frame_size=max_frame_size, max_clock_entries=100, max_id_length=4
    )
    node.clock = VectorClock(entries)
    make = {"send": lambda: node.send("B", body), "broadcast": lambda: node.broadcast(body)}
    make["report"] = node.report
    clock = node.clock.tick("A")
    frame = {
        "send": Send(to="B", seq=clock["A"], clock=clock, body=body),
        "broadcast": Broadcast(
            seq=clock["A"], clock=clock, bclock=node.bdelivered.tick("A"), body=body
        ),
        "report": Report(seq=clock["A"], clock=clock),
    }[kind]
    too_big = len(encode_frame(frame)) - 1 > max_frame_size
    if too_big:
        with pytest.raises(LimitExceeded):
            make[kind]()
    else:
        assert make[kind]() == frame
