#!/usr/bin/env python3
"""A chaos run of one vclock server with honest and hostile clients (issue 12).

    python scripts/chaos.py --duration 600 --out DIR [--seed 1] [--every 20]

What it runs, all on 127.0.0.1:

- one real ``vclock server`` process with ``--data`` (SQLite) and ``--log``, on a
  free port, started again on the same port and data after every fault;
- honest ``vclock client`` processes in resume mode (``--reconnect --state
  --log``), delta-encoded (the client asks for it, the server agrees), two of
  them also sending causal broadcasts;
- hostile clients, raw sockets in a thread of this script: forged clocks for
  other ids, clocks naming ids the server has no room for, garbage and
  oversized lines, refused frames on delta connections (readable ones must
  leave both ends in step, unreadable ones end in ``delta-lost``), ghost
  resume hellos, blank-line floods. Each counts the error codes it gets.

Faults, every ``--every`` seconds on average (times drawn from ``--seed``; each
kind once per round of ``--faults``, in a random order):
SIGKILL of the server; a "full disk" (the server is stopped with SIGTERM and
started under ``RLIMIT_FSIZE``, so its store fails and it stops itself with
status 1; then it is started without the limit); SIGKILL of an honest client
(started again on its ``--state``).

The judgement, at the end: ``vclock check`` over the honest and hostile
clients' logs and the server's log must pass, and every acknowledged message
between honest clients must have been received exactly once
(:func:`vclock.tools.audit.delivery_audit`). Hostile clients log what they send
that the server must accept (and only that), as a client would: a hostile
frame the server wrongly accepted shows as a receive with no send, and a clock
the server read wrong on a delta connection as a receive whose clock is not
the one sent. The report goes to ``DIR/report.json`` and ``DIR/report.md``;
the exit status is 1 if the check or the audit fails.

Each server run writes its event log into a folder of its own
(``DIR/parts/N``): the full-disk run must not find a large log already there
(RLIMIT_FSIZE limits every file the process writes). The run folder that is
checked (``DIR/run``) has the clients' logs and the server's parts joined in
order, as one server appending to its log across restarts would have written.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vclock.asyncio.client import load_state
from vclock.events import EVERYONE
from vclock.tools.audit import delivery_audit
from vclock.tools.checker import check, format_report
from vclock.tools.eventlog import EventLog, read_events

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.procs import free_port  # noqa: E402

HOST = "127.0.0.1"
LISTENING = re.compile(r"^vclock server listening on 127\.0\.0\.1:(\d+) ")
SERVER_ERROR = re.compile(r"^\S+: server error (\S+):")
HONEST = ["A", "B", "C", "D"]
BROADCASTERS = {"C", "D"}  # every 5th send of these is a causal broadcast
HOSTILE = ["XF", "XD", "XG", "XB", "XL", "XI"]  # ids the hostile clients use
FILLERS = [f"F{i:02d}" for i in range(1, 41)]  # take the rest of the id room
MAX_IDS = 36
MAX_HELD = 10
MAX_FRAME = 65536
BIG = 2**62  # far past any max_lead: always forged-clock
GRACE = _dt.timedelta(seconds=0.5)  # sends this close to the stop may be in flight

#: The server's options for the whole run (small limits, so hostile clients hit them).
SERVER_OPTIONS = [
    "--sync-interval", "1", "--quiet",
    "--max-ids", str(MAX_IDS), "--max-held", str(MAX_HELD), "--hold-for", "30",
    "--max-frame-size", str(MAX_FRAME), "--max-rate", "500",
]  # fmt: skip


def now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def vclock(*args: str) -> list[str]:
    return [sys.executable, "-m", "vclock", *args]


# The server


class Server:
    """The one server process: the same port and data on every start, a fresh
    log part each time. Stopped and signalled by PID only."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.tracebacks: list[str] = []  # stderr files with a traceback in them

    def start(self, fsize: int | None = None, attempts: int = 40) -> bool:
        """Start it (under RLIMIT_FSIZE ``fsize`` if given); True once it listens,
        False if it exited before (a full disk can stop it while it starts)."""
        for _ in range(attempts):
            self.runs += 1
            part = self.out / "parts" / f"{self.runs:03d}"
            argv = ["server", "--port", str(self.port), "--data", str(self.out / "data")]
            argv += ["--log", str(part), *SERVER_OPTIONS]
            if fsize is None:
                cmd = vclock(*argv)
            else:
                code = (
                    "import resource, sys;"
                    f"resource.setrlimit(resource.RLIMIT_FSIZE, ({fsize}, {fsize}));"
                    "from vclock.cli import main; main(sys.argv[1:])"
                )
                cmd = [sys.executable, "-c", code, *argv]
            stderr = (self.out / "out" / f"server.{self.runs:03d}.err").open("wb")
            stdout = (self.out / "out" / f"server.{self.runs:03d}.out").open("wb")
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            self.proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, env=env)
            stdout.close()
            stderr.close()
            status = self._wait_listening()
            if status == "up":
                return True
            if status == "busy":
                time.sleep(0.25)  # the old socket is not free yet
                continue
            return False
        raise RuntimeError(f"port {self.port} stayed busy")

    def _wait_listening(self, timeout: float = 30.0) -> str:
        out = self.out / "out" / f"server.{self.runs:03d}.out"
        err = self.out / "out" / f"server.{self.runs:03d}.err"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if LISTENING.search(out.read_text(errors="replace")):
                return "up"
            assert self.proc is not None
            if self.proc.poll() is not None:
                self._scan(err)
                return "busy" if "cannot listen" in err.read_text(errors="replace") else "exited"
            time.sleep(0.05)
        raise RuntimeError(f"the server did not listen within {timeout:g} s; see {out}")

    def _scan(self, err: Path) -> None:
        if "Traceback" in err.read_text(errors="replace"):
            self.tracebacks.append(str(err))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Signal it and wait; SIGKILL if it does not go. Returns its status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self._scan(self.out / "out" / f"server.{self.runs:03d}.err")
        return proc.returncode

    def wait(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stderr(self) -> str:
        return (self.out / "out" / f"server.{self.runs:03d}.err").read_text(errors="replace")


# Honest clients


class Honest:
    """One ``vclock client --reconnect --state --log`` process."""

    def __init__(self, client_id: str, out: Path, port: int, seed: int) -> None:
        self.id = client_id
        self.out = out
        self.argv = vclock(
            "client", "--id", client_id, "--port", str(port), "--reconnect",
            "--state", str(out / "state" / f"{client_id}.state"), "--log", str(out / "run"),
            "--interval", "0.05-0.3", "--seed", str(seed),
            "--broadcast-every", "5" if client_id in BROADCASTERS else "0",
        )  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.start()

    def start(self) -> None:
        self.starts += 1
        stdout = (self.out / "out" / f"{self.id}.out").open("ab")
        stderr = (self.out / "out" / f"{self.id}.err").open("ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(self.argv, stdout=stdout, stderr=stderr, env=env)
        stdout.close()
        stderr.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(15)

    def stop(self) -> int | None:
        """SIGTERM: it says bye and exits 0."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        return self.proc.returncode

    def errors(self) -> Counter[str]:
        """The server's error codes this client printed."""
        text = (self.out / "out" / f"{self.id}.err").read_text(errors="replace")
        return Counter(m.group(1) for line in text.splitlines() if (m := SERVER_ERROR.match(line)))


# Hostile clients: raw sockets on an event loop in a thread of their own


@dataclass
class Tally:
    """What the hostile clients did and what they were told."""

    frames: Counter[str] = field(default_factory=Counter)  # per attacker, lines written
    codes: dict[str, Counter[str]] = field(default_factory=dict)  # per attacker, error codes
    accepted: Counter[str] = field(default_factory=Counter)  # per attacker, frames logged
    unexpected: list[str] = field(default_factory=list)  # an error for a frame it must take
    delta_mismatch: list[str] = field(default_factory=list)  # a deliver read wrong
    in_step: int = 0  # valid delta frames taken right after a refused readable one

    def code(self, who: str, code: str) -> None:
        self.codes.setdefault(who, Counter())[code] += 1


class Raw:
    """One hostile connection: writes lines, reads the server's frames as dicts.

    With ``delta`` it keeps both delta references as protocol 12 says: the one of
    what it writes moves with every clock it writes (refused or not), the one of
    what it reads with every clock it reads."""

    def __init__(self, who: str, tally: Tally) -> None:
        self.who = who
        self.tally = tally
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.delta = False
        self.sent_ref: dict[str, int] = {}
        self.read_ref: dict[str, int] = {}
        self.closed = False
        #: the highest own entry the server surely has: welcome.clock's, then the
        #: last valid frame written on this connection (a frame logged before a
        #: crash may never have reached the server)
        self.known = 0

    async def open(self, port: int) -> bool:
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, port, limit=1 << 22), 5
            )
        except (OSError, TimeoutError):
            return False
        return True

    async def write(self, data: bytes) -> None:
        assert self.writer is not None
        self.tally.frames[self.who] += max(1, data.count(b"\n"))
        self.writer.write(data)
        await self.writer.drain()

    async def frame(self, frame: dict[str, Any]) -> None:
        """Write ``frame``, its clock delta-encoded on a delta connection."""
        if self.delta and "clock" in frame:
            clock: dict[str, int] = frame["clock"]
            delta = {k: v for k, v in clock.items() if self.sent_ref.get(k) != v}
            delta |= {k: 0 for k in self.sent_ref if k not in clock}
            self.sent_ref = dict(clock)
            frame = {**frame, "clock": delta}
        await self.write(json.dumps(frame, separators=(",", ":")).encode() + b"\n")

    async def read(self, timeout: float) -> dict[str, Any] | None:
        """The next frame, or None on a timeout or once the server closed."""
        assert self.reader is not None
        try:
            line = await asyncio.wait_for(self.reader.readline(), timeout)
        except (TimeoutError, OSError, ValueError):
            return None
        if not line:
            self.closed = True
            return None
        try:
            frame: dict[str, Any] = json.loads(line)
        except ValueError:
            self.tally.unexpected.append(f"{self.who}: unreadable server line {line[:80]!r}")
            return None
        if frame.get("type") == "error":
            self.tally.code(self.who, str(frame.get("code")))
        elif self.delta and isinstance(frame.get("clock"), dict) and frame["type"] != "welcome":
            clock = {**self.read_ref, **frame["clock"]}
            self.read_ref = {k: v for k, v in clock.items() if v}
            frame["clock"] = dict(self.read_ref)
            sender, seq = frame.get("from"), frame.get("seq")
            if frame["type"] == "deliver" and sender and self.read_ref.get(sender) != seq:
                self.tally.delta_mismatch.append(f"{self.who}: {frame}")
        return frame

    async def drain(self, timeout: float = 0.3) -> list[dict[str, Any]]:
        """Every frame that comes within ``timeout`` of the previous one."""
        frames = []
        while (frame := await self.read(timeout)) is not None:
            frames.append(frame)
        return frames

    async def hello(self, client_id: str, **extra: Any) -> dict[str, Any] | None:
        """Say hello; the welcome (None if refused or closed)."""
        await self.frame({"type": "hello", "v": 1, "id": client_id, **extra})
        while (frame := await self.read(5)) is not None:
            if frame["type"] == "welcome":
                self.delta = bool(frame.get("delta"))
                self.known = int(frame.get("clock", {}).get(client_id, 0))
                return frame
            if frame["type"] == "error":
                return None
        return None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()


