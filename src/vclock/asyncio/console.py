"""The server's console: the seed's lines, verbatim, plus a few more, each one line."""

from __future__ import annotations

import datetime as _dt
import sys
from collections.abc import Callable
from typing import TextIO

from ..hub import Action, Expired, Joined, Left, Received, Refused, SyncCycle
from ..protocol.frames import Broadcast, Send
from ..terminal import one_line


class Console:
    """Prints the server's console lines (the seed's, verbatim, plus a few more)."""

    def __init__(
        self, out: TextIO | None = sys.stdout, now: Callable[[], _dt.datetime] = _dt.datetime.now
    ) -> None:
        self._out = out
        self._now = now

    @property
    def enabled(self) -> bool:
        return self._out is not None

    def line(self, text: str) -> None:
        """Print one line (nothing when quiet). Clients choose much of what is
        printed (clock ids, the input quoted in an error): control and format
        characters are escaped, so a client can neither forge a line nor drive
        the operator's terminal."""
        if self._out is not None:
            print(one_line(text), file=self._out, flush=True)

    def connected(self, address: str) -> None:
        self.line(f"{address} got connected successfully")

    def show(self, action: Action) -> None:
        match action:
            case Joined(client_id=client_id, address=address):
                self.line(f"{address} joined as {client_id}")
            case Left(client_id=client_id, address=address):
                self.line(f"{client_id} ({address}) disconnected")
            case Expired(client_id=client_id, dropped=dropped):
                self.line(
                    f"{client_id} did not come back within the hold limit (--hold-for);"
                    f" its inbox was dropped with {dropped} waiting message(s)"
                )
            case Received(address=address, client_id=client_id, frame=frame):
                self.line(f"At {self._now()}, data was received from client")
                self.line(f"Client Data updated by Server with: {address}")
                target = (
                    f" for {frame.to}"
                    if isinstance(frame, Send)
                    else " for everyone"
                    if isinstance(frame, Broadcast)
                    else ""
                )
                self.line(f"  {client_id}{target}: {frame.clock}")
            case Refused(address=address, error=error):
                self.line(f"{address} refused: {error.code.value}: {error}")
            case SyncCycle(clients=clients, frontier=frontier, synced=synced):
                self.line("New synchronization cycle started.")
                self.line(f"Number of clients to be synchronized: {clients}")
                if clients == 0 or not frontier:
                    self.line(
                        "No client data received. Synchronization not applicable"
                        " at the moment. Waiting for a client."
                    )
                else:
                    self.line(f"Frontier: {frontier}")
                    who = ", ".join(synced) if synced else "none (every client is up to date)"
                    self.line(f"Synchronized: {who}")
