"""Cluster mode with the real thing: a nats-server with JetStream on a free
loopback port, three ``vclock server --cluster`` nodes, clients spread over
them. The trace checker judges every run (docs/cluster.md says what holds)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import signal
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from vclock import Message, ServerError, VectorClock
from vclock.asyncio.client import Client, connect, load_state
from vclock.client import Acked, PeerChange, Welcomed
from vclock.cluster import Directory, Status
from vclock.protocol.frames import frame_type
from vclock.tools.audit import delivery_audit
from vclock.tools.checker import check, format_report
from vclock.tools.eventlog import EventLog, read_events

from ..helpers import WAIT, async_wait_until
from .conftest import (
    HOST,
    NATS_SERVER,
    Process,
    Processes,
    ServerProcess,
    count_kinds,
    events_of,
    free_port,
    needs_nats,
    vclock_argv,
    wait_for_exchanges,
    wait_listening,
    wait_until,
)

FAST = "0.05-0.15"
pytestmark = needs_nats


class Cluster:
    def __init__(self, processes: Processes, url: str, logs: Path) -> None:
        self.processes = processes
        self.url = url
        self.logs = logs
        self.nodes: list[ServerProcess] = []

    def node(self, name: str, *args: str) -> ServerProcess:
        node = self.processes.server(
            "--cluster", self.url, "--node-id", name, "--claim-ttl", "4", *args
        )
        self.nodes.append(node)
        return node

    def addresses(self, first: ServerProcess) -> list[str]:
        order = [first] + [n for n in self.nodes if n is not first]
        return [arg for n in order for arg in ("--server", f"{HOST}:{n.port}")]

    def client(self, client_id: str, node: ServerProcess, *args: str) -> Process:
        return self.processes.client(
            client_id, node.port, "--log", str(self.logs), *self.addresses(node), *args
        )


@pytest.fixture
def cluster(nats_url: str, processes: Processes, tmp_path: Path) -> Cluster:
    # NATS first, so it is stopped last: nodes shut down while it is still there
    return Cluster(processes, nats_url, tmp_path / "logs")


def checked(logs: Path, **options: object) -> None:
    report = check(logs, **options)  # type: ignore[arg-type]
    assert report.ok, format_report(report)


def test_unicast_membership_and_sync_across_three_nodes(cluster: Cluster) -> None:
    n1, n2, n3 = (cluster.node(f"n{i}") for i in (1, 2, 3))
    a = cluster.client("A", n1)
    cluster.client("B", n2)
    cluster.client("C", n3)
    # membership is cluster-wide: A (on n1) hears of B and C (on n2, n3)
    a.wait_for_line(r"peer joined: B")
    a.wait_for_line(r"peer joined: C")

    # unicast across nodes, both ways (clients pick their receivers at random)
    def received() -> set[tuple[str, str]]:
        return {
            (e.peer, e.pid)
            for pid in "ABC"
            for e in events_of(cluster.logs, pid)
            if e.kind == "receive"
        }

    wait_until(
        lambda: {("B", "A"), ("C", "A"), ("A", "B"), ("A", "C")} <= received(),
        what="A to receive from B and C, and B and C from A",
    )
    # each node syncs its clients to the cluster-wide frontier (it names clients of
    # the other nodes), and the console lines are the single-node ones
    n1.wait_for_line(r'^Frontier: \{"A": \d+, "B": \d+, "C": \d+\}')
    for node in (n1, n2, n3):
        node.stop()
    checked(cluster.logs)


def test_an_id_is_unique_across_the_cluster(cluster: Cluster, start_client) -> None:
    n1, n2 = cluster.node("n1"), cluster.node("n2")
    cluster.client("A", n1)
    twin = start_client("A", n2.port, wait_connected=False)
    assert twin.wait() != 0
    assert any("already connected (to node n1)" in line for line in twin.err_lines()), (
        twin.describe()
    )


def test_broadcasts_are_delivered_causally_when_one_nodes_traffic_is_late(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Long sync intervals: broadcasts are the only causality between clients, so
    # the checker's happened-before is exactly what BSS orders by.
    slow = ("--sync-interval", "600")
    n1, n2 = cluster.node("n1", *slow), cluster.node("n2", *slow)
    monkeypatch.setenv("VCLOCK_TEST_CLUSTER_DELAY", "0.3")
    n3 = cluster.node("n3", *slow)
    monkeypatch.delenv("VCLOCK_TEST_CLUSTER_DELAY")
    ids = ["A", "B", "C", "D", "E", "F"]
    for client_id, node in zip(ids, [n1, n2, n3, n1, n2, n3], strict=True):
        cluster.client(client_id, node, "--broadcast-every", "1", "--interval", "0.05-0.15")
    wait_until(
        lambda: all(count_kinds(cluster.logs, i, "receive") >= 40 for i in ids),
        what="40 broadcasts delivered to each client",
    )
    for node in cluster.nodes:
        node.stop()
    checked(cluster.logs, require_causal_delivery=True, causal_scope="broadcast")


def until_held(url: str, node: str, client: str) -> None:
    """Wait until ``node``'s heartbeat on NATS says it holds ``client``'s inbox, in
    two heartbeats: the other nodes, on the same subject, have heard it by then."""
    import nats

    async def watch() -> None:
        nc = await nats.connect(url)
        try:
            heartbeats = await nc.subscribe("vclock.vclock.all")
            heard = 0
            async with asyncio.timeout(WAIT):
                while heard < 2:
                    status = msgspec.json.decode((await heartbeats.next_msg(timeout=WAIT)).data)
                    if status.get("node") == node and client in status.get("held", []):
                        heard += 1  # (relays on this subject have no "held")
        finally:
            await nc.close()

    asyncio.run(watch())


def _send_while_away(port: int, run: Path, to: str, count: int) -> list[str]:
    """A resume client S on ``port`` sends ``count`` messages to ``to`` (away) and
    waits until every one is acknowledged; returns their ids."""

    async def go() -> list[str]:
        node = await connect(HOST, port, id="S", reconnect=True, log=EventLog(run, "S"))
        sent = []
        for _ in range(count):
            clock = await node.send(to, "while away")
            sent.append(f"S#{clock['S']}")
        await async_wait_until(
            lambda: node.unacked == 0, "S's sends to the away client to be acknowledged"
        )
        await node.close()
        node.options.log.close()  # type: ignore[union-attr]
        return sent

    return asyncio.run(go())


def test_killing_a_node_loses_no_acknowledged_message(cluster: Cluster, tmp_path: Path) -> None:
    """SIGKILL the node of clients exchanging and of an away resume client with
    messages waiting; nothing is restarted. Every message whose send was
    acknowledged (gone from its sender's unacked list) is received exactly once."""
    run = cluster.logs
    n1, n2, n3 = (cluster.node(f"n{i}") for i in (1, 2, 3))

    def resilient(client_id: str, node: ServerProcess) -> Process:
        state = str(tmp_path / f"{client_id}.state")
        return cluster.client(client_id, node, "--reconnect", "--state", state, "--interval", FAST)

    clients = {"A": resilient("A", n1), "B": resilient("B", n2), "C": resilient("C", n3)}
    r = resilient("R", n1)
    before = wait_for_exchanges(run, ["A", "B", "C", "R"], n=3)
    r.send_signal(signal.SIGKILL)  # away without bye: n1 keeps its inbox
    r.wait()
    n1.wait_for_line(r"^R \(")
    until_held(cluster.url, "n1", "R")  # n2 hears from n1 that R is held there
    waiting = _send_while_away(n2.port, run, "R", 5)  # relayed to n1, acked by S's node
    n1.send_signal(signal.SIGKILL)
    n1.wait()
    clients["A"].wait_for_line(r"connection lost")
    clients["A"].wait_for_line(r"reconnected \(\d+ to resend\)", timeout=30)
    clients["R"] = resilient("R", n2)  # comes back on another node: its inbox is replayed
    wait_until(
        lambda: {e.msg for e in events_of(run, "R") if e.kind == "receive"} >= set(waiting),
        what="R to get the messages sent while it was away",
        timeout=30,
    )
    wait_for_exchanges(run, list(clients), more_than=before, n=3, timeout=30)
    stopped_at = _dt.datetime.now(_dt.UTC)
    for proc in clients.values():
        proc.stop()
    checked(run)

    ids = {"A", "B", "C", "R"}
    unacked = set()
    for pid in ids:
        saved = load_state(tmp_path / f"{pid}.state")
        assert saved is not None
        unacked |= {f"{pid}#{frame.seq}" for frame in saved.unacked}
    grace = stopped_at - _dt.timedelta(seconds=0.3)  # receivers may be saying bye
    # S's sends to R (acked while R was away, see _send_while_away) are audited too
    wrong = delivery_audit(read_events(run), receivers=ids, unacked=unacked, before=grace)
    assert not wrong, f"acknowledged messages not received exactly once: {wrong}"


async def errors_of(node: Client) -> list[ServerError]:
    """The errors ``node`` gets, until it is closed."""
    return [event async for event in node if isinstance(event, ServerError)]


async def until_known(node: Client, *peers: str) -> None:
    """Wait until ``node`` has heard of ``peers``: cluster membership travels on the
    nodes' heartbeats."""
    await async_wait_until(lambda: set(peers) <= set(node.peers), f"{node.id} to know {peers}")


async def kill_then_receive(node: ServerProcess, sender: Client, receiver: Client) -> str:
    """SIGKILL ``node`` (the sender's), so ``sender`` fails over and resends; the
    id of the next message ``receiver`` delivers, once ``sender`` has nothing
    unacknowledged."""
    node.send_signal(signal.SIGKILL)
    node.wait()
    async with asyncio.timeout(20):
        got = await next_message(receiver)
        await async_wait_until(lambda: not sender.unacked, "the resent frames to be acked")
    return got


async def next_message(node: Client) -> str:
    """The id of the next message ``node`` delivers."""
    async for event in node:
        if isinstance(event, Message):
            return event.id
    raise AssertionError(f"the node closed before a message came: {node.closed_reason}")


def test_a_send_to_a_plain_client_of_a_dead_node_gets_unknown_peer_not_an_ack(
    cluster: Cluster,
) -> None:
    """An ack means delivered or durable: a relay whose receiver vanished with its
    node (a plain session: not expected back) is answered with unknown-peer,
    naming the message, instead."""
    n1, n2 = cluster.node("n1"), cluster.node("n2")

    async def go() -> tuple[list[ServerError], int]:
        receiver = await connect(HOST, n2.port, id="B")
        sender = await connect(HOST, n1.port, id="S", reconnect=True)
        await until_known(sender, "B")
        n2.send_signal(signal.SIGKILL)
        await sender.send("B", "into the void")
        errors: list[ServerError] = []
        async with asyncio.timeout(15):
            async for event in sender:
                if isinstance(event, ServerError):
                    errors.append(event)
                    break
        unacked = sender.unacked
        await sender.close()
        with contextlib.suppress(ConnectionError):
            await receiver.close()  # its server died under it
        return errors, unacked

    errors, unacked = asyncio.run(go())
    assert [(e.code, e.peer, e.seq) for e in errors] == [("unknown-peer", "B", 1)]
    assert "S#1 was not delivered" in errors[0].message
    assert unacked == 0  # refused for good: not resent


def test_the_resume_clients_of_a_node_that_shuts_down_are_waited_for(cluster: Cluster) -> None:
    """A node stopping cleanly says it is leaving: its resume clients are expected
    on another node, so sends to them meanwhile wait instead of being refused."""
    n1, n2 = cluster.node("n1"), cluster.node("n2")

    async def go() -> tuple[list[ServerError], list[str]]:
        away = await connect(HOST, n1.port, id="R", reconnect=True)  # n1 only
        sender = await connect(HOST, n2.port, id="S", reconnect=True)
        errors = asyncio.create_task(errors_of(sender))
        await until_known(sender, "R")
        await asyncio.to_thread(n1.stop)  # SIGTERM: bye to R, "leaving" to n2
        await away.close()  # R is gone for now (no bye: n1 is not there to hear it)
        for i in range(3):
            await sender.send("R", f"while moving {i}")
        async with connect(HOST, n2.port, id="R", reconnect=True) as back:
            got = []
            async with asyncio.timeout(15):
                async for event in back:
                    if isinstance(event, Message):
                        got.append(event.id)
                    if len(got) == 3:
                        break
        await async_wait_until(lambda: not sender.unacked, "S's sends to be acked")
        await sender.close()
        return await errors, got

    refused, got = asyncio.run(go())
    assert refused == []
    assert got == ["S#1", "S#2", "S#3"]


def test_an_acked_broadcast_reaches_the_resume_clients_of_a_node_that_died_unconfirmed(
    cluster: Cluster,
) -> None:
    """A broadcast's ack waits until every live node confirmed it. n2 is frozen,
    so it never confirms: once it is taken for dead, the broadcast is relayed to
    its resume client R one by one, and R gets it after failing over."""
    n1, n2 = cluster.node("n1"), cluster.node("n2")

    async def go() -> list[str]:
        r = await connect(HOST, n2.port, id="R", reconnect=True, fallbacks=[(HOST, n1.port)])
        sender = await connect(HOST, n1.port, id="S", reconnect=True)
        await until_known(sender, "R")
        n2.send_signal(signal.SIGSTOP)  # alive for TCP, deaf for NATS
        try:
            await sender.broadcast("to everyone")
            await async_wait_until(lambda: not sender.unacked, "the broadcast's ack", 15)
        finally:
            n2.send_signal(signal.SIGKILL)
            n2.wait()
        got = []
        async with asyncio.timeout(20):
            got.append(await next_message(r))
        await sender.close()
        await r.close()
        return got

    assert asyncio.run(go()) == ["S#1"]


def test_a_send_resent_after_its_relay_died_with_its_node_is_delivered(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node stores its sender's latest clock in JetStream only once what the
    send caused is durable (here: the relay confirmed), since another node takes
    a resent frame at or below that clock for a copy. n1's traffic is late (test
    hook), so its relay is still queued when n1 is killed: S resends on n2, which
    must deliver it, not ack it as a duplicate."""
    n2 = cluster.node("n2")
    monkeypatch.setenv("VCLOCK_TEST_CLUSTER_DELAY", "3")
    n1 = cluster.node("n1")
    monkeypatch.delenv("VCLOCK_TEST_CLUSTER_DELAY")

    async def go() -> tuple[list[str], int]:
        r = await connect(HOST, n2.port, id="R", reconnect=True)
        sender = await connect(HOST, n1.port, id="S", reconnect=True, fallbacks=[(HOST, n2.port)])
        await until_known(sender, "R")
        await sender.send("R", "in flight when n1 dies")
        # scenario (within n1's 3 s delay): n1 has written what it would; its relay waits
        await asyncio.sleep(1.0)
        unacked_then = sender.unacked
        got = [await kill_then_receive(n1, sender, r)]
        await sender.close()
        await r.close()
        return got, unacked_then

    got, unacked_then = asyncio.run(go())
    assert unacked_then == 1  # the relay had not gone out when n1 died
    assert got == ["S#1"]


def test_a_resent_send_is_delivered_though_a_later_one_got_through(cluster: Cluster) -> None:
    """Relays are FIFO per receiver, not per sender: S's second message (to R on
    n2) is confirmed while its first (to F on n3, frozen) is not when n1 dies.
    n2 must not take the resent first message for a copy because it saw the
    second: it is delivered to F once F is back."""
    n1, n2, n3 = cluster.node("n1"), cluster.node("n2"), cluster.node("n3")

    async def go() -> list[str]:
        r = await connect(HOST, n2.port, id="R", reconnect=True)
        far = await connect(HOST, n3.port, id="F", reconnect=True, fallbacks=[(HOST, n2.port)])
        sender = await connect(HOST, n1.port, id="S", reconnect=True, fallbacks=[(HOST, n2.port)])
        await until_known(sender, "R", "F")
        n3.send_signal(signal.SIGSTOP)  # alive for TCP, deaf for NATS: no confirmation
        try:
            await sender.send("F", "first, never confirmed")
            await sender.send("R", "second, confirmed")
            async with asyncio.timeout(10):
                async for event in r:
                    if isinstance(event, Message):
                        break
            n1.send_signal(signal.SIGKILL)
            n1.wait()
        finally:
            n3.send_signal(signal.SIGKILL)  # F fails over to n2
            n3.wait()
        got = []
        async with asyncio.timeout(30):
            got.append(await next_message(far))
        await sender.close()
        await r.close()
        await far.close()
        return got

    assert asyncio.run(go()) == ["S#1"]


def test_a_resent_frame_is_acked_only_once_the_original_is_through(cluster: Cluster) -> None:
    """An ack means durable, also for a resent frame the node already has. S's
    send to F (whose node is frozen) is still being relayed when S's connection
    drops; S reconnects to the same node and resends it. The node must not ack
    the resend as a duplicate while the original relay is pending (its node
    could die and lose it): the ack comes once F is back, on n2, and has it."""
    n1, n2, n3 = cluster.node("n1"), cluster.node("n2"), cluster.node("n3")

    async def go() -> tuple[list[tuple[str, int]], list[str]]:
        far = await connect(HOST, n3.port, id="F", reconnect=True, fallbacks=[(HOST, n2.port)])
        sender = await connect(HOST, n1.port, id="S", reconnect=True)
        phase = "connected"
        acks: list[tuple[str, int]] = []  # (phase, seq)
        reconnected = asyncio.Event()

        async def watch() -> None:
            async for event in sender:
                if isinstance(event, Acked):
                    acks.append((phase, event.seq))
                elif isinstance(event, Welcomed):
                    reconnected.set()

        watcher = asyncio.create_task(watch())
        await until_known(sender, "F")
        n3.send_signal(signal.SIGSTOP)  # alive for TCP, deaf for NATS: no confirmation
        try:
            await sender.send("F", "across a reconnect")
            await asyncio.sleep(0.5)  # scenario: n1 has taken S#1 and relays it to F
            phase = "relay pending"
            sender._writer.transport.abort()  # type: ignore[union-attr]  # the network drops
            await asyncio.wait_for(reconnected.wait(), 10)  # to n1; S#1 is resent
            await asyncio.sleep(2.0)  # a negative check: no ack may come while F is away
        finally:
            phase = "F back"
            n3.send_signal(signal.SIGKILL)  # F fails over to n2; the relay goes there
            n3.wait()
        got = []
        async with asyncio.timeout(40):
            got.append(await next_message(far))
            await async_wait_until(lambda: not sender.unacked, "S#1's ack", 40)
        await sender.close()
        await watcher
        await far.close()
        return acks, got

    acks, got = asyncio.run(go())
    assert got == ["S#1"]
    assert acks == [("F back", 1)]


def test_a_broadcast_resent_after_its_node_died_unacked_is_acked_not_refused(
    cluster: Cluster,
) -> None:
    """S's node relays a broadcast to n2, but n3 is frozen and never confirms it,
    so S has no ack when its node is killed. S resends it on n2, which already
    relayed it: a resend, so it is taken (and relayed again) rather than refused
    for its broadcast count, and R, on n2, delivers it once."""
    n1, n2, n3 = cluster.node("n1"), cluster.node("n2"), cluster.node("n3")

    async def go() -> tuple[list[ServerError], list[str], int]:
        r = await connect(HOST, n2.port, id="R", reconnect=True)
        far = await connect(HOST, n3.port, id="F", reconnect=True)
        sender = await connect(HOST, n1.port, id="S", reconnect=True, fallbacks=[(HOST, n2.port)])
        errors = asyncio.create_task(errors_of(sender))
        await until_known(sender, "R", "F")
        n3.send_signal(signal.SIGSTOP)  # alive for TCP, deaf for NATS: no confirmation
        try:
            await sender.broadcast("to everyone")
            # scenario, a window: n2 has it, and n3 is not yet taken for dead (dead_after 2 s)
            await asyncio.sleep(0.5)
            unacked_then = sender.unacked
            got = [await kill_then_receive(n1, sender, r)]
            with contextlib.suppress(TimeoutError):  # a second copy would show by now
                async with asyncio.timeout(1.0):
                    async for event in r:
                        if isinstance(event, Message):
                            got.append(event.id)
        finally:
            n3.send_signal(signal.SIGKILL)
            n3.wait()
        await sender.close()
        await r.close()
        with contextlib.suppress(ConnectionError):
            await far.close()
        return await errors, got, unacked_then

    refused, got, unacked_then = asyncio.run(go())
    assert unacked_then == 1
    assert refused == []
    assert got == ["S#1"]


def test_a_broadcast_reaches_a_resume_client_that_is_between_nodes(
    cluster: Cluster, tmp_path: Path
) -> None:
    """F's node died and the others have forgotten it: F is an orphan, on no
    node to ask. S's broadcast meanwhile is relayed to F one by one, and F gets
    it when it shows up on another node."""
    n1, n3 = cluster.node("n1"), cluster.node("n3")
    state = tmp_path / "F.state"

    async def go() -> list[str]:
        sender = await connect(HOST, n1.port, id="S", reconnect=True)
        far = await connect(HOST, n3.port, id="F", reconnect=True, state_path=state)
        await until_known(sender, "F")
        n3.send_signal(signal.SIGKILL)
        n3.wait()
        async with asyncio.timeout(10):
            async for event in sender:
                if isinstance(event, PeerChange) and event.id == "F" and not event.joined:
                    break  # n1 forgot n3: F is an orphan
        await sender.broadcast("while F is between nodes")
        await far.close()  # still trying n3; F comes back on n1 instead
        async with connect(HOST, n1.port, id="F", reconnect=True, state_path=state) as back:
            async with asyncio.timeout(20):
                got = [await next_message(back)]
        await sender.close()
        return got

    assert asyncio.run(go()) == ["S#1"]


def test_a_relay_asked_again_is_answered_again_but_delivered_once(
    cluster: Cluster, raw_client
) -> None:
    """A relaying node asks again when a live node does not answer (a core NATS
    publish can be lost). The node answers the same request (same reply subject)
    every time, but delivers the message once."""
    import nats

    from vclock.cluster.messages import Relay
    from vclock.protocol import Deliver
    from vclock.protocol.codec import encode_json

    n2 = cluster.node("n2")
    b = raw_client(n2.port)
    b.hello("B")
    relay = Relay(
        node="n9", to="B", deliver=Deliver(sender="X", seq=1, clock=VectorClock({"X": 1}))
    )

    async def ask_twice() -> list[bytes]:
        nc = await nats.connect(cluster.url)
        inbox = nc.new_inbox()
        replies = await nc.subscribe(inbox)
        answers = []
        for _ in range(2):
            await nc.publish("vclock.vclock.node.n2", encode_json(relay), reply=inbox)
            answers.append((await replies.next_msg(timeout=5)).data)
        await nc.close()
        return answers

    assert asyncio.run(ask_twice()) == [b"ok", b"ok"]
    assert b.expect("deliver").seq == 1
    with pytest.raises(AssertionError):
        b.expect("deliver", timeout=1.0)
    assert [frame_type(f) for f in b.received].count("deliver") == 1


def test_the_resume_clients_of_a_dead_node_are_orphans_until_they_are_back() -> None:
    """No NATS: while an orphan is between nodes, sends to it are relayed (they wait
    for it) instead of being refused with unknown-peer (the failover test above)."""
    directory = Directory("n1", dead_after=2.0, orphan_ttl=4.0)
    directory.update(Status(node="n2", clients=["A", "P"], held=["R"], resume=["A"]), now=0.0)
    assert directory.expire(now=2.5) == ([], ["A", "P"])  # n2 died; P was a plain client
    assert set(directory.orphans) == {"A", "R"}
    directory.update(Status(node="n3", clients=["A"]), now=3.0)  # A is back, on n3
    assert set(directory.orphans) == {"R"}
    directory.expire(now=7.0)  # R did not come back within orphan_ttl
    assert directory.orphans == {}


def test_clients_of_a_killed_node_fail_over_and_resume(cluster: Cluster) -> None:
    n1, n2, n3 = (cluster.node(f"n{i}") for i in (1, 2, 3))
    clients = {
        "A": cluster.client("A", n1, "--reconnect"),
        "B": cluster.client("B", n2, "--reconnect"),
        "C": cluster.client("C", n3, "--reconnect"),
    }
    before = wait_for_exchanges(cluster.logs, list(clients), n=3)
    n1.send_signal(signal.SIGKILL)
    n1.wait()
    clients["A"].wait_for_line(r"connection lost")
    _, match = clients["A"].wait_for_line(r"reconnected \(\d+ to resend\)", timeout=30)
    wait_for_exchanges(cluster.logs, list(clients), more_than=before, n=3, timeout=30)

    def missing() -> list[str]:
        """What A sent before its last two sends and its receiver has not received."""
        sends = {e.msg for e in events_of(cluster.logs, "A") if e.kind == "send" and e.peer in "BC"}
        delivered = {
            e.msg for pid in "BC" for e in events_of(cluster.logs, pid) if e.kind == "receive"
        }
        last = max(int(m.split("#")[1]) for m in sends)
        return [m for m in sends if m not in delivered and int(m.split("#")[1]) < last - 2]

    wait_until(lambda: not missing(), what="A's resent messages to be delivered")
    for proc in clients.values():
        proc.stop()
    # A resumed under its id on another node: its clock went on (no own-entry
    # repeats), every message it resent after the failover was delivered once,
    # and the run is causally consistent.
    checked(cluster.logs)
    # everything A sent before its last two sends reached its receiver
    assert not missing(), missing()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[list[str]]:
    """Three nats-servers with JetStream, joined by routes into one NATS cluster
    (docs/cluster.md, "A real NATS cluster"); stopped by PID at teardown."""
    assert NATS_SERVER is not None
    ports = [free_port() for _ in range(3)]
    routes = [free_port() for _ in range(3)]
    procs: list[Process] = []
    try:
        for i in range(3):
            others = ",".join(f"nats://{HOST}:{routes[j]}" for j in range(3) if j != i)
            argv = [
                NATS_SERVER, "-js", "-sd", str(tmp_path / f"js{i + 1}"), "-a", HOST,
                "-p", str(ports[i]), "--server_name", f"s{i + 1}", "--cluster_name", "vc",
                "--cluster", f"nats://{HOST}:{routes[i]}", "--routes", others,
            ]  # fmt: skip
            procs.append(Process(f"nats-server s{i + 1}", argv, cwd=tmp_path))
        for port, proc in zip(ports, procs, strict=True):
            wait_listening(port, proc)

        # JetStream in a cluster answers only once the servers elected a meta leader
        def elected() -> bool:
            return all(
                any("metadata leader" in line for line in proc.err_lines()) for proc in procs
            )

        try:
            wait_until(elected, timeout=15, what="a JetStream meta leader")
        except AssertionError:
            pytest.skip(
                "JetStream clustering did not form on loopback (no meta leader within 15 s):\n"
                + "\n".join(proc.describe(10) for proc in procs)
            )
        yield [f"nats://{HOST}:{port}" for port in ports]
    finally:
        for proc in procs:
            proc.stop()


def test_unicast_and_causal_broadcast_over_a_nats_cluster(
    nats_cluster: list[str], processes: Processes, tmp_path: Path
) -> None:
    """One vclock node on each of three routed NATS servers: node-to-node traffic
    crosses the routes, and the buckets live on one JetStream server of the three.
    Two phases, so that the broadcast check sees broadcasts only (as in the test
    above): unicast between A, B, C; then broadcasts between D, E, F."""
    slow = ("--sync-interval", "600")  # no syncs: only messages make causality
    cluster = Cluster(processes, nats_cluster[0], tmp_path / "unicast")
    nodes = []
    for i, url in enumerate(nats_cluster, start=1):
        cluster.url = url  # node i is attached to NATS server i only
        nodes.append(cluster.node(f"n{i}", *slow))

    unicast = ["A", "B", "C"]
    senders = [
        cluster.client(i, n, "--interval", FAST) for i, n in zip(unicast, nodes, strict=True)
    ]
    wait_for_exchanges(cluster.logs, unicast, n=6)
    for proc in senders:
        proc.stop()
    received = {
        (e.peer, e.pid) for i in unicast for e in events_of(cluster.logs, i) if e.kind == "receive"
    }
    assert {(a, b) for a in unicast for b in unicast if a != b} <= received  # every route
    checked(cluster.logs)

    cluster.logs = tmp_path / "broadcast"
    casters = ["D", "E", "F"]
    for client_id, node in zip(casters, nodes, strict=True):
        cluster.client(client_id, node, "--broadcast-every", "1", "--interval", FAST)
    wait_until(
        lambda: all(count_kinds(cluster.logs, i, "receive") >= 20 for i in casters),
        what="20 broadcasts delivered to each client",
    )
    for node in nodes:
        node.stop()
    checked(cluster.logs, require_causal_delivery=True, causal_scope="broadcast")


def test_a_node_without_nats_says_what_to_do(processes: Processes) -> None:
    """No traceback: the reason, and what to check (it gives up after
    --cluster-connect-timeout seconds, 10 by default; 1 here, to keep the test short)."""
    url = f"nats://{HOST}:{free_port()}"  # nothing listens there
    argv = vclock_argv("server", "--port", "0", "--cluster", url, "--cluster-connect-timeout", "1")
    node = processes.add(lambda: Process("node", argv, cwd=processes.cwd))
    assert node.proc.wait(60) != 0
    node.stop()  # collects the rest of its output
    err = "\n".join(node.err_lines())
    assert f"cannot reach NATS at {url} within 1 s" in err, err
    assert "Is nats-server running there?" in err
    assert "Traceback" not in err


def test_a_node_prints_nothing_of_nats_pys_own_on_stderr(cluster: Cluster) -> None:
    """nats-py logged "Server may ignore filters if version is < 2.10." each time a
    node read its broadcast counts (at start), on any NATS version."""
    first = cluster.node("n1")
    cluster.client("A", first, "--broadcast-every", "1", "--interval", FAST)
    wait_until(lambda: count_kinds(cluster.logs, "A", "send") >= 3, what="A's broadcasts")
    first.stop()
    second = cluster.node("n2")  # reads the counts n1 stored
    wait_until(lambda: second.alive(), what="n2 up")
    second.stop()
    for node in (first, second):
        err = "\n".join(node.err_lines())
        assert "Server may ignore filters" not in err, node.describe()
        assert "Traceback" not in err, node.describe()
