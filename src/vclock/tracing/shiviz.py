"""The ShiViz log format: GoVector's two-line records, parsed, checked and merged.

One event is two lines, exactly as GoVector writes them (``govec/govec.go``,
``logThis``)::

    A {"A":3, "B":1}
    send A#3 -> B

The first line is the host (the process id, no whitespace) and its vector clock
after the event; the second is a one-line description. ShiViz finds the records
with the regular expression users paste into its "Log parser RegExp" box,
:data:`SHIVIZ_REGEX` (the one GoVector's ``get_regex`` prints);
:data:`RECORD_PATTERN` is its Python spelling.

**Clock spacing.** We write the clock the way GoVector's ``ReturnVCString`` does,
ids sorted, no space after the colon, ``", "`` between entries:
``{"A":3, "B":1}``. :meth:`VectorClock.to_json` gives ``{"A": 3, "B": 1}``, which
ShiViz would parse just as well (it reads the clock with ``JSON.parse``); we pick
GoVector's bytes so that a log from a Python process and one from a Go process
look the same line for line, and ``grep '"A":3'`` finds an event in either. The
parser here accepts any JSON object, whatever its spacing.

**Several executions in one file.** ShiViz's "Multiple execution delimiter" box
takes a regular expression; every line it matches starts a new execution, and a
``trace`` group names it. We use the delimiter of ShiViz's own multi-execution
example (``index.html``, "Facebook log with multiple executions"),
:data:`SHIVIZ_DELIMITER` ``^=== (?<trace>.*) ===$``, written as ``=== name ===``.
(GoVector's ``AppendLog`` writes ``=== Execution #<date>  ===`` lines, which the
same regex matches.)

**File header.** A merged file starts as GoVector's merge tool writes one: the
parser regex on line 1, then the delimiter regex on line 2 (empty for a single
execution). ShiViz's "upload a file" button reads exactly these two lines into
its two boxes and the rest as the log (``js/shiviz.js``), so an upload needs no
typing. To paste into the text box instead, paste from line 3.

**What ShiViz checks** (``js/model/modelGraph.js``), and :func:`check_run` checks
before anything is written, naming the process at fault:

- each host's own entries, sorted, run 1, 2, 3, ... with no gap;
- a clock mentions only hosts that have events in the same execution;
- ``clock[h]`` is at most the number of events of ``h``.

Files are written in an order that respects causality (:func:`order_records`):
every send comes before its receive, so the log panel reads top to bottom.

This module reads and writes files only in :func:`merge_logs` and
:func:`write_runs`; everything else works on strings. It knows nothing of vclock's
event logs: :mod:`vclock.tools.shiviz` exports those (``export_shiviz``) with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from ..clock import VectorClock

__all__ = [
    "DELIMITER_PATTERN",
    "RECORD_PATTERN",
    "SHIVIZ_DELIMITER",
    "SHIVIZ_REGEX",
    "TSVIZ_REGEX",
    "ExportResult",
    "Record",
    "Run",
    "check_host",
    "is_host_name",
    "check_run",
    "escape_line_breaks",
    "format_clock",
    "format_delimiter",
    "format_record",
    "merge_logs",
    "one_line",
    "order_records",
    "parse_records",
    "parse_runs",
    "write_runs",
]

SHIVIZ_REGEX = r"(?<host>\S*) (?<clock>{.*})\n(?<event>.*)"
"""What users paste into ShiViz's "Log parser RegExp" box (JavaScript syntax)."""

SHIVIZ_DELIMITER = r"^=== (?<trace>.*) ===$"
"""What users paste into ShiViz's "Multiple execution delimiter" box."""

RECORD_PATTERN = re.compile(r"(?P<host>\S*) (?P<clock>{.*})\n(?P<event>.*)", re.MULTILINE)
""":data:`SHIVIZ_REGEX` in Python syntax. ShiViz compiles it with the ``m`` flag."""

DELIMITER_PATTERN = re.compile(r"^=== (?P<trace>.*) ===$", re.MULTILINE)
""":data:`SHIVIZ_DELIMITER` in Python syntax; ``trace`` is the execution's name."""

#: GoVector's parser regex for logs written with ``UseTimestamps`` (for TSViz):
#: each record's first line starts with the Unix time in nanoseconds.
TSVIZ_REGEX = r"(?<timestamp>\d+) (?<host>\S*) (?<clock>{.*})\n(?<event>.*)"