class Hostile:
    """The hostile clients. Each attacker is a task that connects, attacks, and
    connects again (the server may be down: then it waits). What an attacker
    sends that the server must accept it logs, as an honest client would."""

    def __init__(self, out: Path, port: int, rng: random.Random) -> None:
        self.out = out
        self.port = port
        self.rng = rng
        self.tally = Tally()
        self.logs: dict[str, EventLog] = {}
        self.counts: dict[str, int] = {}  # own entry of each hostile id, as logged
        self.broadcasts = 0  # XF's broadcasts the server took (none should be)
        self.stopping = False
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name="hostile", daemon=True)

    def start(self) -> None:
        self.thread.start()
        if not self.ready.wait(120):
            raise RuntimeError("the hostile clients did not take their ids in time")

    def stop(self) -> None:
        self.stopping = True
        self.thread.join(60)
        for log in self.logs.values():
            log.close()

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        await self._take_ids()
        self.ready.set()
        attacks = [
            self._forger, self._delta, self._garbage, self._oversized,
            self._flood, self._inventor, self._ghosts,
        ]  # fmt: skip
        await asyncio.gather(*(self._loop(attack) for attack in attacks))

    async def _loop(self, attack: Callable[[], Any]) -> None:
        while not self.stopping:
            try:
                await attack()
            except OSError:
                pass  # the server went away in the middle: try again
            except Exception as exc:  # a bug of this script, or a server answer it did not expect
                self.tally.unexpected.append(f"{attack.__name__}: {exc!r}")
            await asyncio.sleep(self.rng.uniform(0.2, 1.0))

    def tick(self, who: str) -> int:
        """The next own entry of ``who`` (not logged yet)."""
        return self.counts.get(who, 0) + 1

    def log_send(self, who: str, clock: dict[str, int], peer: str) -> None:
        """``who`` sends ``clock`` (its own entry ticked): the server must take it."""
        n = clock[who]
        self.counts[who] = n
        if who not in self.logs:
            self.logs[who] = EventLog(self.out / "run", who)
        self.logs[who].record("send", clock, peer=peer, msg=f"{who}#{n}")
        self.tally.accepted[who] += 1

    async def _connect(self, who: str, **extra: Any) -> Raw | None:
        raw = Raw(who, self.tally)
        if not await raw.open(self.port):
            return None
        if await raw.hello(who, **extra) is None:
            raw.close()
            return None
        return raw

    async def _report(self, raw: Raw, who: str) -> None:
        """A valid report (logged), clock: just its own entry."""
        clock = {who: self.tick(who)}
        self.log_send(who, clock, "server")
        await raw.frame({"type": "report", "seq": clock[who], "clock": clock})

    async def _take_ids(self) -> None:
        """Every hostile id and the fillers report once, so the server tracks them
        for good, until it has no room for another id: from then on a clock
        naming a new id must be refused (too-many-ids)."""
        for who in HOSTILE + FILLERS:
            while True:
                raw = Raw(who, self.tally)
                if await raw.open(self.port):
                    break
                await asyncio.sleep(0.5)
            if await raw.hello(who) is None:
                raw.close()
                if who in HOSTILE:
                    raise RuntimeError(f"the server refused the hostile id {who}")
                return  # no room for another id: done
            await self._report(raw, who)
            await raw.drain(0.05)
            raw.close()

    def _honest(self) -> str:
        return self.rng.choice(HONEST)

    def _expect(self, who: str, frames: list[dict[str, Any]], n: int, codes: set[str]) -> None:
        """The valid frame ``n`` was taken: an error naming seq ``n`` may only be
        the refusal (one of ``codes``) of the bad frame before it with that seq."""
        for frame in frames:
            if frame["type"] == "error" and frame.get("seq") == n and frame["code"] not in codes:
                self.tally.unexpected.append(f"{who}: {frame}")

    async def _forger(self) -> None:
        """Valid sends to honest clients, between forged ones: another id's entry far
        past what it said (forged-clock), a broadcast counting broadcasts never
        relayed (forged-clock), a stale own entry (stale-clock), a seq that is not
        the own entry (bad-frame)."""
        who = "XF"
        raw = await self._connect(who)
        if raw is None:
            return
        try:
            for _ in range(5):
                n = self.tick(who)
                victim = self._honest()
                bad = self.rng.choice(["forged", "bclock", "stale", "seq"])
                if bad == "stale" and not raw.known:
                    bad = "seq"
                if bad == "forged":
                    clock = {who: n, victim: BIG}
                    await raw.frame({"type": "send", "to": victim, "seq": n, "clock": clock})
                elif bad == "bclock":
                    clock = {who: n}  # its own count right, the victim's never relayed
                    bclock = {who: self.broadcasts + 1, victim: 10**6}
                    await raw.frame(
                        {"type": "broadcast", "seq": n, "clock": clock, "bclock": bclock}
                    )
                elif bad == "stale":
                    clock, seq = {who: raw.known}, raw.known
                    await raw.frame({"type": "send", "to": victim, "seq": seq, "clock": clock})
                else:
                    await raw.frame({"type": "send", "to": victim, "seq": n + 7, "clock": {who: n}})
                clock = {who: n}  # the refused frame recorded nothing: n is still free
                self.log_send(who, clock, victim)
                await raw.frame({"type": "send", "to": victim, "seq": n, "clock": clock})
                raw.known = n
                same = {"forged-clock"} if bad in ("forged", "bclock") else set()
                frames = await raw.drain(0.2)
                self._expect(who, frames, n, same)
                if bad == "bclock" and any(f.get("code") == "stale-clock" for f in frames):
                    self.broadcasts += 1  # taken: n was used up by it
        finally:
            raw.close()

    async def _delta(self) -> None:
        """On a delta connection: refused frames the server can read (they move both
        references; the next valid frame must be read right), then one it cannot
        read (its error, then delta-lost, and the connection closes)."""
        who = "XD"
        raw = await self._connect(who, delta=True)
        if raw is None:
            return
        try:
            if not raw.delta:
                self.tally.unexpected.append("XD: the server did not agree to delta encoding")
                return
            for _ in range(4):
                n = self.tick(who)
                victim = self._honest()
                bad = self.rng.choice(["forged", "stale", "seq", "unknown-peer"])
                if bad == "stale" and not raw.known:
                    bad = "seq"
                if bad == "forged":
                    await raw.frame({"type": "report", "seq": n, "clock": {who: n, victim: BIG}})
                elif bad == "stale":
                    stale = {who: raw.known}
                    await raw.frame({"type": "report", "seq": raw.known, "clock": stale})
                elif bad == "seq":
                    await raw.frame({"type": "report", "seq": n + 3, "clock": {who: n}})
                else:  # the clock is taken, only the delivery fails: a send, logged
                    self.log_send(who, {who: n}, "nobody")
                    await raw.frame({"type": "send", "to": "nobody", "seq": n, "clock": {who: n}})
                    n = self.tick(who)
                clock = {who: n}
                if self.rng.random() < 0.5:  # a message to an honest client, read by it
                    self.log_send(who, clock, victim)
                    frame = {"type": "send", "to": victim, "seq": n, "clock": clock, "body": bad}
                else:
                    self.log_send(who, clock, "server")
                    frame = {"type": "report", "seq": n, "clock": clock}
                await raw.frame(frame)
                raw.known = n
                frames = await raw.drain(0.2)
                self._expect(who, frames, n, {"forged-clock"} if bad == "forged" else set())
                if not raw.closed and not any(f["type"] == "error" for f in frames[-1:]):
                    self.tally.in_step += 1
            unreadable = self.rng.choice(
                [
                    b"not json at all\n",
                    b'{"type":"report","seq":1,"clock":[1,2]}\n',
                    b'{"type":"report","seq":1,"clock":{"XD":-4}}\n',
                    b'{"type":"report","seq":1,"clock":{"XD":1,"' + b"z" * MAX_FRAME + b'":1}}\n',
                ]
            )
            await raw.write(unreadable)
            frames = await raw.drain(2.0)
            if not raw.closed:
                self.tally.unexpected.append(f"{who}: still open after an unreadable clock")
        finally:
            raw.close()

    async def _garbage(self) -> None:
        """Lines that are not frames, until too-many-errors."""
        who = "XG"
        raw = await self._connect(who)
        if raw is None:
            return
        lines = [
            b"\xff\xfe not utf-8",
            b"\x1b[2J\x1b[31mFAKE: server stopped\x1b[0m",
            b"[1,2,3]",
            b'{"type":"nope"}',
            b'{"type":"send"}',
            b'{"type":"report","seq":1,"clock":null}',
            b'{"type":"report","seq":1,"clock":{"XG":99999999999999999999}}',
            b'{"type":"report","seq":1,"clock":{"' + b"i" * 200 + b'":1}}',
            b"[" * 5000 + b"]" * 5000,
            b'{"type":"hello","v":1,"id":"XG"}',
            b'{"type":"delivered","upto":999}',
        ]
        try:
            for _ in range(30):
                await raw.write(self.rng.choice(lines) + b"\n")
                if raw.closed:
                    break
                await raw.drain(0.05)
            await raw.drain(1.0)
        finally:
            raw.close()

    async def _oversized(self) -> None:
        """Lines longer than max_frame_size (a send with a huge body)."""
        who = "XB"
        raw = await self._connect(who)
        if raw is None:
            return
        try:
            for _ in range(3):
                size = self.rng.randint(MAX_FRAME + 1, 4 * MAX_FRAME)
                n = self.tick(who)
                body = "b" * size
                await raw.frame(
                    {
                        "type": "send",
                        "to": self._honest(),
                        "seq": n,
                        "clock": {who: n},
                        "body": body,
                    }
                )
                await raw.drain(0.3)
        finally:
            raw.close()

    async def _flood(self) -> None:
        """Blank lines, then frames, far past the rate: rate-limited, too-many-errors."""
        who = "XL"
        raw = await self._connect(who)
        if raw is None:
            return
        try:
            await raw.write(b"\n" * 3000 + b'{"type":"delivered","upto":0}\n' * 1000)
            await raw.drain(1.0)
        finally:
            raw.close()

    async def _inventor(self) -> None:
        """Clocks naming ids the server has no room for (too-many-ids), and hellos
        with new ids (too-many-ids); its valid reports in between."""
        who = "XI"
        raw = await self._connect(who)
        if raw is None:
            return
        try:
            for _ in range(3):
                n = self.tick(who)
                invented = {f"inv{self.rng.randrange(10**9)}": 1 for _ in range(3)}
                await raw.frame({"type": "report", "seq": n, "clock": {who: n, **invented}})
                await self._report(raw, who)
                self._expect(who, await raw.drain(0.2), n, {"too-many-ids"})
        finally:
            raw.close()
        other = Raw(who, self.tally)
        if await other.open(self.port):
            await other.hello(f"new{self.rng.randrange(10**9)}")
            other.close()

    async def _ghosts(self) -> None:
        """Resume hellos that go away at once: some for ids the server knows (held
        until max_held: too-many-held), some for new ones (too-many-ids)."""
        who = "XH"
        for _ in range(self.rng.randint(1, 6)):
            raw = Raw(who, self.tally)
            if not await raw.open(self.port):
                return
            ghost = self.rng.choice(FILLERS[:16] + [f"g{self.rng.randrange(10**6)}"])
            welcome = await raw.hello(ghost, resume=True)
            if welcome is not None:
                self.tally.code(who, "welcome")
                if self.rng.random() < 0.5:
                    await raw.drain(0.1)  # take some of the replay, acknowledge nothing
            raw.close()


