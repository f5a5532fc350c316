"""What the dashboard knows: the hub's actions, fed to the table, the diagram and the log.

:class:`LiveModel` is sans-I/O like the hub: :meth:`LiveModel.observe` takes one
action (the notices of :mod:`vclock.hub.actions` and the frames the server sent) and
the time, and hands it to the three things the page shows: the clients table and
the panels beside it (:class:`~vclock.web.clients_table.ClientsTable`), the live
diagram (:class:`~vclock.web.live_diagram.LiveDiagram`) and the ShiViz log of what
the server saw (:class:`~vclock.web.shivizlog.ShivizLog`). Nothing here reads a
clock, opens a socket or starts a task. :class:`vclock.web.Dashboard` feeds it from
``Server.observe``.

Everything is bounded: the diagram keeps the last ``max_events`` dots, the
ShiViz log its first ``max_log_bytes``, the table ``max_clients`` clients (those
that left go first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..clock import VectorClock
from ..events import EVERYONE, SERVER_ID, message_id
from ..hub import Action, Joined, Left, Outgoing, PeerId, Received, Refused, SyncCycle
from ..protocol.frames import Deliver, Report
from ..tools.drawing import peer_label
from .clients_table import ClientsTable
from .live_diagram import LiveDiagram
from .shivizlog import ShivizLog

__all__ = ["LiveModel"]


class LiveModel:
    """The dashboard's model of the service. Feed it with :meth:`observe`.

    Args:
        max_events: dots kept for the live diagram; older ones scroll off.
        max_log_bytes: the size of the ShiViz log kept for the download (its start).
        max_clients: rows kept in the clients table; clients that left go first.
        resolve: maps a :data:`~vclock.hub.PeerId` to its client id, for peers that
            joined before the model saw their ``Joined`` (``Server.hub.client_id``).

    Raises:
        ValueError: ``max_events``, ``max_log_bytes`` or ``max_clients`` below 1.
    """

    def __init__(
        self,
        *,
        max_events: int = 2000,
        max_log_bytes: int = 16 << 20,
        max_clients: int = 1000,
        resolve: Callable[[PeerId], str | None] | None = None,
    ) -> None:
        self.table = ClientsTable(max_clients=max_clients)
        self.diagram = LiveDiagram(max_events=max_events)
        #: What the server saw, for the ShiViz download (see vclock.web.shivizlog).
        self.log = ShivizLog(max_log_bytes)
        self._resolve = resolve
        self._peers: dict[PeerId, str] = {}

    def observe(self, action: Action, now: float) -> None:
        """Take in one action of the hub, carried out at ``now`` (seconds since the epoch)."""
        match action:
            case Joined(peer=peer, client_id=client_id, address=address):
                self._peers[peer] = client_id
                row = self.table.joined(client_id, address, now)
                self.diagram.joined(client_id, row.clock, address, now)
            case Left(peer=peer, client_id=client_id):
                self._peers.pop(peer, None)
                row = self.table.left(client_id)
                self.diagram.left(client_id, row.clock, row.address, now)
            case Received(client_id=client_id, frame=frame):
                self._received(client_id, frame, now)
            case Outgoing(peer=peer, frame=Deliver() as deliver):
                receiver = self._client_of(peer)
                if receiver is not None:
                    self.table.delivered(receiver, deliver.clock, now)
                    self.diagram.delivered(receiver, deliver, now)
            case SyncCycle():
                self.table.sync_cycle(action, now)
                self.diagram.sync_cycle(action, now)
            case Refused(peer=peer, address=address, error=error):
                who = self._client_of(peer)
                self.table.refused(who, address, error.code.value, str(error), now)
            case _:
                pass  # other frames, closes and store actions show nothing new

    def seed(self, clients: Iterable[str], latest: dict[str, VectorClock], now: float) -> None:
        """Start from a running server: its connected ``clients`` and ``latest`` clocks."""
        self.table.seed(clients, latest, now)

    def shiviz_log(self) -> str:
        """The client events the server saw, as one ShiViz execution with its header
        (the events it did not see are there as ``unseen``; see :mod:`.shivizlog`)."""
        return self.log.text()

    def _received(self, client_id: str, frame: Any, now: float) -> None:
        """A send (``to`` a peer), a report (to the server), or a broadcast (to everyone)."""
        report = isinstance(frame, Report)
        to = SERVER_ID if report else getattr(frame, "to", None) or EVERYONE
        self.table.received(client_id, frame.clock, now, report=report)
        msg = message_id(client_id, frame.seq)
        self.log.add(client_id, frame.clock, f"send {msg} -> {peer_label(to)}")
        self.diagram.sent(client_id, frame.seq, frame.clock, to, now)

    def _client_of(self, peer: PeerId) -> str | None:
        client_id = self._peers.get(peer)
        if client_id is None and self._resolve is not None:
            client_id = self._resolve(peer)
        return client_id
