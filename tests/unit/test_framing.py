"""LineReader: lines out of a byte stream, whatever the chunking, with a hard size limit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vclock import ErrorCode, FrameError, FrameTooLarge
from vclock.protocol import LineReader


def feed_all(reader: LineReader, *chunks: bytes) -> list[bytes | FrameError]:
    out: list[bytes | FrameError] = []
    for chunk in chunks:
        out += reader.feed_data(chunk)
    return out


def normalized(items: list[bytes | FrameError]) -> list[object]:
    """Lines as-is; errors by type and limit (an oversized line's reported size
    is "at least", so it depends on where the stream was split)."""
    return [
        item if isinstance(item, bytes) else (type(item).__name__, getattr(item, "limit", None))
        for item in items
    ]


def test_complete_lines_come_out_without_their_newline():
    reader = LineReader(100)
    assert reader.feed_data(b"one\ntwo\n") == [b"one", b"two"]


def test_a_partial_line_waits_for_its_newline():
    reader = LineReader(100)
    assert reader.feed_data(b"par") == []
    assert reader.feed_data(b"tial") == []
    assert reader.feed_data(b"\nnext") == [b"partial"]
    assert reader.feed_data(b"\n") == [b"next"]


def test_blank_lines_are_ignored():
    reader = LineReader(100)
    assert reader.feed_data(b"\n\n  \n\t\r\none\n\n") == [b"one"]


def test_a_carriage_return_stays_for_the_json_decoder_to_skip():
    assert LineReader(100).feed_data(b"one\r\n") == [b"one\r"]


def test_a_line_of_exactly_the_limit_is_accepted():
    reader = LineReader(5)
    assert reader.feed_data(b"12345\n") == [b"12345"]


def test_an_oversized_line_gives_exactly_one_frame_too_large_and_the_next_line_decodes():
    reader = LineReader(10)
    items = feed_all(reader, b"x" * 25 + b"\nok\n")
    assert len(items) == 2
    error, line = items
    assert isinstance(error, FrameTooLarge)
    assert error.limit == 10
    assert error.size > 10
    assert error.code is ErrorCode.FRAME_TOO_LARGE
    assert "10" in str(error) and str(error.size) in str(error)
    assert line == b"ok"


def test_an_oversized_line_fed_byte_by_byte_gives_exactly_one_error():
    reader = LineReader(4)
    data = b"abcdefghij\nok\n"
    items = feed_all(reader, *(data[i : i + 1] for i in range(len(data))))
    assert normalized(items) == [("FrameTooLarge", 4), b"ok"]
    assert items[0].size == 5  # noticed as soon as the fifth byte arrived


def test_each_oversized_line_is_reported_once():
    reader = LineReader(3)
    items = reader.feed_data(b"aaaaaa\nbb\ncccccc\n")
    assert normalized(items) == [("FrameTooLarge", 3), b"bb", ("FrameTooLarge", 3)]


def test_the_reader_never_buffers_more_than_the_limit():
    reader = LineReader(8)
    for _ in range(1000):
        reader.feed_data(b"y" * 7)
        assert len(reader._buffer) <= 8  # the private buffer is what we're bounding
    assert reader.feed_data(b"\nfine\n") == [b"fine"]


def test_eof_in_the_middle_of_a_line_is_a_frame_error():
    reader = LineReader(100)
    reader.feed_data(b'{"type":"by')
    errors = reader.feed_eof()
    assert len(errors) == 1
    assert type(errors[0]) is FrameError
    assert "11-byte" in str(errors[0])


def test_eof_after_complete_lines_or_blank_space_is_clean():
    reader = LineReader(100)
    assert reader.feed_data(b"one\n") == [b"one"]
    assert reader.feed_eof() == []
    reader.feed_data(b"  ")
    assert reader.feed_eof() == []


def test_eof_while_skipping_an_oversized_line_reports_nothing_more():
    reader = LineReader(3)
    assert normalized(reader.feed_data(b"toolong")) == [("FrameTooLarge", 3)]
    assert reader.feed_eof() == []


@pytest.mark.parametrize("size", [0, -1])
def test_the_limit_must_be_positive(size):
    with pytest.raises(ValueError):
        LineReader(size)


# The result must not depend on how TCP splits the bytes

lines = st.lists(
    st.binary(max_size=20).map(lambda b: b.replace(b"\n", b"")) | st.just(b"  "), max_size=10
)


@st.composite
def splits(draw, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@settings(max_examples=150, deadline=None)
@given(lines, st.integers(1, 16), st.data())
def test_lines_do_not_depend_on_chunking(line_list, limit, data):
    stream = b"".join(line + b"\n" for line in line_list)
    whole = normalized(LineReader(limit).feed_data(stream))
    byte_by_byte = normalized(
        feed_all(LineReader(limit), *(stream[i : i + 1] for i in range(len(stream))))
    )
    chunked = normalized(feed_all(LineReader(limit), *data.draw(splits(stream))))
    assert whole == byte_by_byte == chunked
    expected = [
        line if len(line) <= limit else ("FrameTooLarge", limit)
        for line in line_list
        if len(line) > limit or line.strip()
    ]
    assert whole == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=30), max_size=20), st.integers(1, 16))
def test_the_buffer_never_exceeds_the_limit(chunks, limit):
    reader = LineReader(limit)
    for chunk in chunks:
        reader.feed_data(chunk)
        assert len(reader._buffer) <= limit


# What the reader holds, and the blank lines it counts (for max_buffered and the rate limit)


def test_buffered_is_the_unfinished_line_and_drops_once_it_ends():
    reader = LineReader(100)
    reader.feed_data(b"one\npart")
    assert reader.buffered == 4
    reader.feed_data(b"ial\n")
    assert reader.buffered == 0


def test_an_oversized_line_is_not_held_while_skipped():
    reader = LineReader(10)
    reader.feed_data(b"x" * 25)
    assert reader.buffered == 0


def test_clear_forgets_the_unfinished_line():
    reader = LineReader(100)
    reader.feed_data(b"half a fra")
    reader.clear()
    assert reader.buffered == 0
    assert reader.feed_data(b"me\n") == [b"me"]


def test_blank_lines_are_counted():
    reader = LineReader(100)
    assert reader.feed_data(b"\n\n  \n\t\r\none\n\n") == [b"one"]
    assert reader.blank_lines == 5


def test_a_flood_of_empty_lines_is_counted_in_one_go():
    reader = LineReader(100)
    assert reader.feed_data(b"\n" * 100_000 + b"one\n") == [b"one"]
    assert reader.blank_lines == 100_000


def test_feed_line_stops_after_the_first_line_so_the_limit_can_change():
    reader = LineReader(5)
    data = b"\n\nhello\n" + b"x" * 20 + b"\n"
    items, stop = reader.feed_line(data, one=True)
    assert (items, stop) == ([b"hello"], 8)
    assert reader.blank_lines == 2
    reader.max_line_size = 100
    assert reader.feed_line(data, stop) == ([b"x" * 20], len(data))


@settings(max_examples=150, deadline=None)
@given(lines, st.integers(1, 16), st.data())
def test_blank_line_counts_do_not_depend_on_chunking(line_list, limit, data):
    stream = b"".join(line + b"\n" for line in line_list)
    whole, chunked = LineReader(limit), LineReader(limit)
    whole.feed_data(stream)
    feed_all(chunked, *data.draw(splits(stream)))
    assert whole.blank_lines == chunked.blank_lines
