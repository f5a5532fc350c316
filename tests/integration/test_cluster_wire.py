"""What cluster nodes say to each other over NATS (docs/cluster.md, "Between
nodes"), checked on the wire: relays batched per node and loop iteration (wire
version 2) without losing or reordering a message, version 1 still spoken to a
node that does not announce 2, and plain clients' clocks kept off JetStream's
per-message path. A real nats-server, real nodes; the tests listen on NATS (or
play a node) with nats-py."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import nats
import pytest
from nats.js.errors import KeyNotFoundError

from vclock import Message, ServerError, VectorClock
from vclock.asyncio.client import connect
from vclock.client import Acked
from vclock.cluster.messages import (
    Answers,
    Relay,
    Relays,
    Status,
    decode_message,
    encode_message,
)

from ..helpers import async_wait_until
from .conftest import HOST, Processes, ServerProcess, needs_nats

pytestmark = needs_nats
NODE_SUBJECT = "vclock.vclock.node.{}"
ALL_SUBJECT = "vclock.vclock.all"


@pytest.fixture
def node(nats_url: str, processes: Processes) -> Callable[[str], ServerProcess]:
    def start(name: str) -> ServerProcess:
        return processes.server("--cluster", nats_url, "--node-id", name, "--claim-ttl", "4")

    return start


async def until_known(client: object, *peers: str) -> None:
    await async_wait_until(
        lambda: set(peers) <= set(client.peers),  # type: ignore[attr-defined]
        f"the sender to know {peers}",
    )


def test_the_relays_of_one_loop_iteration_cross_in_one_nats_message_in_order(
    nats_url: str, node: Callable[[str], ServerProcess], raw_client
) -> None:
    """S (on n1) writes 100 sends to R (on n2) in one go. n1 relays them in a few
    batches (one per loop iteration), not one NATS request each, and R gets
    every one, in send order (FIFO per sender). Each batch carries n1's frontier,
    at or above every clock in it (n2 takes it in once per batch)."""
    n1, n2 = node("n1"), node("n2")
    count = 100

    async def go() -> tuple[list[int], list[str], list[bool]]:
        nc = await nats.connect(nats_url)
        seen: list[str] = []  # the type of each NATS message n2 was sent
        covered: list[bool] = []  # for each Relays: whether its frontier covers its clocks

        async def listen(msg: nats.aio.msg.Msg) -> None:
            message = decode_message(msg.data)
            seen.append(type(message).__name__)
            if isinstance(message, Relays):  # n1's frontier covers every clock of it
                frontier = message.frontier
                covered.append(
                    frontier is not None
                    and all(relay.deliver.clock <= frontier for relay in message.relays)
                )

        await nc.subscribe(NODE_SUBJECT.format("n2"), cb=listen)
        r = await connect(HOST, n2.port, id="R")
        s = raw_client(n1.port)
        welcome = s.hello("S")
        if "R" not in welcome.peers:
            await asyncio.to_thread(s.expect, "peer_joined")
        lines = b"".join(
            msgspec.json.encode({"type": "send", "to": "R", "seq": i, "clock": {"S": i}}) + b"\n"
            for i in range(1, count + 1)
        )
        s.send_bytes(lines)
        got: list[int] = []
        async with asyncio.timeout(20):
            async for event in r:
                if isinstance(event, Message) and event.sender == "S":
                    got.append(event.seq)
                    if len(got) == count:
                        break
        await r.close()
        await nc.close()
        return got, seen, covered

    got, seen, covered = asyncio.run(go())
    assert got == list(range(1, count + 1))
    assert "Relay" not in seen  # none one by one
    assert 1 <= seen.count("Relays") <= 10, seen
    assert covered and all(covered)


def test_a_plain_senders_relay_that_cannot_be_delivered_is_told_not_lost(
    node: Callable[[str], ServerProcess],
) -> None:
    """A plain sender gets no acks and nothing waits for its relays, but a relay
    whose receiver vanished with its node still ends in unknown-peer for it."""
    n1, n2 = node("n1"), node("n2")

    async def go() -> list[tuple[str, str | None, int | None]]:
        receiver = await connect(HOST, n2.port, id="B")
        sender = await connect(HOST, n1.port, id="P")
        await until_known(sender, "B")
        n2.send_signal(signal.SIGKILL)
        n2.wait()
        await sender.send("B", "into the void")
        errors = []
        async with asyncio.timeout(15):
            async for event in sender:
                if isinstance(event, ServerError):
                    errors.append((event.code, event.peer, event.seq))
                    break
        await sender.close()
        with contextlib.suppress(ConnectionError):
            await receiver.close()
        return errors

    assert asyncio.run(go()) == [("unknown-peer", "B", 1)]


async def _play_a_node(
    nats_url: str, wire: int | None, answer: Callable[[nats.aio.msg.Msg], Awaitable[None]]
) -> tuple[object, asyncio.Task[None]]:
    """A fake node "old" serving client Z: its status every 0.3 s (``wire`` None:
    the field left out, as a node before version 2 writes it), and ``answer``
    for what is sent to it."""
    nc = await nats.connect(nats_url)
    await nc.subscribe(NODE_SUBJECT.format("old"), cb=answer)
    status = Status(node="old", clients=["Z"])
    data = encode_message(status)
    if wire is not None:
        data = encode_message(msgspec.structs.replace(status, wire=wire))

    async def heartbeat() -> None:
        while True:
            await nc.publish(ALL_SUBJECT, data)
            await asyncio.sleep(0.3)

    return nc, asyncio.create_task(heartbeat())


@pytest.mark.parametrize("wire", [None, 1, 2])
def test_a_node_is_sent_relays_in_the_wire_version_it_announces(
    nats_url: str, node: Callable[[str], ServerProcess], wire: int | None
) -> None:
    """Version 1 (no ``wire`` in its status, or 1): one ``relay`` request per
    message, answered ``ok``. Version 2: ``relays`` batches, answered with
    ``answers`` on the batch's reply subject. Either way the resume sender's
    ack comes once the receiving node said ok."""
    n1 = node("n1")
    kinds: list[str] = []

    async def go() -> list[int]:
        async def answer(msg: nats.aio.msg.Msg) -> None:
            message = decode_message(msg.data)
            kinds.append(type(message).__name__)
            if isinstance(message, Relay):
                await msg.respond(b"ok")
            elif isinstance(message, Relays):
                ok = [relayed.id for relayed in message.relays]
                await nc.publish(message.reply, encode_message(Answers(node="old", ok=ok)))

        nc, beating = await _play_a_node(nats_url, wire, answer)
        acked: list[int] = []
        try:
            sender = await connect(HOST, n1.port, id="S", reconnect=True)
            await until_known(sender, "Z")
            for i in range(3):
                await sender.send("Z", i)
            async with asyncio.timeout(15):
                async for event in sender:
                    if isinstance(event, Acked):
                        acked.append(event.seq)
                        if len(acked) == 3:
                            break
            await sender.close()
        finally:
            beating.cancel()
            await nc.close()
        return acked

    assert asyncio.run(go()) == [1, 2, 3]
    expected = "Relays" if wire == 2 else "Relay"
    assert kinds and set(kinds) == {expected}


def test_a_batched_relay_answered_gone_is_resent_and_not_acked_early(
    nats_url: str, node: Callable[[str], ServerProcess]
) -> None:
    """A version-2 node that answers ``gone`` (Z just left it) does not get the
    sender acked: the relay is resent while Z is looked for, and ends in
    unknown-peer once Z is gone for good (here: the fake node stops listing it)."""
    n1 = node("n1")

    async def go() -> tuple[list[int], list[tuple[str, int | None]]]:
        async def answer(msg: nats.aio.msg.Msg) -> None:
            message = decode_message(msg.data)
            if isinstance(message, Relays):
                gone = [relayed.id for relayed in message.relays]
                await nc.publish(message.reply, encode_message(Answers(node="old", gone=gone)))
            elif isinstance(message, Relay):
                await msg.respond(b"gone")

        nc, beating = await _play_a_node(nats_url, 2, answer)
        acked: list[int] = []
        errors: list[tuple[str, int | None]] = []
        sender = await connect(HOST, n1.port, id="S", reconnect=True)
        try:
            await until_known(sender, "Z")
            await sender.send("Z", "nobody home")
            await asyncio.sleep(1.0)  # a negative check: answered gone, so no ack yet
            beating.cancel()  # "old" falls silent: taken for dead, Z not expected back
            async with asyncio.timeout(15):
                async for event in sender:
                    if isinstance(event, Acked):
                        acked.append(event.seq)
                    elif isinstance(event, ServerError):
                        errors.append((event.code, event.seq))
                        break
        finally:
            beating.cancel()
            await sender.close()
            await nc.close()
        return acked, errors

    acked, errors = asyncio.run(go())
    assert acked == []
    assert errors == [("unknown-peer", 1)]


def test_a_plain_clients_latest_clock_is_written_a_few_times_not_per_message(
    nats_url: str, node: Callable[[str], ServerProcess], tmp_path: Path
) -> None:
    """60 messages from a plain client, one at a time: its latest clock goes to
    JetStream in a few rounds (every 0.5 s, and when it leaves), not once per
    message; what is stored in the end is its last clock."""
    n1 = node("n1")

    async def go() -> tuple[int, VectorClock, VectorClock, float]:
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        a = await connect(HOST, n1.port, id="A")
        b = await connect(HOST, n1.port, id="B")
        await until_known(a, "B")
        before = (await js.stream_info("KV_vclock-latest")).state.last_seq
        began = time.monotonic()
        for i in range(60):
            await a.send("B", i)
            async with asyncio.timeout(10):
                async for event in b:
                    if isinstance(event, Message) and event.sender == "A":
                        break
        last = a.clock
        elapsed = time.monotonic() - began
        await a.close()  # leaving: its clock is written at once
        kv = await js.key_value("vclock-latest")

        async def stored() -> VectorClock:
            try:
                entry = await kv.get("A")
            except KeyNotFoundError:  # 60 messages in under 0.5 s: the first write is
                return VectorClock()  # the one on leaving, which may still be on its way
            return VectorClock.from_json(entry.value or b"{}")

        await async_wait_until_async(lambda: stored(), lambda clock: clock["A"] == last["A"])
        after = (await js.stream_info("KV_vclock-latest")).state.last_seq
        clock = await stored()
        await b.close()
        await nc.close()
        return after - before, clock, last, elapsed

    writes, clock, last, elapsed = asyncio.run(go())
    assert clock["A"] == last["A"] == 60
    # A and B at most once per 0.5 s round each, plus leaving: on a loaded machine
    # the 60 messages take longer, and there are more rounds, never one per message.
    rounds = int(elapsed / 0.5) + 2
    assert writes <= min(2 * rounds + 2, 30), f"{writes} writes for 60 messages in {elapsed:.1f} s"


async def async_wait_until_async(
    get: Callable[[], Awaitable[VectorClock]], ok: Callable[[VectorClock], bool]
) -> None:
    async with asyncio.timeout(10):
        while not ok(await get()):
            await asyncio.sleep(0.05)


def test_batched_relays_resent_after_their_node_died_arrive_in_order(
    node: Callable[[str], ServerProcess],
) -> None:
    """20 batched relays from S to R wait on R's node, which is frozen and then
    killed; R fails over and S's node resends them all. A resent relay waits for
    the one before it to the same receiver, so R gets all 20 in order (a client
    drops a unicast whose seq is not above the last as a copy: a reordering
    would lose messages)."""
    n1, n2, n3 = node("n1"), node("n2"), node("n3")
    count = 20

    async def go() -> list[str]:
        r = await connect(HOST, n3.port, id="R", reconnect=True, fallbacks=[(HOST, n2.port)])
        sender = await connect(HOST, n1.port, id="S", reconnect=True)
        await until_known(sender, "R")
        n3.send_signal(signal.SIGSTOP)  # alive for TCP, deaf for NATS: no answers
        try:
            for i in range(count):
                await sender.send("R", i)
            await asyncio.sleep(0.5)  # scenario: all relayed to n3, none answered
        finally:
            n3.send_signal(signal.SIGKILL)
            n3.wait()
        got: list[str] = []
        async with asyncio.timeout(40):
            async for event in r:
                if isinstance(event, Message):
                    got.append(event.id)
                    if len(got) == count:
                        break
            await async_wait_until(lambda: not sender.unacked, "S's sends to be acked", 40)
        await sender.close()
        await r.close()
        return got

    assert asyncio.run(go()) == [f"S#{i}" for i in range(1, count + 1)]
