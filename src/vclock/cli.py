"""The ``vclock`` command. Thin: parse options, call the library, set the exit code.

``main(argv)`` can be called from tests and from the seed-compatible launchers
(server.py, client.py, client2.py, client3.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import os
import random
import secrets
import signal
import ssl
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_args

import click

from . import __version__
from .asyncio.client import ConnectError, StateFileError, connect, run
from .asyncio.console import ClientConsole, echo
from .asyncio.server import Console, ServerConfig, serve
from .auth import Authenticator, hash_token
from .client import (
    DEFAULT_MAX_HELD,
)
from .clock import ClockLimits
from .demo import demo
from .errors import HoldBackFull, VClockError
from .events import SERVER_ID
from .net import is_loopback, parse_address
from .protocol.frames import PeersMode
from .store import MEMORY, Store, StoreError
from .terminal import one_line
from .tools.checker import check, format_report
from .tools.diagram import write_diagram
from .tools.eventlog import EventLog
from .tools.merge import merge as merge_logs
from .tools.shiviz import export_shiviz
from .tools.tracelog import read_trace

if TYPE_CHECKING:
    from .cluster.backplane import ClusterConfig

T = TypeVar("T")
DEFAULTS = ServerConfig()
#: A TCP port: click refuses anything else as a usage error naming the option
#: (the kernel would otherwise take 70000 as 70000 % 65536).
PORT = click.IntRange(0, 65535)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed (``pip install vclock[fast]``), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _address(text: str) -> tuple[str, int]:
    """A ``--server`` value: ``HOST:PORT`` or ``[IPV6]:PORT`` (net.parse_address)."""
    if ":" not in text:
        raise click.BadParameter(f"{text!r} is not HOST:PORT", param_hint="--server")
    try:
        return parse_address(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--server") from None


def _interval(text: str) -> tuple[float, float]:
    low, sep, high = text.partition("-")
    try:
        lo, hi = float(low), float(high if sep else low)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not MIN-MAX in seconds, e.g. 2-10", param_hint="--interval"
        ) from None
    if not 0 < lo <= hi:
        raise click.BadParameter(f"{text!r}: need 0 < MIN <= MAX", param_hint="--interval")
    return lo, hi


class Group(click.Group):
    """A click group whose command list shows each command's whole summary (the
    first sentence of its docstring), wrapped, where click cuts it at the width of
    the terminal with "...". Subgroups made with ``@group.group()`` are Groups too."""

    group_class = type

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=sys.maxsize)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vclock")
def cli() -> None:
    """vclock: vector clocks you can see.

    Run `vclock demo` to watch a server and three clients exchange clocks.
    """


# Server


def _limit_options(command: Callable[..., None]) -> Callable[..., None]:
    """One ``vclock server`` option per limit of ServerConfig, made from the field
    (``--max-rate`` from ``max_rate``): each limit is written once, there."""
    for limit in reversed(dataclasses.fields(ServerConfig)):
        help_text = limit.metadata.get("help")
        if help_text is None:
            continue
        least = limit.metadata["least"]
        kind = (
            click.FloatRange(min=least)
            if isinstance(limit.default, float)
            else click.IntRange(min=int(least))
        )
        command = click.option(
            "--" + limit.name.replace("_", "-"),
            limit.name,
            default=limit.default,
            show_default=True,
            type=kind,
            metavar=limit.metadata["unit"],
            help=help_text,
        )(command)
    return command


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=4999,
    show_default=True,
    type=PORT,
    help="TCP port (0 picks a free one).",
)
@click.option(
    "--sync-interval",
    default=5.0,
    show_default=True,
    help="Seconds between synchronization cycles.",
)
@click.option(
    "--data",
    default=MEMORY,
    show_default=True,
    help=(
        "Folder (or .sqlite3 file) for the server's durable state: latest clocks,"
        " held messages. The default, ':memory:', starts every run afresh."
    ),
)
@click.option(
    "--log",
    "log_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the server's event log into this folder.",
)
@click.option(
    "--auth-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Token file: one 'ID TOKEN' or 'ID scrypt$...' per line ('*' = shared secret).",
)
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="PEM certificate.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="PEM private key.")
@click.option(
    "--max-clock-entries",
    default=DEFAULTS.limits.max_entries,
    show_default=True,
    type=click.IntRange(min=1),
    help="Entries in one clock (protocol 2.2).",
)
@click.option(
    "--max-id-length",
    default=DEFAULTS.limits.max_id_length,
    show_default=True,
    type=click.IntRange(min=1),
    help="Characters in one client id (protocol 2.1).",
)
@_limit_options
@click.option(
    "--web",
    "web_address",
    metavar="HOST:PORT",
    help="Serve the live dashboard at this address (e.g. 127.0.0.1:8080; port 0 picks one).",
)
@click.option(
    "--web-token",
    envvar="VCLOCK_WEB_TOKEN",
    help="Token the dashboard requires (default: none on loopback without"
    " --auth-file, else a random one, printed in the dashboard's URL).",
)
@click.option("--quiet", is_flag=True, help="Print nothing but the listening line and errors.")
@click.option(
    "--cluster",
    "cluster_url",
    metavar="nats://HOST:PORT",
    help="Join a cluster of server nodes over this NATS server (docs/cluster.md).",
)
@click.option(
    "--cluster-name", default="vclock", show_default=True, help="Which cluster on that NATS."
)
@click.option("--node-id", help="This node's name in the cluster (default: random).")
@click.option(
    "--claim-ttl",
    default=10.0,
    show_default=True,
    help="Cluster: seconds before a dead node's client ids are free again.",
)
@click.option(
    "--cluster-connect-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Cluster: seconds a starting node tries to reach NATS before it exits with an error.",
)
def server(
    host: str,
    port: int,
    sync_interval: float,
    data: str,
    log_dir: Path | None,
    auth_file: Path | None,
    tls_cert: str | None,
    tls_key: str | None,
    max_clock_entries: int,
    max_id_length: int,
    web_address: str | None,
    web_token: str | None,
    quiet: bool,
    cluster_url: str | None,
    cluster_name: str,
    node_id: str | None,
    claim_ttl: float,
    cluster_connect_timeout: float,
    **limits: Any,
) -> None:
    """Run the message service: relays clocks and runs synchronization cycles."""
    cluster = None
    if cluster_url:
        try:
            from .cluster.backplane import ClusterConfig
        except ImportError:
            raise click.ClickException(
                "--cluster needs nats-py: pip install 'vclock[cluster]'"
            ) from None
        try:
            cluster = ClusterConfig(
                cluster_url,
                name=cluster_name,
                claim_ttl=claim_ttl,
                connect_patience=cluster_connect_timeout,
            )
            if node_id:
                cluster = dataclasses.replace(cluster, node_id=node_id)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    if sync_interval <= 0:
        raise click.BadParameter("must be > 0", param_hint="--sync-interval")
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    try:
        auth = Authenticator.from_text(auth_file.read_text()) if auth_file else None
    except ValueError as exc:
        raise click.ClickException(f"{auth_file}: {exc}") from None
    context = None
    if tls_cert and tls_key:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls_cert, tls_key)
    if not is_loopback(host) and auth is None:
        click.echo(
            f"warning: listening on {host} without --auth-file: anyone who can reach this"
            " port can join under any id",
            err=True,
        )
    web = _web_options(web_address, web_token, private=auth is None and is_loopback(host))
    config = ServerConfig(
        host=host,
        port=port,
        sync_interval=sync_interval,
        limits=ClockLimits(max_entries=max_clock_entries, max_id_length=max_id_length),
        auth=auth,
        ssl=context,
        **limits,
    )
    # Each failure names the option it comes from: the data, the log, the
    # listening address, the dashboard's address.
    try:
        # A cluster keeps what must survive in NATS, not in a node's SQLite file.
        store = Store(MEMORY if cluster is not None else data)
    except StoreError as exc:
        raise click.ClickException(f"--data {data}: {exc}") from None
    log = _event_log(log_dir, SERVER_ID)
    try:
        _run(_run_server(config, store, quiet, log, cluster, web))
    except VClockError as exc:  # e.g. the cluster cannot be joined: say why, no traceback
        raise click.ClickException(str(exc)) from None


def _event_log(log_dir: Path | None, pid: str) -> EventLog | None:
    """The event log of ``--log DIR``, or a one-line error naming ``--log``."""
    if log_dir is None:
        return None
    try:
        return EventLog(log_dir, pid)
    except OSError as exc:
        where = exc.filename or log_dir
        raise click.ClickException(
            f"--log {log_dir}: cannot write the event log ({where}: {exc.strerror or exc})"
        ) from None


def _bind_failed(
    exc: OSError, what: str, address: str, port_option: str, host_option: str
) -> click.ClickException:
    """A one-line error for an address that cannot be bound, naming the option at fault:
    the host's for an address this machine does not have, else the port's."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    option, hint = port_option, ""
    if exc.errno == errno.EADDRINUSE:
        hint = f" Is another server running there? Give {port_option} another port."
    elif exc.errno == errno.EACCES:
        hint = f" Ports below 1024 need privileges: give {port_option} another port."
    elif exc.errno == errno.EADDRNOTAVAIL:
        option = host_option
        hint = f" No interface of this machine has that address: give {host_option} one it has."
    return click.ClickException(f"{option}: cannot {what} on {address}: {reason}.{hint}")


