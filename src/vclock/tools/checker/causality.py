"""The rules on the happened-before graph: ``cycle``, ``causality`` (the core
check), ``fifo`` and ``causal-delivery``.

Each reads the graph timestamps of :class:`~.graph.HappenedBefore`; how they do it
("How the core check works") and what the rules mean is in the docstring of
:mod:`vclock.tools.checker.graph`.
"""

from __future__ import annotations

from ...events import EVERYONE
from .graph import HappenedBefore
from .records import Rec, below, fmt, unique_recs, violation
from .report import Violation, plural

__all__ = ["causality_violations", "cycle_violations", "delivery_violations"]


def cycle_violations(graph: HappenedBefore) -> list[Violation]:
    """One ``cycle`` violation naming a cycle, if the graph has any."""
    if not graph.stuck:
        return []
    # Every stuck node has a stuck predecessor: walk back until a node repeats.
    seen: dict[int, int] = {}
    path: list[int] = []
    node = graph.stuck[0]
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(p for p in graph.preds[node] if graph.counts[p] is None)
    loop = path[seen[node] :][::-1]  # forward order
    loop.append(loop[0])
    steps = [str(graph.nodes[loop[0]])]
    for a, b in zip(loop, loop[1:], strict=False):
        arrow = " -(its clock)-> " if (a, b) in graph.implied else " -> "
        steps.append(arrow + str(graph.nodes[b]))
    return [
        violation(
            "cycle",
            f"happened-before has a cycle: {''.join(steps)}; {plural(len(graph.stuck), 'event')}"
            f" on or after it are not checked against their causal past",
            *(graph.nodes[n] for n in loop[:-1]),
        )
    ]


# The core check


def causality_violations(graph: HappenedBefore) -> list[Violation]:
    """A ``causality`` violation for each client event whose clock is not the one its
    causal past gives; the first also names a witness pair."""
    found: list[Violation] = []
    witnessed = False
    for causal in graph.causal:
        for rec in causal:
            vector = graph.counts[rec.node]
            if vector is None:  # on or after a cycle
                continue
            expected = graph.expected(vector)
            if expected == rec.clock:
                continue
            message, involved = _difference(graph, rec, expected)
            if not witnessed:
                witnessed = True
                witness = _witness(graph, rec, expected)
                if witness is not None:
                    a, b, ordered = witness
                    message += f". Witness: {a} " + (
                        f"happened before {b}, but {fmt(a.clock)} is not below"
                        if ordered
                        else f"did not happen before {b}, but {fmt(a.clock)} is below"
                    )
                    message += f" {fmt(b.clock)}"
                    involved += [a, b]
            found.append(violation("causality", message, *unique_recs(involved)))
    return found


def _difference(graph: HappenedBefore, rec: Rec, expected: dict[str, int]) -> tuple[str, list[Rec]]:
    """Say which entries of ``rec``'s clock differ from ``expected``, naming events."""
    parts: list[str] = []
    involved = [rec]
    for q in sorted(expected.keys() | rec.clock.keys()):
        got, want = rec.clock.get(q, 0), expected.get(q, 0)
        if got == want:
            continue
        proc = graph.proc(q)
        other = graph.by_own[proc].get(max(got, want)) if proc is not None else None
        if other is not None:
            involved.append(other)
        if got > want and other is not None:
            parts.append(f"{q}:{got}, but {other} is not in its past (only {q}:{want} is)")
        elif got > want:
            parts.append(
                f"{q}:{got}, but no event of {q} has own entry {got}"
                f" (only {q}:{want} happened before it)"
            )
        elif other is not None:
            parts.append(f"{q}:{got}, but {other} ({q}:{want}) happened before it")
        else:
            parts.append(f"{q}:{got}, but {q}:{want} happened before it")
    message = f"{rec}: clock {fmt(rec.clock)} disagrees with its causal past: "
    return message + "; ".join(parts), involved


def _witness(
    graph: HappenedBefore, rec: Rec, expected: dict[str, int]
) -> tuple[Rec, Rec, bool] | None:
    """A pair (a, b), one of them ``rec``, where "a happened before b" and
    "V(a) < V(b)" disagree; the processes whose entries differ are tried first.
    O(events x processes), so it is only run once."""
    differ = [
        q
        for q in sorted(expected.keys() | rec.clock.keys())
        if expected.get(q, 0) != rec.clock.get(q, 0)
    ]
    near = [graph.proc(q) for q in differ]
    order = [p for p in near if p is not None]
    order += [p for p in range(len(graph.pids)) if p not in order]
    for proc in order:
        for other in graph.causal[proc]:
            if other is rec or graph.counts[other.node] is None:
                continue
            for a, b in ((other, rec), (rec, other)):
                ordered = graph.ordered(a, b)
                if ordered != below(a.clock, b.clock):
                    return a, b, ordered
    return None


# Delivery order


def delivery_violations(
    graph: HappenedBefore,
    deliveries: list[list[tuple[Rec, Rec]]],
    *,
    broadcasts_only: bool = False,
) -> tuple[list[Violation], list[Violation]]:
    """The ``fifo`` and the ``causal-delivery`` violations of each process's
    ``deliveries`` ((receive, send) pairs, in delivery order)."""
    fifo: list[Violation] = []
    delivery: list[Violation] = []
    width = len(graph.pids)
    for taken in deliveries:
        # (sender, broadcast?) -> its latest delivery: FIFO per stream
        latest: dict[tuple[int, bool], tuple[Rec, Rec]] = {}
        known = [0] * width  # furthest event of each process in a delivered send's past
        known_by: list[tuple[Rec, Rec] | None] = [None] * width
        for receive, send in taken:
            vector = graph.counts[send.node]
            if vector is None or graph.counts[receive.node] is None:
                continue
            sender = send.proc
            stream = (sender, send.event.peer == EVERYONE)
            last = latest.get(stream)
            scoped = stream[1] or not broadcasts_only
            if last is not None and send.pos < last[1].pos:
                fifo.append(
                    violation(
                        "fifo",
                        f"{receive} comes after {last[0]}, but {send} was sent before {last[1]}",
                        receive,
                        send,
                        *last,
                    )
                )
            elif scoped and known[sender] >= send.pos:
                earlier = known_by[sender]
                assert earlier is not None
                delivery.append(
                    violation(
                        "causal-delivery",
                        f"{receive} comes after {earlier[0]}, but {send} happened before"
                        f" {earlier[1]}",
                        receive,
                        send,
                        *earlier,
                    )
                )
            if last is None or send.pos > last[1].pos:
                latest[stream] = (receive, send)
            if not scoped:
                continue
            for proc in range(width):
                if vector[proc] > known[proc]:
                    known[proc] = vector[proc]
                    known_by[proc] = (receive, send)
    return fifo, delivery
