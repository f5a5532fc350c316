"""Cell ``connections``: clients that connect AND say hello, up to 50,000.

Each run starts a fresh vclock server process (no per-address cap, no hello
timeout; its total cap is what the open-file limit leaves, which the server
says in its log). Load processes (one per 15,000 connections, at least two)
open connections from source addresses 127.0.0.2-127.0.0.9 (so the ephemeral
ports of one source address do not run out), 50 hellos in flight per process,
each saying hello with ``"peers":"none"`` (docs/protocol.md 4.5), then only
read. A run stops adding at its target, at the first connection refused or
closed before its welcome (the reason is reported), or when its time budget is
spent.

Welcome latency is the time from writing the hello (on connect) to reading the
whole welcome line, for every connection, under this connect storm; "connect +
welcome" adds the TCP connect. Memory per connection is the server's RSS (read
from /proc once two readings 0.3 s apart agree) after every connection is
welcomed and quiet, minus its RSS before, divided by the connections.

For contrast, the same with ``"peers":"all"`` (what every client did before:
the full list in each welcome, a ``peer_joined`` to everyone per join) and
``"batched"`` at a smaller count. Descriptors: the soft open-files limit is
raised to the hard one in the parent (inherited by the server) and in every
load process; the hard limit is what it is (raising it needs privileges).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import Callable
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

from . import procs
from .report import section, table, target
from .stats import percentile

PER_PROCESS = 15_000  # connections per load process (each needs a descriptor)
IN_FLIGHT = 50  # hellos awaiting their welcome, per load process
SOURCES = [f"127.0.0.{k}" for k in range(2, 10)]
ISSUE = "issue 14"


def run_one(
    n: int, mode: str, budget_s: float, log_dir: Path, step: Callable[[str], None]
) -> dict[str, Any]:
    """``n`` connections with hello ``"peers": mode`` on a fresh server."""
    ctx = multiprocessing.get_context("spawn")
    started = time.monotonic()
    result: dict[str, Any] = {"target": n, "mode": mode}
    workers_n = max(2, -(-n // PER_PROCESS))
    with procs.running("vclock", log_dir) as server:
        result["server_command"] = procs.command_line(server.argv)
        before = procs.stable_rss(server.pid, 15.0)
        result["rss_before"] = before
        pipes, workers = [], []
        try:
            for index in range(workers_n):
                share = n // workers_n + (1 if index < n % workers_n else 0)
                parent_end, child_end = ctx.Pipe()
                worker = ctx.Process(
                    target=worker_entry,
                    args=(child_end, server.port, index, share, mode, budget_s),
                    daemon=True,
                )
                worker.start()
                child_end.close()
                pipes.append(parent_end)
                workers.append(worker)
            step(f"{n:,} hellos ({mode}) from {workers_n} processes")
            replies = [_recv(pipe, budget_s + 30) for pipe in pipes]
            result["open_seconds"] = time.monotonic() - started
            welcomed = sum(r.get("welcomed", 0) for r in replies)
            result["connections"] = welcomed
            stops = [r["stopped"] for r in replies if r.get("stopped")]
            if stops:
                result["stopped_early"] = stops[0]
            latencies = sorted(x for r in replies for x in r.get("latencies", []))
            total = sorted(x for r in replies for x in r.get("connect_latencies", []))
            for name, values in (("welcome", latencies), ("connect_welcome", total)):
                if values:
                    result[f"{name}_p50_ms"] = percentile(values, 50) * 1000
                    result[f"{name}_p99_ms"] = percentile(values, 99) * 1000
                    result[f"{name}_max_ms"] = values[-1] * 1000
            result["bytes_received"] = sum(r.get("bytes", 0) for r in replies)
            rss = procs.stable_rss(server.pid, 15.0)
            result["rss_after"] = rss
            if welcomed:
                result["bytes_per_connection"] = (rss - before) / welcomed
            result["server_alive"] = server.alive()
            result["server_log"] = [
                line for line in server.log_tail(4000).splitlines() if "connection" in line
            ][-3:]
        finally:
            for pipe in pipes:
                try:
                    pipe.send("stop")
                except OSError:
                    pass
            for worker in workers:
                worker.join(20)
                if worker.is_alive():
                    worker.terminate()  # by PID
                    worker.join(5)
            for pipe in pipes:
                pipe.close()
    result["elapsed_s"] = time.monotonic() - started
    return result


def _recv(pipe: Pipe, timeout: float) -> dict[str, Any]:
    if not pipe.poll(timeout):
        return {"stopped": f"a load process did not answer within {timeout:g} s"}
    reply: dict[str, Any] = pipe.recv()
    return reply


# The load processes


class _Hello(asyncio.Protocol):
    """Writes its hello on connect, times the welcome, then reads and drops."""

    def __init__(self, hello: bytes, counter: list[int]) -> None:
        self.hello = hello
        self.counter = counter  # bytes received, all connections of the process
        self.sent = 0.0
        self.buffer = b""
        self.first: bytes | None = None  # the first line: welcome or error
        self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sent = time.perf_counter()
        transport.write(self.hello)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.counter[0] += len(data)
        if self.done.done():
            return
        self.buffer += data
        if b"\n" in self.buffer:
            self.done.set_result(self.buffer.partition(b"\n")[0])
            self.buffer = b""

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(b"")


def worker_entry(pipe: Pipe, port: int, index: int, count: int, mode: str, budget: float) -> None:
    procs.raise_nofile_limit()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(_worker(pipe, port, index, count, mode, budget))


async def _worker(pipe: Pipe, port: int, index: int, count: int, mode: str, budget: float) -> None:
    from vclock.protocol import Hello, encode_frame

    loop = asyncio.get_running_loop()
    counter = [0]
    transports: list[asyncio.BaseTransport] = []
    latencies: list[float] = []
    connect_latencies: list[float] = []
    stopped: list[str] = []
    deadline = time.monotonic() + budget
    sem = asyncio.Semaphore(IN_FLIGHT)

    async def open_one(k: int) -> None:
        async with sem:
            if stopped:
                return
            if time.monotonic() > deadline:
                stopped.append(f"time budget of {budget:g} s spent")
                return
            hello = encode_frame(Hello(v=1, id=f"m{index}x{k:06d}", peers=mode))  # type: ignore[arg-type]
            source = SOURCES[(index + k * 7) % len(SOURCES)]
            start = time.perf_counter()
            try:
                transport, client = await loop.create_connection(
                    lambda: _Hello(hello, counter), procs.HOST, port, local_addr=(source, 0)
                )
            except OSError as exc:
                stopped.append(f"connect failed: {exc}")
                return
            transports.append(transport)
            line = await asyncio.wait_for(client.done, max(1.0, deadline - time.monotonic()))
            if not line.startswith(b'{"type":"welcome"'):
                stopped.append(f"refused: {line[:200].decode(errors='replace') or 'closed'}")
                return
            now = time.perf_counter()
            latencies.append(now - client.sent)
            connect_latencies.append(now - start)

    try:
        await asyncio.gather(*(open_one(k) for k in range(count)))
    except Exception as exc:
        stopped.append(f"{type(exc).__name__}: {exc}")
    # Wait until nothing more arrives (the peer notices of "all" clients).
    last, quiet_since = counter[0], time.monotonic()
    while time.monotonic() - quiet_since < 0.5 and time.monotonic() < deadline + 10:
        await asyncio.sleep(0.1)
        if counter[0] != last:
            last, quiet_since = counter[0], time.monotonic()
    pipe.send(
        {
            "welcomed": len(latencies),
            "latencies": latencies,
            "connect_latencies": connect_latencies,
            "stopped": stopped[0] if stopped else None,
            "bytes": counter[0],
            "nofile": list(procs.raise_nofile_limit()),
            "pid": os.getpid(),
        }
    )
    await loop.run_in_executor(None, pipe.recv)  # "stop"
    for transport in transports:
        transport.close()
    await asyncio.sleep(0.2)


# The cell


def connections_cell(ctx: Any) -> dict[str, Any]:
    sec = section(
        "connections",
        "8. Connections with hello: memory and welcome latency",
        'Clients that connect and say hello with `"peers":"none"` (protocol 4.5), up to'
        " 50,000: server RSS per connection and welcome latency, and the old behaviour"
        ' (`"peers":"all"`) and `"batched"` at 2,000 for contrast.',
    )
    soft, hard = procs.raise_nofile_limit()
    counts = [int(x) for x in os.environ.get("BENCH_CONNECTIONS", "1000,10000,50000").split(",")]
    plan = [(n, "none") for n in counts] + [(2000, "all"), (2000, "batched")]
    if ctx.quick:
        plan = [(200, "none"), (1000, "none"), (200, "all")]
    runs = []
    for n, mode in plan:
        budget = 60.0 if n <= 10_000 else 180.0
        runs.append(run_one(n, mode, budget, ctx.work_dir, ctx.step))
    sec["data"] = {"runs": runs, "nofile_limit": [soft, hard]}
    from .cells import doc_points

    sec["method"] = doc_points(__doc__)
    sec["method"].append(
        f"Server: `{runs[0].get('server_command')}`. Open-files limit {soft:,} (hard {hard:,})"
        f" in the server and in each load process."
    )
    rows = []
    for run in runs:
        per = run.get("bytes_per_connection")
        rows.append([
            run["mode"], run["target"], run.get("connections", 0),
            run["rss_after"] / 2**20, None if per is None else per / 1024,
            run.get("welcome_p50_ms"), run.get("welcome_p99_ms"), run.get("welcome_max_ms"),
            run.get("connect_welcome_p99_ms"), run.get("bytes_received", 0) / 2**20,
            run.get("open_seconds"),
        ])  # fmt: skip
        if run.get("stopped_early"):
            log = "; ".join(run.get("server_log", []))
            sec["notes"].append(
                f"{run['mode']}, {run['target']:,}: stopped at {run.get('connections', 0):,}"
                f" connections: {run['stopped_early']}" + (f" (server log: {log})" if log else "")
            )
    sec["tables"].append(table(
        "One fresh server per row",
        ["hello.peers", "target", "welcomed", "RSS MiB", "KiB per connection",
         "welcome p50 ms", "welcome p99 ms", "welcome max ms", "connect+welcome p99 ms",
         "MiB received by clients", "seconds to open"],
        rows,
    ))  # fmt: skip
    by = {(r["mode"], r["target"]): r for r in runs}
    ten = by.get(("none", 10_000))
    if ten is not None:
        per, n = ten.get("bytes_per_connection"), ten.get("connections", 0)
        met = None if per is None else per <= 20 * 1024 and n >= 10_000
        measured = "–" if per is None else f"{per / 1024:.1f} KiB each at {n:,}"
        sec["targets"].append(
            target("10,000 clients with hello: memory", "≤ 20 KiB each", measured, met, ISSUE)
        )
        p99 = ten.get("welcome_p99_ms")
        met = None if p99 is None else p99 < 50 and n >= 10_000
        measured = "–" if p99 is None else f"p99 {p99:.1f} ms at {n:,}"
        sec["targets"].append(
            target("10,000 clients with hello: welcome", "p99 < 50 ms", measured, met, ISSUE)
        )
    fifty = by.get(("none", 50_000))
    if fifty is not None:
        n = fifty.get("connections", 0)
        why = fifty.get("stopped_early")
        measured = f"{n:,} welcomed" + (f"; stopped: {why}" if why else "")
        sec["targets"].append(
            target("50,000 clients with hello", "all welcomed", measured, n >= 50_000, ISSUE)
        )
    return sec
