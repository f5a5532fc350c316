#!/usr/bin/env python3
"""A longer fuzz run against a live vclock server (not part of CI).

    python scripts/fuzz_server.py --seconds 60 [--connections 8] [--seed 1]

The invariant (the same as tests/integration/test_fuzz_live.py): whatever bytes a
connection sends, the server answers with ``error`` frames or closes that
connection. It stays up, a fresh connection still gets ``welcome``, two
well-behaved clients (B and C) keep exchanging, its memory stays bounded, and no
traceback reaches its console.

It starts ``vclock server`` (port 0, in-memory data) and ``vclock client`` B and
C, then runs N threads, each opening connection after connection and sending a
random mix of valid frames, nearly valid ones (a field dropped or retyped, 10**30,
nesting up to 5000 deep, invalid UTF-8, unknown tags), random bytes, oversized
lines, bursts past the rate limit, and connections that never read. Every few
seconds it checks the invariant; at the end it prints a summary and exits 1 if
anything failed.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
FUZZ_IDS = ["F1", "F2", "F3", "F4"]  # the only ids valid frames put in clocks
MAX_COUNTER = 2**63 - 1
WEIRD: list[Any] = [
    10**30, -(10**30), -1, 0, 1.5, True, None, "", "x" * 300, [], {}, [1, 2],
    {"A": 1}, {"F1": -1}, {"F1": 10**30}, {"": 1}, {"F1": "1"},
]  # fmt: skip


# Processes


class Child:
    """A child process whose stdout/stderr lines are collected by threads."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self.out: list[str] = []
        self.err: list[str] = []
        for pipe, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(pipe, into), daemon=True).start()

    @staticmethod
    def _pump(pipe: Any, into: list[str]) -> None:
        for line in pipe:
            into.append(line.rstrip("\n"))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.out):
                if match := regex.search(line):
                    return match
            if not self.alive():
                break
            time.sleep(0.05)
        raise RuntimeError(f"no line matching {pattern!r}; stderr: {self.err[-10:]}")

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def vclock(*args: str) -> list[str]:
    return [sys.executable, "-m", "vclock", *args]


def rss_kib(pid: int) -> int | None:
    try:
        match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def count_kinds(log: Path, *kinds: str) -> int:
    if not log.exists():
        return 0
    total = 0
    for line in log.read_bytes().splitlines():
        try:
            total += json.loads(line).get("kind") in kinds
        except ValueError:
            continue  # a line being written right now
    return total


# Random input


def encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def random_json(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.5:
        return rng.choice([None, True, 0, -7, 2**70, 1.25, "", "text", "é\u2028"])
    if roll < 0.75:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice("abcxyz"): random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def valid_frame(rng: random.Random, own: str, seq: int) -> dict[str, Any]:
    kind = rng.choice(["send", "send", "report", "hello", "delivered", "bye"])
    if kind == "hello":
        frame: dict[str, Any] = {"type": "hello", "v": 1}
        if rng.random() < 0.7:
            frame["id"] = rng.choice([*FUZZ_IDS, "B", "server", "x-1.y_2"])
        if rng.random() < 0.5:
            frame["resume"] = rng.random() < 0.5
        return frame
    if kind == "delivered":
        return {"type": "delivered", "upto": rng.randint(0, 10)}
    if kind == "bye":
        return {"type": "bye"}
    clock = {i: rng.choice([0, 1, rng.randint(0, 1000), MAX_COUNTER]) for i in FUZZ_IDS}
    clock = dict(rng.sample(sorted(clock.items()), rng.randint(0, 3)))
    clock[own] = seq
    frame = {"type": kind, "seq": seq, "clock": clock}
    if kind == "send":
        frame["to"] = rng.choice(["B", "C", *FUZZ_IDS, "nobody", "server"])
        if rng.random() < 0.5:
            frame["body"] = random_json(rng)
    return frame


def nested(depth: int, dicts: bool) -> bytes:
    if dicts:
        return b'{"a":' * depth + b"1" + b"}" * depth
    return b"[" * depth + b"]" * depth


def random_line(rng: random.Random, own: str, seq: int) -> bytes:
    roll = rng.randint(0, 11)
    if roll <= 3:
        return encode(valid_frame(rng, own, seq))
    if roll <= 6:  # nearly valid
        frame = valid_frame(rng, own, seq)
        key = rng.choice(sorted(frame))
        how = rng.choice(["drop", "retype", "add", "deep", "tag"])
        if how == "drop":
            del frame[key]
        elif how == "retype":
            frame[key] = rng.choice(WEIRD)
        elif how == "add":
            frame[rng.choice(["x", "priority", "", "type2"])] = random_json(rng)
        elif how == "tag":
            frame["type"] = rng.choice(["sned", "welcome", "ack", "deliver", "", "HELLO"])
        else:
            line = encode({**frame, key: None})
            deep = nested(rng.randint(1, 5000), rng.random() < 0.5)
            return line.replace(f'"{key}":null'.encode(), f'"{key}":'.encode() + deep, 1)
        return encode(frame)
    if roll == 7:
        return nested(rng.randint(1, 5000), rng.random() < 0.5)
    if roll == 8:  # invalid UTF-8 inside a frame
        line = encode(valid_frame(rng, own, seq))
        at = rng.randint(0, len(line))
        return line[:at] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80"]) + line[at:]
    if roll == 9:
        return rng.choice([b"", b"  ", b"\r", b"null", b"1e999", b'"hello"', b"{}", b"[]"])
    if roll == 10 and rng.random() < 0.1:  # an oversized line (default limit: 1 MiB)
        return b"x" * rng.choice([70_000, 1_100_000, 2_000_000])
    return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))).replace(b"\n", b" ")


