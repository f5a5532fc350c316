"""The consoles: the server's (the seed's lines, verbatim, plus a few more) and a
client's (``vclock client``), one line per event, escaped."""

from __future__ import annotations

import datetime as _dt
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from ..client import (
    Acked,
    ClientEvent,
    Disconnected,
    Goodbye,
    Message,
    PeerChange,
    ServerError,
    Synced,
    Welcomed,
)
from ..clock import VectorClock
from ..events import EVERYONE, SERVER_ID
from ..hub import Action, Expired, Joined, Left, Received, Refused, SyncCycle
from ..protocol.frames import Broadcast, Send
from ..terminal import one_line

if TYPE_CHECKING:
    from .client import Client


class Console:
    """Prints the server's console lines (the seed's, verbatim, plus a few more)."""

    def __init__(
        self, out: TextIO | None = sys.stdout, now: Callable[[], _dt.datetime] = _dt.datetime.now
    ) -> None:
        self._out = out
        self._now = now

    @property
    def enabled(self) -> bool:
        """False for a quiet server: nothing is printed."""
        return self._out is not None

    def line(self, text: str) -> None:
        """Print one line (nothing when quiet). Clients choose much of what is
        printed (clock ids, the input quoted in an error): control and format
        characters are escaped, so a client can neither forge a line nor drive
        the operator's terminal."""
        if self._out is not None:
            print(one_line(text), file=self._out, flush=True)

    def connected(self, address: str) -> None:
        """The seed's line for a new connection from ``address`` (HOST:PORT)."""
        self.line(f"{address} got connected successfully")

    def show(self, action: Action) -> None:
        """The line (or lines) for one of the hub's actions, if it has any."""
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


class ClientConsole:
    """Prints what a ``vclock client`` does and receives, one line each."""

    def __init__(self, node: Client, now: Callable[[], _dt.datetime] = _dt.datetime.now) -> None:
        self.node = node
        self._now = now

    def connected(self) -> None:
        node = self.node
        host, port = node.server
        if node.options.peers == "none":
            known = "not listed (--peers none: asked for with who)"
        else:
            known = ", ".join(node.peers) or "none yet"
        echo(f"Connected to {host}:{port} as {node.id}; peers: {known}")

    def say(self, text: str, clock: VectorClock) -> None:
        stamp = self._now().strftime("%H:%M:%S.%f")[:-3]
        echo(f"{stamp} {self.node.id:<8} {text:<28} {clock}")

    def sent(self, target: str, clock: VectorClock) -> None:
        if target == SERVER_ID:
            self.say(f"report -> {SERVER_ID}", clock)
        elif target == EVERYONE:
            self.say("broadcast -> all", clock)
        else:
            self.say(f"send -> {target}", clock)

    def event(self, event: ClientEvent) -> None:
        node, me = self.node, self.node.id
        match event:
            case Message(sender=sender, clock=clock, broadcast=True):
                self.say(f"broadcast <- {sender} ({event.id})", clock)
            case Message(sender=sender, clock=clock):
                self.say(f"receive <- {sender} ({event.id})", clock)
            case Synced(cycle=cycle, clock=clock):
                self.say(f"sync <- server (cycle {cycle})", clock)
            case PeerChange(id=peer, joined=joined):
                self.say(f"peer {'joined' if joined else 'left'}: {peer}", node.clock)
            case ServerError(code=code, message=message):
                echo(f"{me}: server error {code}: {message}", err=True)
            case Disconnected(reason=reason):
                echo(f"{me}: connection lost ({reason}); reconnecting...")
            case Welcomed(clock=clock):
                self.say(f"reconnected ({node.unacked} to resend)", clock)
            case Goodbye() | Acked():
                pass


def echo(text: str, err: bool = False) -> None:
    """Print one line of what the server (and the clients it relays) chose: the
    clock ids, the error messages, the reasons. Escaped (:func:`one_line`), so
    they can neither forge lines nor drive the terminal."""
    print(one_line(text), file=sys.stderr if err else sys.stdout, flush=True)
