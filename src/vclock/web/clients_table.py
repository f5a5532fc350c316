"""The dashboard's clients table and the panels beside it: the last sync cycle, the
rates and the refusals.

:class:`ClientsTable` is sans-I/O like the hub: :class:`vclock.web.LiveModel` tells
it what the hub did, with the time; nothing here reads a clock.

**A client's clock in the table is the last clock it reported** (in a send or a
report): ``latest[id]`` of the hub, the pointwise max of those clocks. The server
never sees a client's local events, nor its clock after a receive, so the client's
real clock may be ahead by those. ``sent`` is the max of every clock the server sent
it (deliveries and syncs).

Every change bumps :attr:`ClientsTable.version` and stamps the row it touched, so a
page is sent only the rows changed since its last update. The table keeps
``max_clients`` rows; clients that left go first.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..clock import VectorClock
from ..hub import SyncCycle

__all__ = ["RATE_NAMES", "ClientView", "ClientsTable", "RateMeter", "Refusal", "SyncView"]

#: Rates shown on the page: messages relayed, reports, deliveries, syncs sent, refusals.
RATE_NAMES = ("messages", "reports", "deliveries", "syncs", "cycles", "refused")


@dataclass(slots=True)
class ClientView:
    """One row of the clients table."""

    id: str
    address: str = ""
    connected: bool = True
    #: The last clock the client reported (its ``latest`` on the hub); its real
    #: clock may be ahead by local events and receives the server does not see.
    clock: VectorClock = field(default_factory=VectorClock)
    #: The max of every clock the server sent it (deliveries and syncs).
    sent: VectorClock = field(default_factory=VectorClock)
    sends: int = 0  # messages to peers
    reports: int = 0  # clocks to the server alone
    delivered: int = 0  # peer messages the server delivered to it
    syncs: int = 0
    refused: int = 0
    since: float = 0.0  # when it (last) joined
    heard: float | None = None  # when its last clock arrived
    version: int = 0  # the table's change counter at its last change


@dataclass(slots=True)
class SyncView:
    """The last synchronization cycle, and totals over the run."""

    cycle: int = 0
    at: float | None = None
    clients: int = 0
    frontier: VectorClock = field(default_factory=VectorClock)
    synced: tuple[str, ...] = ()
    cycles: int = 0  # cycles seen
    sent: int = 0  # syncs sent, over all cycles
    last_sent_cycle: int | None = None  # the last cycle that sent any


@dataclass(frozen=True, slots=True)
class Refusal:
    at: float
    who: str  # client id, or address before hello
    code: str
    message: str


class RateMeter:
    """Counts per whole second, over the last ``history`` seconds."""

    def __init__(self, names: Sequence[str], history: int = 60) -> None:
        self.names = tuple(names)
        self.history = history
        self._buckets: deque[tuple[int, dict[str, int]]] = deque()

    def add(self, name: str, now: float, n: int = 1) -> None:
        second = int(now)
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append((second, dict.fromkeys(self.names, 0)))
            while self._buckets and self._buckets[0][0] <= second - self.history:
                self._buckets.popleft()
        self._buckets[-1][1][name] += n

    def rates(self, now: float, window: int = 5) -> dict[str, float]:
        """Per second, over the last ``window`` whole seconds (the current one excluded)."""
        second = int(now)
        totals = dict.fromkeys(self.names, 0)
        for at, counts in self._buckets:
            if second - window <= at < second:
                for name, n in counts.items():
                    totals[name] += n
        return {name: round(total / window, 2) for name, total in totals.items()}

    def series(self, name: str, now: float) -> list[int]:
        """Counts of ``name`` in each of the last ``history`` whole seconds, oldest first."""
        second = int(now)
        by_second = {at: counts[name] for at, counts in self._buckets}
        return [by_second.get(at, 0) for at in range(second - self.history, second)]


class ClientsTable:
    """The clients, the last sync cycle, the rates and the refusals.

    Args:
        max_clients: rows kept; clients that left go first.
    """

    def __init__(self, *, max_clients: int = 1000) -> None:
        if max_clients < 1:
            raise ValueError("max_clients must be at least 1")
        self.max_clients = max_clients
        self.version = 0  # bumped by every change; rows carry the version of theirs
        self.clients: dict[str, ClientView] = {}
        self.sync = SyncView()
        self.rates = RateMeter(RATE_NAMES)
        self.refusals: deque[Refusal] = deque(maxlen=8)
        self.recent_cycles: deque[SyncCycle] = deque(maxlen=5)
        self.cycle_times: deque[float] = deque(maxlen=5)

    def rows(self, since: int = -1) -> list[ClientView]:
        """The clients, in the order they first appeared; only rows changed after
        version ``since`` when given."""
        return [row for row in self.clients.values() if row.version > since]

    def seed(self, clients: Iterable[str], latest: dict[str, VectorClock], now: float) -> None:
        """Start from a running server: its connected ``clients`` and ``latest`` clocks."""
        for client_id in clients:
            row = self.row(client_id)
            row.connected = True
            row.since = now
            row.clock = latest.get(client_id, VectorClock())

    # What the hub did

    def joined(self, client_id: str, address: str, now: float) -> ClientView:
        row = self.row(client_id)
        row.connected = True
        row.address = address
        row.since = now
        return row

    def left(self, client_id: str) -> ClientView:
        row = self.row(client_id)
        row.connected = False
        return row

    def received(self, client_id: str, clock: VectorClock, now: float, *, report: bool) -> None:
        """A send to a peer or to everyone, or (``report``) a clock for the server alone."""
        row = self.row(client_id)
        row.clock = row.clock.merge(clock)
        row.heard = now
        if report:
            row.reports += 1
            self.rates.add("reports", now)
        else:
            row.sends += 1
            self.rates.add("messages", now)

    def delivered(self, receiver: str, clock: VectorClock, now: float) -> None:
        """The server delivered a peer's message, carrying ``clock``, to ``receiver``."""
        row = self.row(receiver)
        row.delivered += 1
        row.sent = row.sent.merge(clock)
        self.rates.add("deliveries", now)

    def sync_cycle(self, cycle: SyncCycle, now: float) -> None:
        s = self.sync
        s.cycle, s.at, s.clients = cycle.cycle, now, cycle.clients
        s.frontier, s.synced = cycle.frontier, cycle.synced
        s.cycles += 1
        self.recent_cycles.append(cycle)
        self.cycle_times.append(now)
        self.rates.add("cycles", now)
        self.version += 1
        if not cycle.synced:
            return
        s.sent += len(cycle.synced)
        s.last_sent_cycle = cycle.cycle
        self.rates.add("syncs", now, len(cycle.synced))
        for client_id in cycle.synced:
            row = self.row(client_id)
            row.syncs += 1
            row.sent = row.sent.merge(cycle.frontier)

    def refused(self, who: str | None, address: str, code: str, message: str, now: float) -> None:
        """The server refused a frame of client ``who`` (None before its hello: ``address``)."""
        if who is not None and who in self.clients:
            self.row(who).refused += 1
        self.refusals.append(Refusal(now, who or address, code, message))
        self.rates.add("refused", now)
        self.version += 1

    # Bookkeeping

    def row(self, client_id: str) -> ClientView:
        """The row of ``client_id`` (a new one if need be), stamped as changed."""
        self.version += 1
        row = self.clients.get(client_id)
        if row is None:
            row = self.clients[client_id] = ClientView(client_id)
            if len(self.clients) > self.max_clients:
                self._forget_a_client()
        row.version = self.version
        return row

    def _forget_a_client(self) -> None:
        gone = next((r.id for r in self.clients.values() if not r.connected), None)
        if gone is None:
            gone = next(iter(self.clients))
        del self.clients[gone]