# Workers


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections = 0
        self.frames = 0
        self.bytes = 0
        self.codes: collections.Counter[str] = collections.Counter()
        self.other_frames: collections.Counter[str] = collections.Counter()
        self.stalls: list[str] = []  # connections the server did not close after our EOF

    def add(self, frames: int, sent: int, replies: list[bytes]) -> None:
        with self.lock:
            self.connections += 1
            self.frames += frames
            self.bytes += sent
            for line in replies:
                try:
                    frame = json.loads(line)
                except ValueError:
                    self.other_frames["<not json>"] += 1
                    continue
                if frame.get("type") == "error":
                    self.codes[str(frame.get("code"))] += 1
                else:
                    self.other_frames[str(frame.get("type"))] += 1


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[list[bytes], bool]:
    """Every line until the server closes; (lines, closed)."""
    data = bytearray()
    deadline = time.monotonic() + timeout
    closed = False
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            continue
        except OSError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
    complete = bytes(data).rpartition(b"\n")[0]  # a line cut off by our timeout is not counted
    return [line for line in complete.split(b"\n") if line.strip()], closed


def one_connection(port: int, rng: random.Random, stats: Stats) -> None:
    own = rng.choice(FUZZ_IDS)
    style = rng.choices(["mixed", "burst", "silent"], weights=[90, 7, 3])[0]
    lines: list[bytes] = []
    if rng.random() < 0.6:
        lines.append(encode({"type": "hello", "v": 1, "id": own, "resume": rng.random() < 0.3}))
    seq = rng.randint(1, 1000)
    if style == "burst":  # past the rate limit
        lines += [
            encode({"type": "report", "seq": seq + i, "clock": {own: seq + i}})
            for i in range(rng.randint(100, 12000))
        ]
    else:
        for _ in range(rng.randint(1, 12)):
            seq += rng.randint(0, 3)
            lines.append(random_line(rng, own, seq))
    data = b"\n".join(lines) + (b"\n" if rng.random() < 0.8 else b"")
    if rng.random() < 0.2:
        data += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 100)))
    sock = socket.create_connection((HOST, port), timeout=10)
    if style == "silent":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    replies: list[bytes] = []
    try:
        try:
            view = memoryview(data)
            while view:
                cut = rng.randint(1, max(1, len(view)))
                sock.sendall(view[:cut])
                view = view[cut:]
        except OSError:
            pass  # the server closed on us (fatal error, bye, rate): allowed
        else:
            ending = rng.choice(["half-close", "half-close", "reset", "linger"])
            if style == "silent":
                time.sleep(rng.uniform(0.1, 1.0))  # do not read for a while
                ending = "reset"
            if ending == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif ending == "linger":
                replies, _ = read_until_closed(sock, rng.uniform(0.01, 0.2))
            else:
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                else:
                    replies, closed = read_until_closed(sock, 15.0)
                    if not closed:
                        with stats.lock:
                            stats.stalls.append(data[:200].decode("utf-8", "replace"))
    finally:
        sock.close()
    stats.add(len(lines), len(data), replies)


def worker(port: int, seed: int, until: float, stats: Stats, errors: list[str]) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
        try:
            one_connection(port, rng, stats)
        except OSError as exc:
            errors.append(f"worker {seed}: {exc!r}")
            time.sleep(0.1)


# Checks


def probe(port: int, n: int) -> str | None:
    """None if a fresh connection gets welcome, else what went wrong."""
    try:
        with socket.create_connection((HOST, port), timeout=10) as sock:
            sock.sendall(encode({"type": "hello", "v": 1, "id": f"Probe{n}"}) + b"\n")
            data = b""
            while b"\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    return "closed before welcome"
                data += chunk
            frame = json.loads(data.split(b"\n", 1)[0])
            return None if frame.get("type") == "welcome" else f"got {frame}"
    except OSError as exc:
        return repr(exc)


