"""Admission: who may join, under which id, and the welcome (a part of the Hub).

:class:`Admission` is a base class of :class:`~vclock.hub.hub.Hub` holding its
``hello`` handling, apart from the per-message path: the checks a hello must
pass (:meth:`Admission.admit`, which a cluster node's link also asks before it
claims the id across the cluster), the ids the hub gives clients that ask for
none, and the ``welcome`` with what waited for the client while it was away.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from ..auth import Authenticator
from ..clock import VectorClock
from ..errors import ErrorCode, PeerError
from ..protocol.frames import PROTOCOL_VERSION, Hello, Limits, Welcome
from .actions import Action, DropInbox, Joined, Outgoing, PeerId, SaveInbox
from .ids import IdLedger
from .inbox import Inbox, Inboxes, broadcast_baseline
from .members import Members
from .state import Session


class Admission:
    """The hello handling of :class:`~vclock.hub.hub.Hub` (which sets these)."""

    sync_interval: float
    limits: Limits | None
    auth: Authenticator | None
    latest: dict[str, VectorClock]
    broadcasts: VectorClock
    inboxes: dict[str, Inbox]
    holding: Inboxes
    ids: IdLedger
    members: Members
    id_prefix: str
    _by_id: dict[str, PeerId]
    _auto_ids: Iterator[int]

    if TYPE_CHECKING:  # the Hub's, used here

        def _arrived(self, client_id: str) -> Iterable[str]: ...

        def _release(self, peer: PeerId, inbox: Inbox) -> list[Action]: ...

    def _hello(self, peer: PeerId, session: Session, hello: Hello) -> list[Action]:
        client_id = self.admit(hello)
        self.ids.track([client_id])
        remote = self._arrived(client_id)
        everyone: list[str] = []
        if hello.peers != "none":  # O(clients): only for those who asked
            everyone = [*self._by_id, *(r for r in remote if r not in self._by_id)]
        session.client_id = client_id
        session.resume = hello.resume
        latest = self.latest.get(client_id, VectorClock())
        session.known.reset(latest)
        self._by_id[client_id] = peer
        inbox = self.inboxes.get(client_id)
        welcome = Welcome(
            v=PROTOCOL_VERSION,
            id=client_id,
            peers=everyone,
            sync_interval=self.sync_interval,
            clock=latest,
            delta=hello.delta,
            limits=self.limits,
            bclock=broadcast_baseline(self.broadcasts, inbox, hello.resume),
            # Resume sessions: does the numbering of deliver.n go on (the inbox was
            # kept) or start again from 1 (a new inbox: the old one was dropped
            # by bye or --hold-for, or lost with a server without durable storage)?
            resumed=(inbox is not None) if hello.resume else None,
        )
        actions: list[Action] = [Outgoing(peer, welcome), Joined(peer, client_id, session.address)]
        actions += self.members.join(client_id, peer, hello.peers)
        if inbox is not None and hello.resume:  # what arrived while it was away
            inbox.sent = inbox.acked
            actions += self._release(peer, inbox)
        elif inbox is not None:  # it no longer wants holding: these are the last
            for deliver in inbox.messages:
                session.known.merge(deliver.clock)
                actions.append(Outgoing(peer, deliver))
            self.holding.drop(client_id)
            actions.append(DropInbox(client_id))
        elif hello.resume:
            self.holding.open(client_id, self.broadcasts)
            actions.append(SaveInbox(client_id, 0, self.broadcasts))
        return actions

    def admit(self, hello: Hello) -> str:
        """The id a hello gets, if it may join (the cluster link asks first).

        Raises:
            PeerError: why not (version, token, reserved or taken id, the limits
                on ids and held clients).
        """
        if hello.v != PROTOCOL_VERSION:
            raise PeerError(
                f"protocol version {hello.v} is not supported;"
                f" this server speaks {PROTOCOL_VERSION}",
                code=ErrorCode.UNSUPPORTED_VERSION,
            )
        if self.auth is not None and not self.auth.check(hello.id, hello.token):
            # Say nothing about which part was wrong.
            raise PeerError("authentication failed", code=ErrorCode.AUTH_FAILED)
        client_id = hello.id if hello.id is not None else self._free_id()
        self.ids.check_new(client_id)
        if client_id in self._by_id:
            raise PeerError(
                f"a client named {client_id!r} is already connected; pick another id",
                code=ErrorCode.DUPLICATE_ID,
                peer=client_id,
            )
        if hello.resume:
            self.holding.check_new(client_id)
        return client_id

    def _free_id(self) -> str:
        """An id for a client whose hello has none (``client-N``)."""
        while True:
            candidate = f"client-{self.id_prefix}{next(self._auto_ids)}"
            # Each dict asked in turn: a union of their keys is O(clients) per hello.
            if not any(candidate in d for d in (self._by_id, self.latest, self.inboxes)):
                return candidate
