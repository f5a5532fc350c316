"""What a server shares with other servers: the one interface between the asyncio
server and a cluster.

The server asks its link at a few fixed points (before a send, at a hello,
after each batch it stores, for each acknowledgement, after each cycle, at
shutdown). :class:`Link` is a lone server's link and shares nothing: every
hook is a no-op, so the plain server path has no cluster branches.
:class:`~vclock.asyncio.cluster_link.ClusterLink` is the NATS one.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from ..errors import PeerError
from ..hub import Forward, Joined, Left, StoreAction
from ..protocol.frames import Ack, Hello, ServerFrame


class LateFrame(Protocol):
    """A frame whose content is known only when it is written (it waits, in its
    place in the client's output, for something else to finish)."""

    def answer(self) -> ServerFrame | None:
        """The frame to write then, or None for nothing."""
        ...


class Link:
    """A lone server's link: nothing is shared, nothing waits."""

    #: Whether a hello waits for :meth:`claim` (the id is claimed cluster-wide).
    claims_ids = False
    #: Whether :meth:`stored` must see every ``SaveClock`` in its own batch. When
    #: not (a lone server), the server stores clocks once per loop iteration, in
    #: one transaction, just before it writes (Server._store_clocks).
    sees_clocks = False

    def settling(self, client_id: str) -> Awaitable[None] | None:
        """What a send to ``client_id`` must wait for first (its earlier relays from
        another node still arriving), or None."""
        return None

    async def claim(self, hello: Hello) -> Hello | PeerError:
        """Claim the hello's id among the servers; the hello to hand the hub, or
        the error that refuses it."""
        return hello

    def stored(self, stores: list[StoreAction]) -> list[Awaitable[object]]:
        """A batch was stored locally; what its durability also waits for."""
        return []

    def carry(self, action: Forward | Joined | Left, pending: list[Awaitable[object]]) -> None:
        """Carry a message or a change of this server's clients to the others
        (adding to ``pending`` what the batch's durability waits for)."""

    def answer_later(
        self, client_id: str, ack: Ack, pending: list[Awaitable[object]]
    ) -> LateFrame | None:
        """An ``ack`` for ``client_id``: None to write it as it is (adding to
        ``pending`` what it must wait for), or what to write in its place once
        the message it acknowledges is through."""
        return None

    def batch_done(self, pending: list[Awaitable[object]]) -> None:
        """The batch's actions were carried out; ``pending`` is what it waits for."""

    def cycle_done(self) -> None:
        """A synchronization cycle ran."""

    async def close(self, claims: list[str]) -> None:
        """The server stops; ``claims`` are the ids of its connected clients."""