def traceback_signatures(lines: list[str]) -> collections.Counter[str]:
    """Each traceback's last line (the exception), counted."""
    found: collections.Counter[str] = collections.Counter()
    inside = False
    last = ""
    for line in [*lines, ""]:
        if line.startswith("Traceback"):
            if inside:
                found[last] += 1
            inside, last = True, ""
        elif inside and line and not line.startswith((" ", "\t")):
            last = re.sub(r"0x[0-9a-f]+", "0x…", line)
            found[last] += 1
            inside = False
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--connections", type=int, default=8, help="concurrent raw connections")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--max-rss-growth-mib", type=float, default=100.0)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)

    root = Path(tempfile.mkdtemp(prefix="vclock-fuzz-"))
    logs = root / "logs"
    failures: list[str] = []
    children: list[Child] = []
    stats = Stats()
    worker_errors: list[str] = []
    try:
        server = Child(
            vclock("server", "--port", "0", "--data", ":memory:", "--sync-interval", "1"), root
        )
        children.append(server)
        port = int(server.wait_for(r"^vclock server listening on 127\.0\.0\.1:(\d+) ").group(1))
        for client_id in ("B", "C"):
            client = Child(
                vclock(
                    "client",
                    "--id",
                    client_id,
                    "--port",
                    str(port),
                    "--interval",
                    "0.1-0.3",
                    "--log",
                    str(logs),
                ),
                root,
            )
            children.append(client)
            client.wait_for(r"^Connected to ")
        time.sleep(1.0)
        rss_before = rss_kib(server.proc.pid)
        start = {i: count_kinds(logs / f"{i}.jsonl", "receive") for i in ("B", "C")}

        until = time.monotonic() + args.seconds
        threads = [
            threading.Thread(
                target=worker, args=(port, seed + k, until, stats, worker_errors), daemon=True
            )
            for k in range(args.connections)
        ]
        for thread in threads:
            thread.start()
        checks, last = 0, dict(start)
        rss_peak = rss_before or 0
        while time.monotonic() < until:
            time.sleep(min(5.0, max(0.0, until - time.monotonic())))
            checks += 1
            if not server.alive():
                failures.append(f"server exited with {server.proc.returncode}")
                break
            if (problem := probe(port, checks)) is not None:
                failures.append(f"probe {checks}: {problem}")
            rss_peak = max(rss_peak, rss_kib(server.proc.pid) or 0)
            now = {i: count_kinds(logs / f"{i}.jsonl", "receive") for i in ("B", "C")}
            stuck = [i for i in now if now[i] <= last[i]]
            if stuck:
                failures.append(f"check {checks}: {stuck} received nothing in the last interval")
            last = now
        for thread in threads:
            thread.join(30)
        time.sleep(1.0)
        rss_after = rss_kib(server.proc.pid)
        if server.alive() and (problem := probe(port, 0)) is not None:
            failures.append(f"final probe: {problem}")
        for client in children[1:]:
            if not client.alive():
                failures.append(f"client exited: {client.out[-3:]} {client.err[-3:]}")
        end = {i: count_kinds(logs / f"{i}.jsonl", "receive") for i in ("B", "C")}
    finally:
        for child in reversed(children):
            child.stop()

    if stats.stalls:
        failures.append(f"{len(stats.stalls)} connections not closed after EOF")
    tracebacks = traceback_signatures(server.err + server.out)
    if tracebacks:
        failures.append(f"{sum(tracebacks.values())} tracebacks on the server console")
    growth = (rss_after - rss_before) / 1024 if rss_before and rss_after else None
    if growth is not None and growth > args.max_rss_growth_mib:
        failures.append(f"server RSS grew by {growth:.1f} MiB")

    print(f"vclock fuzz run: {args.seconds:g} s, {args.connections} connections, seed {seed}")
    print(f"  connections     {stats.connections}")
    print(f"  frames sent     {stats.frames} ({stats.bytes / 1e6:.1f} MB)")
    print(
        "  errors by code  "
        + (", ".join(f"{c} {n}" for c, n in stats.codes.most_common()) or "none")
    )
    print(
        "  other replies   "
        + (", ".join(f"{t} {n}" for t, n in stats.other_frames.most_common()) or "none")
    )
    kib = f"{rss_before} KiB -> {rss_after} KiB (peak seen {rss_peak} KiB)"
    print(f"  server RSS      {kib}")
    print(f"  B, C receives   {start} -> {end}")
    print(f"  health checks   {checks} (probe hello + B/C progress every 5 s)")
    for signature, count in tracebacks.most_common():
        print(f"  traceback x{count}: {signature}")
    for error in worker_errors[:5]:
        print(f"  worker error    {error}")
    verdict = "OK" if not failures else "FAILED"
    print(f"verdict: {verdict}")
    for failure in failures:
        print(f"  - {failure}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
