"""The hub of one node of a cluster (:mod:`vclock.cluster`), still without I/O.

A :class:`ClusterHub` is a :class:`~vclock.hub.Hub` that also knows the clients
of the other nodes. Its inputs say what the other nodes did (a client joined or
left there, a message relayed from there, their frontier, the inbox and clock
the cluster stored for a client moving here); its outputs add :class:`Forward`
actions, which the I/O layer (:mod:`vclock.asyncio.cluster_link`) publishes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from ..clock import VectorClock, merge_all
from ..protocol.frames import Deliver
from .actions import Action, Forward
from .hub import Hub
from .inbox import Inbox


class ClusterHub(Hub):
    """A hub that is one node of a cluster.

    Args:
        node_id: this node's id, put in the ids it assigns (``client-<node>-N``)
            so that they differ across nodes.
        options: as for :class:`~vclock.hub.Hub`.
    """

    def __init__(self, *, node_id: str = "", **options: Any) -> None:
        super().__init__(**options)
        self.id_prefix = f"{node_id}-" if node_id else ""
        # a client that moved here may have delivered broadcasts relayed to its
        # old node and still on their way here
        self.ids.broadcast_lead = self.ids.max_lead
        self._remote: dict[str, None] = {}  # clients of other nodes, in join order
        self._remote_held: set[str] = set()  # away clients another node holds

    def resume_from(self, cycle: int, broadcasts: VectorClock) -> None:
        """Take in the cycle count and broadcast counts the cluster stored (at
        start): cycles go on from the highest, broadcast counts from the max."""
        self.cycle = max(self.cycle, cycle)
        self.broadcasts = self.broadcasts.merge(broadcasts)

    @property
    def remote_clients(self) -> list[str]:
        """The clients connected to other nodes."""
        return list(self._remote)

    def remote_joined(self, client_id: str) -> list[Action]:
        """A client connected to another node: tell the local clients (those
        that asked, as they asked: :mod:`.members`)."""
        if client_id in self._remote or client_id in self._by_id:
            return []
        self._remote[client_id] = None
        return self.members.join(client_id)

    def remote_left(self, client_id: str) -> list[Action]:
        """A client of another node left (or its node died)."""
        if client_id not in self._remote:
            return []
        del self._remote[client_id]
        if client_id in self._by_id:
            return []
        return self.members.leave(client_id)

    def set_remote_held(self, client_ids: Iterable[str]) -> None:
        """The away clients whose inbox another node keeps (or that are between
        nodes): a send to one of them is relayed."""
        self._remote_held = set(client_ids)

    def deliver_remote(self, deliver: Deliver, to: str | None = None) -> list[Action]:
        """Another node relays a message: a broadcast (``to`` None, ``deliver.bclock``
        set) for every local client but its sender, or a unicast for client ``to``.

        The sender's clock is taken into the frontier only, not into ``latest``:
        ``latest`` says which of a client's frames this node has already taken
        (a resent one at or below it is acked as a duplicate), and relays arrive
        in per-receiver order, so a later frame of the sender may be here before
        an earlier one that is still on its way, or lost with its node. A client
        that moves here resumes from the clock the cluster stored for it
        (:meth:`merge_latest`). A unicast for a client that is neither here nor
        held here is dropped: it left while the message travelled.
        """
        self._merge_frontier(deliver.clock)
        return self._relayed(deliver, to)

    def deliver_relays(
        self, relays: list[tuple[Deliver, str | None]], frontier: VectorClock | None = None
    ) -> list[Action]:
        """:meth:`deliver_remote` for each of a batch of relays from another node,
        in order: the same actions, the frontier merged once for the batch.
        ``frontier``: the other node's frontier, at or above every clock of the
        batch (taken in instead of the pointwise maximum of those clocks)."""
        if not relays:
            return []
        if frontier is None:
            frontier = merge_all(deliver.clock for deliver, _ in relays)
        self._merge_frontier(frontier)
        actions: list[Action] = []
        for deliver, to in relays:
            actions += self._relayed(deliver, to)
        return actions

    def _relayed(self, deliver: Deliver, to: str | None) -> list[Action]:
        self.ids.heard(deliver.sender, deliver.clock[deliver.sender])
        if deliver.n is not None:
            deliver = msgspec.structs.replace(deliver, n=None)
        if to is None:
            return self._fan_out(deliver) if deliver.bclock is not None else []
        return self._deliver(to, deliver)

    def merge_latest(self, client_id: str, clock: VectorClock) -> None:
        """Take in the clock the cluster stored for ``client_id``, which is moving
        here (in memory only: the node that accepted its frames stored it, once
        everything they caused was durable)."""
        latest = self.latest.get(client_id)
        if latest is not None and clock <= latest:
            return
        self.latest[client_id] = clock if latest is None else latest.merge(clock)
        self._merge_frontier(clock)
        self.ids.heard(client_id, clock[client_id])

    def adopt_inbox(self, client_id: str, inbox: Inbox | None) -> None:
        """The inbox of ``client_id`` as the cluster stores it (None: not held),
        read before its hello; it replaces what this node had."""
        self.holding.adopt(client_id, inbox)

    def forget_inbox(self, client_id: str) -> None:
        """``client_id`` is back on another node, which now keeps its inbox; drop
        this node's copy (nothing to store: the inbox lives on)."""
        if client_id not in self._by_id:
            self.holding.drop(client_id)

    def merge_frontier(self, clock: VectorClock, said: VectorClock | None = None) -> None:
        """Take in another node's frontier (the next cycle syncs to the cluster's)
        and what it heard from each id itself (``said``, for ``max_lead``)."""
        self._merge_frontier(clock)
        if said is not None:
            for client_id, count in said.items():
                self.ids.heard(client_id, count)

    # The hooks of Hub

    def _elsewhere(self, client_id: str) -> bool:
        return client_id in self._remote or client_id in self._remote_held

    def _relay(self, deliver: Deliver, to: str | None) -> list[Action]:
        return [Forward(to, deliver)]

    def _arrived(self, client_id: str) -> Iterable[str]:
        self._remote.pop(client_id, None)  # it moved here from another node
        self._remote_held.discard(client_id)
        return self._remote.keys()
