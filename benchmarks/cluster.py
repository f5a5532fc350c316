"""Cell ``cluster``: the relay cell's load on 1, 2 and 3 vclock nodes over one NATS.

Configurations, each started fresh (a new nats-server and a new JetStream folder
for every one) and driven by the relay cell's two load processes
(:mod:`benchmarks.load`, sans-I/O driver, same message pattern and measurement):

- ``single``: the single-node default, ``python -m vclock server`` without
  ``--cluster`` (no NATS running);
- ``cluster-1``, ``cluster-2``, ``cluster-3``: one nats-server with JetStream on
  (``-js -sd DIR``) and 1, 2 or 3 ``python -m vclock server --cluster nats://...
  --node-id nK`` nodes; client ``i`` connects to node ``i mod nodes``, so the
  clients are spread evenly and, as each sends to a random other client, about
  (nodes - 1) / nodes of the messages cross nodes through NATS;
- ``2-local`` and ``2-cross``: 2 nodes as in ``cluster-2``, but each client sends
  only to the clients of its own node (every message a local relay) or only to
  those of the other node (every message crosses NATS). Same processes, same
  load; the node CPU per message of the two is the cost of a local relay and of
  a cross-node one on a cluster node (issue 14, item 2).

CPU per message: each node's CPU time in the measurement window divided by the
messages its clients received in the window. In ``2-cross`` each message is
taken in by one node and handed out by the other, and the two nodes are
symmetric, so this is what one message costs from the sending node reading it
to the receiving node writing it, both halves together.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

from . import procs, relay

#: Clients in every configuration (divisible by 1, 2 and 3: 10 per node with 3 nodes).
CLIENTS = 30
NODE_COUNTS = (1, 2, 3)
#: Pause between the last welcome and the load: cluster membership is published on
#: every change and every 0.5 s heartbeat, so every node knows every client by then.
SETTLE_S = 1.5
#: After the load, how long to wait for messages still on their way before stopping.
LATE_S = 3.0


def configurations() -> list[tuple[str, int, str]]:
    """(name, nodes, pattern) in the order they run; nodes 0 means the single-node
    default; pattern as for :func:`benchmarks.relay.drive`."""
    return (
        [("single", 0, "any")]
        + [(f"cluster-{k}", k, "any") for k in NODE_COUNTS]
        + [("2-local", 2, "local"), ("2-cross", 2, "cross")]
    )


def run_config(
    name: str,
    nodes: int,
    timing: relay.Timing,
    log_dir: Path,
    *,
    n_clients: int = CLIENTS,
    step: Any = None,
    pattern: str = "any",
) -> dict[str, Any]:
    """Start NATS (if ``nodes``) and the vclock server(s), load them, stop everything."""
    result: dict[str, Any] = {
        "system": name, "nodes": max(nodes, 1), "cluster": nodes > 0, "clients": n_clients,
        "driver": "sansio", "pattern": pattern,
    }  # fmt: skip
    servers: list[procs.ServerProcess] = []
    with contextlib.ExitStack() as stack:  # stops, in reverse order, whatever was started
        try:
            nats = None
            if nodes:
                store = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=log_dir)))
                relay._note(step, f"{name}: starting nats-server with JetStream")
                nats = stack.enter_context(procs.running("nats", log_dir, jetstream_dir=store))
                result["nats_command"] = procs.command_line(nats.argv)
            for k in range(1, max(nodes, 1) + 1):
                extra = []
                if nats is not None:
                    extra = ["--cluster", f"nats://{procs.HOST}:{nats.port}", "--node-id", f"n{k}"]
                relay._note(step, f"{name}: starting vclock node {k}")
                servers.append(
                    stack.enter_context(procs.running("vclock", log_dir, extra_args=extra))
                )
            result["server_command"] = procs.command_line(servers[0].argv)
            result.update(
                relay.drive(
                    [s.port for s in servers], [s.pid for s in servers], n_clients, "sansio",
                    timing, label=name, step=step, settle_s=SETTLE_S if nodes else 0.0,
                    other_pids=[nats.pid] if nats is not None else [], rtt_first=True,
                    late_s=LATE_S, pattern=pattern,
                )
            )  # fmt: skip
            result["cpu_us_per_msg_each"] = [
                cpu * 1e6 / (count / timing.measure_s) if count else None
                for cpu, count in zip(
                    result["server_cpu_each"], result["counted_by_node"], strict=True
                )
            ]
            total = sum(result["counted_by_node"])
            result["cpu_us_per_msg"] = (
                result["server_cpu"] * 1e6 / (total / timing.measure_s) if total else None
            )
        except Exception as exc:
            result["ok"] = False
            result["failure"] = f"{type(exc).__name__}: {exc}"
            dead = [s for s in servers if not s.alive()]
            if dead:
                result["failure"] += f" (server exited: {dead[0].log_tail(500)})"
    return result
