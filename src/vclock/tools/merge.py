"""``vclock merge``: several logs of one system into one file, in causal order.

:func:`merge` reads its sources with :func:`vclock.tools.tracelog.read_trace` (so
any mix of per-process GoVector/ShiViz logs, merged ShiViz files and folders of
them; or vclock event logs) and writes, by the suffix of ``out``:

- anything but ``.jsonl``: **one ShiViz log** (:mod:`vclock.tracing.shiviz`): the
  two-line header, then each execution's records ordered with
  :func:`~vclock.tracing.shiviz.order_records` (every send before its receives),
  ``=== label ===`` lines between executions when there are several. Records read
  from ShiViz logs keep their descriptions byte for byte; vclock event logs give
  their client causal events, described as ``vclock export shiviz`` does.
  Each execution is first checked as ShiViz will (:func:`check_run`); nothing is
  written when that fails.
- ``.jsonl``: **one vclock event log** holding every process's events (one
  execution only), with the messages the reader inferred from the clocks written
  down as ``send``/``receive`` events with ``msg`` ids, so that any tool reading
  event logs sees them. Events keep the ShiViz order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..tracing.shiviz import ExportResult, Record, Run, check_run, order_records, write_runs
from .shiviz import client_records, shiviz_records
from .tracelog import Execution, Trace, events_jsonl, read_trace

__all__ = ["merge"]


def merge(sources: Sequence[str | Path], out: str | Path) -> ExportResult:
    """Merge ``sources`` into ``out``: a ShiViz log, or an event log for ``.jsonl``.

    Raises:
        ValueError: unreadable logs, a ShiViz check that fails (naming the
            process), or several executions for a ``.jsonl`` output.
        FileNotFoundError: a missing source, or a folder without logs.
    """
    trace = read_trace(sources)
    out = Path(out)
    if out.suffix.lower() == ".jsonl":
        return _write_events(trace, out)
    runs: list[Run] = []
    labels: set[str] = set()
    several = len(trace.executions) > 1
    for number, execution in enumerate(trace.executions, 1):
        label = execution.label or (f"execution {number}" if several else "")
        while label in labels:
            label += "'"
        labels.add(label)
        records = _records(execution, label)
        if not records:
            raise ValueError(f"execution {label or trace.name!r}: no events to merge")
        check_run(records, label=label)
        runs.append(Run(label, tuple(order_records(records))))
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_runs(out, runs)


def _records(execution: Execution, label: str) -> list[Record]:
    if execution.records is None:
        return client_records(execution.events, label, refs=execution.refs)
    return shiviz_records(execution, label)


def _write_events(trace: Trace, out: Path) -> ExportResult:
    if len(trace.executions) > 1:
        labels = ", ".join(repr(e.label) for e in trace.executions)
        raise ValueError(
            f"an event log holds one execution, these logs hold {len(trace.executions)}"
            f" ({labels}); write a ShiViz log instead (any suffix but .jsonl)"
        )
    execution = trace.executions[0]
    events = list(execution.events)
    if execution.records is not None:
        position = {id(record): index for index, record in enumerate(execution.records)}
        events = [events[position[id(r)]] for r in order_records(execution.records)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(events_jsonl(events), encoding="utf-8")
    return ExportResult(path=out, runs=1, events=len(events))
