"""One end of a vclock connection, without I/O: bytes in, frames out, and back.

Use it like websockets' sans-I/O protocols::

    conn = Connection(client_frame_decoder(), max_frame_size=65536)
    conn.receive_data(chunk)            # bytes read from the socket
    while (event := conn.next_event()) is not None:
        ...                             # a frame, or a FrameError for a bad line
    conn.send(frame)
    transport.write(conn.data_to_send())
"""

from __future__ import annotations

from collections import deque
from typing import Any, Generic, TypeVar

import msgspec

from ..clock import VectorClock
from ..errors import FrameError, InvalidClock
from .codec import FrameDecoder, encode_frame
from .delta import ClockDelta, DeltaDecoder, DeltaEncoder
from .frames import Frame, Welcome
from .framing import LineReader

T = TypeVar("T")
#: (id of frame, id of previous clock) -> (frame, previous clock, bytes)
EncodeCache = dict[tuple[int, int], tuple[object, object, bytes]]

DEFAULT_MAX_FRAME_SIZE = 1024 * 1024  # a full clock of ~50,000 entries


class _ClockField(msgspec.Struct):
    """Reads only the ``clock`` of a line that failed to decode as a frame."""

    clock: dict[str, Any] | None = None


_clock_probe = msgspec.json.Decoder(_ClockField)


