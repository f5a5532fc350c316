"""Resume inboxes: the messages kept for a held client, and what they cost.

An :class:`Inbox` keeps, in order of their delivery number, the messages of one
held (resume) client that it has not acknowledged yet. :class:`HeldBytes`
counts the bytes every inbox holds together, each message once however many
inboxes hold it (a broadcast is held by every held client but its sender), so
that the server's limit on held bytes measures what it really keeps.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import msgspec

from ..clock import VectorClock
from ..errors import ErrorCode, PeerError
from ..protocol.codec import encode_frame
from ..protocol.frames import Deliver

#: Numbered deliveries a resume client may leave unacknowledged (flow control).
DEFAULT_WINDOW = 256
#: (sender, seq): the id of one message, the same in every inbox that holds it
MessageKey = tuple[str, int]


@dataclass(slots=True)
class Inbox:
    """The messages kept for a held (resume) client until it acknowledges them."""

    acked: int = 0
    messages: deque[Deliver] = field(default_factory=deque)  # n > acked, in order
    #: per sender, the broadcasts this client will never be sent from this inbox
    #: (relayed before it existed, or acknowledged): a returning client's
    #: welcome.bclock (empty for inboxes stored by older versions)
    base: VectorClock = field(default_factory=VectorClock)
    sent: int = field(default=0, compare=False)  # last n sent this session (not stored)
    nbytes: int = field(default=0, compare=False)  # what its messages take (HeldBytes)

    @property
    def next_n(self) -> int:
        last = self.messages[-1].n if self.messages else None
        return (last if last is not None else self.acked) + 1


def message_size(deliver: Deliver) -> int:
    """The bytes of a held message on the wire (without its delivery number)."""
    return len(encode_frame(msgspec.structs.replace(deliver, n=None)))


class HeldBytes:
    """The bytes held in every inbox, each message counted once.

    Call :meth:`size` for a message before holding it (what it would add),
    :meth:`hold` when an inbox takes it and :meth:`release` when an inbox lets it
    go (acknowledged, or the inbox dropped).
    """

    def __init__(self) -> None:
        self.total = 0
        self._held: dict[MessageKey, list[int]] = {}  # key -> [size, inboxes holding it]

    def size(self, deliver: Deliver) -> tuple[int, int]:
        """(bytes the message takes in one inbox, bytes it adds to the total)."""
        entry = self._held.get((deliver.sender, deliver.seq))
        if entry is not None:
            return entry[0], 0
        size = message_size(deliver)
        return size, size

    def hold(self, inbox: Inbox, deliver: Deliver, size: int) -> None:
        entry = self._held.get((deliver.sender, deliver.seq))
        if entry is None:
            self._held[deliver.sender, deliver.seq] = [size, 1]
            self.total += size
        else:
            entry[1] += 1
        inbox.messages.append(deliver)
        inbox.nbytes += size

    def release(self, inbox: Inbox, deliver: Deliver) -> None:
        """``deliver`` left ``inbox`` (the caller removed it from ``inbox.messages``)."""
        key = (deliver.sender, deliver.seq)
        entry = self._held.get(key)
        if entry is None:
            return
        inbox.nbytes -= entry[0]
        entry[1] -= 1
        if entry[1] == 0:
            del self._held[key]
            self.total -= entry[0]

    def count(self, inbox: Inbox) -> None:
        """Take in an inbox built elsewhere (loaded from a store, or adopted)."""
        messages, inbox.messages, inbox.nbytes = inbox.messages, deque(), 0
        for deliver in messages:
            self.hold(inbox, deliver, self.size(deliver)[0])

    def forget(self, inbox: Inbox) -> None:
        """The inbox is dropped whole."""
        for deliver in inbox.messages:
            self.release(inbox, deliver)


def count_broadcast(counts: VectorClock, deliver: Deliver) -> VectorClock:
    """Broadcast counts that include the broadcast ``deliver`` (its sender's count)."""
    assert deliver.bclock is not None
    sender = deliver.sender
    return counts.merge(VectorClock._trusted({sender: deliver.bclock[sender]}))


class Inboxes:
    """The inboxes of the held clients, within their limits (docs/protocol.md 7,
    9.6, 9.8): hold a message (numbered), release what the window allows, take an
    acknowledgement. It decides nothing about sessions; the hub writes the frames.

    ``by_id`` is the hub's durable ``HubState.inboxes`` itself, not a copy.
    """

    def __init__(
        self,
        by_id: dict[str, Inbox],
        *,
        max_inbox: int = 10_000,
        max_inbox_bytes: int = 64 << 20,
        max_held: int = 10_000,
        max_held_bytes: int = 1 << 30,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self.by_id = by_id
        self.max_inbox = max_inbox
        self.max_inbox_bytes = max_inbox_bytes
        self.max_held = max_held
        self.max_held_bytes = max_held_bytes
        self.window = window
        self.held = HeldBytes()
        for inbox in by_id.values():
            self.held.count(inbox)

    def check_new(self, client_id: str) -> None:
        """A resume hello for ``client_id``: refuse a new inbox past ``max_held``.

        Raises:
            PeerError: ``too-many-held``.
        """
        if client_id not in self.by_id and len(self.by_id) >= self.max_held:
            raise PeerError(
                f"this server already holds messages for {self.max_held} clients;"
                " it holds no more (connect without resume, or later)",
                code=ErrorCode.TOO_MANY_HELD,
            )

    def open(self, client_id: str, base: VectorClock) -> Inbox:
        inbox = self.by_id[client_id] = Inbox(base=base)
        return inbox

    def adopt(self, client_id: str, inbox: Inbox | None) -> None:
        """Replace the inbox of ``client_id`` with one built elsewhere (None: none)."""
        self.drop(client_id)
        if inbox is not None:
            self.held.count(inbox)
            self.by_id[client_id] = inbox

    def drop(self, client_id: str) -> Inbox | None:
        inbox = self.by_id.pop(client_id, None)
        if inbox is not None:
            self.held.forget(inbox)
        return inbox

    def room_for(self, deliver: Deliver, receivers: list[str]) -> int:
        """Check that the inbox of every one of ``receivers`` may hold ``deliver``,
        and the server as a whole; returns the bytes it takes in one inbox.

        Raises:
            PeerError: ``inbox-full`` (an inbox's message count or bytes) or
                ``store-full`` (the bytes held for everyone).
        """
        size, adds = self.held.size(deliver)
        for receiver in receivers:
            inbox = self.by_id[receiver]
            if len(inbox.messages) >= self.max_inbox:
                why = f"already has {self.max_inbox} messages waiting"
            elif inbox.nbytes + size > self.max_inbox_bytes:
                why = f"has {inbox.nbytes} bytes waiting; {size} more pass {self.max_inbox_bytes}"
            else:
                continue
            raise PeerError(
                f"{receiver!r} {why}; try later",
                code=ErrorCode.INBOX_FULL,
                peer=receiver,
                seq=deliver.seq,
            )
        if self.held.total + adds > self.max_held_bytes:
            raise PeerError(
                f"the server holds {self.held.total} bytes for away clients; {adds} more"
                f" pass its limit of {self.max_held_bytes}; try later",
                code=ErrorCode.STORE_FULL,
                peer=receivers[0] if len(receivers) == 1 else None,
                seq=deliver.seq,
            )
        return size

    def hold(self, inbox: Inbox, deliver: Deliver, size: int | None = None) -> Deliver:
        """Keep ``deliver`` in ``inbox``, numbered; returns the numbered message."""
        deliver = msgspec.structs.replace(deliver, n=inbox.next_n)
        if size is None:
            size = self.held.size(deliver)[0]
        self.held.hold(inbox, deliver, size)
        return deliver

    def due(self, inbox: Inbox) -> list[Deliver]:
        """The inbox's next messages to send, as far as the window allows (marked sent)."""
        due: list[Deliver] = []
        limit = inbox.acked + self.window
        for deliver in inbox.messages:
            n = deliver.n or 0
            if n <= inbox.sent:
                continue
            if n > limit:
                break
            due.append(deliver)
            inbox.sent = n
        return due

    def acknowledge(self, client_id: str, upto: int) -> Inbox:
        """``client_id`` handled every delivery up to number ``upto``; returns its inbox.

        Raises:
            PeerError: ``unexpected-frame`` for a client that is not held,
                ``bad-frame`` for a number that was never sent.
        """
        inbox = self.by_id.get(client_id)
        if inbox is None:
            raise PeerError(
                "'delivered' is only for sessions that said resume in hello",
                code=ErrorCode.UNEXPECTED_FRAME,
            )
        if upto >= inbox.next_n:
            raise PeerError(
                f"delivered upto={upto}, but only {inbox.next_n - 1} were sent",
                code=ErrorCode.BAD_FRAME,
            )
        while inbox.messages and (inbox.messages[0].n or 0) <= upto:
            done = inbox.messages.popleft()
            self.held.release(inbox, done)
            if done.bclock is not None:
                inbox.base = count_broadcast(inbox.base, done)
        inbox.acked = max(inbox.acked, upto)
        inbox.sent = max(inbox.sent, inbox.acked)
        return inbox


def broadcast_baseline(
    relayed: VectorClock, inbox: Inbox | None, resume: bool
) -> VectorClock | None:
    """What goes in ``welcome.bclock``: per sender, the broadcasts a client will
    not be sent. A resume client whose inbox is kept: what that inbox says (not
    the ``relayed`` counts: in a cluster, broadcasts a node counted may still be
    on their way into the inbox). Otherwise everything relayed so far, except
    what waits in its inbox (those come next, in order)."""
    if resume and inbox is not None:
        return inbox.base or None
    base = relayed.to_dict()
    if inbox is not None:
        for deliver in inbox.messages:
            if deliver.bclock is not None and (deliver.n or 0) > inbox.acked:
                sender = deliver.sender
                base[sender] = min(base.get(sender, 0), deliver.bclock[sender] - 1)
    return VectorClock(base) if any(base.values()) else None