# One record's first line, for the line-by-line parser below; GoVector's
# ``UseTimestamps`` option puts the time in nanoseconds first.
_HEAD = re.compile(r"(?:(?P<ts>\d+) )?(?P<host>\S*) (?P<clock>\{.*\})")

# Every character Python or JavaScript treats as a line break. JavaScript's `.`
# stops at \r, \u2028 and \u2029 as well as \n, so any of them in a description
# would cut the record short in ShiViz.
_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
_ESCAPES = {ord(c): c.encode("unicode_escape").decode("ascii") for c in _LINE_BREAKS}

# ShiViz trims the whole log, so an empty description on the last record would
# lose the record's newline and with it the whole event.
_EMPTY_DESCRIPTION = "(no description)"
_TRAILING_BLANKS = re.compile(r"[\s\ufeff]+$")  # as _BLANK, at the end


@dataclass(frozen=True, slots=True)
class Record:
    """One ShiViz event: ``host``'s ``clock`` after it, and what happened.

    ``run`` names the execution the record belongs to ("" when the log has no
    delimiter); ``origin`` says where it came from (``file:line``), for messages;
    ``timestamp`` is the Unix time in nanoseconds of a GoVector log written with
    ``UseTimestamps`` (for TSViz), None otherwise.
    """

    host: str
    clock: VectorClock
    description: str
    run: str = field(default="", compare=False)
    origin: str = field(default="", compare=False)
    timestamp: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Run:
    """One execution: its label and its records, in file order."""

    label: str
    records: tuple[Record, ...]


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What :func:`merge_logs`, :func:`write_runs` or
    :func:`vclock.tools.shiviz.export_shiviz` wrote."""

    path: Path
    runs: int
    events: int


# Formatting


def format_clock(clock: VectorClock | Mapping[str, int]) -> str:
    """The clock as GoVector's ``ReturnVCString`` writes it: ``{"A":3, "B":1}``."""
    if not isinstance(clock, VectorClock):
        clock = VectorClock(clock)
    body = ", ".join(f"{_json_string(pid)}:{count}" for pid, count in clock.items())
    return "{" + body + "}"


def one_line(description: str) -> str:
    """``description`` made safe for the event line of a record.

    Line breaks become escapes (``\\n``, ``\\r``, ``\\u2028``...); this is for
    display and is not reversed when parsing. A line that ShiViz would take for
    an execution delimiter gets a leading backslash, trailing whitespace goes, and
    an empty description becomes ``(no description)``.
    """
    # ShiViz trims the whole log, so trailing blanks on the last record would go
    # (and with them the record, were the description only blanks): drop them all.
    text = _TRAILING_BLANKS.sub("", description.translate(_ESCAPES))
    if not text:
        return _EMPTY_DESCRIPTION
    if DELIMITER_PATTERN.fullmatch(text):
        return "\\" + text
    return text


def format_record(host: str, clock: VectorClock | Mapping[str, int], description: str) -> str:
    """The two lines of one event, each ending in ``\\n``.

    Raises:
        ValueError: ``host`` is empty or contains whitespace, or ``clock`` has no
            entry for ``host`` (ShiViz refuses both); InvalidClock for a bad clock.
    """
    check_host(host)
    if not isinstance(clock, VectorClock):
        clock = VectorClock(clock)
    if clock[host] < 1:
        raise ValueError(
            f"the clock of an event of {host!r} must count that event, got {clock.to_json()}"
        )
    return f"{host} {format_clock(clock)}\n{one_line(description)}\n"


def format_delimiter(label: str) -> str:
    """The line that starts execution ``label``: ``=== label ===`` plus ``\\n``.

    Raises:
        ValueError: an empty label, or one with a line break.
    """
    if not label or label != label.translate(_ESCAPES):
        raise ValueError(f"an execution label is one non-empty line, got {label!r}")
    return f"=== {label} ===\n"


# Parsing


