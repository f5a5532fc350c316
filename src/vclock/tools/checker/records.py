"""The records the checker works on: each event of the logs with where it is.

:func:`load` reads a run's logs into :class:`Rec` objects; the helpers below
compare and print clocks for the rules' messages. The model of a run is in the
docstring of :mod:`vclock.tools.checker.graph`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from ...events import Event
from ..tracelog import Execution, read_trace
from .report import EventRef, Violation

__all__ = [
    "Rec",
    "below",
    "fmt",
    "fmt_entries",
    "load",
    "merge_into",
    "unique_recs",
    "violation",
]


class Rec:
    """One record, with what the checker learns about it."""

    __slots__ = ("ref", "event", "clock", "node", "proc", "pos", "source")

    def __init__(self, ref: EventRef, event: Event) -> None:
        self.ref = ref
        self.event = event
        self.clock = {pid: count for pid, count in event.clock.items() if count}
        self.node = -1  # index in the graph, -1 for annotations
        self.proc = -1  # index of the client process, -1 for the server
        self.pos = 0  # 1-based position among the process's causal events
        self.source: Rec | None = None  # a receive's send, a sync-receive's sync

    @property
    def pid(self) -> str:
        return self.event.pid

    @property
    def kind(self) -> str:
        return self.event.kind

    @property
    def msg(self) -> str | None:
        return self.event.msg

    @property
    def own(self) -> int:
        return self.clock.get(self.event.pid, 0)

    def __str__(self) -> str:
        return str(self.ref)


def load(
    source: str | Path | Execution | Iterable[Event], torn: list[Violation] | None = None
) -> list[Rec]:
    """The records of one execution: a log file or folder (in either format of
    :mod:`vclock.tools.tracelog`, holding one execution), an execution already
    read, or events (each process's in its order). A log's last line cut off by a
    crash is left out, with a ``torn-line`` finding appended to ``torn``."""
    records: list[Rec] = []
    if isinstance(source, str | Path):
        source = read_trace([source]).execution()
    if isinstance(source, Execution):
        for ref in source.torn:
            if torn is not None:
                torn.append(
                    Violation(
                        "torn-line",
                        f"{ref}: the last line was cut off (a crash while it was"
                        " written); that event is left out, the rest is checked",
                    )
                )
        for ref, event in zip(source.refs, source.events, strict=True):
            file, _, number = ref.rpartition(":")
            records.append(Rec(_ref(file, int(number), event), event))
    else:
        lines: dict[str, int] = {}
        for event in source:
            line = lines[event.pid] = lines.get(event.pid, 0) + 1
            records.append(Rec(_ref(f"{event.pid}.jsonl", line, event), event))
    return records


def _ref(file: str, line: int, event: Event) -> EventRef:
    return EventRef(file, line, event.pid, event.kind, event.msg)


def violation(rule: str, message: str, *events: Rec) -> Violation:
    return Violation(rule, message, [e.ref for e in events])


def fmt(clock: Mapping[str, int]) -> str:
    return "{" + ", ".join(f"{q}:{n}" for q, n in sorted(clock.items()) if n) + "}"


def fmt_entries(entries: Mapping[str, int], clock: Mapping[str, int]) -> str:
    return ", ".join(f"{q} ({n} -> {clock.get(q, 0)})" for q, n in sorted(entries.items()))


def merge_into(clock: dict[str, int], other: Mapping[str, int]) -> None:
    for q, n in other.items():
        if n > clock.get(q, 0):
            clock[q] = n


def below(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """V(a) < V(b), for zero-free clocks."""
    return a != b and all(n <= b.get(q, 0) for q, n in a.items())


def unique_recs(recs: list[Rec]) -> list[Rec]:
    seen: set[int] = set()
    out: list[Rec] = []
    for rec in recs:
        if id(rec) not in seen:
            seen.add(id(rec))
            out.append(rec)
    return out
