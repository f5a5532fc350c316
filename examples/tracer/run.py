"""Three processes that trace their own messages with vclock's Tracer; no vclock server.

    python examples/tracer/run.py OUTDIR

Processes A, B and C each listen on a TCP port of 127.0.0.1 and hold a
:class:`vclock.tracing.Tracer`. Each first greets the two others, then a token
goes round the ring A -> B -> C -> A twice; A ends with a local event. Every
message is one TCP connection carrying the bytes of ``prepare_send``, so there is
no framing to write. Each process receives exactly four messages (two greetings,
two token visits), in whatever order the network delivers them.

Writes ``OUTDIR/A.log``, ``B.log``, ``C.log`` (one ShiViz log per process) and
merges them into ``OUTDIR/shiviz.log``; upload that file to ShiViz
(https://bestchai.bitbucket.io/shiviz/) to see the run. Exit status 0 on
success.
"""

from __future__ import annotations

import multiprocessing
import socket
import sys
from multiprocessing.queues import Queue
from pathlib import Path

from vclock.tracing import Tracer, merge_logs

NAMES = ("A", "B", "C")
RING = {"A": "B", "B": "C", "C": "A"}
LAPS = 2
HOPS = LAPS * len(NAMES)  # the token stops at A after this many hops
MESSAGES_PER_PROCESS = (len(NAMES) - 1) + LAPS  # greetings + token visits
TIMEOUT = 10.0  # seconds; a stuck run fails instead of hanging


def process(
    name: str, outdir: str, ports: Queue[tuple[str, int]], book: Queue[dict[str, int]]
) -> None:
    """One process: listen, learn the others' ports, then greet, pass the token, stop."""
    with (
        socket.create_server(("127.0.0.1", 0)) as server,
        Tracer(name, Path(outdir) / f"{name}.log") as tracer,
    ):
        server.settimeout(TIMEOUT)
        ports.put((name, server.getsockname()[1]))
        addresses: dict[str, int] = book.get(timeout=TIMEOUT)

        def send(to: str, description: str, payload: dict[str, object]) -> None:
            data = tracer.prepare_send(description, payload)
            with socket.create_connection(("127.0.0.1", addresses[to]), timeout=TIMEOUT) as conn:
                conn.sendall(data)

        tracer.local_event(f"{name} starts")
        for other in NAMES:
            if other != name:
                send(other, f"greet {other}", {"kind": "hello", "from": name})
        if name == "A":
            send(RING[name], f"token hop 1 -> {RING[name]}", {"kind": "token", "hop": 1})

        for _ in range(MESSAGES_PER_PROCESS):
            conn, _address = server.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                data = _read_all(conn)
            message = tracer.unpack_receive(f"{name} receives a message", data)
            if message["kind"] == "hello":
                continue
            hop = message["hop"]
            if hop < HOPS:
                send(
                    RING[name],
                    f"token hop {hop + 1} -> {RING[name]}",
                    {"kind": "token", "hop": hop + 1},
                )
            else:
                tracer.local_event(f"token came home after {hop} hops")
        print(f"{name} done, clock {tracer.clock}", flush=True)


def _read_all(conn: socket.socket) -> bytes:
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python examples/tracer/run.py OUTDIR", file=sys.stderr)
        return 2
    outdir = Path(argv[0])
    outdir.mkdir(parents=True, exist_ok=True)

    context = multiprocessing.get_context("spawn")
    ports: Queue[tuple[str, int]] = context.Queue()
    books: dict[str, Queue[dict[str, int]]] = {name: context.Queue() for name in NAMES}
    workers = [
        context.Process(target=process, args=(name, str(outdir), ports, books[name]), name=name)
        for name in NAMES
    ]
    for worker in workers:
        worker.start()
    try:
        addresses = dict(ports.get(timeout=3 * TIMEOUT) for _ in NAMES)
        for book in books.values():
            book.put(addresses)
        for worker in workers:
            worker.join(timeout=3 * TIMEOUT)
    finally:
        for worker in workers:  # only the processes started above
            if worker.is_alive():
                worker.terminate()
                worker.join()
    failed = [worker.name for worker in workers if worker.exitcode != 0]
    if failed:
        print(f"processes failed: {', '.join(failed)}", file=sys.stderr)
        return 1

    result = merge_logs([outdir / f"{name}.log" for name in NAMES], outdir / "shiviz.log")
    print(f"wrote {result.path}: {result.events} events of {len(NAMES)} processes")
    print("load it in ShiViz with the file picker; see docs/tracing.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
