"""GoVector for Python: a vector clock per process, carried on your messages, logged for ShiViz.

A :class:`Tracer` keeps one process's :class:`~vclock.VectorClock` and writes
each of its events to a ShiViz log (:mod:`vclock.tracing.shiviz`). It does no
networking: you call it around your own I/O, with three verbs named for *when*
to call them (GoVector's ``PrepareSend``, ``UnpackReceive``, ``LogLocalEvent``):

- :meth:`Tracer.prepare_send` just before sending: tick, log, and get the bytes
  to send, which wrap your payload with the process id and clock;
- :meth:`Tracer.unpack_receive` just after receiving those bytes: merge the
  sender's clock, tick, log, and get the payload back;
- :meth:`Tracer.local_event` for anything else worth a point on the diagram.

Wire form: a msgspec-encoded object ``{"pid": "A", "clock": {"A": 3}, "payload":
...}`` (JSON by default, MessagePack with ``encoding="msgpack"``); the payload is
any value msgspec can encode. This is not GoVector's msgpack layout, so a Python
tracer and a Go one cannot read each other's messages, though their logs merge.

Differences from GoVector, on purpose:

- errors are raised, never printed and swallowed: bytes that are not a message
  raise :class:`UnpackError`, and the clock and the log are left untouched;
- a receive merges, then ticks (GoVector ticks, then merges; the result is the
  same for well-formed clocks, and merge-then-tick is the textbook rule);
- no "Initialization Complete" event: the clock starts empty and the first event
  is number 1;
- the log is truncated when the tracer opens it, as GoVector does by default
  (``append=True`` keeps it and starts a new execution with a ``=== label ===``
  line, like GoVector's ``AppendLog``), its folder is created if missing, and each
  record is flushed as it is written (GoVector's unbuffered mode).

:class:`TracerHandler` makes the records of Python's :mod:`logging` local events
of a tracer; :class:`ClockFilter` only stamps them with its clock.

One lock covers tick, encode and write, so a Tracer can be shared by the threads
of one process, and the log holds each thread's events in clock order.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self

import msgspec

from ..clock import VectorClock
from ..errors import InvalidClock, VClockError
from .shiviz import (
    DELIMITER_PATTERN,
    format_clock,
    format_delimiter,
    format_record,
    is_host_name,
)

__all__ = ["ClockFilter", "Encoding", "Tracer", "TracerHandler", "UnpackError"]

Encoding = Literal["json", "msgpack"]
"""How :meth:`Tracer.prepare_send` encodes a message: JSON (the default) or MessagePack;
sender and receiver must agree."""


class UnpackError(VClockError, ValueError):
    """Bytes given to :meth:`Tracer.unpack_receive` that are not a traced message.

    ``size`` is the length of the bytes; the message says what was wrong (for a
    field of the wrong type, with its JSON path, e.g. ``$.clock.A``).
    """

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(f"not a traced message ({size} bytes): {message}")
        self.size = size


class _Message(msgspec.Struct, kw_only=True):
    """What :meth:`Tracer.prepare_send` puts on the wire."""

    pid: str
    clock: dict[str, int]
    payload: Any = None


_HEADER_DECODER = msgspec.json.Decoder(_Message)


class Tracer:
    """One process's vector clock and ShiViz log.

    Args:
        process_id: the process's name in clocks and in ShiViz: non-empty, no
            whitespace, at most 64 characters.
        log_path: the log file, created (with its folder) or truncated now. One
            file per process; merge them with :func:`vclock.tracing.merge_logs` or
            ``vclock merge``.
        encoding: ``"json"`` (the default) or ``"msgpack"``; sender and receiver
            must agree.
        append: keep what the log holds and start a new execution: a line
            ``=== label ===`` first, then this run's records. Readers separate
            executions at those lines and match them across files by label.
        execution: the label (one line); by default ``execution N``, N being one
            more than the delimiter lines already in the log. Only with
            ``append=True``.

    Raises:
        ValueError: a bad process id, encoding or label.
        OSError: the log cannot be opened.
    """

    def __init__(
        self,
        process_id: str,
        log_path: str | Path,
        *,
        encoding: Encoding = "json",
        append: bool = False,
        execution: str | None = None,
    ) -> None:
        if not isinstance(process_id, str) or not is_host_name(process_id):
            raise ValueError(
                f"process id must be a non-empty string without whitespace, got {process_id!r}"
            )
        VectorClock({process_id: 1})  # the length limit every receiver will apply
        if encoding == "json":
            self._encoder: msgspec.json.Encoder | msgspec.msgpack.Encoder = msgspec.json.Encoder()
            self._decoder: msgspec.json.Decoder[_Message] | msgspec.msgpack.Decoder[_Message] = (
                msgspec.json.Decoder(_Message)
            )
        elif encoding == "msgpack":
            self._encoder = msgspec.msgpack.Encoder()
            self._decoder = msgspec.msgpack.Decoder(_Message)
        else:
            raise ValueError(f"encoding must be 'json' or 'msgpack', got {encoding!r}")
        self.process_id = process_id
        self.encoding = encoding
        self.log_path = Path(log_path)
        self._clock = VectorClock()
        self._lock = threading.Lock()
        if execution is not None and not append:
            raise ValueError("an execution label goes with append=True")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.execution = _next_label(self.log_path) if append and execution is None else execution
        delimiter = format_delimiter(self.execution) if self.execution is not None else ""
        mode = "a" if append else "w"
        self._file: IO[str] | None = self.log_path.open(mode, encoding="utf-8", newline="\n")
        if delimiter:
            self._file.write(("\n" if self._file.tell() else "") + delimiter)
            self._file.flush()

    @property
    def clock(self) -> VectorClock:
        """The clock after the latest event (immutable; safe to keep)."""
        return self._clock

    # The three verbs

    def prepare_send(self, description: str, payload: Any = None) -> bytes:
        """Tick and log a send; return the bytes to send, carrying ``payload`` and the clock.

        Call this just before sending; give the bytes to :meth:`unpack_receive`
        on the receiving side.

        Raises:
            TypeError: msgspec cannot encode ``payload``; nothing is logged and
                the clock does not move.
            RuntimeError: the tracer is closed.
        """
        with self._lock:
            clock = self._clock.tick(self.process_id)
            message = _Message(pid=self.process_id, clock=clock.to_dict(), payload=payload)
            try:
                data = self._encoder.encode(message)
            except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
                raise TypeError(f"cannot encode the payload of {description!r}: {exc}") from exc
            self._log(clock, description)
            return data

    def unpack_receive(self, description: str, data: bytes) -> Any:
        """Merge the sender's clock, tick, log the receive; return the payload.

        Call this just after receiving bytes made by :meth:`prepare_send`.

        Raises:
            UnpackError: ``data`` is not such a message (undecodable, a field of the
                wrong type, a bad clock, or a clock that does not count the send);
                nothing is logged and the clock does not move.
            RuntimeError: the tracer is closed.
        """
        sender, sent = self._decode(data)
        with self._lock:
            clock = self._clock.receive(sent, self.process_id)
            self._log(clock, description)
            return sender.payload

    # The clock in a header (HTTP and the like): no payload, ASCII text

    def send_header(self, description: str) -> str:
        """Tick and log a send, as :meth:`prepare_send`; return the clock as a header
        value: ``{"pid":"A","clock":{"A":2}}``, JSON in ASCII (``\\u`` escapes), so
        that any HTTP library can carry it. Give it to :meth:`receive_header`.

        Raises:
            RuntimeError: the tracer is closed.
        """
        with self._lock:
            clock = self._clock.tick(self.process_id)
            value = json.dumps(
                {"pid": self.process_id, "clock": clock.to_dict()}, separators=(",", ":")
            )
            self._log(clock, description)
            return value

    def receive_header(self, description: str, value: str | bytes) -> VectorClock:
        """Merge the clock of a :meth:`send_header` value, tick, log the receive;
        return the new clock.

        Raises:
            UnpackError: ``value`` is not such a header (nothing is logged and the
                clock does not move).
            RuntimeError: the tracer is closed.
        """
        data = value.encode("latin-1", "replace") if isinstance(value, str) else value
        _, sent = self._decode(data, _HEADER_DECODER)
        with self._lock:
            clock = self._clock.receive(sent, self.process_id)
            self._log(clock, description)
            return clock

    def local_event(self, description: str) -> VectorClock:
        """Tick and log a local event; return the new clock.

        Raises:
            RuntimeError: the tracer is closed.
        """
        with self._lock:
            clock = self._clock.tick(self.process_id)
            self._log(clock, description)
            return clock

    # Closing

    def close(self) -> None:
        """Close the log. Safe to call twice; any later event raises RuntimeError."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Tracer({self.process_id!r}, {str(self.log_path)!r}, clock={self._clock})"

    # Private methods

    def _decode(
        self, data: bytes, decoder: msgspec.json.Decoder[_Message] | None = None
    ) -> tuple[_Message, VectorClock]:
        """Decode and validate, outside the lock: a pure function of ``data``."""
        size = len(data) if isinstance(data, bytes | bytearray | memoryview | str) else 0
        try:
            message = (decoder or self._decoder).decode(data)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
            raise UnpackError(str(exc), size=size) from None
        except TypeError as exc:
            raise UnpackError(f"expected bytes, got {type(data).__name__}", size=size) from exc
        try:
            clock = VectorClock(message.clock)
        except InvalidClock as exc:
            raise UnpackError(f"bad clock: {exc}", size=size) from None
        if not message.pid or clock[message.pid] < 1:
            raise UnpackError(
                f"the clock {clock} does not count the send of process {message.pid!r}",
                size=size,
            )
        return message, clock

    def _log(self, clock: VectorClock, description: str) -> None:
        """Write one record, then adopt ``clock``; call with the lock held."""
        if self._file is None:
            raise RuntimeError(f"the tracer of {self.process_id!r} is closed")
        self._file.write(format_record(self.process_id, clock, description))
        self._file.flush()
        self._clock = clock


