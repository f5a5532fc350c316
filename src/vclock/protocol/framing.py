"""Split a byte stream into lines, with a hard limit on line length.

The reader never holds more than ``max_line_size`` bytes of an unfinished line:
once a line grows past the limit it reports :class:`~vclock.errors.FrameTooLarge`
and skips the rest of that line, then carries on with the next one. So a 10 MB
line costs the server at most one limit's worth of memory, and the peer loses
only the offending frame.
"""

from __future__ import annotations

from ..errors import FrameError, FrameTooLarge


class LineReader:
    """Feed bytes in with :meth:`feed_data`, get complete lines (or errors) back.

    Args:
        max_line_size: the longest accepted line, in bytes, newline excluded.
    """

    def __init__(self, max_line_size: int) -> None:
        if max_line_size < 1:
            raise ValueError("max_line_size must be at least 1")
        self.max_line_size = max_line_size
        self._buffer = bytearray()
        self._skipped = 0  # > 0 while skipping the rest of an oversized line

    def feed_data(self, data: bytes) -> list[bytes | FrameError]:
        """Add bytes; return each completed line (newline stripped, blank lines dropped)
        and a :class:`FrameTooLarge` for each oversized one, in stream order."""
        out: list[bytes | FrameError] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._append(data[start:], out)
                return out
            self._append(data[start:end], out)
            if self._skipped:
                self._skipped = 0
            elif self._buffer.strip():
                out.append(bytes(self._buffer))
            self._buffer.clear()
            start = end + 1

    def feed_eof(self) -> list[FrameError]:
        """The stream ended; an unfinished line is reported as a truncated frame."""
        pending = len(self._buffer.strip())
        self._buffer.clear()
        self._skipped = 0
        if pending:
            return [FrameError(f"connection closed in the middle of a {pending}-byte frame")]
        return []

    def _append(self, chunk: bytes, out: list[bytes | FrameError]) -> None:
        if self._skipped:
            self._skipped += len(chunk)
            return
        if len(self._buffer) + len(chunk) > self.max_line_size:
            self._skipped = len(self._buffer) + len(chunk)
            self._buffer.clear()
            out.append(FrameTooLarge(self._skipped, self.max_line_size))
            return
        self._buffer += chunk
