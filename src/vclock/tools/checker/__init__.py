"""The trace checker: are the clocks in a run's event logs causally consistent?

:func:`check` reads a run folder of ``<pid>.jsonl`` logs (or one file, or a list of
:class:`~vclock.events.Event`) and returns a :class:`CheckReport`;
:func:`format_report` turns it into text. Pure functions: no printing, no time.

The model of a run, the rules and how the core check works are explained in the
docstring of :mod:`vclock.tools.checker.graph`, which also lists this package's
modules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from ...events import Event
from ..tracelog import Execution
from .records import load
from .report import REPORT_LIMIT as REPORT_LIMIT  # how many findings format_report lists
from .report import RULES, CheckReport, EventRef, Summary, Violation, format_report
from .rules import Checker

__all__ = [
    "RULES",
    "CheckReport",
    "EventRef",
    "Summary",
    "Violation",
    "check",
    "format_report",
]


def check(
    source: str | Path | Execution | Iterable[Event],
    *,
    require_causal_delivery: bool = False,
    causal_scope: str = "all",
) -> CheckReport:
    """Check the event logs of one run.

    Args:
        source: a run folder of ``<pid>.jsonl`` files, one such file, a
            GoVector/ShiViz log or folder of them holding one execution (messages
            read from the clocks, :mod:`vclock.tools.tracelog`), an
            :class:`~vclock.tools.tracelog.Execution` read by
            :func:`~vclock.tools.tracelog.read_trace`, or events (each process's
            events in its file order).
        require_causal_delivery: fail on causal-delivery violations instead of
            reporting them as warnings (per-sender FIFO violations always fail).
        causal_scope: ``"all"`` checks causal delivery over every message;
            ``"broadcast"`` only between broadcasts (peer ``"*"``), which clients
            deliver in causal order whatever the topology.

    A log's last line cut off by a crash (docs/eventlog.md: a crash loses at most
    the line being written) is left out with a ``torn-line`` warning.

    Raises:
        FileNotFoundError: no such file, or a folder without logs.
        ValueError: a line that is not an event (naming the file and line), logs
            holding several executions, or logs that hold no event at all.
    """
    if causal_scope not in ("all", "broadcast"):
        raise ValueError(f"causal_scope must be 'all' or 'broadcast', not {causal_scope!r}")
    torn: list[Violation] = []
    records = load(source, torn)
    if not records and isinstance(source, str | Path):
        raise ValueError(f"no events in {source}: its logs are empty")
    report = Checker(records, broadcasts_only=causal_scope == "broadcast").run(
        require_causal_delivery
    )
    return dataclasses.replace(report, log_warnings=torn)
