"""Cell ``memory``: server memory per idle connection, up to 10,000 connections.

The vclock server runs as a subprocess; two load processes open connections and
then only read (and drop) whatever arrives. Two runs, each on a fresh server:

- connections that only connect (no hello): what the I/O layer costs per
  connection (socket, transport, reader task, Connection, hub session);
- connections that say hello as the client library does (``ClientState.hello()``),
  opened in steps. Every hello sends a peer notice to every client already there,
  so n hellos cost O(n²) frames; the run stops adding when its time budget is
  spent and reports the largest count it reached.

After each step, once every connection is welcomed and no bytes have arrived for
0.5 s, the parent reads the server's RSS from /proc (until two readings agree).
Per-connection memory is (RSS after - RSS before) / connections. Descriptors:
the soft open-files limit is raised to the hard one (inherited by the server).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

from . import procs

LOAD_PROCS = 2


def run(
    target: int, steps: int, budget_s: float, log_dir: Path, step: Callable[[str], None]
) -> dict[str, Any]:
    """Two measurements, each on a fresh server: ``target`` connections that only
    connect (the I/O layer's cost), then connections that say hello, in ``steps``
    steps up to ``target`` or until ``budget_s`` is spent."""
    soft, hard = procs.raise_nofile_limit()
    # Each connection costs one descriptor in the server and one in a load process.
    allowed = max(0, min(target, soft - 200))
    result: dict[str, Any] = {"target": target, "nofile_limit": [soft, hard], "allowed": allowed}
    step(f"{allowed} connections without hello")
    result["tcp"] = _measure(allowed, 1, budget_s, log_dir, step, hello=False)
    result["hello"] = _measure(allowed, steps, budget_s, log_dir, step, hello=True)
    return result


def _measure(
    target: int, steps: int, budget_s: float, log_dir: Path, step: Callable[[str], None],
    *, hello: bool,
) -> dict[str, Any]:  # fmt: skip
    ctx = multiprocessing.get_context("spawn")
    started = time.monotonic()
    result: dict[str, Any] = {"hello": hello}
    with procs.running("vclock", log_dir) as server:
        result["server_command"] = procs.command_line(server.argv)
        baseline = procs.stable_rss(server.pid)
        result["rss_before"] = baseline
        pipes, workers = [], []
        points = [{"connections": 0, "rss": baseline, "seconds": 0.0}]
        try:
            for index in range(LOAD_PROCS):
                parent_end, child_end = ctx.Pipe()
                worker = ctx.Process(
                    target=worker_entry, args=(child_end, server.port, index, hello), daemon=True
                )
                worker.start()
                child_end.close()
                pipes.append(parent_end)
                workers.append(worker)
            opened = 0
            for k in range(1, steps + 1):
                goal = target * k // steps
                left = budget_s - (time.monotonic() - started)
                if left <= 0:
                    result["stopped_early"] = f"time budget of {budget_s:g} s spent"
                    break
                if hello:
                    step(f"{goal} connections with hello (from {opened})")
                t0 = time.monotonic()
                for index, pipe in enumerate(pipes):
                    share = _share(goal, index) - _share(opened, index)
                    pipe.send(("open", share, _share(opened, index), left))
                replies = [_recv(pipe, left + 10) for pipe in pipes]
                failed = [r["error"] for r in replies if r.get("error")]
                if failed:
                    result["stopped_early"] = failed[0]
                    break
                opened = goal
                rss = procs.stable_rss(server.pid)
                points.append({"connections": opened, "rss": rss, "seconds": time.monotonic() - t0})
            result["points"] = points
            last = points[-1]
            result["connections"] = last["connections"]
            result["rss_after"] = last["rss"]
            if last["connections"]:
                result["bytes_per_connection"] = (last["rss"] - baseline) / last["connections"]
            result["server_alive"] = server.alive()
        finally:
            for pipe in pipes:
                try:
                    pipe.send(("stop",))
                except OSError:
                    pass
            for worker in workers:
                worker.join(10)
                if worker.is_alive():
                    worker.terminate()  # by PID
                    worker.join(5)
                if worker.is_alive():
                    worker.kill()
            for pipe in pipes:
                pipe.close()
    result["elapsed_s"] = time.monotonic() - started
    return result


def _share(total: int, index: int) -> int:
    """How many of ``total`` connections process ``index`` holds."""
    return total // LOAD_PROCS + (1 if index < total % LOAD_PROCS else 0)


def _recv(pipe: Pipe, timeout: float) -> dict[str, Any]:
    if not pipe.poll(timeout):
        return {"error": f"load process did not answer within {timeout:g} s"}
    kind, payload = pipe.recv()
    return payload if kind == "opened" else {"error": str(payload)}


# The load processes


class _Idle(asyncio.Protocol):
    """A client that said hello and then only reads (and drops) what arrives."""

    def __init__(self, hello: bytes, counter: list[float]) -> None:
        self.hello = hello
        self.counter = counter  # [bytes received, time of the last bytes]
        self.welcomed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.hello:
            transport.write(self.hello)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.counter[0] += len(data)
        self.counter[1] = time.monotonic()
        if not self.welcomed.done() and b"\n" in data:
            self.welcomed.set_result(True)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.welcomed.done():
            self.welcomed.set_result(False)


def worker_entry(pipe: Pipe, port: int, index: int, hello: bool) -> None:
    procs.raise_nofile_limit()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(_worker(pipe, port, index, hello))


async def _open_one(
    sem: asyncio.Semaphore, port: int, client_id: str, say_hello: bool, counter: list[float],
    transports: list[Any],
) -> None:  # fmt: skip
    from vclock.client import ClientState
    from vclock.protocol import encode_frame

    hello = encode_frame(ClientState(client_id).hello()) if say_hello else b""
    async with sem:
        transport, client = await asyncio.get_running_loop().create_connection(
            lambda: _Idle(hello, counter), procs.HOST, port
        )
        transports.append(transport)
        if say_hello and not await client.welcomed:
            raise ConnectionError("closed before welcome")


async def _worker(pipe: Pipe, port: int, index: int, say_hello: bool) -> None:
    loop = asyncio.get_running_loop()
    transports: list[Any] = []
    counter = [0.0, time.monotonic()]
    while True:
        command, *args = await loop.run_in_executor(None, pipe.recv)
        if command == "stop":
            for transport in transports:
                transport.close()
            await asyncio.sleep(0.2)
            return
        count, first, timeout = args
        started = time.monotonic()
        # Both processes together stay under the server's listen backlog (100).
        sem = asyncio.Semaphore(40)
        try:
            opening = (
                _open_one(sem, port, f"m{index}x{first + k:05d}", say_hello, counter, transports)
                for k in range(count)
            )
            await asyncio.wait_for(asyncio.gather(*opening), timeout)
            # Wait until the peer notices have stopped arriving.
            while time.monotonic() - counter[1] < 0.5 and time.monotonic() - started < timeout:
                await asyncio.sleep(0.1)
            pipe.send(("opened", {"bytes": counter[0], "seconds": time.monotonic() - started}))
        except Exception as exc:
            pipe.send(("error", f"opening {count} connections: {exc!r}"))
