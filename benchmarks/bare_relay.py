"""The Python ceiling: a bare asyncio relay that only parses and forwards.

It speaks just enough of the vclock protocol for the load generator: ``hello`` is
answered with a ``welcome``; a ``send`` is re-emitted as a ``deliver`` to its
target with the clock and body copied as raw JSON (no validation, no clocks, no
peer notices, no sync cycles). Writes are coalesced per loop tick: frames for one
connection are joined and written once when the tick ends. Runs on uvloop when
installed. Nothing else in vclock uses this; it exists to measure how fast a
Python relay can go on this machine.

    python -m benchmarks.bare_relay --port 0      # prints "listening on 127.0.0.1:PORT"
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import msgspec


class _In(msgspec.Struct):
    type: str
    to: str | None = None
    id: str | None = None
    seq: int = 0
    clock: msgspec.Raw = msgspec.Raw(b"{}")
    body: msgspec.Raw = msgspec.Raw(b"null")  # msgspec has no ``Raw | None``


class _Deliver(msgspec.Struct, tag="deliver", tag_field="type", omit_defaults=True):
    sender: str = msgspec.field(name="from")
    seq: int = 0
    clock: msgspec.Raw = msgspec.Raw(b"{}")
    body: msgspec.Raw = msgspec.Raw(b"null")


class Relay:
    def __init__(self) -> None:
        self.by_id: dict[str, RelayProtocol] = {}
        self.dirty: dict[RelayProtocol, list[bytes]] = {}
        self.flush_scheduled = False
        self.loop = asyncio.get_running_loop()
        self.decode = msgspec.json.Decoder(_In).decode
        self.encode = msgspec.json.Encoder().encode

    def queue(self, target: RelayProtocol, data: bytes) -> None:
        pending = self.dirty.get(target)
        if pending is None:
            self.dirty[target] = [data]
            if not self.flush_scheduled:
                self.flush_scheduled = True
                self.loop.call_soon(self.flush)
        else:
            pending.append(data)

    def flush(self) -> None:
        self.flush_scheduled = False
        dirty, self.dirty = self.dirty, {}
        for proto, chunks in dirty.items():
            if proto.transport is not None and not proto.transport.is_closing():
                proto.transport.write(b"".join(chunks))


class RelayProtocol(asyncio.Protocol):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.buffer = b""
        self.id: str | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport

    def data_received(self, data: bytes) -> None:
        if self.buffer:
            data = self.buffer + data
        lines = data.split(b"\n")
        self.buffer = lines.pop()
        relay = self.relay
        decode, encode, by_id = relay.decode, relay.encode, relay.by_id
        for line in lines:
            try:
                frame = decode(line)
            except msgspec.DecodeError:  # ValidationError included
                continue
            if frame.type == "send":
                target = by_id.get(frame.to or "")
                if target is not None:
                    out = _Deliver(
                        sender=self.id or "", seq=frame.seq, clock=frame.clock, body=frame.body
                    )
                    relay.queue(target, encode(out) + b"\n")
            elif frame.type == "hello" and frame.id:
                self.id = frame.id
                by_id[frame.id] = self
                welcome = {
                    "type": "welcome",
                    "v": 1,
                    "id": frame.id,
                    "peers": [],
                    "sync_interval": 5.0,
                }
                relay.queue(self, encode(welcome) + b"\n")
            elif frame.type == "bye" and self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.id is not None and self.relay.by_id.get(self.id) is self:
            del self.relay.by_id[self.id]
        self.transport = None


async def main(host: str, port: int) -> None:
    relay = Relay()
    server = await asyncio.get_running_loop().create_server(
        lambda: RelayProtocol(relay), host, port, backlog=4096
    )
    print(f"bare relay listening on {host}:{server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(main(args.host, args.port))


if __name__ == "__main__":
    run()
