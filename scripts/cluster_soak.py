#!/usr/bin/env python3
"""A long failover soak of a vclock cluster (not part of CI).

    python scripts/cluster_soak.py --seconds 600 [--nodes 3] [--clients 6] [--every 15]
                                   [--seed 1] [--broadcast-every N]

It starts a real nats-server with JetStream, ``--nodes`` vclock server nodes on
fixed loopback ports and ``--clients`` resume clients (``--reconnect --state``,
each listing every node, its own first) that exchange messages quickly (with
``--broadcast-every N``, every Nth is a causal broadcast). Every ``--every``
seconds it does one of these, at random:

- SIGKILL a node, and start it again (same port, same node id) 3 s later;
- stop a node with SIGTERM (a clean stop), and start it again 3 s later;
- SIGKILL a client, and start it again on its ``--state`` file 1 s later.

At the end it stops the clients, then the nodes, and judges the run: the trace
checker must find the clocks causally consistent and the broadcasts delivered
in causal order (``vclock check --causal-delivery``, broadcasts only), and
every message whose sender no longer holds it unacknowledged must have been
received exactly once, a broadcast by every other client
(:func:`vclock.tools.audit.delivery_audit`), unless the sender was told it was
not delivered (an ``unknown-peer`` error naming it, which the clients print;
the soak counts these separately, as they should not happen while every client
comes back within 30 s). It prints a line per round, then a summary (with the
size of the held bucket at the end, which must stay small however long the
run), and exits 1 if either judgement fails. The run folder is
kept (``--keep`` or on failure) for ``vclock diagram`` or a post-mortem.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats

from vclock.asyncio.client import load_state
from vclock.tools.audit import delivery_audit
from vclock.tools.checker import check, format_report
from vclock.tools.eventlog import read_events

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.procs import free_port, nats_server_binary  # noqa: E402

HOST = "127.0.0.1"
REFUSED = re.compile(r"your message (\S+) was not delivered")


class Child:
    """A child process writing to a log file; stopped by PID."""

    def __init__(self, name: str, argv: list[str], folder: Path) -> None:
        self.name = name
        self.argv = argv
        self.folder = folder
        self.starts = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.starts += 1
        out = (self.folder / f"{self.name}.{self.starts}.out").open("wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        out.close()

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)

    def wait(self) -> None:
        if self.proc is not None:
            self.proc.wait(30)


def vclock(*args: str) -> list[str]:
    return [sys.executable, "-m", "vclock", *args]


def wait_listening(port: int, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout:g} s")


def receives(logs: Path) -> int:
    return sum(f.read_bytes().count(b'"kind":"receive"') for f in logs.glob("*.jsonl"))


async def stream_size(url: str, stream: str) -> int:
    """How many messages JetStream keeps in ``stream`` (a bucket's entries and
    markers): what a long-running cluster accumulates."""
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(stream)
        return int(info.state.messages or 0)
    finally:
        await nc.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--every", type=float, default=15, help="seconds between faults")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--broadcast-every", type=int, default=0, help="every Nth send is a causal broadcast"
    )
    parser.add_argument("--keep", action="store_true", help="keep the run folder")
    options = parser.parse_args()
    rng = random.Random(options.seed)
    folder = Path(tempfile.mkdtemp(prefix="vclock-soak-"))
    logs = folder / "logs"
    nats_port = free_port()
    url = f"nats://{HOST}:{nats_port}"
    ports = [free_port() for _ in range(options.nodes)]
    names = [f"n{i + 1}" for i in range(options.nodes)]
    nats = Child(
        "nats",
        [nats_server_binary(), "-js", "-sd", str(folder / "js"), "-a", HOST, "-p", str(nats_port)],
        folder,
    )
    wait_listening(nats_port)
    nodes = [
        Child(name, vclock(
            "server", "--host", HOST, "--port", str(port), "--cluster", url, "--node-id", name,
            "--claim-ttl", "4", "--sync-interval", "1", "--data", ":memory:", "--quiet",
        ), folder)
        for name, port in zip(names, ports, strict=True)
    ]  # fmt: skip
    for port in ports:
        wait_listening(port)
    clients = []
    for i in range(options.clients):
        home = i % options.nodes
        order = ports[home:] + ports[:home]
        servers = [arg for port in order for arg in ("--server", f"{HOST}:{port}")]
        client_id = f"C{i + 1}"
        state = str(folder / f"{client_id}.state")
        clients.append(Child(client_id, vclock(
            "client", "--id", client_id, "--reconnect", "--state", state, "--log", str(logs),
            "--interval", "0.05-0.3", "--seed", str(options.seed + i), *servers,
            "--broadcast-every", str(options.broadcast_every),
        ), folder))  # fmt: skip
    print(f"soak: NATS, {options.nodes} nodes, {options.clients} clients in {folder}")
    start = time.monotonic()
    faults: dict[str, int] = {}
    round_ = 0
    try:
        while (elapsed := time.monotonic() - start) < options.seconds:
            time.sleep(min(options.every, max(0.0, options.seconds - elapsed)))
            if time.monotonic() - start >= options.seconds:
                break
            round_ += 1
            fault = rng.choice(["kill-node", "stop-node", "kill-client"])
            faults[fault] = faults.get(fault, 0) + 1
            if fault == "kill-client":
                victim = rng.choice(clients)
                victim.signal(signal.SIGKILL)
                victim.wait()
                time.sleep(1)
                victim.start()
            else:
                victim = rng.choice(nodes)
                victim.signal(signal.SIGKILL if fault == "kill-node" else signal.SIGTERM)
                victim.wait()
                time.sleep(3)
                victim.start()
            print(
                f"  {time.monotonic() - start:6.0f} s  round {round_}: {fault} {victim.name};"
                f" {receives(logs)} receives so far",
                flush=True,
            )
        time.sleep(3)  # let the last failover settle
        stopped_at = _dt.datetime.now(_dt.UTC)
    finally:
        for child in clients:
            child.stop()
        for child in nodes:
            child.stop()
        try:
            held = asyncio.run(stream_size(url, "KV_vclock-held"))
        finally:
            nats.stop()

    report = check(logs, require_causal_delivery=True, causal_scope="broadcast")
    refused = {
        match.group(1)
        for out in folder.glob("C*.out")
        for match in REFUSED.finditer(out.read_text(errors="replace"))
    }
    unacked: set[str] = set()
    for child in clients:
        saved = load_state(folder / f"{child.name}.state")
        if saved is not None:
            unacked |= {f"{child.name}#{frame.seq}" for frame in saved.unacked}
    grace = stopped_at - _dt.timedelta(seconds=0.5)
    ids = {child.name for child in clients}
    events = list(read_events(logs))
    joined = max(min(e.ts for e in events if e.pid == i and e.kind == "join") for i in ids)
    since = _dt.datetime.fromisoformat(joined) + _dt.timedelta(seconds=1)  # all are in
    wrong = delivery_audit(
        events, receivers=ids, unacked=unacked | refused, before=grace, since=since
    )
    print(
        f"soak: {time.monotonic() - start:.0f} s, {round_} faults {faults},"
        f" {report.summary.events} events"
    )
    print(f"held bucket at the end: {held} entries (inboxes, unacknowledged messages, counters)")
    print(format_report(report))
    if wrong:
        print(f"FAILED: {len(wrong)} acknowledged messages not received exactly once:")
        print(f"  {wrong[:20]}")
    else:
        print("OK: every acknowledged message was received exactly once")
        print(f"  ({len(unacked)} still unacknowledged at the end, so not judged)")
    if refused:
        print(f"FAILED: {len(refused)} messages refused with unknown-peer: {sorted(refused)[:20]}")
    ok = report.ok and not wrong and not refused
    if ok and not options.keep:
        shutil.rmtree(folder)
    else:
        print(f"run folder kept: {folder}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
