"""An app that already logs, traced: one process of a request chain A -> B -> C.

    python examples/tracer/chain.py NAME LOGDIR [--first] [--next PORT] [--execution LABEL]

Each process is started on its own (three terminals, or a launcher). A process
started without ``--next`` is the end of the chain; one started with it forwards
to that port. Every process but the first listens on a free port of 127.0.0.1
and prints ``NAME listening on PORT`` first, so start the chain from its end:
C, then B with ``--next`` C's port, then A with ``--first --next`` B's port (A
does not listen: it sends one request and prints the answer).

The request goes A -> B -> C and the answer comes back C -> B -> A, one line of
``Tracer.prepare_send`` bytes each way over one TCP connection per hop. The app
logs with Python's ``logging``: a :class:`~vclock.tracing.TracerHandler` makes its
records events of the trace, and a :class:`~vclock.tracing.ClockFilter` puts the
clock in the lines it prints on stderr. The trace is ``LOGDIR/NAME.log``,
appended to (``append=True``): run the chain again and the log holds two
executions, labelled ``--execution`` (give every process the same label) or
``execution N``. Then::

    vclock check LOGDIR            # each execution on its own
    vclock merge LOGDIR -o chain.log
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from pathlib import Path

from vclock.tracing import ClockFilter, Tracer, TracerHandler

TIMEOUT = 10.0  # seconds; a stuck chain fails instead of hanging


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name")
    parser.add_argument("logdir", type=Path)
    parser.add_argument("--next", type=int, dest="next_port", help="port of the next process")
    parser.add_argument("--first", action="store_true", help="start the chain (do not listen)")
    parser.add_argument("--execution", help="label of this execution in the log")
    args = parser.parse_args(argv)
    if args.first and args.next_port is None:
        parser.error("--first needs --next")

    log = logging.getLogger(f"chain.{args.name}")
    log.setLevel(logging.INFO)
    with Tracer(
        args.name,
        args.logdir / f"{args.name}.log",
        append=True,
        execution=args.execution,
    ) as tracer:
        log.addHandler(TracerHandler(tracer))
        printed = logging.StreamHandler(sys.stderr)
        printed.setFormatter(logging.Formatter("%(vclock_pid)s %(vclock)s %(message)s"))
        printed.addFilter(ClockFilter(tracer))
        log.addHandler(printed)

        if args.first:
            log.info("starting a request")
            answer = ask(tracer, args.next_port, {"path": [args.name]})
            log.info("answer: %s", " -> ".join(answer["path"]))
            print(f"{args.name} got {' -> '.join(answer['path'])}", flush=True)
            return 0

        with socket.create_server(("127.0.0.1", 0)) as server:
            server.settimeout(TIMEOUT)
            print(f"{args.name} listening on {server.getsockname()[1]}", flush=True)
            conn, _ = server.accept()
            with conn, conn.makefile("rwb") as stream:
                conn.settimeout(TIMEOUT)
                request = tracer.unpack_receive("request in", stream.readline())
                log.info("handling a request from %s", request["path"][-1])
                path = [*request["path"], args.name]
                if args.next_port is not None:
                    path = ask(tracer, args.next_port, {"path": path})["path"]
                stream.write(tracer.prepare_send("answer out", {"path": path}) + b"\n")
                stream.flush()
        log.info("done")
    return 0


def ask(tracer: Tracer, port: int, payload: dict[str, list[str]]) -> dict[str, list[str]]:
    """Send ``payload`` to the process on ``port`` and return its answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
        with conn.makefile("rwb") as stream:
            stream.write(tracer.prepare_send(f"request to port {port}", payload) + b"\n")
            stream.flush()
            answer: dict[str, list[str]] = tracer.unpack_receive("answer in", stream.readline())
    return answer


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
