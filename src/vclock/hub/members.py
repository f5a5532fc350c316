"""Who is connected, and who is told: the hub's membership, without I/O.

Each session chose in its ``hello`` what it is told about the others
(``hello.peers``, docs/protocol.md 4.5):

- ``"all"`` (the default, and all an older client knows): every peer in
  ``welcome`` and one ``peer_joined`` or ``peer_left`` per change, at once.
  N such clients joining cost N² frames: fine for tens, not for thousands.
- ``"batched"``: every peer in ``welcome``, then the net change since the
  previous notice in one ``peers_changed`` frame. The I/O layer calls
  :meth:`Members.notices` when :attr:`Members.due`, at most every so often
  (the asyncio server: every 0.1 s, ``PEER_NOTICE_INTERVAL``; once per loop
  iteration would not do, as a connect storm has few joins per iteration); a
  hub that is never asked sends nothing. One frame per interval, not per
  change: k joins in one interval cost one frame per such client, not k. The
  bytes still grow with changes × clients, and the welcome with the number of
  clients.
- ``"none"``: no peers in ``welcome``, no notices at all; the client asks for
  the list a page at a time (``who``, answered by ``peers``). A join then
  costs the hub O(log n) whatever the number of clients, and nothing is
  queued for anyone: this is what lets one server hold tens of thousands.

The ids are kept sorted so that a page is a bisection and a slice: a ``who``
costs O(log n + page), never a sort, whatever the number of clients. Ids that
are present for the whole paging are listed exactly once; one that joins or
leaves meanwhile may or may not be.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from ..protocol.frames import MAX_PEERS_PAGE, PeerJoined, PeerLeft, Peers, PeersChanged, Who
from .actions import Action, Outgoing, PeerId


class Members:
    """The ids of every client the hub can reach (its own and, in a cluster,
    the other nodes'), and the sessions that asked to hear about them."""

    def __init__(self) -> None:
        self._ids: list[str] = []  # sorted
        self._all: dict[PeerId, None] = {}  # the "all" sessions, in join order
        self._batched: dict[PeerId, int] = {}  # "batched" sessions -> their first event
        # The joins and leaves since the last notices(), (id, joined), in order; kept only while
        # some session is batched (else nobody would ever take them).
        self._events: list[tuple[str, bool]] = []

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def due(self) -> bool:
        """Whether :meth:`notices` has something to send."""
        return bool(self._events) and bool(self._batched)

    def join(self, client_id: str, peer: PeerId | None = None, mode: str = "none") -> list[Action]:
        """``client_id`` is now reachable (``peer``: its session here, which
        asked for ``mode``; None: a client of another node). Returns the
        ``peer_joined`` frames for the "all" sessions, other than its own."""
        index = bisect.bisect_left(self._ids, client_id)
        present = index < len(self._ids) and self._ids[index] == client_id
        if not present:
            self._ids.insert(index, client_id)
            self._note(client_id, True)
        joined = PeerJoined(id=client_id)
        actions: list[Action] = [Outgoing(other, joined) for other in self._all]
        if mode == "all" and peer is not None:
            self._all[peer] = None
        elif mode == "batched" and peer is not None:
            self._batched[peer] = len(self._events)  # what its welcome did not say
        return actions

    def leave(self, client_id: str, peer: PeerId | None = None) -> list[Action]:
        """``client_id`` is no longer reachable (``peer``: its session here, if
        it had one). Returns the ``peer_left`` frames for the "all" sessions."""
        if peer is not None:
            self._all.pop(peer, None)
            self._batched.pop(peer, None)
        index = bisect.bisect_left(self._ids, client_id)
        if index < len(self._ids) and self._ids[index] == client_id:
            del self._ids[index]
            self._note(client_id, False)
        left = PeerLeft(id=client_id)
        return [Outgoing(other, left) for other in self._all]

    def _note(self, client_id: str, joined: bool) -> None:
        if self._batched:
            self._events.append((client_id, joined))

    def page(self, who: Who, asker: str) -> Peers:
        """One page of ids after ``who.after``, without the asker's own: at most
        ``who.limit`` and :data:`MAX_PEERS_PAGE` ids are looked at (so a page
        may hold one fewer); ``next`` is None on the last page."""
        start = 0 if who.after is None else bisect.bisect_right(self._ids, who.after)
        end = start + min(who.limit, MAX_PEERS_PAGE)
        window = self._ids[start:end]
        ids = [client_id for client_id in window if client_id != asker]
        last = end >= len(self._ids) or not window
        return Peers(ids=ids, next=None if last else window[-1])

    def notices(self) -> list[Action]:
        """The ``peers_changed`` frames since the last call, one per "batched"
        session that has anything to hear: the net change since the last frame
        (or, for a session that joined since, since its ``welcome``)."""
        events, self._events = self._events, []
        if not events:
            return []
        frames: dict[int, PeersChanged | None] = {}  # per first event, shared
        actions: list[Action] = []
        for peer, first in self._batched.items():
            if first not in frames:
                frames[first] = _net(events[first:])
            frame = frames[first]
            if frame is not None:
                actions.append(Outgoing(peer, frame))
            self._batched[peer] = 0
        return actions


def _net(events: Iterable[tuple[str, bool]]) -> PeersChanged | None:
    """The net change of a run of joins and leaves (a join and a leave of the
    same id cancel out); None if nothing changed."""
    first: dict[str, bool] = {}
    last: dict[str, bool] = {}
    for client_id, joined in events:
        first.setdefault(client_id, joined)
        last[client_id] = joined
    # An id joins only when absent and leaves only when present, so it changed
    # exactly when its first and last events agree.
    joined_ids = [i for i, j in last.items() if j and first[i]]
    left_ids = [i for i, j in last.items() if not j and not first[i]]
    if not joined_ids and not left_ids:
        return None
    return PeersChanged(joined=joined_ids, left=left_ids)
