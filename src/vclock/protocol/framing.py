"""Split a byte stream into lines, with a hard limit on line length.

The reader never holds more than ``max_line_size`` bytes of an unfinished line:
once a line grows past the limit it reports :class:`~vclock.errors.FrameTooLarge`
and skips the rest of that line, then carries on with the next one. So a 10 MB
line costs the server at most one limit's worth of memory, and the peer loses
only the offending frame.

Blank lines are not frames, but they are not free either: the reader counts
them (:attr:`LineReader.blank_lines`) so that the I/O layer can charge them to
the rate limit (protocol 9.3).
"""

from __future__ import annotations

import re

from ..errors import FrameError, FrameTooLarge

#: A run of empty lines, found in one C call. (Only empty ones: a whitespace
#: line longer than the limit is an oversized line, like any other.)
_BLANK_RUN = re.compile(rb"\n+")


class LineReader:
    """Feed bytes in with :meth:`feed_data`, get complete lines (or errors) back.

    Args:
        max_line_size: the longest accepted line, in bytes, newline excluded.
            An attribute: the owner may change it between two feeds (a server
            accepts only short lines before ``welcome``).
    """

    def __init__(self, max_line_size: int) -> None:
        if max_line_size < 1:
            raise ValueError("max_line_size must be at least 1")
        self.max_line_size = max_line_size
        #: Blank (whitespace-only) lines seen so far; the owner may reset it.
        self.blank_lines = 0
        self._buffer = bytearray()
        self._skipped = 0  # > 0 while skipping the rest of an oversized line

    @property
    def buffered(self) -> int:
        """Bytes of the unfinished line held in memory (at most ``max_line_size``)."""
        return len(self._buffer)

    def feed_data(self, data: bytes) -> list[bytes | FrameError]:
        """Add bytes; return each completed line (newline stripped, blank lines dropped
        and counted) and a :class:`FrameTooLarge` for each oversized one, in stream order."""
        return self.feed_line(data)[0] if data else []

    def feed_line(
        self, data: bytes, start: int = 0, *, one: bool = False
    ) -> tuple[list[bytes | FrameError], int]:
        """Like :meth:`feed_data` from ``data[start:]``, but with ``one`` stop at the
        newline that ends the first line or error, so the caller can change
        ``max_line_size`` before the next line. Returns the items and the offset
        where it stopped (``len(data)`` when it took everything)."""
        if not one and not self._buffer and not self._skipped and b"\n\n" not in data:
            return self._split(data, start)
        out: list[bytes | FrameError] = []
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._append(data[start:], out)
                return out, len(data)
            self._append(data[start:end], out)
            if self._skipped:
                self._skipped = 0
            elif self._buffer.strip():
                out.append(bytes(self._buffer))
            else:
                self.blank_lines += 1
            self._buffer.clear()
            start = end + 1
            if (run := _BLANK_RUN.match(data, start)) is not None:  # a blank flood: fast
                self.blank_lines += run.end() - start
                start = run.end()
            if one and out:
                return out, start

    def _split(self, data: bytes, start: int) -> tuple[list[bytes | FrameError], int]:
        """:meth:`feed_line` for the usual read: no unfinished line before it and
        no run of empty lines in it, so one C call cuts every line out."""
        lines = (data[start:] if start else data).split(b"\n")
        rest = lines.pop()  # after the last newline: an unfinished line, or b""
        out: list[bytes | FrameError] = []
        limit = self.max_line_size
        for line in lines:
            if len(line) > limit:
                out.append(FrameTooLarge(len(line), limit))
            elif line.strip():  # the line itself unless it has spaces at its ends
                out.append(line)
            else:
                self.blank_lines += 1
        if rest:
            self._append(rest, out)
        return out, len(data)

    def feed_eof(self) -> list[FrameError]:
        """The stream ended; an unfinished line is reported as a truncated frame."""
        pending = len(self._buffer.strip())
        self.clear()
        if pending:
            return [FrameError(f"connection closed in the middle of a {pending}-byte frame")]
        return []

    def clear(self) -> None:
        """Forget the unfinished line (the connection is being closed)."""
        self._buffer = bytearray()  # not clear(): give the memory back now
        self._skipped = 0

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
