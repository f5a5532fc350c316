"""The load processes of the relay cell: many clients in one process, one driver.

The parent (:mod:`benchmarks.relay`) starts two of these with ``multiprocessing``
(spawn) and talks to each over a pipe: ``ready`` after every client is connected,
then ``load`` (sustained load over a time window), ``rtt`` (one request/response
at a time) and ``stop``. Client ``i`` of ``N`` lives in process ``i % 2``; with
several servers (the cluster cell's nodes) it connects to server ``i % servers``.

Every driver makes the same messages: each client keeps a 3-entry vector clock
(its own entry, ticked for every send by :class:`vclock.client.ClientState`, and two
fixed entries), and a message is the ``send`` frame of that clock with a body
``{"t": time.time_ns()}``, about 120 bytes of JSON. Receivers decode and validate
the frame (clock included) and read the timestamp. Drivers:

- ``sansio``: vclock's sans-I/O client pieces (ClientState builds frames,
  protocol.Connection encodes and decodes them) over asyncio transports; frames
  for one connection are written together at the end of a batch. Used against the
  vclock server and the bare relay. Clocks are delta-encoded when the server
  agrees (the library default); ``sansio-full`` sends full clocks.
- ``lib``: the vclock client library, ``vclock.asyncio.connect``: one ``Client`` per
  client, ``await node.send(...)`` per message, events read with ``async for``.
  Its clocks grow as it merges what it receives, as a real client's do.
- ``nats``: nats-py, one connection per client, subscribed to ``vc.<id>``;
  the payload is the same ``send`` frame, decoded with the same vclock decoder.
"""

from __future__ import annotations

import array
import asyncio
import random
import resource
import time
from collections.abc import Callable
from multiprocessing.connection import Connection as Pipe
from typing import Any

from vclock.client import ClientState
from vclock.clock import VectorClock

from .procs import HOST, raise_nofile_limit

OnMessage = Callable[[str, Any], "tuple[str, str] | None"]


def client_id(index: int) -> str:
    return f"c{index:04d}"


def three_entry_clock(index: int, n_clients: int) -> VectorClock:
    """The starting clock of client ``index``: its own entry and two others, at 1."""
    others = {client_id((index + k) % max(n_clients, 3)) for k in (1, 2)}
    return VectorClock({client_id(index): 0, **{pid: 1 for pid in others}})