# The run


@dataclass
class Faults:
    kills: int = 0
    disk_full_stops: int = 0  # the store failed and the server stopped itself (status 1)
    disk_full_at_start: int = 0  # ... while starting, before it listened
    disk_never_full: int = 0  # the limited server did not fail in time: killed
    clean_stops: int = 0
    client_kills: int = 0
    restarts: int = 0
    disk_full_messages: list[str] = field(default_factory=list)
    bad_stops: list[str] = field(default_factory=list)  # a SIGTERM that did not give 0


def fault(
    kind: str, server: Server, honest: list[Honest], faults: Faults, rng: random.Random
) -> str:
    if kind == "kill":
        server.stop(signal.SIGKILL)
        faults.kills += 1
        time.sleep(rng.uniform(0.2, 2.0))  # the clients retry against a closed port
        server.start()
        faults.restarts += 1
        return f"SIGKILL server, restarted (run {server.runs})"
    if kind == "disk-full":
        status = server.stop(signal.SIGTERM)
        if status != 0:
            faults.bad_stops.append(f"SIGTERM: status {status}: {server.stderr()[-300:]}")
        faults.clean_stops += 1
        fsize = rng.randint(100_000, 400_000)
        started = server.start(fsize=fsize)
        faults.restarts += 1
        status = server.wait(60)
        if status is None:
            server.stop(signal.SIGKILL)
            faults.disk_never_full += 1
            what = "did not fill in 60 s: SIGKILL"
        else:
            server.stop()  # reaped already: reads its stderr for a traceback
            err = server.stderr().strip().splitlines()
            faults.disk_full_messages.append(err[-1] if err else f"(status {status}, no message)")
            if started:
                faults.disk_full_stops += 1
            else:
                faults.disk_full_at_start += 1
            what = f"stopped itself with status {status}" + ("" if started else " while starting")
        server.start()
        faults.restarts += 1
        return f"full disk (RLIMIT_FSIZE {fsize}): {what}; restarted (run {server.runs})"
    victim = rng.choice(honest)
    victim.kill()
    faults.client_kills += 1
    time.sleep(rng.uniform(0.2, 1.5))
    victim.start()
    return f"SIGKILL client {victim.id}, restarted"