class TracerHandler(logging.Handler):
    """A :mod:`logging` handler that makes each record a local event of ``tracer``.

    The clock ticks and the tracer's log gets the formatted record as the event's
    description: by default ``LEVEL message`` (``WARNING cache miss``), as
    GoVector's ``LogLocalEvent`` prefixes its priority; set a formatter to change
    it. Records after the tracer is closed are handed to ``handleError``, like
    any failing handler's.
    """

    def __init__(self, tracer: Tracer, level: int | str = logging.NOTSET) -> None:
        super().__init__(level)
        self.tracer = tracer
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.tracer.local_event(self.format(record))
        except Exception:
            self.handleError(record)


class ClockFilter(logging.Filter):
    """Stamps each log record with ``tracer``'s clock, without ticking it.

    Sets ``record.vclock_pid`` (the process id) and ``record.vclock`` (the clock
    after the tracer's latest event, spelled as in its log: ``{"A":3, "B":1}``),
    for formats such as ``"%(vclock_pid)s %(vclock)s %(message)s"``. Add it to a
    handler (or a logger); it lets every record through.
    """

    def __init__(self, tracer: Tracer) -> None:
        super().__init__()
        self.tracer = tracer

    def filter(self, record: logging.LogRecord) -> bool:
        record.vclock_pid = self.tracer.process_id
        record.vclock = format_clock(self.tracer.clock)
        return True


def _next_label(path: Path) -> str:
    """``execution N``: one more than the delimiter lines ``path`` holds."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        text = ""
    return f"execution {len(DELIMITER_PATTERN.findall(text)) + 1}"
