"""vclock event logs as a ShiViz log: :func:`export_shiviz`.

The ShiViz format itself (records, checks, order, the file) is
:mod:`vclock.tracing.shiviz`, which the :class:`~vclock.tracing.Tracer` writes
with; this module reads run folders (:mod:`vclock.tools.eventlog`) and hands
their client events to it. It lives with the other tools that read event logs,
so that tracing needs nothing of the logs, the hub or the tools.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from ..clock import VectorClock
from ..events import CAUSAL_KINDS, SERVER_ID, Event
from ..tracing.shiviz import (
    ExportResult,
    Record,
    Run,
    check_host,
    check_run,
    escape_line_breaks,
    order_records,
    write_runs,
)
from .eventlog import iter_events, log_files
from .tracelog import Execution, detect_format, read_trace, trace_files

__all__ = ["client_records", "describe_event", "export_shiviz", "shiviz_records"]


def describe_event(event: Event) -> str:
    """The description of a client event-log event: ``send A#3 -> B: desc``.

    ``send A#3 -> B``, ``receive A#3 <- A``, ``sync-receive sync#2``, ``local``,
    followed by ``: `` and the event's ``desc`` when it has one.
    """
    parts = [event.kind]
    if event.msg:
        parts.append(event.msg)
    if event.peer and event.kind == "send":
        parts.append(f"-> {event.peer}")
    elif event.peer and event.kind == "receive":
        parts.append(f"<- {event.peer}")
    text = " ".join(parts)
    return f"{text}: {event.desc}" if event.desc else text


def export_shiviz(
    sources: Sequence[str | Path], out: str | Path, *, header: bool = True
) -> ExportResult:
    """Write the client events of vclock event logs as one ShiViz file.

    Each source is a run folder or one ``.jsonl`` event log
    (:mod:`vclock.tools.eventlog`) and becomes one execution, labelled with the
    folder or file name (made unique). A GoVector/ShiViz log (or a folder of them,
    :mod:`vclock.tools.tracelog`) gives its executions as they are, labelled
    ``name / label`` when it holds several. Only client causal events are exported
    (``local``, ``send``, ``receive``, ``sync-receive``); the server's records
    and ``join``/``leave`` annotations are not. Each execution is checked with
    :func:`check_run` and ordered with :func:`order_records`; with more than one
    source, executions are separated by ``=== label ===`` lines. Nothing is
    written when a check fails.

    Raises:
        ValueError: no sources, a source without client events, a bad event
            line, or a failed check (naming the process).
        FileNotFoundError: a missing source, or a folder without ``.jsonl`` files.
    """
    if not sources:
        raise ValueError("export_shiviz needs at least one run folder or event log")
    runs: list[Run] = []
    labels: set[str] = set()
    for source in sources:
        label = _unique_label(Path(source).name or str(source), labels)
        if detect_format(trace_files(source)[0]) == "events":
            found = [(label, _client_records(Path(source), label))]
        else:  # GoVector/ShiViz logs: each execution as it was written
            trace = read_trace([source])
            found = []
            for execution in trace.executions:
                name = label if len(trace.executions) == 1 else f"{label} / {execution.label}"
                if name != label:
                    name = _unique_label(name, labels)
                found.append((name, shiviz_records(execution, name)))
        for name, records in found:
            check_run(records, label=name)
            runs.append(Run(name, tuple(order_records(records))))
    return write_runs(out, runs, header=header)


def shiviz_records(execution: Execution, label: str) -> list[Record]:
    """The records an execution was read from (a ShiViz log's), relabelled, each
    with where it was read (``A.log:3``) as its origin."""
    assert execution.records is not None
    return [
        Record(r.host, r.clock, r.description, label, ref, r.timestamp)
        for r, ref in zip(execution.records, execution.refs, strict=True)
    ]


def _client_records(source: Path, label: str) -> list[Record]:
    records: list[Record] = []
    for path in log_files(source):
        pairs = list(iter_events(path))
        refs = [f"{path}:{number}" for number, _ in pairs]
        records.extend(client_records([e for _, e in pairs], label, refs=refs))
    if not records:
        raise ValueError(f"{source}: no client events (local, send, receive, sync-receive)")
    return records


def client_records(
    events: Iterable[Event], label: str, *, refs: Iterable[str] = ()
) -> list[Record]:
    """The client causal events of ``events`` as ShiViz records of execution ``label``,
    each described by :func:`describe_event`; ``refs`` say where each event was
    read, for messages.

    Raises:
        ValueError: a pid that cannot be a ShiViz host, or a bad clock.
    """
    records: list[Record] = []
    where_of = iter(refs)
    for number, event in enumerate(events, 1):
        where = next(where_of, f"event {number}")
        if event.pid == SERVER_ID or event.kind not in CAUSAL_KINDS:
            continue
        try:
            check_host(event.pid)
            clock = VectorClock(event.clock)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        records.append(Record(event.pid, clock, describe_event(event), label, where))
    return records


def _unique_label(name: str, taken: set[str]) -> str:
    base = escape_line_breaks(name) or "run"
    label, number = base, 2
    while label in taken:
        label, number = f"{base} ({number})", number + 1
    taken.add(label)
    return label