def count_kinds(run: Path) -> tuple[int, int]:
    sends = receives = 0
    for client_id in HONEST:
        path = run / f"{client_id}.jsonl"
        if path.exists():
            data = path.read_bytes()
            sends += data.count(b'"kind":"send"')
            receives += data.count(b'"kind":"receive"')
    return sends, receives


def assemble_server_log(out: Path) -> None:
    """Join the server's log parts, in order, into ``run/server.jsonl``."""
    with (out / "run" / "server.jsonl").open("wb") as joined:
        for part in sorted((out / "parts").iterdir()):
            log = part / "server.jsonl"
            if log.exists():
                data = log.read_bytes()
                if data and not data.endswith(b"\n"):
                    raise RuntimeError(f"{log} ends with a torn line")
                joined.write(data)


def judge(out: Path, stopped_at: _dt.datetime) -> dict[str, Any]:
    """Check the run; audit delivery between honest clients."""
    report = check(out / "run")
    events = list(read_events(out / "run"))
    unacked: set[str] = set()
    held: dict[str, int] = {}  # broadcasts each still holds back (waiting for ever)
    for client_id in HONEST:
        saved = load_state(out / "state" / f"{client_id}.state")
        if saved is not None:
            unacked |= {f"{client_id}#{frame.seq}" for frame in saved.unacked}
            held[client_id] = len(saved.held)
    ids = set(HONEST)
    joined = max(min(e.ts for e in events if e.pid == i and e.kind == "join") for i in ids)
    since = _dt.datetime.fromisoformat(joined) + _dt.timedelta(seconds=1)
    before = stopped_at - GRACE
    # Only the honest clients' sends are judged: the hostile ones are plain sessions,
    # never acknowledged (and their refused frames are not in their logs).
    judged_events = [e for e in events if e.kind != "send" or e.pid in ids]
    wrong = delivery_audit(
        judged_events, receivers=ids, unacked=unacked, before=before, since=since
    )
    honest_sends = [e for e in events if e.pid in ids and e.kind == "send"]
    judged = 0
    for e in honest_sends:
        if e.msg in unacked or _dt.datetime.fromisoformat(e.ts) >= before:
            continue
        if e.peer in ids:
            judged += 1
        elif e.peer == EVERYONE and _dt.datetime.fromisoformat(e.ts) >= since:
            judged += len(ids) - 1
    return {
        "check_ok": report.ok,
        "check": format_report(report),
        "events": report.summary.events,
        "sent": sum(1 for e in honest_sends if e.peer != "server"),
        "sent_to_honest": sum(1 for e in honest_sends if e.peer in ids),
        "broadcasts": sum(1 for e in honest_sends if e.peer == EVERYONE),
        "reports": sum(1 for e in honest_sends if e.peer == "server"),
        "unacked_at_end": len(unacked),
        "held_back_at_end": held,
        "received": sum(1 for e in events if e.pid in ids and e.kind == "receive"),
        "judged_deliveries": judged,
        "lost": sum(1 for _, _, times in wrong if times == 0),
        "duplicated": sum(1 for _, _, times in wrong if times > 1),
        "wrong": [list(w) for w in wrong[:50]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of chaos")
    parser.add_argument("--out", type=Path, required=True, help="folder for everything (new)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--every", type=float, default=20, help="mean seconds between faults")
    parser.add_argument(
        "--faults", default="kill,disk-full,client", help="kinds to draw from (comma-separated)"
    )
    options = parser.parse_args(argv)
    out: Path = options.out
    if out.exists() and any(out.iterdir()):
        parser.error(f"{out} is not empty: the run needs fresh data and logs")
    for sub in ("out", "parts", "run", "state"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rng = random.Random(options.seed)
    kinds = options.faults.split(",")
    deck: list[str] = []
    started = now()
    start = time.monotonic()
    server = Server(out)
    if not server.start():
        raise RuntimeError(f"the server did not start: {server.stderr()}")
    print(f"chaos: server on {HOST}:{server.port}, data and logs in {out}", flush=True)
    honest = [Honest(i, out, server.port, options.seed * 100 + k) for k, i in enumerate(HONEST)]
    time.sleep(2)  # every honest id is in before the hostile clients take the rest
    hostile = Hostile(out, server.port, random.Random(options.seed + 1))
    hostile.start()
    faults = Faults()
    timeline: list[str] = []
    schedule = [rng.uniform(0.5, 1.5) * options.every]
    next_progress = 10.0
    try:
        while (elapsed := time.monotonic() - start) < options.duration:
            if elapsed >= next_progress:
                sends, receives = count_kinds(out / "run")
                codes = sum(sum(c.values()) for c in hostile.tally.codes.values())
                print(
                    f"  {elapsed:5.0f} s  kills {faults.kills}, full disks"
                    f" {faults.disk_full_stops + faults.disk_full_at_start}, client kills"
                    f" {faults.client_kills}; honest sends {sends}, receives {receives};"
                    f" hostile frames {sum(hostile.tally.frames.values())}, errors {codes}",
                    flush=True,
                )
                next_progress += 10.0
            if elapsed >= schedule[-1] and elapsed < options.duration - 10:
                if not deck:  # every kind once per round, in a random order
                    deck = rng.sample(kinds, len(kinds))
                kind = deck.pop()
                what = fault(kind, server, honest, faults, rng)
                timeline.append(f"{time.monotonic() - start:.0f} s: {what}")
                print(f"  {time.monotonic() - start:5.0f} s  {what}", flush=True)
                schedule.append(time.monotonic() - start + rng.uniform(0.5, 1.5) * options.every)
            if not server.alive():
                status = server.proc.returncode if server.proc else None
                timeline.append(f"{elapsed:.0f} s: the server exited by itself ({status})")
                print(f"  the server exited by itself ({status}): {server.stderr()[-500:]}")
                server.start()
                faults.restarts += 1
            time.sleep(0.2)
        hostile.stop()
        time.sleep(3)  # the last resends go through
        stopped_at = now()
        statuses = {h.id: h.stop() for h in honest}
        server_status = server.stop(signal.SIGTERM)
    finally:
        hostile.stopping = True
        for h in honest:
            if h.proc is not None and h.proc.poll() is None:
                h.proc.kill()
        server.stop(signal.SIGKILL)
    assemble_server_log(out)
    verdict = judge(out, stopped_at)
    tally = hostile.tally
    honest_errors: Counter[str] = Counter()
    for h in honest:
        honest_errors += h.errors()
    report = {
        "date": started.isoformat(timespec="seconds"),
        "command": "python scripts/chaos.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "seed": options.seed,
        "duration_s": round(time.monotonic() - start),
        "server_runs": server.runs,
        "faults": {
            "server_kills": faults.kills,
            "disk_full_stops": faults.disk_full_stops,
            "disk_full_while_starting": faults.disk_full_at_start,
            "disk_never_full": faults.disk_never_full,
            "clean_stops": faults.clean_stops,
            "client_kills": faults.client_kills,
            "restarts": faults.restarts,
        },
        "disk_full_messages": sorted(set(faults.disk_full_messages))[:5],
        "server_tracebacks": server.tracebacks,
        "bad_stops": faults.bad_stops,
        "final_server_status": server_status,
        "honest_client_status": statuses,
        "honest": {k: v for k, v in verdict.items() if k not in ("check", "check_ok", "wrong")},
        "honest_errors": dict(honest_errors),
        "hostile": {
            "frames": sum(tally.frames.values()),
            "frames_by_attacker": dict(tally.frames),
            "accepted_logged": sum(tally.accepted.values()),
            "codes": dict(sum(tally.codes.values(), Counter())),
            "codes_by_attacker": {k: dict(v) for k, v in tally.codes.items()},
            "delta_in_step_after_refusal": tally.in_step,
            "unexpected_count": len(tally.unexpected),
            "unexpected": tally.unexpected[:50],
            "delta_mismatches": tally.delta_mismatch[:50],
        },
        "check_ok": verdict["check_ok"],
        "check": verdict["check"],
        "wrong": verdict["wrong"],
        "timeline": timeline,
    }
    ok = (
        verdict["check_ok"]
        and not verdict["wrong"]
        and not server.tracebacks
        and not faults.bad_stops
        and server_status == 0
        and not tally.unexpected
        and not tally.delta_mismatch
        and all(s == 0 for s in statuses.values())
    )
    report["ok"] = ok
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    print(markdown(report))
    return 0 if ok else 1


def markdown(r: dict[str, Any]) -> str:
    f, h, x = r["faults"], r["honest"], r["hostile"]
    codes = ", ".join(f"{k} {v}" for k, v in sorted(x["codes"].items(), key=lambda kv: -kv[1]))
    lines = [
        f"# Chaos run {r['date']}: {'PASSED' if r['ok'] else 'FAILED'}",
        "",
        f"`{r['command']}` ({r['duration_s']} s, seed {r['seed']})",
        "",
        f"- Faults: {f['server_kills']} server SIGKILLs, {f['disk_full_stops']} full-disk stops"
        f" (+{f['disk_full_while_starting']} while starting, {f['disk_never_full']} never"
        f" filled), {f['client_kills']} client SIGKILLs; {f['restarts']} server restarts"
        f" ({r['server_runs']} server runs).",
        f"- Honest clients ({len(HONEST)}, delta-encoded, resume): {h['sent']} messages sent"
        f" ({h['sent_to_honest']} unicasts to honest clients, {h['broadcasts']} broadcasts),"
        f" {h['received']} received; {h['judged_deliveries']} acknowledged deliveries judged:"
        f" {h['lost']} lost, {h['duplicated']} duplicated ({h['unacked_at_end']} unacknowledged"
        " at the end, not judged).",
        f"- Errors the honest clients got: {r['honest_errors'] or 'none'}; broadcasts they"
        f" still hold back at the end: {h['held_back_at_end']}.",
        f"- Hostile clients: {x['frames']} lines sent, {x['accepted_logged']} valid frames among"
        f" them; error codes: {codes}. Delta connections in step after a refused frame:"
        f" {x['delta_in_step_after_refusal']}; unexpected answers: {x['unexpected_count']};"
        f" delta mismatches: {len(x['delta_mismatches'])}.",
        f"- Server tracebacks: {len(r['server_tracebacks'])}.",
        f"- `vclock check`: {'passed' if r['check_ok'] else 'FAILED'} ({h['events']} events).",
        "",
    ]
    if not r["check_ok"]:
        lines += ["```", r["check"], "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
