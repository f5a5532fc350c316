"""What :func:`~vclock.tools.checker.check` returns, and how it reads as text.

The rule names (:data:`RULES`), the report types and :func:`format_report`. What
the rules mean, and the model of a run behind them, is in the docstring of
:mod:`vclock.tools.checker.graph`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "REPORT_LIMIT",
    "RULES",
    "CheckReport",
    "EventRef",
    "Summary",
    "Violation",
    "format_report",
    "plural",
]

#: Rule name -> what it checks. The names are stable: tests and tools match on them.
RULES: dict[str, str] = {
    "own-entry": "each causal event raises the process's own entry by exactly one",
    "clock-regressed": "no entry of a process's clock goes down",
    "annotation-clock": "join and leave carry the clock unchanged",
    "unmatched-receive": "every receive has its send (every sync-receive its sync)",
    "receive-clock": "a receive's clock is >= the clock sent",
    "sync-frontier": "a sync's frontier is the max of the clocks the server received",
    "start-frontier": "a server restores only clocks that clients sent",
    "duplicate-message": "a message is sent once and received at most once by each process",
    "malformed": "records have the fields their kind needs",
    "cycle": "happened-before has no cycle",
    "causality": "e happened before f iff V(e) < V(f)",
    "fifo": "messages from one sender to one receiver are delivered in send order",
    "causal-delivery": "messages are delivered in an order consistent with happened-before",
    "torn-line": "a log's last line is whole (a warning: a crash may cut it off; it is left out)",
}

#: How many violations and warnings :func:`format_report` lists.
REPORT_LIMIT = 50


@dataclass(frozen=True, slots=True)
class EventRef:
    """Where an event is: file name and line, plus enough to recognize it.

    Events given as a list (not files) are numbered as if each process's events
    were written to ``<pid>.jsonl``, one per line.
    """

    file: str
    line: int
    pid: str
    kind: str
    msg: str | None = None

    def __str__(self) -> str:
        what = f"{self.pid} {self.kind}" + (f" {self.msg}" if self.msg else "")
        return f"{self.file}:{self.line} ({what})"


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str  # a key of RULES
    message: str  # names the events, e.g. "B.jsonl:12 (B receive A#3)"
    events: list[EventRef] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Summary:
    processes: int  # client processes
    events: int  # client causal events
    messages: int  # client sends, reports to the server included
    receives: int  # client receive events
    syncs: int  # client sync-receive events
    concurrent_pairs: int | None  # unordered pairs of concurrent client events; None on a cycle
    server_log: bool  # whether the logs include the server's


@dataclass(frozen=True, slots=True)
class CheckReport:
    """The outcome of :func:`~vclock.tools.checker.check`.

    ``violations`` fail the check. ``delivery_violations`` holds every
    causal-delivery finding; they are in ``violations`` too when the check was run
    with ``require_causal_delivery=True``, and in ``warnings`` otherwise.
    """

    violations: list[Violation]
    delivery_violations: list[Violation]
    summary: Summary
    require_causal_delivery: bool = False
    #: ``torn-line`` findings: last lines a crash cut off, left out of the check.
    log_warnings: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def warnings(self) -> list[Violation]:
        delivery = [] if self.require_causal_delivery else self.delivery_violations
        return [*self.log_warnings, *delivery]


def format_report(report: CheckReport) -> str:
    """The report as plain text: the verdict first, then counts, then findings."""
    s = report.summary
    warnings = report.warnings
    if report.ok:
        verdict = "OK: causally consistent"
        if not s.events:
            verdict += " (no causal events)"
        elif warnings:
            verdict += f" ({plural(len(warnings), 'warning')})"
    else:
        verdict = f"FAILED: {plural(len(report.violations), 'violation')}"
    pairs = "n/a (cycle)" if s.concurrent_pairs is None else str(s.concurrent_pairs)
    lines = [
        verdict,
        f"  processes         {s.processes}",
        f"  events            {s.events}",
        f"  messages          {s.messages}",
        f"  receives          {s.receives}",
        f"  syncs             {s.syncs}",
        f"  concurrent pairs  {pairs}",
        f"  server log        {'yes' if s.server_log else 'no (sync-receives checked by clock)'}",
    ]
    room = REPORT_LIMIT
    for title, items in (("Violations:", report.violations), ("Warnings:", warnings)):
        if not items:
            continue
        lines.append(title)
        if title == "Warnings:" and any(w.rule == "causal-delivery" for w in items):
            lines.append(
                "  (causal delivery is not guaranteed by vclock, only per-sender FIFO;"
                " check with require_causal_delivery to fail on these)"
            )
        shown = items[: max(room, 0)]
        lines += [f"  [{v.rule}] {v.message}" for v in shown]
        room -= len(shown)
        if len(items) > len(shown):
            lines.append(f"  ... and {len(items) - len(shown)} more")
    return "\n".join(lines)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