class Stats:
    """What one load process counts and hands back to the parent."""

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self.counted = 0  # received inside the measurement window
        self.counted_by_node: dict[int, int] = {}  # the same, by the receiver's node
        self.latencies = array.array("q")  # one-way, ns, inside the window
        self.rtts = array.array("q")
        self.errors = 0
        self.first_error = ""

    def error(self, text: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = text[:300]


class Load:
    """The message pattern, independent of the driver that carries it.

    Flow control: process ``p`` may have at most ``window * len(local) / n_clients``
    of its own messages in flight (sent, not yet received by any process), so every
    client offers the same load whichever process it lives in. The counts are
    shared through ``shared`` (a RawArray: ``sent[p]`` for each process, then
    ``received[q][p]``, what process ``q`` received from ``p``); each process
    writes only its own slots. The sender's process rides in the timestamp's
    lowest bit, so the message is the same size as without it.
    """

    def __init__(
        self, local: list[int], n_clients: int, window: int, batch: int, me: int, procs: int,
        shared: Any, pattern: str = "any", nodes: int = 1,
    ) -> None:  # fmt: skip
        self.local = local
        self.n_clients = n_clients
        self.nodes = max(nodes, 1)  # client i is on node i mod nodes
        #: per sender, the receivers it picks from ("any": every other client,
        #: "local": those on its node, "cross": those on other nodes)
        self.targets = {src: _targets(src, n_clients, pattern, self.nodes) for src in local}
        self.window = max(1, window * len(local) // n_clients)
        self.batch = batch
        self.me = me
        self.procs = procs
        self.shared = shared
        self.rng = random.Random(1000 + me)
        self.stats = Stats()
        self.from_proc = [0] * procs  # what this process received from each process
        self.min_room = max(1, min(batch, self.window // 4))
        self.win_start = self.win_end = 0
        self.waiter: asyncio.Future[None] | None = None
        self.rtt_waiter: asyncio.Future[None] | None = None

    def stamp(self) -> int:
        """Now, in ns since the epoch, with this process's number in the low bit(s)."""
        return (time.time_ns() // self.procs) * self.procs + self.me

    def on_message(self, local_id: str, body: Any) -> tuple[str, str] | None:
        """A message arrived for ``local_id``. Returns (from, to) of a reply to send."""
        now = time.time_ns()
        stats = self.stats
        if "q" in body:  # round trips are not counted in ``received``
            return (local_id, body["q"])
        if "a" in body:
            if self.rtt_waiter is not None and not self.rtt_waiter.done():
                self.rtt_waiter.set_result(None)
            return None
        stats.received += 1
        sent_at = body["t"]
        origin = sent_at % self.procs
        count = self.from_proc[origin] + 1
        self.from_proc[origin] = count
        self.shared[self.procs + self.me * self.procs + origin] = count
        if self.win_start <= now < self.win_end:
            stats.counted += 1
            node = int(local_id[1:]) % self.nodes
            stats.counted_by_node[node] = stats.counted_by_node.get(node, 0) + 1
            stats.latencies.append(now - sent_at)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)
        return None

    async def _wait_for_room(self) -> None:
        """Until a message arrives here, or 1 ms (receipts elsewhere count too)."""
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        timer = loop.call_later(0.001, _wake, waiter)
        await waiter
        timer.cancel()

    def in_flight(self) -> int:
        """Messages this process sent that no process has received yet."""
        shared, procs, me = self.shared, self.procs, self.me
        arrived: int = sum(shared[procs + q * procs + me] for q in range(procs))
        return self.stats.sent - arrived

    async def run_load(self, driver: Driver, go_ns: int, win_start: int, win_end: int) -> None:
        """Send as fast as the window allows from ``go_ns`` until ``win_end``."""
        self.win_start, self.win_end = win_start, win_end
        await asyncio.sleep(max(0.0, (go_ns - time.time_ns()) / 1e9))
        stats, rng, local, targets = self.stats, self.rng, self.local, self.targets
        while time.time_ns() < win_end:
            room = self.window - self.in_flight()
            if room < self.min_room:
                await self._wait_for_room()
                continue
            pairs = []
            for _ in range(min(room, self.batch)):
                src = local[int(rng.random() * len(local))]
                among = targets[src]
                dst = among[int(rng.random() * len(among))]
                pairs.append((client_id(src), client_id(dst)))
            stats.sent += len(pairs)
            self.shared[self.me] = stats.sent
            await driver.send_batch(pairs, None)
            await asyncio.sleep(0)
        # Let what is in flight arrive (bounded), so it is not counted as lost.
        deadline = time.monotonic() + 2.0
        while self.in_flight() > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def run_pinger(self, driver: Driver, src: str, dst: str, end_ns: int, limit: int) -> None:
        """One request at a time from ``src`` to ``dst``, which answers at once."""
        loop = asyncio.get_running_loop()
        warmup = 50
        for i in range(limit + warmup):
            if i >= warmup and time.time_ns() >= end_ns:
                break
            self.rtt_waiter = loop.create_future()
            start = time.perf_counter_ns()
            await driver.send_batch([(src, dst)], {"t": self.stamp(), "q": src})
            try:
                await asyncio.wait_for(self.rtt_waiter, 5.0)
            except TimeoutError:
                self.stats.error("round trip timed out after 5 s")
                break
            if i >= warmup:
                self.stats.rtts.append(time.perf_counter_ns() - start)


def _targets(src: int, n_clients: int, pattern: str, nodes: int) -> list[int]:
    """The clients ``src`` sends to under ``pattern`` (never itself)."""
    others = [dst for dst in range(n_clients) if dst != src]
    if pattern == "local":
        return [dst for dst in others if dst % nodes == src % nodes]
    if pattern == "cross":
        return [dst for dst in others if dst % nodes != src % nodes]
    return others


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


# Drivers


class Driver:
    """Connects this process's clients and carries messages for them."""

    name = "driver"

    def __init__(self, port: int, local: list[int], n_clients: int, load: Load) -> None:
        self.port = port
        self.ports = [port]  # several servers (cluster nodes): client i uses ports[i % len]
        self.local = local
        self.n_clients = n_clients
        self.load = load

    async def connect_all(self, concurrency: int = 40) -> None:  # 2 x 40 < listen backlog
        sem = asyncio.Semaphore(concurrency)

        async def one(index: int) -> None:
            async with sem:
                await self.connect(index)

        await asyncio.gather(*(one(i) for i in self.local))
        await self.settle()

    async def connect(self, index: int) -> None:
        raise NotImplementedError

    def port_for(self, index: int) -> int:
        """The server client ``index`` connects to: clients spread evenly over them."""
        return self.ports[index % len(self.ports)]

    async def settle(self) -> None:
        """Wait until the server knows every client (subscriptions, hellos)."""

    async def send_batch(self, pairs: list[tuple[str, str]], body: dict[str, Any] | None) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {}


class _SansIOClient(asyncio.Protocol):
    def __init__(self, driver: SansIODriver, index: int) -> None:
        from vclock.asyncio.client import CLIENT_MAX_FRAME_SIZE
        from vclock.protocol import Connection, server_frame_decoder

        self.driver = driver
        self.id = client_id(index)
        self.index = index
        self.state = ClientState(self.id, delta=driver.delta)
        self.conn: Any = Connection(server_frame_decoder(), max_frame_size=CLIENT_MAX_FRAME_SIZE)
        self.transport: asyncio.Transport | None = None
        self.welcomed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.bytes_received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport
        self.conn.send(self.state.hello())
        self.transport.write(self.conn.data_to_send())  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        from vclock.protocol.frames import Deliver, Error, Welcome

        self.bytes_received += len(data)
        conn = self.conn
        conn.receive_data(data)
        load = self.driver.load
        reply = None
        for event in conn.events_received():
            kind = type(event)
            if kind is Deliver:
                reply = load.on_message(self.id, event.body)
                if reply is not None:
                    self.driver.send_now(self, reply[1], {"t": time.time_ns(), "a": 1})
            elif kind is Welcome:
                self.state.receive(event)
                self.state.clock = three_entry_clock(self.index, self.driver.n_clients)
                if not self.welcomed.done():
                    self.welcomed.set_result(None)
            elif kind is Error:
                load.stats.error(f"{event.code}: {event.message}")
            elif isinstance(event, Exception):
                load.stats.error(f"bad frame from server: {event}")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.driver.closing:
            self.driver.load.stats.error(f"{self.id}: connection lost: {exc}")
        if not self.welcomed.done():
            self.welcomed.set_exception(ConnectionError(f"{self.id}: closed before welcome"))


class SansIODriver(Driver):
    """ClientState + protocol.Connection over asyncio transports (vclock server, bare relay)."""

    name = "sansio"
    delta = True  # what the client library asks for by default

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.clients: dict[str, _SansIOClient] = {}
        self.closing = False

    async def connect(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(
            lambda: _SansIOClient(self, index), HOST, self.port_for(index)
        )
        await asyncio.wait_for(client.welcomed, 60)
        self.clients[client.id] = client

    async def send_batch(self, pairs: list[tuple[str, str]], body: dict[str, Any] | None) -> None:
        clients, stamp = self.clients, self.load.stamp
        dirty = {}
        for src, dst in pairs:
            client = clients[src]
            client.conn.send(client.state.send(dst, body or {"t": stamp()}))
            dirty[src] = client
        for client in dirty.values():
            assert client.transport is not None
            client.transport.write(client.conn.data_to_send())

    def send_now(self, client: _SansIOClient, to: str, body: dict[str, Any]) -> None:
        client.conn.send(client.state.send(to, body))
        assert client.transport is not None
        client.transport.write(client.conn.data_to_send())

    async def close(self) -> None:
        from vclock.protocol.frames import Bye

        self.closing = True
        for client in self.clients.values():
            if client.transport is not None and not client.transport.is_closing():
                client.conn.send(Bye(reason="benchmark done"))
                client.transport.write(client.conn.data_to_send())
                client.transport.close()
        await asyncio.sleep(0.1)


class SansIOFullDriver(SansIODriver):
    """The same, with full clocks in every frame (hello without ``delta``)."""

    name = "sansio-full"
    delta = False


class LibDriver(Driver):
    """The client library: vclock.asyncio.connect, one Client per client."""

    name = "lib"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.nodes: dict[str, Any] = {}
        self.readers: list[asyncio.Task[None]] = []

    async def connect(self, index: int) -> None:
        from vclock.asyncio import connect

        node = await asyncio.wait_for(connect(HOST, self.port_for(index), id=client_id(index)), 60)
        self.nodes[node.id] = node
        self.readers.append(asyncio.create_task(self._read(node)))

    async def _read(self, node: Any) -> None:
        from vclock.client import Message, ServerError

        on_message = self.load.on_message
        async for event in node:
            kind = type(event)
            if kind is Message:
                reply = on_message(node.id, event.body)
                if reply is not None:
                    await node.send(reply[1], {"t": time.time_ns(), "a": 1})
            elif kind is ServerError:
                self.load.stats.error(f"{event.code}: {event.message}")

    async def send_batch(self, pairs: list[tuple[str, str]], body: dict[str, Any] | None) -> None:
        nodes, stamp = self.nodes, self.load.stamp
        for src, dst in pairs:
            await nodes[src].send(dst, body or {"t": stamp()})

    async def close(self) -> None:
        await asyncio.gather(
            *(node.close() for node in self.nodes.values()), return_exceptions=True
        )
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)

    def info(self) -> dict[str, Any]:
        sizes = [len(node.clock) for node in self.nodes.values()]
        return {"clock_entries_mean": sum(sizes) / len(sizes) if sizes else 0}


class NatsDriver(Driver):
    """nats-py: one connection per client, subscribed to its own subject."""

    name = "nats"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        from vclock.protocol.codec import FrameDecoder
        from vclock.protocol.frames import Send

        self.conns: dict[str, Any] = {}
        self.states: dict[str, ClientState] = {}
        self.decoder: FrameDecoder[Send] = FrameDecoder(Send)

    async def connect(self, index: int) -> None:
        import nats

        cid = client_id(index)
        stats = self.load.stats

        async def on_error(exc: Exception) -> None:
            stats.error(f"nats {cid}: {exc!r}")

        nc = await nats.connect(
            f"nats://{HOST}:{self.port}",
            name=cid,
            allow_reconnect=False,
            connect_timeout=30,
            ping_interval=600,
            error_cb=on_error,
        )
        state = ClientState(cid)
        state.id = cid
        state.clock = three_entry_clock(index, self.n_clients)
        decode = self.decoder.decode
        on_message = self.load.on_message

        async def on_msg(msg: Any) -> None:
            frame = decode(msg.data)
            reply = on_message(cid, frame.body)
            if reply is not None:
                await self._publish(nc, state, reply[1], {"t": time.time_ns(), "a": 1})

        await nc.subscribe(f"vc.{cid}", cb=on_msg)
        self.conns[cid] = nc
        self.states[cid] = state

    async def settle(self) -> None:
        await asyncio.gather(*(nc.flush(timeout=30) for nc in self.conns.values()))

    @staticmethod
    async def _publish(nc: Any, state: ClientState, to: str, body: dict[str, Any]) -> None:
        from vclock.protocol.codec import encode_json

        await nc.publish(f"vc.{to}", encode_json(state.send(to, body)))

    async def send_batch(self, pairs: list[tuple[str, str]], body: dict[str, Any] | None) -> None:
        conns, states, publish = self.conns, self.states, self._publish
        stamp = self.load.stamp
        for src, dst in pairs:
            await publish(conns[src], states[src], dst, body or {"t": stamp()})

    async def close(self) -> None:
        await asyncio.gather(*(nc.close() for nc in self.conns.values()), return_exceptions=True)


DRIVERS: dict[str, type[Driver]] = {
    "sansio": SansIODriver,
    "sansio-full": SansIOFullDriver,
    "lib": LibDriver,
    "nats": NatsDriver,
}


# The process


def worker_entry(pipe: Pipe, spec: dict[str, Any]) -> None:
    """Entry point of one load process (multiprocessing target)."""
    raise_nofile_limit()
    if spec.get("uvloop"):
        try:
            import uvloop

            runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
        except ImportError:
            runner = asyncio.Runner()
    else:
        runner = asyncio.Runner()
    with runner:
        runner.run(_worker(pipe, spec))


async def _worker(pipe: Pipe, spec: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    n, me, procs = spec["n_clients"], spec["index"], spec["procs"]
    local = [i for i in range(n) if i % procs == me]
    load = Load(
        local, n, spec["window"], spec["batch"], me, procs, spec["shared"],
        spec.get("pattern", "any"), len(spec.get("ports") or [1]),
    )  # fmt: skip
    driver = DRIVERS[spec["driver"]](spec["port"], local, n, load)
    driver.ports = list(spec.get("ports") or [spec["port"]])
    started = time.perf_counter()
    try:
        await driver.connect_all()
    except Exception as exc:  # reported to the parent, which marks the cell failed
        pipe.send(("error", f"connecting {len(local)} clients: {exc!r}"))
        return
    pipe.send(("ready", {"setup_s": time.perf_counter() - started, "clients": len(local)}))
    while True:
        command, *args = await loop.run_in_executor(None, pipe.recv)
        if command == "load":
            await load.run_load(driver, *args)
            pipe.send(("load", _snapshot(load, driver, latencies=True)))
        elif command == "rtt":
            role, end_ns, limit = args
            if role == "pinger":
                await load.run_pinger(driver, client_id(local[0]), client_id(1 - me), end_ns, limit)
            pipe.send(("rtt", _snapshot(load, driver, latencies=False)))
        elif command == "stop":
            await driver.close()
            pipe.send(("stopped", _snapshot(load, driver, latencies=False)))
            return


def _snapshot(load: Load, driver: Driver, *, latencies: bool) -> dict[str, Any]:
    stats = load.stats
    usage = resource.getrusage(resource.RUSAGE_SELF)
    snap = {
        "sent": stats.sent,
        "received": stats.received,
        "counted": stats.counted,
        "counted_by_node": dict(stats.counted_by_node),
        "errors": stats.errors,
        "first_error": stats.first_error,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "rtts": stats.rtts.tobytes(),
        **driver.info(),
    }
    if latencies:
        snap["latencies"] = stats.latencies.tobytes()
    stats.rtts = array.array("q")
    return snap
