"""One end of a vclock connection, without I/O: bytes in, frames out, and back.

Use it like websockets' sans-I/O protocols::

    conn = Connection(client_frame_decoder(), max_frame_size=65536)
    conn.receive_data(chunk)            # bytes read from the socket
    for event in conn.events_received():
        ...                             # a frame, or a FrameError for a bad line
    conn.send(frame)
    transport.write(conn.data_to_send())
"""

from __future__ import annotations

from typing import Generic, TypeVar

from ..errors import FrameError
from .codec import FrameDecoder, encode_frame
from .frames import Frame
from .framing import LineReader

T = TypeVar("T")

DEFAULT_MAX_FRAME_SIZE = 64 * 1024


class Connection(Generic[T]):
    """Frames one byte stream.

    Args:
        decoder: decodes the frames this end receives (client or server frames).
        max_frame_size: the longest accepted line in bytes; longer ones are
            reported as :class:`~vclock.errors.FrameTooLarge` and skipped.
    """

    def __init__(
        self, decoder: FrameDecoder[T], *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    ) -> None:
        self._decoder = decoder
        self._reader = LineReader(max_frame_size)
        self._events: list[T | FrameError] = []
        self._outgoing: list[bytes] = []
        self.eof_received = False

    # Receiving

    def receive_data(self, data: bytes) -> None:
        """Take bytes from the peer. Then call :meth:`events_received`."""
        for item in self._reader.feed_data(data):
            if isinstance(item, FrameError):
                self._events.append(item)
            else:
                try:
                    self._events.append(self._decoder.decode(item))
                except FrameError as exc:
                    self._events.append(exc)

    def receive_eof(self) -> None:
        """The peer closed its side. Then call :meth:`events_received` one last time."""
        self.eof_received = True
        self._events.extend(self._reader.feed_eof())

    def events_received(self) -> list[T | FrameError]:
        """The frames decoded since the last call, with a FrameError in place of each bad line."""
        events, self._events = self._events, []
        return events

    # Sending

    def send(self, frame: Frame) -> None:
        """Queue a frame. Then call :meth:`data_to_send` and write the result."""
        self._outgoing.append(encode_frame(frame))

    def data_to_send(self) -> bytes:
        """All bytes queued since the last call (b"" when none)."""
        data, self._outgoing = b"".join(self._outgoing), []
        return data
