"""The rules on records and messages, and the checker that runs every rule.

Per process: ``own-entry``, ``clock-regressed``, ``annotation-clock`` and unknown
kinds (``malformed``). Per message: ``malformed``, ``duplicate-message``,
``unmatched-receive``, ``receive-clock`` and ``sync-frontier``. The rules on the
graph (``cycle``, ``causality``, ``fifo``, ``causal-delivery``) are in
:mod:`.causality`. What each rule means, and the model of a run, is in the
docstring of :mod:`vclock.tools.checker.graph`.
"""

from __future__ import annotations

from ...events import ANNOTATION_KINDS, CAUSAL_KINDS, EVERYONE, SERVER_ID, SERVER_KINDS
from .causality import causality_violations, cycle_violations, delivery_violations
from .graph import HappenedBefore
from .records import Rec, fmt, fmt_entries, merge_into, violation
from .report import CheckReport, Violation

__all__ = ["Checker"]


class Checker:
    """Runs every rule on one run's records: build with them, then :meth:`run`."""

    def __init__(self, records: list[Rec], *, broadcasts_only: bool = False) -> None:
        self.broadcasts_only = broadcasts_only
        self.graph = HappenedBefore(records)
        self.violations: list[Violation] = []
        # per process, (receive, send) of each message it took, in order
        self.deliveries: list[list[tuple[Rec, Rec]]] = [[] for _ in self.graph.pids]

    def fail(self, rule: str, message: str, *events: Rec) -> None:
        self.violations.append(violation(rule, message, *events))

    def run(self, require_causal_delivery: bool) -> CheckReport:
        graph = self.graph
        for proc in range(len(graph.pids)):
            self._check_process(proc)
        self._check_messages()
        self._check_receives()
        self.violations += cycle_violations(graph)
        self.violations += causality_violations(graph)
        fifo, delivery = delivery_violations(
            graph, self.deliveries, broadcasts_only=self.broadcasts_only
        )
        self.violations += fifo
        violations = sorted(self.violations, key=_where)
        delivery = sorted(delivery, key=_where)
        if require_causal_delivery:
            violations = sorted(violations + delivery, key=_where)
        return CheckReport(violations, delivery, graph.summary(), require_causal_delivery)

    # Per process: own entry, monotonicity, annotations

    def _check_process(self, proc: int) -> None:
        graph = self.graph
        pid = graph.pids[proc]
        start = graph.start[proc]  # a first join or leave: the clock resumed from
        prev: Rec | None = None  # previous causal event
        clock = start.clock if start is not None else None  # the process's clock so far
        base = start.own if start is not None else 0
        for rec in graph.records[proc]:
            if rec is start:
                continue
            if rec.kind in ANNOTATION_KINDS:
                if rec.clock != (clock or {}):
                    self.fail(
                        "annotation-clock",
                        f"{rec}: a {rec.kind} carries {fmt(rec.clock)}, but the clock was"
                        f" {fmt(clock or {})} (join and leave carry the clock unchanged)",
                        rec,
                    )
                continue
            if rec.kind not in CAUSAL_KINDS:
                self.fail("malformed", f"{rec}: unknown kind {rec.kind!r}", rec)
                continue
            before = prev.own if prev is not None else base
            if rec.own != before + 1:
                how = "repeats" if rec.own == before else "skips" if rec.own > before else "lowers"
                if prev is not None:
                    after = f"{pid}:{before} at {prev}"
                else:
                    after = "the start" if not base else f"{pid}:{base} at the join"
                self.fail(
                    "own-entry",
                    f"{rec}: own entry {pid}:{rec.own} {how} the count; expected {before + 1}"
                    f" (one more than {after})",
                    rec,
                    *([prev] if prev is not None else []),
                )
            if clock:
                down = {q: n for q, n in clock.items() if q != pid and rec.clock.get(q, 0) < n}
                if down:
                    was = prev if prev is not None else graph.records[proc][0]
                    self.fail(
                        "clock-regressed",
                        f"{rec}: clock {fmt(rec.clock)} went down from {fmt(clock)} at {was}"
                        f" in {fmt_entries(down, rec.clock)}",
                        rec,
                        was,
                    )
            clock = rec.clock
            prev = rec

    # Messages: their ids, then each receive against its send

    def _check_messages(self) -> None:
        graph = self.graph
        for causal in graph.causal:
            for rec in causal:
                if rec.kind != "send":
                    continue
                if not rec.msg or not rec.event.peer:
                    self.fail("malformed", f"{rec}: a send needs a msg and a peer", rec)
                    continue
                if rec.msg != f"{rec.pid}#{rec.own}":
                    self.fail(
                        "malformed",
                        f"{rec}: msg {rec.msg} should name the sender's own entry,"
                        f" {rec.pid}#{rec.own}",
                        rec,
                    )
                self._unique(graph.sends, rec)
        for rec in graph.server:
            if rec.kind not in SERVER_KINDS:
                self.fail("malformed", f"{rec}: unknown server kind {rec.kind!r}", rec)
            elif rec.kind == "sync":
                if not rec.msg:
                    self.fail("malformed", f"{rec}: a sync needs a msg", rec)
                else:
                    run = graph.server_run[id(rec)]  # a sync id is unique in its run
                    first = next(s for s in graph.syncs[rec.msg] if graph.server_run[id(s)] == run)
                    if first is not rec:
                        self.fail(
                            "duplicate-message",
                            f"{rec}: {rec.msg} was already sent by {first}",
                            rec,
                            first,
                        )

    def _unique(self, index: dict[str, Rec], rec: Rec) -> None:
        assert rec.msg is not None
        first = index[rec.msg]
        if first is not rec:
            self.fail(
                "duplicate-message", f"{rec}: {rec.msg} was already sent by {first}", rec, first
            )

    def _check_receives(self) -> None:
        for causal in self.graph.causal:
            received: set[str] = set()
            for rec in causal:
                if rec.kind == "receive":
                    self._client_receive(rec, received)
                elif rec.kind == "sync-receive":
                    self._sync_receive(rec, received)
        self._server_records()

    def _client_receive(self, rec: Rec, received: set[str]) -> None:
        if not rec.msg or not rec.event.peer:
            self.fail("malformed", f"{rec}: a receive needs a msg and a peer", rec)
            return
        send = rec.source
        if send is None:
            self.fail("unmatched-receive", f"{rec}: no send of {rec.msg} in the logs", rec)
            return
        if rec.event.peer != send.pid:
            self.fail(
                "malformed", f"{rec}: peer {rec.event.peer} is not the sender of {send}", rec, send
            )
        if send.event.peer == EVERYONE and send.pid == rec.pid:
            self.fail("unmatched-receive", f"{rec}: {send} was its own broadcast", rec, send)
        elif send.event.peer not in (rec.pid, EVERYONE):
            to = (
                "a report to the server"
                if send.event.peer == SERVER_ID
                else f"to {send.event.peer}"
            )
            self.fail("unmatched-receive", f"{rec}: {send} was {to}, not to {rec.pid}", rec, send)
        elif rec.msg in received:
            self.fail("duplicate-message", f"{rec}: {rec.msg} was received twice", rec, send)
        else:
            received.add(rec.msg)
            self.deliveries[rec.proc].append((rec, send))
        self._not_below(rec, send, "the clock sent by")

    def _sync_receive(self, rec: Rec, received: set[str]) -> None:
        if not self.graph.has_server:
            return  # checked by its clock alone
        sync = rec.source
        if sync is None:
            self.fail("unmatched-receive", f"{rec}: no sync {rec.msg} in the server log", rec)
            return
        if sync.event.to is not None and rec.pid not in sync.event.to:
            self.fail(
                "unmatched-receive",
                f"{rec}: {sync} was sent to {', '.join(sync.event.to) or 'nobody'},"
                f" not to {rec.pid}",
                rec,
                sync,
            )
        else:
            key = f"{rec.msg} of server run {self.graph.server_run[id(sync)]}"
            if key in received:
                self.fail("duplicate-message", f"{rec}: {rec.msg} was received twice", rec, sync)
            received.add(key)
        self._not_below(rec, sync, "the frontier of")

    def _server_records(self) -> None:
        frontier: dict[str, int] = {}
        received: set[str] = set()
        sent: dict[str, int] = {}  # the max of every clock any client sent
        for proc in self.graph.records:
            for rec in proc:
                if rec.kind == "send":
                    merge_into(sent, rec.clock)
        for rec in self.graph.server:
            if rec.kind == "start":
                # A (re)start: from here the frontier is what the server restored.
                # It may know more than its log says (a crash between storing a
                # frame and logging it), never more than some client sent.
                invented = {q: n for q, n in rec.clock.items() if n > sent.get(q, 0)}
                if invented:
                    self.fail(
                        "start-frontier",
                        f"{rec}: restored {fmt(invented)}, which no client sent",
                        rec,
                    )
                frontier = dict(rec.clock)
            elif rec.kind == "receive":
                send = rec.source
                if send is None:
                    self.fail("unmatched-receive", f"{rec}: no send of {rec.msg} in the logs", rec)
                else:
                    if rec.msg in received:
                        self.fail(
                            "duplicate-message", f"{rec}: {rec.msg} was received twice", rec, send
                        )
                    if rec.clock != send.clock:
                        self.fail(
                            "receive-clock",
                            f"{rec}: the server logged {fmt(rec.clock)}, but {send} sent"
                            f" {fmt(send.clock)}",
                            rec,
                            send,
                        )
                received.add(rec.msg or "")
                merge_into(frontier, rec.clock)
            elif rec.kind == "sync" and rec.clock != frontier:
                self.fail(
                    "sync-frontier",
                    f"{rec}: frontier {fmt(rec.clock)} is not {fmt(frontier)}, the max of the"
                    f" clocks the server had received",
                    rec,
                )

    def _not_below(self, rec: Rec, source: Rec, what: str) -> None:
        low = {q: n for q, n in source.clock.items() if rec.clock.get(q, 0) < n}
        if low:
            self.fail(
                "receive-clock",
                f"{rec}: clock {fmt(rec.clock)} is below {what} {source} {fmt(source.clock)}:"
                + ", ".join(
                    f" {q}:{rec.clock.get(q, 0)} < {q}:{n}" for q, n in sorted(low.items())
                ),
                rec,
                source,
            )


def _where(found: Violation) -> tuple[str, int]:
    if not found.events:
        return ("", 0)
    ref = found.events[0]
    return (ref.file, ref.line)
