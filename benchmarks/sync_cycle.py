"""Cell ``sync-cycle``: one synchronization cycle with many connected clients.

Measured in-process on the sans-I/O :class:`vclock.hub.Hub`, with fake PeerIds:
every client says hello (asking for delta-encoded clocks, the library default),
then reports its clock once. A cycle is timed as the server runs it:
``hub.begin_sync_cycle()``, then encoding every outgoing frame on that peer's
server-side :class:`vclock.protocol.Connection` (delta state per connection).
The bytes are those of the encoded frames. For comparison, the same frames are
also encoded with full clocks (``encode_frame``, once per distinct frame, as the
server does for clients that did not ask for deltas): "full-clock bytes".

Three cycles per size: the first after every client reported (every client lacks
almost the whole frontier); a steady cycle after 1% of the clients reported again
(the issue's scenario); an idle cycle with nothing new.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from vclock.clock import VectorClock
from vclock.hub import Hub, Outgoing, PeerId
from vclock.protocol import Connection, client_frame_decoder, encode_frame
from vclock.protocol.connection import EncodeCache
from vclock.protocol.frames import PROTOCOL_VERSION, Hello, Report, Welcome


class Harness:
    """A Hub with ``n`` connected clients, each with its own server-side Connection."""

    def __init__(self, n: int, *, delta: bool = True) -> None:
        self.hub = Hub(sync_interval=5.0)
        self.conns: dict[PeerId, Connection[Any]] = {}
        self.ids: list[str] = []
        self.seq: dict[PeerId, int] = {}
        for index in range(n):
            peer = PeerId(index + 1)
            client_id = f"c{index:05d}"
            self.ids.append(client_id)
            conn: Connection[Any] = Connection(client_frame_decoder())
            self.conns[peer] = conn
            self.hub.connect(peer, f"127.0.0.1:{10000 + index}")
            hello = Hello(v=PROTOCOL_VERSION, id=client_id, delta=delta)
            for action in self.hub.receive(peer, hello):
                # Only the client's own welcome matters here: encoding it switches the
                # connection to deltas. Peer notices carry no clock; they are skipped.
                if isinstance(action, Outgoing) and isinstance(action.frame, Welcome):
                    conn.encode(action.frame)

    def report(self, indexes: list[int]) -> None:
        """Clients ``indexes`` each report a clock one event further on."""
        for index in indexes:
            peer = PeerId(index + 1)
            seq = self.seq.get(peer, 0) + 1
            self.seq[peer] = seq
            own = self.ids[index]
            clock = VectorClock({own: seq})
            self.hub.receive(peer, Report(seq=seq, clock=clock))

    def cycle(self) -> dict[str, Any]:
        """Run and time one cycle; returns times (ms), frames and bytes."""
        gc.collect()
        t0 = time.perf_counter()
        actions = self.hub.begin_sync_cycle()
        t1 = time.perf_counter()
        delta_bytes = frames = 0
        cache: EncodeCache = {}  # shared by the batch's connections, as the server does
        for action in actions:
            if isinstance(action, Outgoing):
                delta_bytes += len(self.conns[action.peer].encode(action.frame, cache))
                frames += 1
        t2 = time.perf_counter()
        full_bytes = 0
        shared: dict[int, int] = {}
        for action in actions:
            if isinstance(action, Outgoing):
                size = shared.get(id(action.frame))
                if size is None:
                    size = shared[id(action.frame)] = len(encode_frame(action.frame))
                full_bytes += size
        t3 = time.perf_counter()
        return {
            "hub_ms": (t1 - t0) * 1e3,
            "encode_ms": (t2 - t1) * 1e3,
            "total_ms": (t2 - t0) * 1e3,
            "full_encode_ms": (t3 - t2) * 1e3,
            "full_total_ms": (t1 - t0 + t3 - t2) * 1e3,
            "syncs": frames,
            "bytes": delta_bytes,
            "full_bytes": full_bytes,
            "frontier_entries": len(self.hub.frontier),
        }


def run(sizes: tuple[int, ...], rounds: int, step: Callable[[str], None]) -> dict[str, Any]:
    results = []
    for n in sizes:
        step(f"{n} clients: hello (the join notices make this O(n²))")
        t0 = time.perf_counter()
        harness = Harness(n)
        setup_s = time.perf_counter() - t0
        harness.report(list(range(n)))
        step(f"{n} clients: first cycle")
        first = harness.cycle()
        changed = max(1, n // 100)
        steady = []
        size_rounds = rounds if n <= 2000 else min(rounds, 3)  # big cycles take seconds each
        for r in range(size_rounds):
            step(f"{n} clients: steady cycle {r + 1}/{size_rounds} ({changed} changed)")
            start = (r * changed) % n
            harness.report([(start + k) % n for k in range(changed)])
            steady.append(harness.cycle())
        step(f"{n} clients: idle cycle")
        idle = harness.cycle()
        results.append({
            "clients": n,
            "setup_s": setup_s,
            "first": first,
            "steady": _median_row(steady),
            "steady_rounds": len(steady),
            "changed": changed,
            "idle": idle,
        })  # fmt: skip
        del harness
        gc.collect()
    return {"sizes": results}


def _median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: statistics.median(row[key] for row in rows) for key in rows[0]}
