"""``vclock demo``: a server and N clients as separate processes on loopback.

Their output is shown interleaved and labelled; everything lands in one run
folder (event logs and console output); at the end the run is summarised and
checked for causal consistency.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import signal
import string
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .events import CAUSAL_KINDS, SERVER_ID, Event
from .tools.checker import check, format_report
from .tools.diagram import write_diagram
from .tools.eventlog import read_events
from .tools.shiviz import export_shiviz
from .tools.spacetime import natural_key

STYLES = ["cyan", "magenta", "green", "yellow", "blue", "red"]
STOP_TIMEOUT = 10.0
JOIN_TIMEOUT = 60.0
#: Exit status of a demo stopped by Ctrl-C (SIGINT) whose run was still consistent,
#: as shells report a command that SIGINT ended: 128 + 2.
INTERRUPTED = 130


def client_ids(n: int) -> list[str]:
    """A, B, C ... for up to 26 clients, then P01, P02 ..."""
    if n <= 26:
        return list(string.ascii_uppercase[:n])
    return [f"P{i:02d}" for i in range(1, n + 1)]


@dataclass
class _Proc:
    name: str
    style: str
    process: asyncio.subprocess.Process
    output: list[str] = field(default_factory=list)
    pump: asyncio.Task[None] | None = None
    joined: set[str] = field(default_factory=set)  # the server's: clients that joined
    changed: asyncio.Event = field(default_factory=asyncio.Event)


@click.command()
@click.option(
    "--clients",
    default=3,
    show_default=True,
    type=click.IntRange(1, 200),
    help="How many client processes.",
)
@click.option(
    "--duration", default=20.0, show_default=True, type=click.FloatRange(1), help="Seconds to run."
)
@click.option(
    "--interval", default="0.5-2", show_default=True, help="Client send interval, MIN-MAX seconds."
)
@click.option(
    "--sync-interval", default=3.0, show_default=True, help="Server synchronization cycle, seconds."
)
@click.option(
    "--runs-dir",
    default="runs",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where run folders are written.",
)
@click.option("--seed", type=int, default=None, help="Seed the clients' random choices.")
@click.option(
    "--web",
    is_flag=False,
    flag_value="127.0.0.1:0",
    default=None,
    metavar="[HOST:PORT]",
    help="Also serve the live dashboard (default address 127.0.0.1 on a free port).",
)
def demo(
    clients: int,
    duration: float,
    interval: str,
    sync_interval: float,
    runs_dir: Path,
    seed: int | None,
    web: str | None,
) -> None:
    """Start a server and N clients, show them working, then summarise and check the run.

    Ctrl-C stops the run early: the summary, the check, the diagram and the ShiViz
    log are still written, and the exit status is then 130 (1 if the run failed).
    """
    if web is not None:
        try:  # before the run folder is made: a failed start leaves nothing behind
            from . import web as _web  # noqa: F401
        except ImportError as exc:
            raise click.ClickException(f"--web: {exc}") from None
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = runs_dir / stamp
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = runs_dir / f"{stamp}-{suffix}"
    run_dir.mkdir(parents=True)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    settings = _Settings(clients, duration, interval, sync_interval, seed, web)
    ok, interrupted = asyncio.run(_demo(console, run_dir, settings))
    if not ok:
        sys.exit(1)
    if interrupted:
        sys.exit(INTERRUPTED)


@dataclass(frozen=True, slots=True)
class _Settings:
    clients: int
    duration: float
    interval: str
    sync_interval: float
    seed: int | None
    web: str | None


async def _demo(console: Console, run_dir: Path, settings: _Settings) -> tuple[bool, bool]:
    """Run the demo; (the run was clean and consistent, Ctrl-C stopped it early)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await _run(console, run_dir, settings, stop), stop.is_set()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _run(console: Console, run_dir: Path, settings: _Settings, stop: asyncio.Event) -> bool:
    n, duration, interval = settings.clients, settings.duration, settings.interval
    seed, sync_interval = settings.seed, settings.sync_interval
    web = ["--web", settings.web] if settings.web else []
    console.print(
        f"[bold]vclock demo[/]: a server and {n} clients for {duration:g} s;"
        f" run folder [bold]{run_dir}[/]"
    )
    vclock = [sys.executable, "-m", "vclock"]
    server = await _spawn(
        SERVER_ID,
        "bold white",
        [*vclock, "server", "--port", "0", "--sync-interval", str(sync_interval)]
        + ["--log", str(run_dir), "--data", str(run_dir / "server-data"), *web],
    )
    port = await _listening_port(server)
    procs = [server]
    with Progress(
        TextColumn("[bold]{task.description}[/]"),
        BarColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        server.pump = asyncio.create_task(_pump(server, console, run_dir))
        for i, cid in enumerate(client_ids(n)):
            if stop.is_set():
                break
            args = [
                "client",
                "--id",
                cid,
                "--port",
                str(port),
                "--interval",
                interval,
                "--log",
                str(run_dir),
            ]
            if seed is not None:
                args += ["--seed", str(seed + i)]
            proc = await _spawn(cid, STYLES[i % len(STYLES)], vclock + args)
            proc.pump = asyncio.create_task(_pump(proc, console, run_dir))
            procs.append(proc)
        # The run's time starts once every client has joined: 25 Python processes
        # starting on a busy machine can take longer than a short run.
        await _all_joined(server, len(procs) - 1, progress, stop)
        started = time.monotonic()
        task = progress.add_task("demo running", total=duration)
        while (elapsed := time.monotonic() - started) < duration and not stop.is_set():
            progress.update(task, completed=elapsed)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
        progress.update(task, completed=min(elapsed, duration))
    if stop.is_set():
        console.print(f"[bold]Interrupted after {elapsed:.1f} s.[/]")
    console.print("[bold]Stopping the server; the clients exit when it says bye.[/]")
    if server.process.returncode is None:  # a Ctrl-C in a terminal may have stopped it
        with contextlib.suppress(ProcessLookupError):
            server.process.send_signal(signal.SIGTERM)
    codes = await _wait_all(procs)
    return _summarise(console, run_dir, procs, codes)


async def _all_joined(server: _Proc, n: int, progress: Progress, stop: asyncio.Event) -> None:
    """Wait until ``n`` clients joined the server (as its console says), up to
    :data:`JOIN_TIMEOUT` seconds or a Ctrl-C; the run goes on with those that did."""
    task = progress.add_task("clients joining", total=n)
    deadline = time.monotonic() + JOIN_TIMEOUT
    while len(server.joined) < n and not stop.is_set():
        if (left := deadline - time.monotonic()) <= 0:
            break
        server.changed.clear()
        with contextlib.suppress(TimeoutError):  # look at stop now and then
            await asyncio.wait_for(server.changed.wait(), min(left, 0.2))
        progress.update(task, completed=len(server.joined))
    progress.remove_task(task)


async def _spawn(name: str, style: str, argv: list[str]) -> _Proc:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    return _Proc(name, style, process)


async def _listening_port(server: _Proc) -> int:
    assert server.process.stdout is not None
    line = (await asyncio.wait_for(server.process.stdout.readline(), 15)).decode().strip()
    server.output.append(line)
    if "listening on" not in line:
        raise click.ClickException(f"the server did not start: {line or 'no output'}")
    return int(line.split("listening on ", 1)[1].split()[0].rsplit(":", 1)[1])


async def _pump(proc: _Proc, console: Console, run_dir: Path) -> None:
    assert proc.process.stdout is not None
    width = 8
    with (run_dir / f"{proc.name}.out").open("w") as out:
        for line in proc.output:
            out.write(line + "\n")
        async for raw in proc.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            proc.output.append(line)
            out.write(line + "\n")
            if proc.name == SERVER_ID and " joined as " in line:
                proc.joined.add(line.rsplit(" joined as ", 1)[1])
                proc.changed.set()
            if line.startswith("vclock dashboard at "):
                line = f"[bold reverse] {escape(line)} [/]  (open it in a browser)"
            else:
                line = escape(line)
            console.print(f"[{proc.style}]{proc.name:>{width}} │[/] {line}", soft_wrap=True)


async def _wait_all(procs: list[_Proc]) -> dict[str, int]:
    codes: dict[str, int] = {}
    for proc in procs:
        try:
            codes[proc.name] = await asyncio.wait_for(proc.process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            proc.process.kill()  # by PID: this exact child
            codes[proc.name] = await proc.process.wait()
        if proc.pump is not None:
            await proc.pump
    return codes


def summary_table(
    events: Sequence[Event],
    clients: Sequence[str],
    codes: Mapping[str, int],
    *,
    width: int = 120,
) -> Table:
    """The run summary: a row per client, with its counts and final clock, one line
    each within ``width`` columns (a clock too long for it is cut, saying how much)."""
    by_pid: dict[str, list[Event]] = {name: [] for name in clients}
    for event in events:
        if event.pid in by_pid:
            by_pid[event.pid].append(event)
    rows = []
    for name in clients:
        causal = [e for e in by_pid[name] if e.kind in CAUSAL_KINDS]
        rows.append(
            [
                name,
                str(codes.get(name)),
                str(sum(e.kind == "send" and e.peer != SERVER_ID for e in causal)),
                str(sum(e.kind == "send" and e.peer == SERVER_ID for e in causal)),
                str(sum(e.kind == "receive" for e in causal)),
                str(sum(e.kind == "sync-receive" for e in causal)),
            ]
        )
    heads = ("process", "exit", "sends", "reports", "receives", "syncs")
    # Each column is its widest cell plus padding and a border; the clock gets the rest.
    used = 1 + sum(max([len(h)] + [len(r[i]) for r in rows]) + 3 for i, h in enumerate(heads))
    room = max(24, width - used - 3)
    clocks = []
    for name in clients:
        mine = by_pid[name]
        clocks.append(clock_summary(mine[-1].clock if mine else {}, name, room))
    cut = any("more" in c for c in clocks)
    caption = "final clock: the last one each client logged, its own entry first, zeros left out"
    if cut:
        caption += '; "+N more": entries cut to fit (the logs in the run folder have them all)'
    table = Table(title="Run summary", title_justify="left", caption=caption)
    table.caption_justify = "left"
    for column in heads:
        table.add_column(column, no_wrap=True)
    table.add_column("final clock", no_wrap=True, max_width=room)
    for row, clock in zip(rows, clocks, strict=True):
        table.add_row(*row, clock)
    return table


def clock_summary(clock: Mapping[str, int], own: str, room: int) -> str:
    """``A:3 B:1 C:2``: ``own``'s entry, then the other non-zero entries in natural
    order, in at most ``room`` characters; what does not fit is counted, ``… +7 more``."""
    others = [k for k in sorted(clock, key=natural_key) if k != own and clock[k]]
    parts = [f"{own}:{clock.get(own, 0)}"] + [f"{k}:{clock[k]}" for k in others]
    text = " ".join(parts)
    if len(text) <= room:
        return text
    reserve = len(f" … +{len(parts)} more")
    shown = parts[:1]
    for part in parts[1:]:
        if len(" ".join([*shown, part])) + reserve > room:
            break
        shown.append(part)
    return " ".join(shown) + f" … +{len(parts) - len(shown)} more"


def _summarise(console: Console, run_dir: Path, procs: list[_Proc], codes: dict[str, int]) -> bool:
    events = read_events(run_dir)
    clients = [p.name for p in procs if p.name != SERVER_ID]
    console.print(summary_table(events, clients, codes, width=console.width))
    server_out = next(p.output for p in procs if p.name == SERVER_ID)
    cycles = sum(line == "New synchronization cycle started." for line in server_out)
    syncs = sum(e.pid == SERVER_ID and e.kind == "sync" for e in events)
    sent = sum(e.kind == "send" and e.peer != SERVER_ID for e in events if e.pid != SERVER_ID)
    delivered = sum(e.kind == "receive" for e in events if e.pid != SERVER_ID)
    console.print(
        f"Messages sent: {sent}, delivered: {delivered}; synchronization cycles: {cycles}"
        f" ({syncs} sent a sync)"
    )
    report = check(run_dir)
    console.print(format_report(report))
    diagram = write_diagram(run_dir, run_dir / "diagram.html")
    shiviz = export_shiviz([run_dir], run_dir / "run.shiviz.log").path
    exits_ok = all(code == 0 for code in codes.values())
    if not exits_ok:
        console.print(f"[red]Some processes did not exit cleanly: {codes}[/]")
    verdict = "[green]causally consistent[/]" if report.ok else "[red]NOT causally consistent[/]"
    console.print(f"Run folder:    [bold]{run_dir}[/]")
    console.print(f"Diagram:       [bold]{diagram}[/]  (open it in a browser)")
    console.print(
        f"ShiViz log:    [bold]{shiviz}[/]  (load it at https://bestchai.bitbucket.io/shiviz/)"
    )
    console.print(f"Check:         `vclock check {run_dir}` says the run is {verdict}")
    return exits_ok and report.ok