def parse_runs(text: str) -> list[Run]:
    """The executions of a ShiViz log, each with its records in file order.

    Reads what this module writes and what GoVector writes: an optional two-line
    header (parser regex, delimiter regex; see the module docstring), records,
    blank lines, and delimiter lines matching the header's delimiter or, without
    a header (or with an empty line 2), :data:`DELIMITER_PATTERN`. Records before
    the first delimiter form an execution labelled ``""``; executions without
    records are left out. The first line of a record may start with GoVector's
    ``UseTimestamps`` time (:data:`TSVIZ_REGEX`), kept in ``Record.timestamp``.

    Unlike ShiViz, which skips what its regex does not match, this parser refuses
    any other line, so a damaged log is not silently shortened.

    Raises:
        ValueError: a line that is not part of a record, a bad clock, a header
            delimiter that is not a valid regex, or two executions with one label;
            the message gives the line number.
    """
    lines = text.split("\n")
    delimiter: re.Pattern[str] | None = DELIMITER_PATTERN
    start = 0
    if "(?<host>" in lines[0] or "(?P<host>" in lines[0]:
        if lines[0].strip() not in (SHIVIZ_REGEX, RECORD_PATTERN.pattern, TSVIZ_REGEX):
            raise ValueError(
                f"line 1: this parser reads records of the form {SHIVIZ_REGEX!r},"
                f" but the file declares {lines[0].strip()!r}"
            )
        delimiter = _header_delimiter(lines[1] if len(lines) > 1 else "")
        start = 2
    runs: list[Run] = []
    label = ""
    records: list[Record] = []
    index = start
    while index < len(lines):
        line = lines[index]
        number = index + 1
        if not line.strip():
            index += 1
            continue
        if delimiter is not None and (match := delimiter.fullmatch(line)):
            _close_run(runs, label, records)
            label, records = _trace_label(match), []
            index += 1
            continue
        head = _HEAD.fullmatch(line)
        if head is None:
            raise ValueError(f"line {number}: expected 'HOST {{clock}}', got {line[:80]!r}")
        if index + 2 >= len(lines) and not (index + 1 < len(lines) and lines[index + 1]):
            # The file ends after the clock line (a write cut short): the "" after
            # its last newline is no line of the file.
            raise ValueError(f"line {number}: the record has no description line")
        host = head["host"]
        try:
            check_host(host)
            clock = VectorClock.from_json(head["clock"])
        except ValueError as exc:  # InvalidClock is a ValueError too
            raise ValueError(f"line {number}: {exc}") from None
        stamp = int(head["ts"]) if head["ts"] else None
        records.append(
            Record(host, clock, lines[index + 1], label, f"line {number}", timestamp=stamp)
        )
        index += 2
    _close_run(runs, label, records)
    return runs


def parse_records(text: str) -> list[Record]:
    """Every record of a ShiViz log, all executions together, in file order.

    Each record's ``run`` names its execution. See :func:`parse_runs`.
    """
    return [record for run in parse_runs(text) for record in run.records]


def _header_delimiter(line: str) -> re.Pattern[str] | None:
    if not line.strip():
        # GoVector's merge tool leaves line 2 empty even when the logs it
        # concatenates hold "=== Execution #... ===" lines: still read them.
        return DELIMITER_PATTERN
    try:
        return re.compile(re.sub(r"\(\?<(\w+)>", r"(?P<\1>", line.strip()), re.MULTILINE)
    except re.error as exc:
        raise ValueError(f"line 2: the delimiter regex {line!r} is not valid: {exc}") from None


def _trace_label(match: re.Match[str]) -> str:
    return match["trace"] if "trace" in match.re.groupindex else match[0]


def _close_run(runs: list[Run], label: str, records: list[Record]) -> None:
    if not records:
        return
    if any(run.label == label for run in runs):
        raise ValueError(f"two executions are labelled {label!r}; ShiViz would keep only one")
    runs.append(Run(label, tuple(records)))


# Checking and ordering


def check_run(records: Sequence[Record], *, label: str = "") -> None:
    """Check one execution the way ShiViz will, so that it loads.

    Raises:
        ValueError: naming the process and the event at fault when a host's own
            entries do not run 1, 2, 3... without gaps or repeats, when a clock
            mentions a process with no events in this execution, or when it
            counts more events of a process than the execution holds.
    """
    where = f"execution {label!r}: " if label else ""
    own: dict[str, list[Record]] = {}
    for record in records:
        own.setdefault(record.host, []).append(record)
    for host, events in own.items():
        events = sorted(events, key=lambda r: r.clock[host])
        for expected, record in enumerate(events, 1):
            if record.clock[host] != expected:
                raise ValueError(
                    f"{where}the events of process {host!r} must be numbered 1, 2, 3...;"
                    f" event number {expected} has {host}={record.clock[host]}"
                    f" ({_at(record)}); is part of its log missing?"
                )
    for record in records:
        for pid, count in record.clock.items():
            if pid not in own:
                raise ValueError(
                    f"{where}the clock of an event of {record.host!r} ({_at(record)}) mentions"
                    f" process {pid!r}, which has no events in this execution;"
                    f" add the log of {pid!r}"
                )
            if count > len(own[pid]):
                raise ValueError(
                    f"{where}the clock of an event of {record.host!r} ({_at(record)}) counts"
                    f" {count} events of process {pid!r}, but only {len(own[pid])} are logged"
                )


