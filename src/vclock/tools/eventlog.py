"""The JSON-lines event log that servers, clients and tools share.

One file per process, ``<pid>.jsonl``, one event per line, appended and flushed as
it happens, so a crash loses at most the line being written. A run folder holds
the files of every process of one run. Fields (docs/eventlog.md):

``ts``     wall time, ISO 8601 with UTC offset
``pid``    the process: a client id, or ``"server"``
``kind``   client: ``local`` ``send`` ``receive`` ``sync-receive`` ``join`` ``leave``;
           server: ``receive`` (a client frame with a clock), ``sync`` (one cycle's
           sync message), ``join`` ``leave`` (a client came or went)
``clock``  the process's vector clock after the event (server: the clock received,
           or the frontier sent)
``peer``   the other side: receiver of a send, sender of a receive, ``"server"``;
           ``"*"`` (:data:`vclock.events.EVERYONE`) for a broadcast send
``msg``    message id linking a receive to its send: ``"A#7"``, or ``"sync#3"``
``to``     server ``sync`` only: the ids the sync was sent to
``desc``   free text

``local``, ``send``, ``receive`` and ``sync-receive`` are the causal events: each
ticks the process's own entry by one. ``join`` and ``leave`` are annotations that
carry the clock unchanged. The record, the kinds, the server's id, the broadcast
peer and the message ids are :mod:`vclock.events`; this module writes and reads
the files.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import msgspec

from ..events import Event
from ..files import make_private_dirs, open_private

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


class EventLog:
    """Appends the events of one process to ``<directory>/<pid>.jsonl``.

    The wall time is read here, in the I/O layer, never in the core.
    """

    def __init__(self, directory: str | Path, pid: str) -> None:
        self.path = Path(directory) / f"{pid}.jsonl"
        make_private_dirs(self.path.parent)  # the log holds what was sent: 0700/0600
        self.pid = pid
        fd = open_private(self.path, os.O_RDWR | os.O_APPEND)
        _cut_torn_line(fd)
        self._file: IO[bytes] = os.fdopen(fd, "ab")

    def record(
        self, kind: str, clock: Iterable[tuple[str, int]] | dict[str, int], **fields: Any
    ) -> None:
        """Append one event (``fields``: those of :meth:`line`), flushed to the OS
        before returning."""
        self.append([self.line(kind, clock, **fields)])

    def line(
        self,
        kind: str,
        clock: Iterable[tuple[str, int]] | dict[str, int],
        *,
        peer: str | None = None,
        msg: str | None = None,
        to: list[str] | None = None,
        desc: str | None = None,
    ) -> str:
        """One event's line (no newline), stamped now but not written yet."""
        event = Event(
            ts=_dt.datetime.now(_dt.UTC).isoformat(),
            pid=self.pid,
            kind=kind,
            clock=dict(clock),
            peer=peer,
            msg=msg,
            to=to,
            desc=desc,
        )
        return _encoder.encode(event).decode()

    def append(self, lines: list[str]) -> None:
        """Append ``lines`` (from :meth:`line`), flushed to the OS before returning."""
        if lines:
            self._file.write("".join(f"{line}\n" for line in lines).encode())
            self._file.flush()

    def complete(self, lines: list[str]) -> None:
        """Make the file end with ``lines``: append those a crash kept from being
        written (the write-ahead copy a client keeps in its state file), after
        cutting off a last line the crash left half-written."""
        if not lines:
            return
        self._file.flush()
        with self.path.open("rb+") as file:
            data = file.read()
            cut = data.rfind(b"\n") + 1
            if cut < len(data):
                file.truncate(cut)
        tail = data[:cut].decode(errors="replace").splitlines()[-len(lines) :]
        written = next(
            (n for n in range(len(lines), 0, -1) if tail[len(tail) - n :] == lines[:n]), 0
        )
        self.append(lines[written:])

    def close(self) -> None:
        self._file.close()


def _cut_torn_line(fd: int) -> None:
    """Before appending, end the file with a ``\n``: a last line a crash left
    without it is cut off if it is not a whole event (the new lines would
    otherwise be glued to it, and lost with it), or given its ``\n`` if it is."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    start = size
    while start > 0:  # find the last newline, reading back 64 KiB at a time
        start = max(0, start - 65536)
        cut = os.pread(fd, size - start, start).rfind(b"\n")
        if cut >= 0:
            start += cut + 1
            break
    try:
        _decoder.decode(os.pread(fd, size - start, start))
    except msgspec.DecodeError:
        os.ftruncate(fd, start)
    else:
        os.write(fd, b"\n")


def log_files(source: str | Path) -> list[Path]:
    """The ``.jsonl`` files of a run folder (sorted), or ``[source]`` for one file."""
    path = Path(source)
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise FileNotFoundError(f"no .jsonl event logs in {path}")
        return files
    if not path.exists():
        raise FileNotFoundError(f"no such log file or run folder: {path}")
    return [path]


def iter_events(
    path: str | Path, on_torn: Callable[[int], None] | None = None
) -> Iterator[tuple[int, Event]]:
    """``(line number, event)`` for each line of one log file.

    A last line without its ``\n`` that is not an event was cut off by a crash
    while it was written: it is left out (the event is lost, as docs/eventlog.md
    says), and ``on_torn(line number)`` is called if given.

    Raises:
        ValueError: a line that is not an event, naming the file and line.
    """
    with Path(path).open("rb") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                yield number, _decoder.decode(line)
            except msgspec.DecodeError as exc:
                if not line.endswith(b"\n"):  # only the last line can lack it
                    if on_torn is not None:
                        on_torn(number)
                    return
                raise ValueError(f"{path}:{number}: not an event: {exc}") from None


def read_events(source: str | Path) -> list[Event]:
    """Every event of a run folder or log file, file by file, each in file order."""
    return [event for path in log_files(source) for _, event in iter_events(path)]
