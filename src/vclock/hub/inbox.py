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
from ..protocol.codec import encode_frame
from ..protocol.frames import Deliver

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
