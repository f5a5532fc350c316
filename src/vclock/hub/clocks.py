"""The two clocks the hub changes with every message, kept in place.

The frontier (the pointwise maximum of every client's latest clock) and what
each client knows (every clock it sent, was sent or was synced to) grow with
every message. As immutable :class:`~vclock.clock.VectorClock` values each
merge copied the whole clock, the frontier's size, once per message for the
frontier and once for each of the two sessions: with 100 clients three copies
of 100 entries for a frame that raises one. Here each is one dict changed in
place, at the entries the frame raises: a message costs the entries of its own
clock, not the frontier's.

Both still hand out immutable clocks (:attr:`Frontier.clock`,
:attr:`Known.clock`), snapshots made when asked for, and never change a clock
someone else holds: :class:`Known` starts from a shared clock and copies it at
the first entry that grows (copy on write).
"""

from __future__ import annotations

from ..clock import VectorClock

_EMPTY = VectorClock()


class Frontier:
    """The pointwise maximum of every clock taken in (the hub's frontier F).

    ``entries`` is read by the hub and :class:`~vclock.hub.ids.IdLedger` and
    changed only by :meth:`raise_to`."""

    __slots__ = ("_clock", "entries", "total")

    def __init__(self, clock: VectorClock = _EMPTY) -> None:
        self.entries: dict[str, int] = dict(clock._entries)
        self.total = clock.total
        self._clock: VectorClock | None = clock

    @property
    def clock(self) -> VectorClock:
        """The frontier now, as an immutable clock (copied once per change)."""
        if self._clock is None:
            self._clock = VectorClock._trusted(dict(self.entries), self.total)
        return self._clock

    def gains(self, clock: VectorClock) -> dict[str, int]:
        """The entries of ``clock`` above the frontier."""
        get = self.entries.get
        return {pid: count for pid, count in clock._entries.items() if count > get(pid, 0)}

    def raise_to(self, gains: dict[str, int]) -> None:
        """Take in entries found by :meth:`gains` (each above the frontier)."""
        if not gains:
            return
        entries = self.entries
        total = self.total
        for pid, count in gains.items():
            total += count - entries.get(pid, 0)
            entries[pid] = count
        self.total = total
        self._clock = None


class Known:
    """What one client has or was sent: always at most the frontier, so it lacks
    part of the frontier exactly when the totals differ (the sync cycle's test).

    :meth:`reset` shares a clock (the frontier of a sync, the latest clock of a
    hello); the first :meth:`merge` that raises an entry copies it, later ones
    change the copy in place. The client's own clocks come through
    :meth:`sent`, which only keeps the latest: each dominates the ones before,
    so it is merged once, when :attr:`total` is next read (once a sync cycle),
    not once a message."""

    __slots__ = ("_entries", "_sent", "_shared", "_total")

    def __init__(self, clock: VectorClock = _EMPTY) -> None:
        self.reset(clock)

    def reset(self, clock: VectorClock) -> None:
        """It has ``clock`` now, and nothing more."""
        self._entries = clock._entries  # never changed while shared
        self._shared = True
        self._total = clock.total
        self._sent: VectorClock | None = None

    def sent(self, clock: VectorClock) -> None:
        """It sent ``clock``, its latest: at least every clock it sent before."""
        self._sent = clock

    def merge(self, clock: VectorClock) -> None:
        """It has (was sent) ``clock`` too."""
        mine = self._entries
        get = mine.get
        gained = 0
        for pid, count in clock._entries.items():
            have = get(pid, 0)
            if count > have:
                if self._shared:
                    mine = self._entries = dict(mine)
                    get = mine.get
                    self._shared = False
                mine[pid] = count
                gained += count - have
        self._total += gained

    @property
    def total(self) -> int:
        """The sum of its entries (what it knows, with what it sent)."""
        sent = self._sent
        if sent is not None:
            self._sent = None
            self.merge(sent)
        return self._total

    @property
    def clock(self) -> VectorClock:
        """What it knows, as an immutable clock (a copy)."""
        total = self.total  # takes in what it sent
        return VectorClock._trusted(dict(self._entries), total)
