"""Cell ``wire-bytes``: bytes per message with full versus delta-encoded clocks.

A simulation through the real codec, no sockets: ``n`` clients start from the
clock a synchronization cycle leaves them (every client's entry at 1, so every
clock has ``n`` entries), then exchange messages: at each step a random client
ticks and sends its clock (a ``send`` frame, no body) to a random other client,
which merges it and ticks. Between two of its sends a client receives about one
message on average (each message has one sender and one receiver).

Each client has its two connections as :class:`vclock.protocol.Connection`
objects with delta encoding on (``enable_delta``, what hello/welcome negotiate):
the client's side encodes its ``send`` frames, the server's side the ``deliver``
frames it relays to that client. Full size: ``len(encode_frame(frame))``; delta
size: ``len(connection.encode(frame))``. The first frames on each connection
(from the empty clock) are a warm-up and not counted.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from vclock.clock import VectorClock
from vclock.protocol import Connection, client_frame_decoder, encode_frame, server_frame_decoder
from vclock.protocol.frames import Deliver, Send


def simulate(n: int, warmup: int, steps: int, seed: int = 5) -> dict[str, Any]:
    rng = random.Random(seed)
    ids = [f"c{i:04d}" for i in range(n)]
    start = VectorClock(dict.fromkeys(ids, 1))
    clocks = [start] * n
    client_side = [_delta_connection(server_frame_decoder()) for _ in range(n)]
    server_side = [_delta_connection(client_frame_decoder()) for _ in range(n)]
    last_sent: list[VectorClock | None] = [None] * n
    totals = dict.fromkeys(
        ["send_full", "send_delta", "deliver_full", "deliver_delta", "changed", "entries"], 0
    )
    for step in range(warmup + steps):
        s = rng.randrange(n)
        r = rng.randrange(n - 1)
        r += r >= s
        clock = clocks[s].tick(ids[s])
        clocks[s] = clock
        send = Send(to=ids[r], seq=clock[ids[s]], clock=clock)
        deliver = Deliver(sender=ids[s], seq=send.seq, clock=clock)
        send_delta = len(client_side[s].encode(send))
        deliver_delta = len(server_side[r].encode(deliver))
        clocks[r] = clocks[r].receive(clock, ids[r])
        previous, last_sent[s] = last_sent[s], clock
        if step < warmup or previous is None:
            continue
        totals["send_full"] += len(encode_frame(send))
        totals["send_delta"] += send_delta
        totals["deliver_full"] += len(encode_frame(deliver))
        totals["deliver_delta"] += deliver_delta
        totals["changed"] += sum(1 for pid, count in clock.items() if previous[pid] != count)
        totals["entries"] += len(clock)
        totals.setdefault("frames", 0)
        totals["frames"] += 1
    frames = totals.pop("frames", 0) or 1
    return {
        "clients": n,
        "frames": frames,
        "clock_entries": totals["entries"] / frames,
        "changed_entries": totals["changed"] / frames,
        "send_full_bytes": totals["send_full"] / frames,
        "send_delta_bytes": totals["send_delta"] / frames,
        "deliver_full_bytes": totals["deliver_full"] / frames,
        "deliver_delta_bytes": totals["deliver_delta"] / frames,
    }


def _delta_connection(decoder: Any) -> Connection[Any]:
    conn: Connection[Any] = Connection(decoder)
    conn.enable_delta()
    return conn


def run(sizes: tuple[int, ...], per_client: int, step: Callable[[str], None]) -> dict[str, Any]:
    """Warm up with 2 messages per client, then count ``per_client`` per client."""
    rows = []
    for n in sizes:
        step(f"{n} clients, {per_client * n} messages")
        rows.append(simulate(n, warmup=2 * n, steps=per_client * n))
    return {"sizes": rows, "warmup_per_client": 2, "measured_per_client": per_client}
