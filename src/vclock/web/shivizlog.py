"""The dashboard's ShiViz log: the client events the server saw, in GoVector's format.

ShiViz wants every event of a host, numbered 1, 2, 3 with no gap. The server sees
only a client's sends and reports, so each event number it did not see (a local
event or a receive of that client) is written as an ``unseen`` event, whose clock is
the last one known before it with the own entry counted up: a lower bound of the
real clock. The gaps are filled as they show (a send numbered 7 after one numbered
4: events 5 and 6 were not seen), so the log is kept as text, record by record,
formatted with :func:`vclock.tracing.format_record`, in a budget of bytes: a clock
of 100 entries makes a record of more than a kilobyte.

Only the first ``max_bytes`` are kept (a prefix of a run loads in ShiViz; a window
of it would not). A gap too large to fill within the budget is left as it is,
and counted: ShiViz refuses such a log, :func:`vclock.tracing.parse_runs` does not.

ShiViz names a host by a run of non-blank characters, so an id with whitespace
(which a clock may hold, though a hello id may not) cannot appear in the log: its
entries are left out of every clock and its events are not recorded, and both are
counted in ``unnamed``. Writing them would make every download fail, not just one.
"""

from __future__ import annotations

from ..clock import VectorClock
from ..tracing import SHIVIZ_REGEX, format_record
from ..tracing.shiviz import is_host_name

__all__ = ["ShivizLog"]

UNSEEN = "unseen: a local event or a receive of {host} (the server sees only sends)"
_OVERHEAD = 100  # bytes of bookkeeping per record, besides its text


class ShivizLog:
    """Records the client events the server saw, for a ShiViz download."""

    def __init__(self, max_bytes: int = 16 << 20) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.max_bytes = max_bytes
        self.size = 0  # bytes used, bookkeeping included
        self.events = 0  # events seen and kept
        self.unseen = 0  # events written as unseen
        self.dropped = 0  # events seen after the log was full
        self.gaps = 0  # gaps too large to fill
        self.unnamed = 0  # events and clock entries left out: ids with whitespace
        self.full = False
        self._records: list[tuple[int, str, str]] = []  # (sum of the clock, host, text)
        self._last: dict[str, VectorClock] = {}  # per host: the clock of its last record
        self._mentioned: dict[str, int] = {}  # per host: the largest count a clock has of it

    def add(self, host: str, clock: VectorClock, description: str) -> None:
        """Record an event of ``host`` (a send or a report) with the clock it carried."""
        if self.full:
            self.dropped += 1
            return
        if not is_host_name(host):
            self.unnamed += 1
            return
        clock = self._nameable(clock)
        last = self._last.get(host, VectorClock())
        own = clock[host]
        if own <= last[host]:
            return  # not new (the hub passes each frame once; this is only a guard)
        record = (_total(clock), host, format_record(host, clock, description))
        cost = len(record[2]) + _OVERHEAD
        if self.size + cost > self.max_bytes:
            self.full = True
            self.dropped += 1
            return
        fill = self._fill(host, last, own, self.max_bytes - self.size - cost)
        if fill is None:
            self.gaps += 1
            fill = []
        self._records += fill
        self._records.append(record)
        self.size += cost + sum(len(text) + _OVERHEAD for _, _, text in fill)
        self.unseen += len(fill)
        self.events += 1
        self._last[host] = clock
        for pid, count in clock.items():
            if count > self._mentioned.get(pid, 0):
                self._mentioned[pid] = count

    def text(self) -> str:
        """The log, with the two-line header ShiViz's upload reads, in an order that
        respects happened-before (:func:`vclock.tracing.order_records`' order: by the
        sum of the clock, then host). Hosts that other clocks count events of beyond
        the last one seen (a log that filled up, clocks from before the dashboard
        started) get those events as ``unseen`` too, within the budget."""
        tail: list[tuple[int, str, str]] = []
        room = self.max_bytes - self.size
        for host in sorted(self._mentioned):
            last = self._last.get(host, VectorClock())
            fill = self._fill(host, last, self._mentioned[host] + 1, room)
            if fill:
                tail += fill
                room -= sum(len(text) + _OVERHEAD for _, _, text in fill)
        records = sorted(self._records + tail, key=lambda r: (r[0], r[1]))
        return f"{SHIVIZ_REGEX}\n\n" + "".join(text for _, _, text in records)

    def _nameable(self, clock: VectorClock) -> VectorClock:
        """``clock`` without the entries of ids ShiViz cannot name (counted)."""
        bad = [pid for pid, _ in clock.items() if not is_host_name(pid)]
        if not bad:
            return clock
        self.unnamed += len(bad)
        entries = clock.to_dict()
        for pid in bad:
            del entries[pid]
        return VectorClock(entries)

    def _fill(
        self, host: str, last: VectorClock, own: int, room: int
    ) -> list[tuple[int, str, str]] | None:
        """Unseen events of ``host`` between ``last`` and its event number ``own``;
        None when they do not fit in ``room`` bytes."""
        start = last[host] + 1
        if own - start <= 0:
            return []
        text = format_record(host, _with(last, host, start), UNSEEN.format(host=host))
        if (own - start) * (len(text) + _OVERHEAD) > room:
            return None
        out = []
        for count in range(start, own):
            clock = _with(last, host, count)
            out.append((_total(clock), host, format_record(host, clock, UNSEEN.format(host=host))))
        return out


def _with(clock: VectorClock, host: str, count: int) -> VectorClock:
    return VectorClock({**clock.to_dict(), host: count})


def _total(clock: VectorClock) -> int:
    return sum(count for _, count in clock.items())