def _web_options(
    address: str | None, token: str | None, *, private: bool
) -> tuple[str, int, str | None] | None:
    """(host, port, token) for the dashboard, or None without --web."""
    if address is None:
        return None
    try:
        import vclock.web  # noqa: F401  (the web extra: says how to install it)
    except ImportError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        host, port = parse_address(address)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--web") from None
    if token is None and not (private and is_loopback(host)):
        token = secrets.token_urlsafe(18)
    return host, port, token


async def _run_server(
    config: ServerConfig,
    store: Store,
    quiet: bool,
    log: EventLog | None,
    cluster: ClusterConfig | None = None,
    web: tuple[str, int, str | None] | None = None,
) -> None:
    try:
        srv = await serve(config, Console(None if quiet else sys.stdout), log, store, cluster)
    except OSError as exc:
        address = f"{config.host}:{config.port}"
        raise _bind_failed(exc, "listen", address, "--port", "--host") from None
    tls = ", TLS" if config.ssl else ""
    node = f", cluster {cluster.name} as node {cluster.node_id}" if cluster else ""
    click.echo(
        f"vclock server listening on {config.host}:{srv.port}"
        f" (sync every {config.sync_interval:g} s{tls}{node})"
    )
    if srv.max_connections < config.max_connections:
        click.echo(
            f"warning: --max-connections lowered from {config.max_connections} to"
            f" {srv.max_connections} to stay below the open-file limit; raise it"
            " (ulimit -n) to accept more",
            err=True,
        )
    dashboard = None
    if web is not None:
        from .web import Dashboard

        web_host, web_port, token = web
        dashboard = Dashboard(srv, token=token)
        try:
            await dashboard.start(web_host, web_port)
        except OSError as exc:
            await srv.close()
            address = f"{web_host}:{web_port}"
            raise _bind_failed(exc, "serve the dashboard", address, "--web", "--web") from None
        click.echo(f"vclock dashboard at {dashboard.url}")
    failed = asyncio.create_task(srv.wait_failed())
    signalled = asyncio.create_task(_until_signalled())
    await asyncio.wait({failed, signalled}, return_when=asyncio.FIRST_COMPLETED)
    signalled.cancel()
    failed.cancel()
    if dashboard is not None:
        await dashboard.close()
    await srv.close()
    if srv.failure is not None:
        raise click.ClickException(
            f"{srv.failure}. The server stopped rather than acknowledge what it could not"
            " store; everything acknowledged before is in the database. Free some space"
            " (or fix the disk), then start it again with the same --data."
        )
    if not quiet:
        click.echo("Server stopped.")


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # Stopping now, cleanly: a SIGTERM from here on (a supervisor that sends one
    # after the Ctrl-C its process group already had) must not kill the process
    # while it finishes, nor once the loop is closed and asyncio's handler is gone.
    loop.remove_signal_handler(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@cli.command("hash-token")
@click.password_option("--token", prompt="Token", help="The token to hash (prompted if omitted).")
def hash_token_command(token: str) -> None:
    """Print the salted hash of a token, for an --auth-file line 'ID HASH'."""
    click.echo(hash_token(token))


# Client

STOPPED = "client stopped"


@cli.command()
@click.option(
    "--id",
    "client_id",
    help="This client's id (letters, digits, _ . -); default: assigned by the server.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="The server's address.")
@click.option("--port", default=4999, show_default=True, type=PORT, help="The server's TCP port.")
@click.option(
    "--server",
    "servers",
    multiple=True,
    metavar="HOST:PORT",
    help="A server to use (repeat for cluster nodes: tried in turn, and failed over to"
    " with --reconnect). Replaces --host/--port.",
)
@click.option(
    "--interval",
    default="2-10",
    show_default=True,
    help="Seconds between sends, MIN-MAX, chosen at random.",
)
@click.option("--seed", type=int, help="Seed the random choices, for repeatable runs.")
@click.option(
    "--log",
    "log_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write this client's event log into this folder.",
)
@click.option(
    "--reconnect",
    is_flag=True,
    help="When the connection drops, reconnect with backoff and resume without losing messages.",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep this client's clock and unacknowledged messages in FILE across restarts"
    " (SQLite; a JSON state file of earlier versions is converted).",
)
@click.option(
    "--max-held",
    default=DEFAULT_MAX_HELD,
    show_default=True,
    type=click.IntRange(min=1),
    help="Causal broadcasts to hold back at most while they wait for earlier ones;"
    " one more ends the session with an error (they stay in --state).",
)
@click.option("--token", envvar="VCLOCK_TOKEN", help="Authentication token (or $VCLOCK_TOKEN).")
@click.option(
    "--tls-ca",
    type=click.Path(exists=True, dir_okay=False),
    help="Use TLS, trusting this CA certificate (PEM).",
)
@click.option("--tls", "use_tls", is_flag=True, help="Use TLS with the system's CA certificates.")
@click.option(
    "--broadcast-every",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Make every Nth send a causal broadcast to all other clients (1: only broadcasts).",
)
@click.option(
    "--peers",
    "peers_mode",
    type=click.Choice(get_args(PeersMode)),
    default="all",
    show_default=True,
    help="What the server tells this client about the others: all (the list, then every"
    " join and leave), batched (the list, then the changes 10 times a second at most) or"
    " none (nothing: the client asks for one page of 100 peers at a time and sends among"
    " them, the next page every 10 sends). Use none or batched with thousands of clients.",
)
def client(
    client_id: str | None,
    host: str,
    port: int,
    interval: str,
    seed: int | None,
    log_dir: Path | None,
    reconnect: bool,
    state_path: Path | None,
    token: str | None,
    tls_ca: str | None,
    use_tls: bool,
    broadcast_every: int,
    servers: tuple[str, ...],
    max_held: int,
    peers_mode: PeersMode,
) -> None:
    """Run a client: every MIN-MAX seconds, send its clock to a random peer."""
    bounds = _interval(interval)
    addresses = [_address(text) for text in servers]
    if addresses:
        host, port = addresses[0]
    if (log_dir or state_path) and not client_id:
        raise click.UsageError("--log and --state need --id: their files belong to one client")
    context = ssl.create_default_context(cafile=tls_ca) if (tls_ca or use_tls) else None
    options = connect(
        host,
        port,
        id=client_id,
        token=token,
        reconnect=reconnect,
        state_path=state_path,
        ssl=context,
        log=_event_log(log_dir, client_id) if client_id else None,
        fallbacks=addresses[1:],
        max_held=max_held,
        peers=peers_mode,
    )
    try:
        reason = _run(_run_client(options, bounds, seed, broadcast_every))
    except ConnectError as exc:
        hint = " Start one with `vclock server`." if exc.unreachable else ""
        raise click.ClickException(one_line(f"{exc}.{hint}")) from None
    except StateFileError as exc:
        raise click.ClickException(one_line(f"--state {state_path}: {exc}")) from None
    except HoldBackFull as exc:
        kept = f" They are kept in {state_path}." if state_path and reconnect else ""
        raise click.ClickException(one_line(f"{exc}.{kept}")) from None
    if reason == STOPPED:
        click.echo("Client stopped.")
    else:
        echo(f"Server closed the session ({reason}); exiting.")


async def _run_client(
    connecting: connect, interval: tuple[float, float], seed: int | None, broadcast_every: int = 0
) -> str:
    node = await connecting
    console = ClientConsole(node)
    console.connected()
    stop = asyncio.create_task(_until_signalled())
    session = asyncio.create_task(
        run(
            node,
            interval=interval,
            rng=random.Random(seed),
            on_event=console.event,
            on_send=console.sent,
            broadcast_every=broadcast_every,
        )
    )
    done, _ = await asyncio.wait({stop, session}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    try:
        if session in done:
            reason = session.result()  # raises HoldBackFull if that ended the session
        else:
            await node.close(STOPPED)
            session.cancel()
            reason = STOPPED
    finally:
        if node.options.log is not None:
            node.options.log.close()
    return reason


cli.add_command(demo)


# Tools over event logs


_SOURCES = click.argument(
    "sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path)
)


def _output(help_text: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The ``-o/--output FILE`` option of the commands that write a file."""
    return click.option(
        "-o",
        "--output",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help=help_text,
    )


@cli.group()
def export() -> None:
    """Convert event logs to other tools' formats."""


@export.command("shiviz")
@_SOURCES
@_output("The ShiViz log to write, e.g. run.shiviz.log.")
def export_shiviz_command(sources: tuple[Path, ...], output: Path) -> None:
    """Write run folders, .jsonl logs or GoVector logs as one ShiViz log (one execution per source).

    Load it at https://bestchai.bitbucket.io/shiviz/ with the parser regex
    (?<host>\\S*) (?<clock>{.*})\\n(?<event>.*)
    """
    try:
        result = export_shiviz(list(sources), output)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Wrote {result.events} events from {result.runs} run(s) to {result.path}")


class _CannotRead(click.ClickException):
    """`vclock check`'s error for logs it cannot read: exit status 2 (1 is "inconsistent")."""

    exit_code = 2


@cli.command("check")
@_SOURCES
@click.option(
    "--causal-delivery",
    is_flag=True,
    help="Fail (not just warn) when messages were not delivered in causal order.",
)
def check_command(sources: tuple[Path, ...], causal_delivery: bool) -> None:
    """Check logs for causal consistency: exit 0 if consistent, 1 if not, 2 if unreadable.

    SOURCES: a run folder or .jsonl event logs, or GoVector/ShiViz logs (one per
    process, several, or merged; messages are read from the clocks). Each
    execution of a multi-execution log is checked on its own. Exit status 2: no
    such folder, an unreadable file or line, no events.
    """
    try:
        trace = read_trace(list(sources))
        reports = [
            (execution.label, check(execution, require_causal_delivery=causal_delivery))
            for execution in trace.executions
        ]
        if not any(execution.events for execution in trace.executions):
            raise ValueError(f"no events in {' '.join(map(str, sources))}: its logs are empty")
    except (ValueError, OSError) as exc:  # FileNotFoundError, IsADirectoryError, ...
        reason = (
            f"{exc.filename}: {exc.strerror}"
            if isinstance(exc, OSError) and exc.filename and exc.strerror
            else str(exc)
        )
        raise _CannotRead(f"cannot check {' '.join(map(str, sources))}: {reason}") from None
    for label, report in reports:
        if len(reports) > 1:
            click.echo(f"=== {label} ===")
        click.echo(format_report(report))
    if not all(report.ok for _, report in reports):
        sys.exit(1)


@cli.command()
@_SOURCES
@_output("run.html (interactive, self-contained) or run.svg.")
@click.option(
    "--execution", metavar="LABEL", help="Which execution to draw when the logs hold several."
)
def diagram(sources: tuple[Path, ...], output: Path, execution: str | None) -> None:
    """Draw a space-time diagram of a run folder, .jsonl logs or GoVector/ShiViz logs."""
    try:
        path = write_diagram(list(sources), output, execution=execution)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Wrote {path}")


@cli.command()
@_SOURCES
@_output("merged.log (ShiViz) or merged.jsonl (vclock event log, one execution).")
def merge(sources: tuple[Path, ...], output: Path) -> None:
    """Merge per-process logs into one file ordered by causality.

    SOURCES: GoVector/ShiViz logs (one per process, several, merged, or folders of
    them), or vclock event logs. Writes a ShiViz log (upload it to
    https://bestchai.bitbucket.io/shiviz/), or with -o NAME.jsonl one vclock
    event log with the inferred messages written down.
    """
    try:
        result = merge_logs(list(sources), output)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Wrote {result.events} events of {result.runs} execution(s) to {result.path}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``vclock`` command."""
    cli.main(args=argv, prog_name="vclock")


__all__ = ["cli", "main"]
