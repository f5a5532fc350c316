"""Cell ``relay``: messages relayed per second, one-way latency and round trip.

Systems, each started fresh for each client count and driven by two load
processes (:mod:`benchmarks.load`) that share the 2 cores with the server:

- ``vclock``: ``python -m vclock server ...`` driven through vclock's sans-I/O
  client pieces (ClientState + protocol.Connection) over asyncio transports;
- ``vclock-lib``: the same server driven by the client library
  (``vclock.asyncio.connect``), at the smaller client counts;
- ``bare``: the bare coalescing asyncio relay (:mod:`benchmarks.bare_relay`), the
  Python ceiling, driven like ``vclock``;
- ``nats``: a real nats-server driven by nats-py.
"""

from __future__ import annotations

import array
import multiprocessing
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import procs
from .load import worker_entry
from .stats import percentile

LOAD_PROCS = 2


@dataclass(frozen=True)
class Timing:
    warmup_s: float
    measure_s: float
    rtt_s: float
    rtt_limit: int
    setup_timeout_s: float


FULL = Timing(warmup_s=1.0, measure_s=5.0, rtt_s=2.0, rtt_limit=20_000, setup_timeout_s=120)
QUICK = Timing(warmup_s=0.5, measure_s=1.5, rtt_s=0.7, rtt_limit=2_000, setup_timeout_s=60)


def window_for(n_clients: int) -> int:
    """Messages in flight (sent, not yet received) over all load processes."""
    return WINDOW_BASE + 2 * n_clients


WINDOW_BASE = 1000


def run_system(
    system: str,
    n_clients: int,
    timing: Timing,
    log_dir: Path,
    *,
    step: Any = None,
    profile_to: Path | None = None,
    rtt: bool = True,
) -> dict[str, Any]:
    """Start ``system``'s server, put the load on it, and stop everything."""
    server_kind, driver = {
        "vclock": ("vclock", "sansio"),
        "vclock-full": ("vclock", "sansio-full"),
        "vclock-lib": ("vclock", "lib"),
        "bare": ("bare", "sansio"),
        "nats": ("nats", "nats"),
    }[system]
    result: dict[str, Any] = {"system": system, "clients": n_clients, "driver": driver}
    kwargs: dict[str, Any] = {"profile_to": profile_to} if profile_to is not None else {}
    with procs.running(server_kind, log_dir, **kwargs) as server:
        result["server_command"] = procs.command_line(server.argv)
        try:
            result.update(
                drive([server.port], [server.pid], n_clients, driver, timing,
                      label=system, step=step, rtt=rtt)
            )  # fmt: skip
        except Exception as exc:
            result["ok"] = False
            result["failure"] = f"{type(exc).__name__}: {exc}"
            if not server.alive():
                result["failure"] += f" (server exited: {server.log_tail(500)})"
        finally:
            if profile_to is not None:
                server.stop(timeout=60)  # graceful: cProfile writes its file on exit
    return result


def drive(
    ports: list[int],
    server_pids: list[int],
    n_clients: int,
    driver: str,
    timing: Timing,
    *,
    label: str,
    step: Any = None,
    rtt: bool = True,
    settle_s: float = 0.0,
    other_pids: list[int] | None = None,
    rtt_first: bool = False,
    late_s: float = 0.0,
    pattern: str = "any",
) -> dict[str, Any]:
    """Put the load of this cell on servers already running; raises on failure.

    Client ``i`` connects to ``ports[i % len(ports)]`` (one port: every client on one
    server). ``server_pids`` are the servers whose CPU is reported as ``server_cpu``,
    ``other_pids`` (e.g. a broker behind them) as ``broker_cpu``. ``settle_s``: a pause
    after every client is welcomed and before the load starts (cluster membership).
    ``rtt_first``: measure round trips before the sustained load rather than after it
    (so a backlog the load leaves behind cannot slow them down). ``late_s``: wait this
    long after the load (and round trips) before stopping, and report as ``late`` the
    load messages that arrived after the load processes' own 2 s drain. ``pattern``:
    whom a client sends to (:func:`benchmarks.load._targets`: ``any`` other client,
    only those on its own server, ``local``, or only those on other servers, ``cross``).
    ``server_cpu_each`` lists each server's CPU (cores) in the window, and
    ``counted_by_node`` the messages its clients received in the window.
    """
    result: dict[str, Any] = {}
    other_pids = other_pids or []
    ctx = multiprocessing.get_context("spawn")
    pipes, workers = [], []
    shared = ctx.RawArray("q", LOAD_PROCS + LOAD_PROCS * LOAD_PROCS)
    try:
        for index in range(LOAD_PROCS):
            parent_end, child_end = ctx.Pipe()
            spec = {
                "port": ports[0],
                "ports": list(ports),
                "n_clients": n_clients,
                "index": index,
                "procs": LOAD_PROCS,
                "driver": driver,
                "window": window_for(n_clients),
                "batch": 64,
                "uvloop": True,
                "shared": shared,
                "pattern": pattern,
            }
            worker = ctx.Process(target=worker_entry, args=(child_end, spec), daemon=True)
            worker.start()
            child_end.close()
            pipes.append(parent_end)
            workers.append(worker)
        _note(step, f"{label}: connecting {n_clients} clients")
        ready = _gather(pipes, "ready", timing.setup_timeout_s)
        result["setup_s"] = max(r["setup_s"] for r in ready)
        if settle_s > 0:
            _note(step, f"{label}: letting membership settle ({settle_s:g} s)")
            time.sleep(settle_s)
        if rtt and rtt_first:
            result.update(_round_trips(pipes, timing, n_clients, label, step))
        _note(step, f"{label}: sustained load, {n_clients} clients")
        go = time.time_ns() + 200_000_000
        win_start = go + int(timing.warmup_s * 1e9)
        win_end = win_start + int(timing.measure_s * 1e9)
        for pipe in pipes:
            pipe.send(("load", go, win_start, win_end))
        pids = [w.pid for w in workers if w.pid is not None]
        _sleep_until(win_start)
        before = _cpu_sample(server_pids, pids, other_pids)
        each_before = [procs.cpu_seconds(pid) for pid in server_pids]
        _sleep_until(win_end)
        each_after = [procs.cpu_seconds(pid) for pid in server_pids]
        after = _cpu_sample(server_pids, pids, other_pids)
        loads = _gather(pipes, "load", timing.warmup_s + 30)
        result.update(_load_summary(loads, timing.measure_s))
        result["server_cpu_each"] = [
            (b - a) / timing.measure_s for a, b in zip(each_before, each_after, strict=True)
        ]
        by_node = [0] * len(ports)
        for load in loads:
            for node, count in load["counted_by_node"].items():
                by_node[int(node)] += count
        result["counted_by_node"] = by_node
        server_cpu, load_cpu, broker_cpu, machine = (
            (b - a) / timing.measure_s for a, b in zip(before, after, strict=True)
        )
        result["server_cpu"] = server_cpu
        result["load_cpu"] = load_cpu
        if other_pids:
            result["broker_cpu"] = broker_cpu
        result["other_cpu"] = max(0.0, machine - server_cpu - load_cpu - broker_cpu)
        if rtt and not rtt_first:
            result.update(_round_trips(pipes, timing, n_clients, label, step))
        if late_s > 0:
            _note(step, f"{label}: waiting {late_s:g} s for late messages")
            time.sleep(late_s)
        for pipe in pipes:
            pipe.send(("stop",))
        stopped = _gather(pipes, "stopped", 30)
        result["errors"] = sum(s["errors"] for s in stopped)
        if late_s > 0:
            result["late"] = sum(s["received"] for s in stopped) - result["received"]
        result["first_error"] = next((s["first_error"] for s in stopped if s["first_error"]), "")
        if driver == "lib":
            result["clock_entries_mean"] = sum(s["clock_entries_mean"] for s in stopped) / len(
                stopped
            )
        result["ok"] = True
    finally:
        for worker in workers:
            worker.join(5)
            if worker.is_alive():
                worker.terminate()  # by PID
                worker.join(5)
            if worker.is_alive():
                worker.kill()
                worker.join(5)
        for pipe in pipes:
            pipe.close()
    return result