class Connection(Generic[T]):
    """Frames one byte stream.

    Args:
        decoder: decodes the frames this end receives (client or server frames).
        max_frame_size: the longest accepted line in bytes; longer ones are
            reported as :class:`~vclock.errors.FrameTooLarge` and skipped.

        max_hello_size: the longest accepted line until this end encodes a
            ``welcome`` (a server's connection; None: no such limit). A hello is
            tiny: a client that is not in yet holds little of the server's memory.

    Lines are decoded one at a time as you ask for them, so the switch to delta
    encoding takes effect exactly after the ``welcome`` that negotiated it,
    however the bytes were split: a server's connection switches when it encodes
    a ``welcome`` with ``delta`` set, a client's when it decodes one. The same
    holds for ``max_hello_size``: lines that follow the hello in the same read
    are measured against the full limit if the welcome was encoded before they
    were asked for.
    """

    def __init__(
        self,
        decoder: FrameDecoder[T],
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_hello_size: int | None = None,
    ) -> None:
        self._decoder = decoder
        self._max_frame_size = max_frame_size
        self._reader = LineReader(min(max_hello_size or max_frame_size, max_frame_size))
        # Until welcome (with max_hello_size): bytes not yet cut into lines, and
        # where the next line starts. Lines are then cut one at a time, as they
        # are asked for, so the limit rises exactly after the welcome.
        self._early: bytes | None = None if max_hello_size is None else b""
        self._early_at = 0
        self._early_eof = False
        self._lines: deque[bytes | FrameError] = deque()
        self._outgoing: list[bytes] = []
        self._tx: DeltaEncoder | None = None
        self._rx: DeltaDecoder | None = None
        #: True once delta-encoded clocks are on for this connection (read it; an
        #: attribute, not a property: the server reads it for every frame it writes)
        self.delta = False
        self.eof_received = False

    def enable_delta(self) -> None:
        """Delta-encode clocks from now on, both ways (after hello/welcome)."""
        if self._tx is None:
            self.delta = True
            self._tx = DeltaEncoder()
            self._rx = DeltaDecoder(self._decoder.limits)
            self._decoder = FrameDecoder(
                self._decoder.frame_type, limits=self._decoder.limits, delta=True
            )

    # Receiving

    @property
    def buffered(self) -> int:
        """Bytes received and held that are not yet complete lines."""
        early = len(self._early) - self._early_at if self._early is not None else 0
        return self._reader.buffered + early

    def take_blank_lines(self) -> int:
        """How many blank lines arrived since the last call (they cost rate-limit tokens)."""
        blank, self._reader.blank_lines = self._reader.blank_lines, 0
        return blank

    def discard_buffered(self) -> None:
        """Drop the unfinished line now: the connection is being closed, and the
        memory it holds goes back at once rather than when the socket is gone."""
        self._reader.clear()
        if self._early is not None:
            self._early, self._early_at = b"", 0

    def receive_data(self, data: bytes) -> None:
        """Take bytes from the peer. Then call :meth:`next_event` until it returns None."""
        if self._early is None:
            self._lines.extend(self._reader.feed_data(data))
        else:
            self._early = self._early[self._early_at :] + data
            self._early_at = 0

    def receive_eof(self) -> None:
        """The peer closed its side. Then call :meth:`next_event` until it returns None."""
        self.eof_received = True
        if self._early is None:
            self._lines.extend(self._reader.feed_eof())
        else:
            self._early_eof = True

    def next_event(self) -> T | FrameError | None:
        """The next frame, a FrameError in place of a bad line, or None for now.

        On a delta-encoded connection a bad line still moves the delta reference
        when its ``clock`` can be read (the sender's encoder moved on too); when it
        cannot, the FrameError has ``delta_lost`` set: the session must end.
        """
        if not self._lines and self._early is not None:
            self._cut_early_line()
        if not self._lines:
            return None
        line = self._lines.popleft()
        if isinstance(line, FrameError):
            return self._lost(line)
        try:
            frame = self._decoder.decode(line)
            clock = getattr(frame, "clock", None)
            # ``type(...) is``, not isinstance: VectorClock is a Mapping, and an
            # isinstance against an ABC costs a call into abc per frame.
            if type(clock) is ClockDelta:
                assert self._rx is not None
                # The frame was made by the decoder just now and nobody else holds
                # it: set the full clock in place rather than copy the frame.
                msgspec.structs.force_setattr(frame, "clock", self._rx.decode(clock))  # type: ignore[arg-type]
            elif isinstance(frame, Welcome) and frame.delta:
                self.enable_delta()  # the server agreed: deltas from the next frame on
            bclock = getattr(frame, "bclock", None)
            if type(bclock) is ClockDelta:
                # Only ``clock`` is delta-encoded; a broadcast's ``bclock`` is always
                # sent in full, but the delta decoder reads every clock as a delta.
                full = VectorClock._trusted({k: n for k, n in bclock.entries.items() if n})
                msgspec.structs.force_setattr(frame, "bclock", full)  # type: ignore[arg-type]
            return frame
        except FrameError as exc:
            return self._refused(line, exc)
        except InvalidClock as exc:
            return self._refused(line, FrameError(f"{exc} - at `$.clock`", path="$.clock"))

    def _refused(self, line: bytes, error: FrameError) -> FrameError:
        """A line that does not decode. On a delta connection, keep the reference in
        step with the sender: apply the line's ``clock`` if it can be read."""
        rx = self._rx
        if rx is None:
            return error
        try:
            clock = _clock_probe.decode(line).clock
            if clock is not None:
                rx.decode(ClockDelta.parse(clock, self._decoder.limits))
        except (msgspec.DecodeError, InvalidClock, UnicodeDecodeError, RecursionError):
            return self._lost(error)
        return error

    def _lost(self, error: FrameError) -> FrameError:
        if self._rx is not None:
            error.delta_lost = True
        return error

    def events_received(self) -> list[T | FrameError]:
        """Every event :meth:`next_event` would return now."""
        events: list[T | FrameError] = []
        while (event := self.next_event()) is not None:
            events.append(event)
        return events

    # Sending

    def send(self, frame: Frame) -> None:
        """Queue a frame. Then call :meth:`data_to_send` and write the result."""
        self._outgoing.append(self.encode(frame))

    def encode(self, frame: Frame, cache: EncodeCache | None = None) -> bytes:
        """The bytes of ``frame`` on this connection (delta-encoded if enabled).

        Every frame encoded must then be sent, in order: the delta state moves on.
        ``cache`` (one dict per batch, shared by connections) lets connections whose
        previous clock was the same object reuse one encoding of the same frame: a
        sync of a large frontier to many clients costs one delta, not one each.
        """
        tx = self._tx
        if tx is not None:
            clock = getattr(frame, "clock", None)
            # ``type(...) is`` first: an isinstance against an ABC (VectorClock is
            # a Mapping) costs a call into abc per frame.
            if clock is not None and (type(clock) is VectorClock or isinstance(clock, VectorClock)):
                if cache is None:
                    return encode_frame(msgspec.structs.replace(frame, clock=tx.encode(clock)))
                key = (id(frame), id(tx.last))
                hit = cache.get(key)
                if hit is not None:
                    tx.last = clock
                    return hit[2]
                before = tx.last
                data = encode_frame(msgspec.structs.replace(frame, clock=tx.encode(clock)))
                cache[key] = (frame, before, data)  # keeps both alive: ids stay unique
                return data
        data = encode_frame(frame)
        if isinstance(frame, Welcome):
            self._welcomed()
            if frame.delta:
                self.enable_delta()  # we agreed: deltas from the next frame on
        return data

    def measure(self, frame: Frame) -> int:
        """The bytes ``frame`` would take on this connection now, newline excluded
        (what a peer's ``max_frame_size`` counts), without sending it: the delta
        reference does not move, so a frame found too large can be dropped."""
        clock = getattr(frame, "clock", None)
        if self._tx is not None and isinstance(clock, VectorClock):
            frame = msgspec.structs.replace(frame, clock=self._tx.peek(clock))
        return len(encode_frame(frame)) - 1

    def data_to_send(self) -> bytes:
        """All bytes queued since the last call (b"" when none)."""
        data, self._outgoing = b"".join(self._outgoing), []
        return data

    # Private methods

    def _cut_early_line(self) -> None:
        """Before welcome: cut the next line (or error) out of what was received."""
        assert self._early is not None
        while not self._lines and self._early_at < len(self._early):
            out, self._early_at = self._reader.feed_line(self._early, self._early_at, one=True)
            self._lines.extend(out)
        if self._early_at >= len(self._early):
            self._early, self._early_at = b"", 0
            if self._early_eof and not self._lines:
                self._early_eof = False
                self._lines.extend(self._reader.feed_eof())

    def _welcomed(self) -> None:
        """The session is in: full-size lines from now on, cut as they come."""
        if self._early is None:
            return
        rest, self._early = self._early[self._early_at :], None
        self._reader.max_line_size = self._max_frame_size
        self._lines.extend(self._reader.feed_data(rest))
        if self._early_eof:
            self._lines.extend(self._reader.feed_eof())
