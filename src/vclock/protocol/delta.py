"""Delta-encoded clocks (Singhal and Kshemkalyani's differential technique).

On a connection that negotiated ``delta`` in hello/welcome, every clock after
the welcome is sent as the entries that changed since the previous clock sent
on that connection, in that direction; an entry that disappeared is sent as 0.
This is exact because a TCP connection delivers in order: the receiver keeps
the previous clock and applies each delta to it. A new connection starts from
the empty clock again.

Unlike the original technique, a delta also carries entries that went *down*
(the server relays clocks of different senders on one connection), so it works
for any sequence of clocks, not only one process's growing clock.
"""

from __future__ import annotations

from typing import Any

from ..clock import ClockLimits, VectorClock, _new, _owned_entries
from ..errors import InvalidClock


class ClockDelta(VectorClock):
    """The changed entries of a clock; 0 means the entry is gone.

    A VectorClock subclass only so that msgspec accepts it in a frame's ``clock``
    field; it lives only inside a :class:`~vclock.protocol.Connection`, which
    replaces it with the full clock before anyone else sees the frame.
    """

    __slots__ = ()

    @classmethod
    def of(cls, entries: dict[str, int]) -> ClockDelta:
        delta = object.__new__(cls)
        delta._entries = entries
        return delta

    @classmethod
    def parse(cls, obj: dict[str, Any], limits: ClockLimits) -> ClockDelta:
        """Validate a dict just decoded from JSON as a delta (zeros allowed); it
        becomes the delta's own.

        Raises:
            InvalidClock: a bad id or counter, or too many entries.
        """
        return cls.of(_owned_entries(obj, limits, keep_zeros=True))

    @property
    def entries(self) -> dict[str, int]:
        return self._entries

    def __repr__(self) -> str:
        return f"ClockDelta({self._entries})"


_EMPTY = VectorClock()


class DeltaEncoder:
    """One direction of one connection, sending side."""

    def __init__(self) -> None:
        self.last = _EMPTY  # the previous clock sent; one shared empty clock at first

    def encode(self, clock: VectorClock) -> dict[str, int]:
        """The delta of ``clock``, which becomes the reference for the next one: the
        changed entries, 0 for a gone one, as a plain dict (msgspec writes a dict
        without calling the encoder's hook, in the frame's ``clock`` field)."""
        delta = self.peek(clock)
        self.last = clock
        return delta

    def peek(self, clock: VectorClock) -> dict[str, int]:
        """The delta :meth:`encode` would send, leaving the reference where it is."""
        entries = clock._entries
        last = self.last._entries
        delta = {pid: count for pid, count in entries.items() if last.get(pid) != count}
        if not entries.keys() >= last.keys():  # one C call; usually nothing is gone
            for pid in last.keys() - entries.keys():
                delta[pid] = 0
        return delta


class DeltaDecoder:
    """One direction of one connection, receiving side."""

    def __init__(self, limits: ClockLimits) -> None:
        self._last: dict[str, int] = {}
        self._limits = limits

    def decode(self, delta: ClockDelta) -> VectorClock:
        """The full clock.

        Raises:
            InvalidClock: the full clock would pass the entry limit.
        """
        changes = delta._entries
        full = self._last.copy()
        full.update(changes)  # in C; then the zeros (gone entries) out, if any
        if 0 in changes.values():
            for pid, count in changes.items():
                if not count:
                    del full[pid]
        if len(full) > self._limits.max_entries:
            raise InvalidClock(
                f"clock has {len(full)} entries, more than the limit of {self._limits.max_entries}"
            )
        self._last = full
        clock = _new(VectorClock)  # VectorClock._trusted, inlined: once per frame
        clock._entries = full
        return clock