def _round_trips(
    pipes: list[Any], timing: Timing, n_clients: int, label: str, step: Any
) -> dict[str, Any]:
    """One request at a time from a client of process 0 to one of process 1."""
    _note(step, f"{label}: round trips, {n_clients} clients")
    end = time.time_ns() + int(timing.rtt_s * 1e9)
    pipes[0].send(("rtt", "pinger", end, timing.rtt_limit))
    pipes[1].send(("rtt", "ponger", end, timing.rtt_limit))
    return _rtt_summary(_gather(pipes, "rtt", timing.rtt_s + 30))


def _cpu_sample(
    server_pids: list[int], load_pids: list[int], other_pids: list[int]
) -> tuple[float, float, float, float]:
    """CPU seconds so far: the servers, the load processes, other listed processes
    (a broker), the whole machine."""
    return (
        sum(procs.cpu_seconds(pid) for pid in server_pids),
        sum(procs.cpu_seconds(pid) for pid in load_pids),
        sum(procs.cpu_seconds(pid) for pid in other_pids),
        procs.machine_busy_seconds(),
    )


def _note(step: Any, text: str) -> None:
    if step is not None:
        step(text)


def _sleep_until(ns: int) -> None:
    delay = (ns - time.time_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


def _gather(pipes: list[Any], expected: str, timeout: float) -> list[dict[str, Any]]:
    """One ``expected`` message from every load process, within ``timeout``."""
    deadline = time.monotonic() + timeout
    results: list[dict[str, Any] | None] = [None] * len(pipes)
    while any(r is None for r in results):
        for index, pipe in enumerate(pipes):
            if results[index] is not None:
                continue
            if pipe.poll(0.05):
                kind, payload = pipe.recv()
                if kind == "error":
                    raise RuntimeError(f"load process {index}: {payload}")
                if kind != expected:
                    raise RuntimeError(f"load process {index}: expected {expected}, got {kind}")
                results[index] = payload
        if time.monotonic() > deadline:
            raise TimeoutError(f"load processes did not answer {expected!r} within {timeout:g} s")
    return [r for r in results if r is not None]


def _load_summary(loads: list[dict[str, Any]], measure_s: float) -> dict[str, Any]:
    latencies = array.array("q")
    for load in loads:
        latencies.frombytes(load["latencies"])
    ordered = sorted(latencies)
    return {
        "msgs_per_s": sum(load["counted"] for load in loads) / measure_s,
        "sent": sum(load["sent"] for load in loads),
        "received": sum(load["received"] for load in loads),
        "latency_p50_ms": percentile(ordered, 50) / 1e6 if ordered else None,
        "latency_p99_ms": percentile(ordered, 99) / 1e6 if ordered else None,
        "latency_samples": len(ordered),
        "load_cpu_s": sum(load["cpu_s"] for load in loads),
    }


def _rtt_summary(rtts: list[dict[str, Any]]) -> dict[str, Any]:
    samples = array.array("q")
    for part in rtts:
        samples.frombytes(part["rtts"])
    ordered = sorted(samples)
    return {
        "rtt_p50_ms": percentile(ordered, 50) / 1e6 if ordered else None,
        "rtt_p99_ms": percentile(ordered, 99) / 1e6 if ordered else None,
        "rtt_samples": len(ordered),
    }
