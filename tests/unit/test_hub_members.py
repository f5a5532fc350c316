"""Membership that scales (protocol 4.5): hello.peers, who/peers paging, and
batched peers_changed notices, on the sans-I/O Hub and ClientState."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vclock import ErrorCode, PeerChange, PeerPage
from vclock.client import ClientState
from vclock.hub import ClusterHub, Hub, Outgoing, PeerId
from vclock.hub.members import Members
from vclock.protocol import (
    Error,
    Hello,
    PeerJoined,
    PeerLeft,
    Peers,
    PeersChanged,
    Welcome,
    Who,
    client_frame_decoder,
    encode_frame,
)
from vclock.protocol.frames import MAX_PEERS_PAGE

from ..helpers import HarnessClient, HubHarness


def join(harness: HubHarness, client_id: str, peers: str = "all") -> HarnessClient:
    """A client that says hello asking for ``peers``."""
    client = harness.connect(client_id, hello=False)
    client.node.peers_mode = peers  # type: ignore[assignment]
    harness.send_frame(client, client.node.hello())
    assert client.node.welcomed
    return client


def notices(client: HarnessClient) -> list[object]:
    kinds = PeerJoined | PeerLeft | PeersChanged
    return [frame for frame in client.received if isinstance(frame, kinds)]


def page_all(harness: HubHarness, client: HarnessClient, limit: int) -> list[str]:
    """Every id, paged with ``who`` as a client would."""
    ids: list[str] = []
    after: str | None = None
    for _ in range(10_000):
        harness.send_frame(client, client.node.who(after, limit))
        page = client.received[-1]
        assert isinstance(page, Peers)
        assert isinstance(client.events[-1], PeerPage)
        assert len(page.ids) <= min(limit, MAX_PEERS_PAGE)
        ids += page.ids
        if page.next is None:
            return ids
        after = page.next
    raise AssertionError("paging did not end")


# hello.peers


def test_hello_peers_defaults_to_all_and_is_left_out_on_the_wire():
    assert Hello(v=1).peers == "all"
    assert b"peers" not in encode_frame(Hello(v=1, id="A"))
    decoded = client_frame_decoder().decode(b'{"type":"hello","v":1,"peers":"none"}')
    assert decoded == Hello(v=1, peers="none")


def test_an_unknown_peers_mode_is_a_bad_frame():
    with pytest.raises(msgspec.ValidationError, match="peers"):
        msgspec.json.decode(b'{"type":"hello","v":1,"peers":"some"}', type=Hello)


def test_a_none_client_gets_no_peers_in_welcome_and_no_notices():
    harness = HubHarness(Hub())
    join(harness, "A")
    quiet = join(harness, "Q", peers="none")
    welcome = quiet.received[0]
    assert isinstance(welcome, Welcome) and welcome.peers == []
    b = join(harness, "B")
    harness.disconnect(b)
    harness.run(harness.hub.peer_notices())
    assert notices(quiet) == []
    assert quiet.node.peers == []


def test_an_old_style_client_still_gets_each_join_and_leave_including_none_clients():
    harness = HubHarness(Hub())
    a = join(harness, "A")
    q = join(harness, "Q", peers="none")
    join(harness, "B", peers="batched")
    harness.disconnect(q)
    assert notices(a) == [PeerJoined(id="Q"), PeerJoined(id="B"), PeerLeft(id="Q")]
    assert a.node.peers == ["B"]


def test_a_none_join_costs_the_hub_no_frame_for_anyone():
    harness = HubHarness(Hub())
    for index in range(50):
        join(harness, f"N{index}", peers="none")
    newcomer = harness.connect("Z", hello=False)
    newcomer.node.peers_mode = "none"
    actions = harness.send_frame(newcomer, newcomer.node.hello())
    outgoing = [a for a in actions if isinstance(a, Outgoing)]
    assert [a.peer for a in outgoing] == [newcomer.peer]  # its welcome, nothing else
    assert not harness.hub.members.due


# batched notices


def test_batched_clients_get_one_net_frame_per_tick():
    harness = HubHarness(Hub())
    watcher = join(harness, "W", peers="batched")
    a = join(harness, "A", peers="none")
    join(harness, "B", peers="none")
    harness.disconnect(a)
    c = join(harness, "C", peers="none")
    assert notices(watcher) == []  # nothing until the I/O layer asks
    assert harness.hub.members.due
    harness.run(harness.hub.peer_notices())
    # A joined and left in between: it cancels out.
    assert notices(watcher) == [PeersChanged(joined=["B", "C"], left=[])]
    assert watcher.node.peers == ["B", "C"]
    assert watcher.events[-2:] == [PeerChange("B", joined=True), PeerChange("C", joined=True)]
    assert not harness.hub.members.due
    harness.disconnect(c)
    harness.run(harness.hub.peer_notices())
    assert notices(watcher)[-1] == PeersChanged(joined=[], left=["C"])
    assert watcher.node.peers == ["B"]


def test_a_batched_client_that_joins_mid_tick_hears_only_what_its_welcome_did_not_say():
    harness = HubHarness(Hub())
    early = join(harness, "E", peers="batched")
    join(harness, "A", peers="none")
    late = join(harness, "L", peers="batched")
    welcome = late.received[0]
    assert isinstance(welcome, Welcome) and welcome.peers == ["E", "A"]
    join(harness, "B", peers="none")
    harness.run(harness.hub.peer_notices())
    assert notices(early) == [PeersChanged(joined=["A", "L", "B"])]
    assert notices(late) == [PeersChanged(joined=["B"])]
    assert sorted(late.node.peers) == ["A", "B", "E"]


def test_a_batched_frame_is_shared_by_every_client_that_hears_the_same():
    harness = HubHarness(Hub())
    for index in range(3):
        join(harness, f"W{index}", peers="batched")
    harness.hub.peer_notices()
    join(harness, "X", peers="none")
    frames = [a.frame for a in harness.hub.peer_notices() if isinstance(a, Outgoing)]
    assert len(frames) == 3 and all(frame is frames[0] for frame in frames)  # encoded once


def test_without_batched_clients_the_hub_keeps_no_events():
    members = Members()
    for index in range(100):
        members.join(f"C{index}", PeerId(index), "none")
    assert not members.due and members._events == []


# who / peers


def test_who_pages_cover_every_other_id_exactly_once():
    harness = HubHarness(Hub())
    ids = [f"c{index:03d}" for index in range(57)]
    for client_id in ids:
        join(harness, client_id, peers="none")
    asker = harness.clients[PeerId(101)]  # c000
    assert page_all(harness, asker, 10) == ids[1:]
    assert page_all(harness, asker, 1) == ids[1:]
    assert page_all(harness, asker, 1000) == ids[1:]


def test_a_page_never_holds_more_than_the_maximum():
    harness = HubHarness(Hub(max_ids=5000))
    members = harness.hub.members
    for index in range(MAX_PEERS_PAGE + 5):
        members.join(f"r{index:05d}")
    asker = join(harness, "zz", peers="none")  # sorts after them all
    harness.send_frame(asker, Who(limit=10**6))
    page = asker.received[-1]
    assert isinstance(page, Peers)
    assert len(page.ids) == MAX_PEERS_PAGE and page.next == f"r{MAX_PEERS_PAGE - 1:05d}"


def test_who_limit_must_be_positive():
    harness = HubHarness(Hub())
    asker = join(harness, "A", peers="none")
    harness.send_bytes(asker, b'{"type":"who","limit":0}\n')
    error = asker.received[-1]
    assert isinstance(error, Error) and error.code == ErrorCode.BAD_FRAME.value
    assert "limit" in error.message


def test_who_before_hello_is_an_unexpected_frame():
    harness = HubHarness(Hub())
    client = harness.connect("A", hello=False)
    harness.send_frame(client, Who())
    error = client.received[-1]
    assert isinstance(error, Error) and error.code == ErrorCode.UNEXPECTED_FRAME.value


def test_the_page_after_an_id_that_left_goes_on_from_where_it_was():
    harness = HubHarness(Hub())
    clients = {i: join(harness, i, peers="none") for i in ["a", "b", "c", "d", "e"]}
    asker = clients["a"]
    harness.send_frame(asker, Who(limit=2))
    first = asker.received[-1]
    assert isinstance(first, Peers) and first.ids == ["b"] and first.next == "b"
    harness.disconnect(clients["b"])
    harness.disconnect(clients["c"])
    harness.send_frame(asker, Who(after="b", limit=2))
    second = asker.received[-1]
    assert isinstance(second, Peers) and second.ids == ["d", "e"] and second.next is None


@settings(max_examples=60, deadline=None)
@given(
    ids=st.sets(st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True), max_size=40),
    limit=st.integers(1, 12),
)
def test_paging_lists_each_id_once_in_order(ids: set[str], limit: int) -> None:
    members = Members()
    for client_id in ids:
        members.join(client_id)
    seen: list[str] = []
    after = None
    while True:
        page = members.page(Who(after=after, limit=limit), asker="")
        seen += page.ids
        if page.next is None:
            break
        after = page.next
    assert seen == sorted(ids)


# cluster: the other nodes' clients are members too


def test_remote_clients_are_paged_and_noticed_as_each_session_asked():
    harness = HubHarness(ClusterHub(node_id="n1"))
    hub = harness.hub
    assert isinstance(hub, ClusterHub)
    old = join(harness, "A")
    quiet = join(harness, "Q", peers="none")
    batched = join(harness, "W", peers="batched")
    harness.run(hub.remote_joined("R"))
    harness.run(hub.peer_notices())
    assert notices(old) == [PeerJoined(id="Q"), PeerJoined(id="W"), PeerJoined(id="R")]
    assert notices(batched) == [PeersChanged(joined=["R"])]
    assert notices(quiet) == []
    assert page_all(harness, quiet, 2) == ["A", "R", "W"]
    harness.run(hub.remote_left("R"))
    harness.run(hub.peer_notices())
    assert notices(old)[-1] == PeerLeft(id="R")
    assert notices(batched)[-1] == PeersChanged(left=["R"])
    assert page_all(harness, quiet, 2) == ["A", "W"]


# ClientState


def test_client_state_says_hello_with_its_peers_mode_and_builds_who():
    node = ClientState("A", peers="none")
    assert node.hello().peers == "none"
    assert node.who("x", 5) == Who(after="x", limit=5)
    assert node.who() == Who()
