"""One reader for every log the tools take: vclock event logs and GoVector/ShiViz logs.

``vclock check``, ``vclock diagram``, ``vclock merge`` and ``vclock export shiviz``
read their sources here, through :func:`read_trace`, whatever wrote them:

- **vclock event logs** (``<pid>.jsonl``, :mod:`vclock.tools.eventlog`): one JSON
  object per line; messages are linked by their ``msg`` ids.
- **ShiViz/GoVector logs**: two lines per event, ``host {"host":n, ...}`` then a
  description (:mod:`vclock.tracing.shiviz`), as written by vclock's
  :class:`~vclock.tracing.Tracer`, by Go's GoVector (``*-Log.txt``, with or without
  ``UseTimestamps``), by ``vclock merge`` or GoVector's merge tool (a header: the
  parser regex on line 1, then a delimiter regex or an empty line), with
  ``=== label ===`` lines between executions.

The format of each file is detected from its first non-blank line: a JSON object
is an event log, anything else a ShiViz log. A folder stands for its ``*.jsonl``
files, or, when it has none, its ``*.log`` and ``*.txt`` files. All sources of one
call must be in one format.

**Messages in a ShiViz log** are not written down; they are read from the clocks
(:func:`infer_events`). An event whose clock learnt something new about another
process (an entry above the process's previous clock) is a *receive*. Its *send*
is the event ``q#n`` of the process ``q`` it learnt about (``n`` = the new entry)
whose clock, merged into the receiver's previous clock, gives exactly the
receive's clock (the own entry aside): GoVector and the Tracer put the sender's
clock after ``PrepareSend`` on the wire, and a receive takes the pointwise
maximum. At most one event can fit in a consistent log. An event that some
receive got is a *send* (``msg`` = ``q#n``, ``peer`` = its receiver, or ``"*"``
when several processes got it); every other event is *local*. So a message
nobody received reads as a local event, and so does a receive that brought
nothing new (the receiver knew everything the message carried).

A receive whose clock fits no send gets the ``msg`` of the event that best
explains it, so that the checker can say what is wrong: an event that is not in
the logs (``q`` logged fewer than ``n`` events: a log is missing or cut short),
else the largest candidate (the receive's clock then says more than it could
know, or less than it got). The events keep each process's order in its file(s),
and the records' descriptions in ``desc``.

**Several executions** (``=== label ===`` lines, written by the Tracer's
``append=True`` or by GoVector's ``AppendLog``) are told apart by their labels:
the records of one label, across all files, are one execution
(:class:`Execution`), in the order the labels first appear. Records before the
first delimiter of a file form the execution labelled ``""``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from ..clock import VectorClock
from ..events import EVERYONE, SERVER_ID, Event, message_id
from ..tracing.shiviz import Record, parse_runs
from .eventlog import iter_events

__all__ = [
    "SERVER_ALIAS",
    "Execution",
    "Format",
    "Trace",
    "detect_format",
    "infer_events",
    "read_trace",
    "trace_files",
]

Format = Literal["events", "shiviz"]

#: What a ShiViz host named ``server`` is called in the events read from it: the
#: tools keep ``server`` for the vclock server, which has no clock entry of its own
#: (GoVector's examples name a process ``server``).
SERVER_ALIAS = SERVER_ID + "'"


@dataclass(frozen=True, slots=True)
class Execution:
    """One execution: its events, where each was read (``A.log:3``), and for a
    ShiViz log the records they were read from (parallel to ``events``)."""

    label: str
    events: tuple[Event, ...]
    refs: tuple[str, ...]
    records: tuple[Record, ...] | None = None
    #: last lines cut off by a crash (``A.jsonl:12``), left out of ``events``
    torn: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Trace:
    """What :func:`read_trace` read: the format, a name for titles, the executions."""

    format: Format
    name: str
    executions: tuple[Execution, ...]

    def execution(self, label: str | None = None) -> Execution:
        """The execution labelled ``label``, or the only one when ``label`` is None.

        Raises:
            ValueError: no such label, or several executions and no label; the
                message lists the labels.
        """
        if label is None and len(self.executions) == 1:
            return self.executions[0]
        for execution in self.executions:
            if execution.label == label:
                return execution
        labels = ", ".join(repr(e.label) for e in self.executions)
        if label is None:
            raise ValueError(
                f"the logs hold {len(self.executions)} executions ({labels}); pick one"
            )
        raise ValueError(f"no execution labelled {label!r}; the logs hold {labels}")


# Files and formats


def trace_files(source: str | Path) -> list[Path]:
    """The log files of ``source``: a file, or a folder's ``*.jsonl`` files, or (when
    it has none) its ``*.log`` and ``*.txt`` files, sorted.

    Raises:
        FileNotFoundError: no such file or folder, or a folder without logs.
    """
    path = Path(source)
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            files = sorted(p for p in path.iterdir() if p.suffix in (".log", ".txt"))
        if not files:
            raise FileNotFoundError(f"no .jsonl, .log or .txt logs in {path}")
        return files
    if not path.exists():
        raise FileNotFoundError(f"no such log file or folder: {path}")
    return [path]


def detect_format(path: str | Path) -> Format:
    """``"events"`` if the first non-blank line of ``path`` is a JSON object, else
    ``"shiviz"``. An empty file is an event log (with no events).

    Raises:
        ValueError: the file is not UTF-8 text.
    """
    with Path(path).open("rb") as file:
        for line in file:
            text = line.strip()
            if not text:
                continue
            if text.startswith(b"{"):
                return "events"
            try:
                text.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"{path}: not a log: the first line is not UTF-8 text") from None
            return "shiviz"
    return "events"


def read_trace(sources: Sequence[str | Path]) -> Trace:
    """Read every log of ``sources`` (files or folders, see :func:`trace_files`).

    Event logs make one execution, named after the only source (a folder's name, a
    file's stem). ShiViz logs make one execution per label (see the module
    docstring), with messages inferred from the clocks.

    Raises:
        ValueError: no sources, sources in both formats, or a line that is not part
            of an event or record (naming the file and line).
        FileNotFoundError: a missing source, or a folder without logs.
    """
    if not sources:
        raise ValueError("no logs given")
    files = [file for source in sources for file in trace_files(source)]
    formats = {file: detect_format(file) for file in files}
    kinds = set(formats.values())
    if len(kinds) > 1:
        events = ", ".join(str(f) for f, k in formats.items() if k == "events")
        shiviz = ", ".join(str(f) for f, k in formats.items() if k == "shiviz")
        raise ValueError(
            f"the logs mix vclock event logs ({events}) and ShiViz logs ({shiviz});"
            " give one kind at a time"
        )
    first = Path(sources[0])
    name = (first.name if first.is_dir() else first.stem) if len(sources) == 1 else "trace"
    if kinds == {"events"}:
        return Trace("events", name, (_event_execution(name, files),))
    return Trace("shiviz", name, _shiviz_executions(files))


def _event_execution(label: str, files: list[Path]) -> Execution:
    events: list[Event] = []
    refs: list[str] = []
    torn: list[str] = []
    for file in files:

        def cut_off(line: int, name: str = file.name) -> None:
            torn.append(f"{name}:{line}")

        for line, event in iter_events(file, cut_off):
            events.append(event)
            refs.append(f"{file.name}:{line}")
    return Execution(label, tuple(events), tuple(refs), torn=tuple(torn))


def _shiviz_executions(files: list[Path]) -> tuple[Execution, ...]:
    by_label: dict[str, list[tuple[Record, str]]] = {}
    for file in files:
        try:
            runs = parse_runs(file.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ValueError(f"{file}: not a log: not UTF-8 text") from None
        except ValueError as exc:
            raise ValueError(f"{file}: {exc}") from None
        for run in runs:
            found = by_label.setdefault(run.label, [])
            for record in run.records:
                found.append((record, f"{file.name}:{record.origin.removeprefix('line ')}"))
    executions: list[Execution] = []
    for label, located in by_label.items():
        records = [record for record, _ in located]
        executions.append(
            Execution(
                label,
                tuple(infer_events([_renamed(record) for record in records])),
                tuple(ref for _, ref in located),
                tuple(records),
            )
        )
    return tuple(executions)


def _renamed(record: Record) -> Record:
    """``record`` with the host ``server`` called :data:`SERVER_ALIAS`."""
    if SERVER_ID not in record.clock:
        return record
    clock = VectorClock(
        {(SERVER_ALIAS if q == SERVER_ID else q): n for q, n in record.clock.items()}
    )
    host = SERVER_ALIAS if record.host == SERVER_ID else record.host
    return Record(host, clock, record.description, record.run, record.origin, record.timestamp)


# Messages from clocks


def infer_events(records: Sequence[Record]) -> list[Event]:
    """The records of one execution as events, with their messages read from the
    clocks (see the module docstring). ``events[i]`` is ``records[i]``."""
    previous: list[dict[str, int]] = []
    last: dict[str, dict[str, int]] = {}
    by_own: dict[tuple[str, int], int] = {}
    for index, record in enumerate(records):
        clock = dict(record.clock.items())
        previous.append(last.get(record.host, {}))
        last[record.host] = clock
        by_own.setdefault((record.host, clock.get(record.host, 0)), index)
    # A receive learnt something new; nothing else is one.
    learnt = [
        {
            q: n
            for q, n in record.clock.items()
            if q != record.host and n > previous[index].get(q, 0)
        }
        for index, record in enumerate(records)
    ]
    source: dict[int, int | str] = {}  # receive -> its send's index, or a missing msg id
    receivers: dict[int, list[int]] = {}
    for index, new in enumerate(learnt):
        if not new:
            continue
        found = _source(index, records, previous[index], new, by_own, learnt)
        source[index] = found
        if isinstance(found, int):
            receivers.setdefault(found, []).append(index)
    events: list[Event] = []
    for index, record in enumerate(records):
        own = record.clock[record.host]
        ts = _iso(record.timestamp)
        clock = dict(record.clock.items())
        desc = record.description
        peer: str | None
        msg: str | None
        if index in source:
            found = source[index]
            if isinstance(found, int):
                sender = records[found]
                msg = message_id(sender.host, sender.clock[sender.host])
                peer = sender.host
            else:
                msg, peer = found, found.rpartition("#")[0]
            kind = "receive"
        elif index in receivers:
            got = {records[r].host for r in receivers[index]}
            peer = got.pop() if len(got) == 1 else EVERYONE
            kind, msg = "send", message_id(record.host, own)
        else:
            kind, msg, peer = "local", None, None
        events.append(
            Event(ts=ts, pid=record.host, kind=kind, clock=clock, peer=peer, msg=msg, desc=desc)
        )
    return events


def _source(
    index: int,
    records: Sequence[Record],
    before: dict[str, int],
    new: dict[str, int],
    by_own: dict[tuple[str, int], int],
    learnt: list[dict[str, int]],
) -> int | str:
    """The send receive ``index`` got: its index, or the msg id of a missing one."""
    host = records[index].host
    clock = records[index].clock
    candidates: list[int] = []
    missing: str | None = None
    for q, n in sorted(new.items()):
        found = by_own.get((q, n))
        if found is None:
            missing = missing or message_id(q, n)
            continue
        if learnt[found]:
            continue  # a receive is never a send (the sender ticks in PrepareSend)
        sent = records[found].clock
        if all(
            max(before.get(r, 0), sent[r]) == clock[r]
            for r in {*clock.keys(), *sent.keys()}
            if r != host
        ):
            return found
        candidates.append(found)
    if missing is not None:
        return missing
    if candidates:
        return max(candidates, key=lambda i: (sum(c for _, c in records[i].clock.items()), i))
    q, n = min(new.items())
    return message_id(q, n)


def _iso(nanoseconds: int | None) -> str:
    if nanoseconds is None:
        return ""
    seconds, rest = divmod(nanoseconds, 1_000_000_000)
    try:
        moment = _dt.datetime.fromtimestamp(seconds, _dt.UTC)
    except (OverflowError, OSError, ValueError):
        return ""
    return moment.replace(microsecond=rest // 1000).isoformat()


def events_jsonl(events: Sequence[Event]) -> str:
    """``events`` as the lines of a vclock event log."""
    encoder = msgspec.json.Encoder()
    return "".join(encoder.encode(event).decode() + "\n" for event in events)
