"""Vector clocks: a sparse, immutable map from process id to event counter.

A :class:`VectorClock` is **immutable**. Every operation (:meth:`~VectorClock.tick`,
:meth:`~VectorClock.merge`, :meth:`~VectorClock.receive`) returns a new clock, so a
clock can be shared, stored in a frame, used as a dict key or put in a set without
anyone corrupting anyone else's copy through aliasing. The input mapping is copied.

A missing entry reads as 0, and zero entries are dropped, so ``{"A": 0}`` and ``{}``
are the same clock (equal, with equal hashes and the same JSON form).

Comparison operators follow the happened-before partial order: ``a < b`` means the
event stamped ``a`` happened before the one stamped ``b``; when neither ``a <= b`` nor
``b <= a`` the two are concurrent. Because the order is partial, ``not a < b`` does
not imply ``a >= b``; use :meth:`~VectorClock.compare` to get the full answer.

This module does no I/O and reads no time.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from .errors import InvalidClock

__all__ = ["ClockLimits", "DEFAULT_LIMITS", "Ordering", "VectorClock"]


class Ordering(enum.Enum):
    """How two clocks relate: the result of ``a.compare(b)``."""

    BEFORE = "before"  # a < b: a happened before b
    AFTER = "after"  # a > b: b happened before a
    EQUAL = "equal"
    CONCURRENT = "concurrent"


@dataclass(frozen=True, slots=True)
class ClockLimits:
    """Bounds applied when a clock is built from outside data.

    Operations between valid clocks (merge, tick) are not re-checked: a frontier
    legitimately holds one entry per process ever seen.
    """

    max_entries: int = 65_536
    max_id_length: int = 64
    max_counter: int = 2**63 - 1  # fits a signed 64-bit integer in any language


DEFAULT_LIMITS = ClockLimits()
"""The limits a clock from outside data is checked against unless told otherwise."""

_json_decoder = msgspec.json.Decoder()


class VectorClock(Mapping[str, int]):
    """An immutable vector clock. See the module docstring for the semantics.

    Args:
        entries: process id → counter. Ids are non-empty strings, counters integers >= 0.
        limits: bounds on the number of entries, id length and counter size.

    Raises:
        InvalidClock: an id or counter of the wrong type or value, or a limit exceeded.
    """

    __slots__ = ("_entries", "_hash", "_total")

    _entries: dict[str, int]
    # Computed when first asked for (hash(), .total), so a new clock sets one slot,
    # not three: tick and merge make a clock per call (issue 14, item 4). Until
    # then the slot is unset (AttributeError), or None where a subclass says so.
    _hash: int | None
    _total: int | None

    def __init__(
        self, entries: Mapping[str, int] | None = None, *, limits: ClockLimits = DEFAULT_LIMITS
    ) -> None:
        self._entries = _validated({} if entries is None else entries, limits)

    @classmethod
    def _trusted(cls, entries: dict[str, int], total: int | None = None) -> VectorClock:
        """Wrap a dict already known to be valid and zero-free; takes ownership of it."""
        clock = _new(cls)
        clock._entries = entries
        if total is not None:
            clock._total = total
        return clock

    # Reading

    def __getitem__(self, pid: str) -> int:
        """The counter of ``pid``; 0 for a process this clock has not heard of
        (a vector clock is zero everywhere else, so there is no KeyError)."""
        return self._entries.get(pid, 0)

    def __contains__(self, pid: object) -> bool:
        """Whether ``pid`` has a non-zero counter."""
        return pid in self._entries

    def get(self, pid: str, default: int | None = None) -> int | None:  # type: ignore[override]
        """The counter of ``pid`` if it is non-zero, else ``default``, as for a dict."""
        return self._entries.get(pid, default)

    def __iter__(self) -> Iterator[str]:
        """The ids with a non-zero counter, sorted."""
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        """The number of non-zero entries."""
        return len(self._entries)

    def items(self) -> list[tuple[str, int]]:  # type: ignore[override]
        """The non-zero ``(id, counter)`` pairs, sorted by id (a list, unlike a
        dict's view: the order is part of the clock's text forms)."""
        return sorted(self._entries.items())

    @property
    def total(self) -> int:
        """The sum of the entries: how many events this clock knows of.

        If ``a <= b`` then ``a == b`` exactly when ``a.total == b.total``, an O(1)
        test once computed (the hub uses it to find clients lacking the frontier).
        """
        try:
            total = self._total
        except AttributeError:
            total = None
        if total is None:
            total = self._total = sum(self._entries.values())
        return total

    def to_dict(self) -> dict[str, int]:
        """A fresh ``dict`` of the non-zero entries, sorted by id; yours to change."""
        return dict(self.items())

    # Operations, each returning a new clock

    def tick(self, pid: str) -> VectorClock:
        """The clock after one more event of process ``pid``."""
        entries = self._entries.copy()
        try:
            count = entries.get(pid)
        except TypeError:  # unhashable: no id
            count = None
        if count is None:  # an id new to the clock: check it (the others were)
            if not isinstance(pid, str) or not pid:
                raise InvalidClock(f"process id must be a non-empty string, got {pid!r}")
            count = 0
        entries[pid] = count + 1
        clock = _new(VectorClock)  # _trusted, inlined: tick is the hottest operation
        clock._entries = entries
        return clock

    def merge(self, other: VectorClock) -> VectorClock:
        """The pointwise maximum of the two clocks (their least upper bound)."""
        big, small = self._entries, other._entries
        if len(big) < len(small):
            big, small, self = small, big, other  # self: the clock that owns big
        entries = None  # copied at the first entry that grows: often none does
        for pid, count in small.items():
            # big.get, not a bound `get = big.get`: Python 3.11+ calls the method
            # without making a bound method each time; 50 ns less at 3 entries
            if count > big.get(pid, 0):
                if entries is None:
                    entries = big.copy()
                entries[pid] = count
        if entries is None:
            return self  # it had everything already; immutable, so it can be shared
        clock = _new(VectorClock)  # _trusted, inlined
        clock._entries = entries
        return clock

    def receive(self, other: VectorClock, pid: str) -> VectorClock:
        """The clock of process ``pid`` after receiving a message stamped ``other``."""
        return self.merge(other).tick(pid)

    # The happened-before order

    def compare(self, other: VectorClock) -> Ordering:
        """Whether this clock is BEFORE, AFTER, EQUAL to or CONCURRENT with ``other``."""
        if self._entries == other._entries:  # one C-level comparison
            return Ordering.EQUAL
        if self._le(other):
            return Ordering.BEFORE
        if other._le(self):
            return Ordering.AFTER
        return Ordering.CONCURRENT

    def concurrent(self, other: VectorClock) -> bool:
        """True when neither clock happened before the other, nor are they equal."""
        return self.compare(other) is Ordering.CONCURRENT

    def _le(self, other: VectorClock) -> bool:
        mine, theirs = self._entries, other._entries
        if len(mine) > len(theirs):
            return False  # some entry of ours is non-zero where theirs is zero
        for pid, count in mine.items():  # a loop, not all(<generator>): 2x faster when small
            if count > theirs.get(pid, 0):  # not a bound get: see merge
                return False
        return True

    def __le__(self, other: object) -> bool:
        if not isinstance(other, VectorClock):
            return NotImplemented
        return self._le(other)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, VectorClock):
            return NotImplemented
        return self._le(other) and self._entries != other._entries

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, VectorClock):
            return NotImplemented
        return other._le(self)

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, VectorClock):
            return NotImplemented
        return other._le(self) and self._entries != other._entries

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VectorClock):
            return NotImplemented
        return self._entries == other._entries

    def __hash__(self) -> int:
        try:
            value = self._hash
        except AttributeError:
            value = None
        if value is None:
            value = self._hash = hash(frozenset(self._entries.items()))
        return value

    # Text forms

    def to_json(self) -> str:
        """The GoVector/ShiViz form, ids sorted: ``{"A": 1, "B": 3}``."""
        body = ", ".join(f"{_json_string(pid)}: {count}" for pid, count in self.items())
        return "{" + body + "}"

    @classmethod
    def from_json(cls, text: str | bytes, *, limits: ClockLimits = DEFAULT_LIMITS) -> VectorClock:
        """Parse :meth:`to_json` output (any JSON object of id → counter).

        Raises:
            InvalidClock: not a JSON object, or a bad id, counter or limit.
        """
        try:
            data = _json_decoder.decode(text)
        except msgspec.DecodeError as exc:
            raise InvalidClock(f"not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidClock(f"a clock is a JSON object, got {type(data).__name__}")
        return cls(data, limits=limits)

    def __repr__(self) -> str:
        return f"VectorClock({self.to_json()})"

    def __str__(self) -> str:
        return self.to_json()


_new = object.__new__


def merge_all(clocks: Iterable[VectorClock]) -> VectorClock:
    """The pointwise maximum of any number of clocks (the empty clock for none)."""
    entries: dict[str, int] = {}
    for clock in clocks:
        for pid, count in clock._entries.items():
            if count > entries.get(pid, 0):
                entries[pid] = count
    return VectorClock._trusted(entries)


_INT = {int}


def _owned_entries(
    obj: dict[str, Any], limits: ClockLimits, *, keep_zeros: bool = False
) -> dict[str, int]:
    """The entries of a clock in ``obj``, a dict just decoded from JSON and owned by
    the caller (its keys are strings): ``obj`` itself when it is valid as it is,
    which is checked without a copy, else what :func:`_validated` makes of it (a
    clean copy, or the precise error). Every frame's clock comes through here.

    Raises:
        InvalidClock: as :func:`_validated`.
    """
    if len(obj) <= limits.max_entries:
        least = 0 if keep_zeros else 1
        if len(obj) <= 8:  # the usual clock: a loop beats the builtins' set-up
            longest, most = limits.max_id_length, limits.max_counter
            for pid, count in obj.items():
                if type(count) is not int or not least <= count <= most:
                    break
                if not pid or len(pid) > longest:
                    break
            else:
                return obj
        else:  # a large one: checked by builtins in C, not entry by entry in Python
            values = obj.values()
            if (
                set(map(type, values)) == _INT
                and min(values) >= least
                and max(values) <= limits.max_counter
                and "" not in obj
                and max(map(len, obj)) <= limits.max_id_length
            ):
                return obj
    return _validated(obj, limits, keep_zeros=keep_zeros)


def _validated(
    entries: Mapping[str, int], limits: ClockLimits, *, keep_zeros: bool = False
) -> dict[str, int]:
    if not isinstance(entries, Mapping):
        raise InvalidClock(f"a clock is a mapping of id to counter, got {type(entries).__name__}")
    if len(entries) > limits.max_entries:
        raise InvalidClock(
            f"clock has {len(entries)} entries, more than the limit of {limits.max_entries}"
        )
    clean: dict[str, int] = {}
    for pid, count in entries.items():
        if type(pid) is not str or not pid:
            raise InvalidClock(f"process id must be a non-empty string, got {pid!r}")
        if len(pid) > limits.max_id_length:
            raise InvalidClock(
                f"process id {pid[:20]!r}... is {len(pid)} characters long,"
                f" more than the limit of {limits.max_id_length}"
            )
        if type(count) is not int:
            raise InvalidClock(f"counter of {pid!r} must be an integer, got {count!r}")
        if count < 0 or count > limits.max_counter:
            raise InvalidClock(
                f"counter of {pid!r} must be between 0 and {limits.max_counter}, got {count}"
            )
        if count or keep_zeros:
            clean[pid] = count
    return clean


def _json_string(text: str) -> str:
    return msgspec.json.encode(text).decode()
