"""The server's CPU per relayed message, in process, without sockets.

The ``relay`` benchmark cell measures the real thing (server and load processes
on loopback), but on a 2-core machine its figures swing with whatever else runs.
This script drives the server's own code, ``_PeerProtocol.data_received`` →
``Server._process`` → ``Hub`` → ``Server.apply`` → ``_flush``, with
delta-encoded ``send`` lines prepared beforehand, and writes into transports
that only count bytes. It reports the process CPU time per message (best of
``--repeat``), so two versions of the code compare in one sitting::

    python scripts/hotpath.py                        # this tree
    PYTHONPATH=OTHER/src python scripts/hotpath.py   # another tree, e.g. git archive

Each client sends to a random other with a 3-entry clock and a small body, as
the load of the relay cell does; batches of 100 sends are spread over the
clients that sent them, one read each, then the loop runs once (one flush).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

from vclock import VectorClock
from vclock.asyncio.console import Console
from vclock.asyncio.server import Server, ServerConfig, _PeerProtocol
from vclock.protocol import Connection, server_frame_decoder
from vclock.protocol.frames import Hello, Send


class CountingTransport:
    """Takes the server's writes and keeps them, to count the delivers after."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.written: list[bytes] = []
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", self.port) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closing = True

    abort = close


async def cpu_per_message(clients: int, messages: int, batch: int = 100) -> float:
    """CPU microseconds of this process per relayed message."""
    rng = random.Random(5)
    server = Server(ServerConfig(host="127.0.0.1", port=0, max_rate=0), Console(None))
    ids = [f"c{i}" for i in range(clients)]
    peers, conns, clocks, transports = [], [], [], []
    for i, client_id in enumerate(ids):
        peer = _PeerProtocol(server)
        transports.append(CountingTransport(1000 + i))
        peer.connection_made(transports[-1])  # type: ignore[arg-type]
        conn = Connection(server_frame_decoder())
        conn.send(Hello(v=1, id=client_id, delta=True))
        peer.data_received(conn.data_to_send())
        conn.enable_delta()  # as the welcome, which went to the counting transport, says
        peers.append(peer)
        conns.append(conn)
        others = {ids[(i + k) % max(clients, 3)]: 1 for k in (1, 2)}
        clocks.append(VectorClock({client_id: 0, **others}))
    await asyncio.sleep(0)
    lines: list[list[bytes]] = [[] for _ in range(clients)]
    order = []
    for k in range(messages):
        i = rng.randrange(clients)
        j = rng.randrange(clients - 1)
        j += j >= i
        clocks[i] = clocks[i].tick(ids[i])
        send = Send(to=ids[j], seq=clocks[i][ids[i]], clock=clocks[i], body={"t": k})
        lines[i].append(conns[i].encode(send))
        order.append(i)
    taken = [0] * clients
    start = time.process_time()
    for at in range(0, messages, batch):
        counts: dict[int, int] = {}
        for i in order[at : at + batch]:
            counts[i] = counts.get(i, 0) + 1
        for i, count in counts.items():
            peers[i].data_received(b"".join(lines[i][taken[i] : taken[i] + count]))
            taken[i] += count
        await asyncio.sleep(0)  # the loop iteration ends: the flush writes
    cpu = time.process_time() - start
    delivered = sum(b"".join(t.written).count(b'"type":"deliver"') for t in transports)
    if delivered != messages:
        raise SystemExit(f"only {delivered} of {messages} messages were relayed")
    return cpu / messages * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="3,100", help="client counts (default 3,100)")
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs per count; the best is kept")
    args = parser.parse_args()
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # pragma: no cover
        run = asyncio.run
    for clients in (int(n) for n in args.clients.split(",")):
        best = min(run(cpu_per_message(clients, args.messages)) for _ in range(args.repeat))
        print(f"{clients} clients: {best:.2f} CPU-µs per relayed message (best of {args.repeat})")


if __name__ == "__main__":
    main()
