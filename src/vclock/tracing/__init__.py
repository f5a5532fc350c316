"""GoVector for Python: trace your own processes, then look at them in ShiViz.

:class:`Tracer` stamps your messages with vector clocks and writes one ShiViz log
per process (:class:`TracerHandler` and :class:`ClockFilter` bring in Python's
:mod:`logging`); :func:`merge_logs` merges those logs into one file. Turning vclock
event logs (run folders) into the same format is a tool that reads them,
:func:`vclock.tools.shiviz.export_shiviz` (also ``vclock.export_shiviz``); tracing
imports nothing of the logs, the hub or the tools. See docs/tracing.md.
"""

from .shiviz import (
    DELIMITER_PATTERN,
    RECORD_PATTERN,
    SHIVIZ_DELIMITER,
    SHIVIZ_REGEX,
    ExportResult,
    Record,
    Run,
    check_run,
    format_clock,
    format_record,
    merge_logs,
    order_records,
    parse_records,
    parse_runs,
)
from .tracer import ClockFilter, Encoding, Tracer, TracerHandler, UnpackError

__all__ = [
    "DELIMITER_PATTERN",
    "RECORD_PATTERN",
    "SHIVIZ_DELIMITER",
    "SHIVIZ_REGEX",
    "ClockFilter",
    "Encoding",
    "ExportResult",
    "Record",
    "Run",
    "Tracer",
    "TracerHandler",
    "UnpackError",
    "check_run",
    "format_clock",
    "format_record",
    "merge_logs",
    "order_records",
    "parse_records",
    "parse_runs",
]
