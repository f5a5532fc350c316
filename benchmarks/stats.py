"""Small statistics and formatting helpers shared by the cells."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(ordered: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile of already sorted values (nearest rank)."""
    if not ordered:
        raise ValueError("no values")
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return float(ordered[rank])


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing or ``b`` is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b