def order_records(records: Iterable[Record]) -> list[Record]:
    """The records in an order that respects happened-before.

    Sorted by the sum of the clock's entries, then host: if event ``a`` happened
    before ``b``, ``a``'s clock is below ``b``'s in every entry and strictly in
    one, so its sum is smaller. Sends therefore come before their receives, and
    each host's events keep their own order.
    """
    return sorted(records, key=lambda r: (sum(c for _, c in r.clock.items()), r.host))


def _at(record: Record) -> str:
    return record.origin or f"clock {format_clock(record.clock)}"


# Files


def merge_logs(
    paths: Sequence[str | Path], out: str | Path, *, header: bool = True
) -> ExportResult:
    """Merge the per-process logs of :class:`~vclock.tracing.Tracer` into one ShiViz file.

    The logs (or GoVector's ``*-Log.txt``) are one execution: their records are
    checked with :func:`check_run`, ordered with :func:`order_records` and
    written to ``out`` after the two-line header (unless ``header=False``).
    Nothing is written when a check fails.

    Raises:
        ValueError: no paths, a log that does not parse or holds delimiters, or a
            failed check (for example, the log of a process the others heard from
            is missing: the message names it).
        OSError: a file cannot be read or written.
    """
    if not paths:
        raise ValueError("merge_logs needs at least one log file")
    records: list[Record] = []
    for path in paths:
        try:
            runs = parse_runs(Path(path).read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        if any(run.label for run in runs):
            raise ValueError(f"{path}: holds several executions; merge one execution at a time")
        for run in runs:
            records.extend(_located(record, f"{path}:{record.origin}") for record in run.records)
    check_run(records)
    return write_runs(Path(out), [Run("", tuple(order_records(records)))], header=header)


def write_runs(out: str | Path, runs: Sequence[Run], *, header: bool = True) -> ExportResult:
    """Write ``runs`` to ``out`` as one ShiViz file: the two-line header (unless
    ``header=False``), then each run's records in the order given, with
    ``=== label ===`` lines between runs when there are several. Checking and
    ordering the records is the caller's job (:func:`check_run`,
    :func:`order_records`)."""
    several = len(runs) > 1
    parts: list[str] = []
    if header:
        parts.append(f"{SHIVIZ_REGEX}\n{SHIVIZ_DELIMITER if several else ''}\n")
    events = 0
    for run in runs:
        if several:
            parts.append(("\n" if parts else "") + format_delimiter(run.label))
        for record in run.records:
            parts.append(format_record(record.host, record.clock, record.description))
            events += 1
    path = Path(out)
    with path.open("w", encoding="utf-8", newline="\n") as file:
        file.write("".join(parts))
    return ExportResult(path=path, runs=len(runs), events=events)


def _located(record: Record, origin: str) -> Record:
    return Record(
        record.host, record.clock, record.description, record.run, origin, record.timestamp
    )


#: Python's and JavaScript's whitespace (they differ a little: refuse both kinds).
_BLANK = re.compile(r"[\s\ufeff]")


def is_host_name(host: str) -> bool:
    """Whether ShiViz takes ``host`` as a host name: non-empty, without whitespace."""
    return bool(host) and _BLANK.search(host) is None


def check_host(host: str) -> None:
    """Refuse ``host`` as ShiViz would: empty, or with whitespace.

    Raises:
        ValueError: naming the host.
    """
    if not is_host_name(host):
        raise ValueError(f"a ShiViz host name is non-empty and has no whitespace, got {host!r}")


def escape_line_breaks(text: str) -> str:
    """``text`` with every line break Python or JavaScript knows written as an escape
    (``\\n``, ``\\u2028``...), so that it stays on one line."""
    return text.translate(_ESCAPES)


def _json_string(text: str) -> str:
    return msgspec.json.encode(text).decode()
