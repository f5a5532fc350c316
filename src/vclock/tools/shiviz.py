"""vclock event logs as a ShiViz log: :func:`export_shiviz`.

The ShiViz format itself (records, checks, order, the file) is
:mod:`vclock.tracing.shiviz`, which the :class:`~vclock.tracing.Tracer` writes
with; this module reads run folders (:mod:`vclock.tools.eventlog`) and hands
their client events to it. It lives with the other tools that read event logs,
so that tracing needs nothing of the logs, the hub or the tools.
"""

from __future__ import annotations

from collections.abc import Sequence
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

__all__ = ["describe_event", "export_shiviz"]


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
    folder or file name (made unique). Only client causal events are exported
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
        records = _client_records(Path(source), label)
        check_run(records, label=label)
        runs.append(Run(label, tuple(order_records(records))))
    return write_runs(out, runs, header=header)


def _client_records(source: Path, label: str) -> list[Record]:
    records: list[Record] = []
    for path in log_files(source):
        for number, event in iter_events(path):
            if event.pid == SERVER_ID or event.kind not in CAUSAL_KINDS:
                continue
            where = f"{path}:{number}"
            try:
                check_host(event.pid)
                clock = VectorClock(event.clock)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            records.append(Record(event.pid, clock, describe_event(event), label, where))
    if not records:
        raise ValueError(f"{source}: no client events (local, send, receive, sync-receive)")
    return records


def _unique_label(name: str, taken: set[str]) -> str:
    base = escape_line_breaks(name) or "run"
    label, number = base, 2
    while label in taken:
        label, number = f"{base} ({number})", number + 1
    taken.add(label)
    return label
