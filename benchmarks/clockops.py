"""Cell ``clock-ops``: tick, merge and compare, vclock vs vectorclock vs a dict.

Three implementations of the same operations on clocks of 3, 64 and 1,024 entries:

- ``vclock.VectorClock``: immutable; every operation returns a new clock.
- the PyPI ``vectorclock`` package (0.5.x): a mutable ``VectorClock(counts)`` with
  ``set_clock``/``get_clock``/``compare(other, tiebreak)``. It has no tick and no
  merge, so tick is ``set_clock(pid, get_clock(pid, 0) + 1)`` and merge is a
  ``set_clock`` for each larger entry of the other clock, both in place, the way
  its users write them. A second column times the same operations on a fresh copy
  (``VectorClock(vc.clocks)`` first), which is what vclock's immutable operations do.
- a plain-dict implementation written here, with vclock's semantics (new dicts,
  no class, no validation): the floor for pure Python.

The in-place merge has nothing left to raise after its first call (its clock
already holds the maximum): from then on it times the comparisons alone, as
vclock's merge does when the other clock adds nothing (it returns itself).
The copy column merges into a fresh copy each time.

Workloads: tick the clock's first id; merge two concurrent clocks (each larger in
half of the entries); compare a clock with its successor (one entry one higher),
which makes every implementation look at every entry.
"""

from __future__ import annotations

import random
import timeit
from collections.abc import Callable
from typing import Any

SIZES = (3, 64, 1024)
OPS = ("tick", "merge", "compare")


def dict_tick(clock: dict[str, int], pid: str) -> dict[str, int]:
    new = dict(clock)
    new[pid] = new.get(pid, 0) + 1
    return new


def dict_merge(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    if len(b) > len(a):
        a, b = b, a
    new = dict(a)
    for pid, count in b.items():
        if count > new.get(pid, 0):
            new[pid] = count
    return new


def dict_le(a: dict[str, int], b: dict[str, int]) -> bool:
    return len(a) <= len(b) and all(count <= b.get(pid, 0) for pid, count in a.items())


def dict_compare(a: dict[str, int], b: dict[str, int]) -> str:
    le, ge = dict_le(a, b), dict_le(b, a)
    if le and ge:
        return "equal"
    if le:
        return "before"
    if ge:
        return "after"
    return "concurrent"


def workloads(size: int, seed: int = 7) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """(a, concurrent with a, successor of a) as plain dicts."""
    rng = random.Random(seed + size)
    ids = [f"p{i:04d}" for i in range(size)]
    a = {pid: rng.randint(1, 1000) for pid in ids}
    concurrent = {pid: a[pid] + (1 if i % 2 else -1) for i, pid in enumerate(ids)}
    successor = dict(a)
    successor[ids[-1]] += 1
    return a, concurrent, successor


def callables(size: int) -> dict[str, dict[str, Callable[[], Any]]]:
    """implementation -> op -> a no-argument callable doing one operation."""
    from vectorclock import vectorclock  # type: ignore[import-untyped]  # class in a submodule

    from vclock import VectorClock

    a, conc, succ = workloads(size)
    pid = next(iter(a))
    va, vconc, vsucc = VectorClock(a), VectorClock(conc), VectorClock(succ)
    PVC = vectorclock.VectorClock
    # vectorclock's tick and merge change their clock: each op has its own, so
    # compare still sees ``a`` and its successor however often tick ran.
    pa, pa_merged, pa_compared = PVC(a), PVC(a), PVC(a)
    pconc, psucc = PVC(conc), PVC(succ)

    def p_tick(vc: Any = pa) -> None:
        vc.set_clock(pid, vc.get_clock(pid, 0) + 1)

    def p_merge(vc: Any = pa_merged, other: Any = pconc) -> None:
        for key, count in other.clocks.items():
            if count > vc.get_clock(key, 0):
                vc.set_clock(key, count)

    def p_tick_copy() -> None:
        vc = PVC(pa.clocks)
        vc.set_clock(pid, vc.get_clock(pid, 0) + 1)

    def p_merge_copy() -> None:
        vc = PVC(pa.clocks)
        for key, count in pconc.clocks.items():
            if count > vc.get_clock(key, 0):
                vc.set_clock(key, count)

    return {
        "vclock": {
            "tick": lambda: va.tick(pid),
            "merge": lambda: va.merge(vconc),
            "compare": lambda: va.compare(vsucc),
        },
        "vectorclock": {
            "tick": p_tick,
            "merge": p_merge,
            "compare": lambda: pa_compared.compare(psucc, False),
        },
        "vectorclock-copy": {
            "tick": p_tick_copy,
            "merge": p_merge_copy,
            "compare": lambda: pa_compared.compare(psucc, False),  # compare does not modify
        },
        "dict": {
            "tick": lambda: dict_tick(a, pid),
            "merge": lambda: dict_merge(a, conc),
            "compare": lambda: dict_compare(a, succ),
        },
    }


def time_ns_per_op(func: Callable[[], Any], *, target_s: float, repeat: int) -> float:
    """Best of ``repeat`` runs of a loop long enough to take ``target_s``; ns per call."""
    timer = timeit.Timer(func)
    number = 1
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= target_s / 5:
            break
        number *= 4
    number = max(1, int(number * target_s / max(elapsed, 1e-9)))
    best = min(timer.repeat(repeat=repeat, number=number))
    return best / number * 1e9


def run(quick: bool, step: Callable[[str], None]) -> dict[str, Any]:
    target_s, repeat = (0.01, 3) if quick else (0.1, 5)
    rows = []
    for size in SIZES:
        impls = callables(size)
        for op in OPS:
            step(f"{op}, {size} entries")
            ns = {
                name: time_ns_per_op(ops[op], target_s=target_s, repeat=repeat)
                for name, ops in impls.items()
            }
            rows.append({"op": op, "entries": size, "ns": ns})
    return {"rows": rows, "loop": {"target_s": target_s, "repeat": repeat}}
