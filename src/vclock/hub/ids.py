"""The ids a hub keeps track of, and what a frame's clock may say about them.

A frame's own entry must be its ``seq`` and advance past what the hub has of
its sender (docs/protocol.md 2.5, 2.6): :meth:`IdLedger.is_new`.

A clock can only carry what its sender received (docs/protocol.md 9.7). The
:class:`IdLedger` remembers, per id, the highest own entry that id reported
itself (``said``), and refuses a clock that puts another id's entry above that
(plus ``max_lead``): one client can then no longer saturate another's counter.
It also bounds the number of distinct ids, by count and by the bytes one clock
naming all of them takes, so that every sync and relayed clock fits in a frame.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..clock import VectorClock
from ..errors import ErrorCode, PeerError
from ..events import SERVER_ID
from ..protocol.codec import encode_json
from ..protocol.connection import DEFAULT_MAX_FRAME_SIZE
from ..protocol.frames import Broadcast, Report, Send
from .clocks import Frontier

#: How far a clock may carry another id's entry past what that id reported itself
#: (docs/protocol.md 9.7). Not 0: a server that lost its memory, a cluster node that
#: hears an id's reports late, and apps that also pass clocks outside vclock all
#: see honest clocks ahead of what the server heard. Any bound keeps an id usable:
#: each of its own reports lets others raise it by at most this much.
DEFAULT_MAX_LEAD = 1_000_000
#: What a frame carries besides its clock and body ("type", "to", "seq", ...).
_FRAME_OVERHEAD = 256


def _entry_bytes(client_id: str) -> int:
    """The most bytes one clock entry of this id can take on the wire:
    ``"id":9223372036854775807,``."""
    return len(encode_json(client_id)) + 21


class IdLedger:
    """Every id the hub has an entry for (in the frontier or ``said``) or that is
    connected, what each said about itself, and the room left for new ids.

    Args:
        max_ids: ids tracked at most.
        max_frame_size: a clock with an entry for every tracked id fits in a
            frame of this many bytes.
        max_lead: how far another client's clock may put an id's entry above
            what that id said itself.
        max_id_length: the longest id a hello may ask for (the server's clock
            limit, so that a welcomed client's clocks are accepted).
    """

    def __init__(
        self,
        *,
        max_ids: int = 65_536,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_lead: int = DEFAULT_MAX_LEAD,
        max_id_length: int = 64,
    ) -> None:
        self.max_ids = max_ids
        self.max_id_length = max_id_length
        #: How far a bclock may count broadcasts past those relayed here: none on
        #: one server, which relayed every broadcast its clients can have
        #: delivered (a broadcast counting one more would be held back by every
        #: receiver for ever); a cluster node allows max_lead (ClusterHub).
        self.broadcast_lead = 0
        self.max_lead = max_lead
        self.budget = max_frame_size - _FRAME_OVERHEAD
        #: per id, the highest own entry heard from that id itself (in its frames)
        self.said: dict[str, int] = {}
        self._ids: dict[str, int] = {}  # id -> the most bytes its entry takes
        self._bytes = 0

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def has_room(self, *client_ids: str) -> bool:
        """Whether ``client_ids`` (not tracked yet) may be tracked too."""
        if len(self._ids) + len(client_ids) > self.max_ids:
            return False
        more = sum(_entry_bytes(client_id) for client_id in client_ids)
        return self._bytes + more <= self.budget

    def track(self, client_ids: Iterable[str]) -> None:
        ids = self._ids
        for client_id in client_ids:
            if client_id not in ids:
                ids[client_id] = cost = _entry_bytes(client_id)
                self._bytes += cost

    def untrack(self, client_id: str) -> None:
        """Forget an id that was reserved (a hello) but never got an entry."""
        if client_id not in self.said:
            self._bytes -= self._ids.pop(client_id, 0)

    def heard(self, client_id: str, count: int) -> None:
        """``client_id`` itself said it had ``count`` events."""
        if count > self.said.get(client_id, 0):
            if client_id not in self.said:
                self.track([client_id])
            self.said[client_id] = count

    def check_new(self, client_id: str) -> None:
        """A hello for ``client_id``: refuse the reserved id, one too long, or a new
        id past the limits.

        Raises:
            PeerError: ``invalid-id`` or ``too-many-ids``.
        """
        if client_id == SERVER_ID:
            raise PeerError(f"the id {SERVER_ID!r} is reserved", code=ErrorCode.INVALID_ID)
        if len(client_id) > self.max_id_length:
            raise PeerError(
                f"ids on this server are at most {self.max_id_length} characters",
                code=ErrorCode.INVALID_ID,
            )
        if client_id not in self._ids and not self.has_room(client_id):
            raise PeerError(
                f"this server keeps track of {len(self._ids)} ids, as many as fit in"
                f" one clock of {self.max_ids} entries and {self.budget} bytes;"
                " it takes no new id (use one it knows)",
                code=ErrorCode.TOO_MANY_IDS,
            )

    def is_new(
        self,
        client_id: str,
        frame: Send | Report | Broadcast,
        latest: VectorClock | None,
        resume: bool,
    ) -> bool:
        """Check what a frame says about its sender: its ``seq`` is its own entry
        (2.5) and above ``latest`` (2.6), the sender's latest clock on the hub.
        False for a resent frame of a resume session (at or below ``latest``).

        Raises:
            PeerError: ``bad-frame`` (seq is not the own entry) or ``stale-clock``.
        """
        seq = frame.seq
        own = frame.clock._entries.get(client_id, 0)  # not clock[...]: a call per frame
        if seq != own:
            raise PeerError(
                f"seq {seq} must equal the sender's own clock entry, {own}",
                code=ErrorCode.BAD_FRAME,
                seq=seq,
            )
        if latest is not None and seq <= latest._entries.get(client_id, 0):
            if resume:
                return False
            raise PeerError(
                f"clock {frame.clock} does not advance {client_id!r} past"
                f" {latest[client_id]}, the latest the server has; tick before each send",
                code=ErrorCode.STALE_CLOCK,
                seq=frame.seq,
            )
        return True

    def check_count(
        self, client_id: str, frame: Broadcast, broadcasts: VectorClock, resume: bool
    ) -> None:
        """A broadcast's own ``bclock`` entry must count it: above the ``broadcasts``
        of its sender relayed so far. In a resume session one that was relayed
        already is a resend after a failover (its first node died before acking
        it): relayed again, as some may not have it; the clients that do drop the
        copy (docs/protocol.md 13.3).

        Raises:
            PeerError: ``bad-frame``.
        """
        relayed = broadcasts[client_id]
        if frame.bclock[client_id] <= relayed and not resume:
            raise PeerError(
                f"bclock {frame.bclock} does not count this broadcast: {client_id!r} has had"
                f" {relayed} broadcasts relayed, so its own entry must be above that",
                code=ErrorCode.BAD_FRAME,
                seq=frame.seq,
            )

    def check(
        self,
        client_id: str,
        frame: Send | Report | Broadcast,
        frontier: Frontier,
        broadcasts: VectorClock,
    ) -> dict[str, int]:
        """What a frame of ``client_id`` says about *other* ids must be what the hub
        has heard: an entry of another id at most what that id said itself (plus
        ``max_lead``), no new id past the limits, and a broadcast vector at most the
        ``broadcasts`` relayed (plus ``broadcast_lead``). Returns the entries of the
        frame's clock above ``frontier``, for the hub to raise it to (nothing is
        changed here: a refused frame leaves no trace).

        Only entries above the frontier (whose entries all got in through this
        check) are looked at further; usually that is the sender's own entry alone.

        Raises:
            PeerError: ``forged-clock`` or ``too-many-ids``.
        """
        clock = frame.clock
        gains = frontier.gains(clock)
        if len(gains) > (client_id in gains):
            for pid, count in gains.items():
                if pid != client_id and count > self.said.get(pid, 0) + self.max_lead:
                    raise PeerError(
                        f"clock {_short(clock)} gives {pid!r} {count} events, but the server"
                        f" has heard of {self.said.get(pid, 0)} from {pid!r} itself;"
                        " a clock can only carry what its sender received",
                        code=ErrorCode.FORGED_CLOCK,
                        seq=frame.seq,
                    )
            new = [pid for pid in gains if pid not in self._ids]
            if new and not self.has_room(*new):
                raise PeerError(
                    f"clock {_short(clock)} names {len(new)} id(s) this server does not"
                    f" know, and it keeps track of no more than {len(self._ids)}",
                    code=ErrorCode.TOO_MANY_IDS,
                    seq=frame.seq,
                )
        if isinstance(frame, Broadcast):
            for pid, count in frame.bclock._entries.items():
                most = broadcasts[pid] + self.broadcast_lead + (1 if pid == client_id else 0)
                if count > most:
                    raise PeerError(
                        f"bclock {_short(frame.bclock)} counts {count} broadcasts of {pid!r},"
                        f" but {broadcasts[pid]} were relayed; receivers would wait for ever",
                        code=ErrorCode.FORGED_CLOCK,
                        seq=frame.seq,
                    )
        return gains


def _short(clock: VectorClock, most: int = 8) -> str:
    """A clock for a message: at most ``most`` entries."""
    if len(clock) <= most:
        return str(clock)
    shown = VectorClock._trusted(dict(clock.items()[:most]))
    return f"{str(shown)[:-1]}, ... {len(clock) - most} more}}"
