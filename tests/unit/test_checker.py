"""The trace checker, on simulated runs (real ClientState and Hub clocks) and hand-built logs.

``Run`` simulates a vclock run in memory: clients (``ClientState``) around one ``Hub``,
each direction of each connection a queue, and writes the events real clients and
the real server log. Correct runs must pass; each corruption must be caught by the
right rule. A brute-force oracle (transitive closure over bitsets) checks the
characterization, the concurrent pair count and the delivery findings on small runs.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vclock.client import ClientState, Message, Synced, Welcomed
from vclock.events import CAUSAL_KINDS, Event, message_id, sync_id
from vclock.hub import Hub, Joined, Outgoing, PeerId, Received, Refused, SyncCycle
from vclock.protocol import Welcome
from vclock.tools.checker import RULES, CheckReport, check, format_report

# A simulated run


class Run:
    """Clients exchanging messages through a hub; ``logs`` holds each pid's events.

    Args:
        clients: the client ids.
        seed: for the random choices.
        fifo: deliver each connection's frames in order (as TCP does); ``False``
            delivers them in any order, which breaks FIFO and causal delivery.
    """

    def __init__(self, clients: list[str], seed: int, *, fifo: bool = True) -> None:
        self.rng = random.Random(seed)
        self.fifo = fifo
        self.hub = Hub()
        self.logs: dict[str, list[Event]] = {c: [] for c in clients}
        self.logs["server"] = []
        self.nodes: dict[str, ClientState] = {}
        self.peer: dict[str, PeerId] = {}
        self.client_of: dict[PeerId, str] = {}
        self.up: dict[str, deque] = {c: deque() for c in clients}  # client -> server
        self.down: dict[str, list] = {c: [] for c in clients}  # server -> client
        self.ticks = itertools.count(1)
        self.causal = 0
        for number, client in enumerate(clients, 1):
            self._join(client, PeerId(number))

    def _log(self, pid: str, kind: str, clock, **fields) -> None:
        ts = f"2024-05-01T12:00:00.{next(self.ticks):06d}+00:00"
        entries = clock.to_dict() if hasattr(clock, "to_dict") else dict(clock)
        self.logs[pid].append(Event(ts=ts, pid=pid, kind=kind, clock=entries, **fields))
        if kind in CAUSAL_KINDS and pid != "server":
            self.causal += 1

    def _join(self, client: str, peer: PeerId) -> None:
        self.nodes[client] = ClientState(client)
        self.peer[client] = peer
        self.client_of[peer] = client
        self.hub.connect(peer, f"127.0.0.1:{40000 + peer}")
        self._apply(self.hub.receive(peer, self.nodes[client].hello()))

    def _apply(self, actions) -> None:
        for action in actions:
            match action:
                case Outgoing(peer=peer, frame=Welcome() as frame):
                    self._deliver(self.client_of[peer], frame)
                case Outgoing(peer=peer, frame=frame):
                    self.down[self.client_of[peer]].append(frame)
                case Received(client_id=client, frame=frame):
                    msg = message_id(client, frame.seq)
                    self._log("server", "receive", frame.clock, peer=client, msg=msg)
                case SyncCycle(cycle=cycle, frontier=frontier, synced=synced) if synced:
                    self._log("server", "sync", frontier, msg=sync_id(cycle), to=list(synced))
                case Joined(client_id=client):
                    self._log("server", "join", {}, peer=client)
                case Refused(error=error):
                    raise AssertionError(f"the hub refused a frame: {error}")

    def _deliver(self, client: str, frame) -> None:
        if not self.fifo:  # a client that takes out-of-order unicasts (the checker's prey)
            self.nodes[client].last_seq.clear()
        match self.nodes[client].receive(frame):
            case Welcomed(clock=clock):
                self._log(client, "join", clock, peer="server")
            case Message(sender=sender, clock=clock) as message:
                self._log(client, "receive", clock, peer=sender, msg=message.id)
            case Synced(cycle=cycle, clock=clock):
                self._log(client, "sync-receive", clock, peer="server", msg=sync_id(cycle))

    def step(self) -> None:
        rng = self.rng
        client = rng.choice(list(self.nodes))
        node = self.nodes[client]
        weights = {"local": 2, "send": 4, "report": 1, "sync": 0.3}
        weights["serve"] = 8 if any(self.up.values()) else 0
        weights["deliver"] = 8 if any(self.down.values()) else 0
        match rng.choices(list(weights), list(weights.values()))[0]:
            case "local":
                self._log(client, "local", node.local_event())
            case "send":
                to = rng.choice([c for c in self.nodes if c != client])
                frame = node.send(to)
                self._log(client, "send", frame.clock, peer=to, msg=message_id(client, frame.seq))
                self.up[client].append(frame)
            case "report":
                frame = node.report()
                msg = message_id(client, frame.seq)
                self._log(client, "send", frame.clock, peer="server", msg=msg)
                self.up[client].append(frame)
            case "serve":
                sender = rng.choice([c for c, queue in self.up.items() if queue])
                self._apply(self.hub.receive(self.peer[sender], self.up[sender].popleft()))
            case "deliver":
                target = rng.choice([c for c, queue in self.down.items() if queue])
                queue = self.down[target]
                self._deliver(target, queue.pop(0 if self.fifo else rng.randrange(len(queue))))
            case "sync":
                self._apply(self.hub.begin_sync_cycle())

    def run(self, events: int) -> Run:
        while self.causal < events:
            self.step()
        return self

    def events(self, *, server: bool = True) -> list[Event]:
        """Every event, file by file in file-name order, like ``read_events``."""
        pids = sorted(p for p in self.logs if server or p != "server")
        return [event for pid in pids for event in self.logs[pid]]


def simulate(clients: int = 4, events: int = 300, seed: int = 1, **options) -> Run:
    return Run([chr(ord("A") + i) for i in range(clients)], seed, **options).run(events)


def flatten(logs: dict[str, list[Event]]) -> list[Event]:
    return [event for pid in sorted(logs) for event in logs[pid]]


def copy_logs(run: Run) -> dict[str, list[Event]]:
    return {pid: list(events) for pid, events in run.logs.items()}


def with_clock(event: Event, clock: dict[str, int]) -> Event:
    return msgspec.structs.replace(event, clock={q: n for q, n in clock.items() if n})


def rules(report: CheckReport) -> set[str]:
    return {violation.rule for violation in report.violations}


def ev(pid: str, kind: str, clock: dict[str, int], **fields) -> Event:
    return Event(ts="2024-05-01T12:00:00+00:00", pid=pid, kind=kind, clock=clock, **fields)


def causal_positions(events: list[Event]) -> list[tuple[int, Event]]:
    """(index in the list, event) of the causal events."""
    return [(i, e) for i, e in enumerate(events) if e.kind in CAUSAL_KINDS]


# A brute-force oracle: happened-before by transitive closure


def closure(events: list[Event]) -> tuple[list[Event], list[int]]:
    """Client causal events and, for each, the bitset of the client events in its
    strict causal past, following the model of the checker's docstring."""
    nodes: list[Event] = []
    preds: list[list[int]] = []
    last: dict[str, int] = {}
    sends: dict[str, int] = {}
    syncs: dict[str, int] = {}
    for event in events:  # program order, sends and syncs
        if event.kind in CAUSAL_KINDS or (
            event.pid == "server" and event.kind in ("receive", "sync")
        ):
            nodes.append(event)
            preds.append([last[event.pid]] if event.pid in last else [])
            last[event.pid] = len(nodes) - 1
            if event.pid != "server" and event.kind == "send":
                sends[event.msg] = len(nodes) - 1
            if event.pid == "server" and event.kind == "sync":
                syncs[event.msg] = len(nodes) - 1
    for index, event in enumerate(nodes):
        if event.kind == "receive":
            preds[index].append(sends[event.msg])
        elif event.kind == "sync-receive":
            preds[index].append(syncs[event.msg])
    past = [0] * len(nodes)
    done = [False] * len(nodes)

    def visit(i: int) -> int:
        stack = [i]
        while stack:
            top = stack[-1]
            pending = [p for p in preds[top] if not done[p]]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            if not done[top]:
                for p in preds[top]:
                    past[top] |= past[p] | (1 << p)
                done[top] = True
        return past[i]

    for i in range(len(nodes)):
        visit(i)
    clients = [i for i, e in enumerate(nodes) if e.pid != "server"]
    mask = sum(1 << i for i in clients)
    return [nodes[i] for i in clients], [past[i] & mask for i in clients], clients


def below(a: dict[str, int], b: dict[str, int]) -> bool:
    return a != b and all(n <= b.get(q, 0) for q, n in a.items())


# Correct runs


def test_a_tiny_hand_built_log_passes_with_its_counts():
    events = [
        ev("A", "local", {"A": 1}),
        ev("A", "send", {"A": 2}, peer="B", msg="A#2"),
        ev("B", "local", {"B": 1}),
        ev("B", "receive", {"A": 2, "B": 2}, peer="A", msg="A#2"),
    ]
    report = check(events)
    assert report.ok, format_report(report)
    s = report.summary
    # ordered: A1<A2, A1<B2, A2<B2, B1<B2; concurrent: A1||B1, A2||B1
    assert (s.processes, s.events, s.messages, s.receives, s.syncs) == (2, 4, 1, 1, 0)
    assert s.concurrent_pairs == 2
    assert not s.server_log


def test_a_tiny_log_with_server_reports_and_a_sync_passes_with_its_counts():
    events = [
        ev("A", "join", {}, peer="server"),
        ev("A", "send", {"A": 1}, peer="server", msg="A#1"),  # a report
        ev("A", "local", {"A": 2}),
        ev("B", "join", {}, peer="server"),
        ev("B", "local", {"B": 1}),
        ev("B", "sync-receive", {"A": 1, "B": 2}, peer="server", msg="sync#1"),
        ev("B", "leave", {"A": 1, "B": 2}, peer="server"),
        ev("server", "join", {}, peer="A"),
        ev("server", "join", {}, peer="B"),
        ev("server", "receive", {"A": 1}, peer="A", msg="A#1"),
        ev("server", "sync", {"A": 1}, msg="sync#1", to=["B"]),
    ]
    report = check(events)
    assert report.ok, format_report(report)
    s = report.summary
    # ordered: A1<A2, A1<B2, B1<B2; concurrent: A1||B1, A2||B1, A2||B2
    assert (s.processes, s.events, s.messages, s.receives, s.syncs) == (2, 4, 1, 0, 1)
    assert s.concurrent_pairs == 3
    assert s.server_log


@pytest.mark.parametrize("seed", range(5))
def test_simulated_runs_pass_with_the_right_counts(seed):
    run = simulate(clients=5, events=400, seed=seed)
    events = run.events()
    report = check(events)
    assert report.ok, format_report(report)
    assert report.delivery_violations == []  # one server over FIFO links delivers causally
    kinds = [e.kind for e in events if e.pid != "server"]
    s = report.summary
    assert s.processes == 5
    assert s.events == sum(kinds.count(k) for k in CAUSAL_KINDS) == run.causal
    assert s.messages == kinds.count("send")
    assert s.receives == kinds.count("receive") > 0
    assert s.syncs == kinds.count("sync-receive") > 0


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10**6),
    clients=st.integers(2, 5),
    size=st.integers(1, 120),
    fifo=st.booleans(),
)
def test_the_checker_agrees_with_a_brute_force_oracle(seed, clients, size, fifo):
    run = simulate(clients=clients, events=size, seed=seed, fifo=fifo)
    events = run.events()
    report = check(events)
    nodes, past, ids = closure(events)

    def before(i: int, j: int) -> bool:  # nodes[i] happened before nodes[j]
        return bool(past[j] >> ids[i] & 1)

    # The characterization holds on every pair of a real run...
    for i, j in itertools.permutations(range(len(nodes)), 2):
        assert before(i, j) == below(nodes[i].clock, nodes[j].clock)
    # ...so the checker finds nothing but delivery-order problems,
    assert rules(report) <= {"fifo"}
    # counts the concurrent pairs right,
    n = len(nodes)
    ordered = sum(bin(p).count("1") for p in past)
    assert report.summary.concurrent_pairs == n * (n - 1) // 2 - ordered
    # and finds exactly the late deliveries: a receive after another one whose send
    # its own send happened before (FIFO when both came from the same sender).
    send_of = {e.msg: i for i, e in enumerate(nodes) if e.kind == "send"}
    late_fifo, late_causal = set(), set()
    for pid in run.logs:
        delivered = [send_of[e.msg] for e in nodes if e.pid == pid and e.kind == "receive"]
        for k, mine in enumerate(delivered):
            overtaken = [s for s in delivered[:k] if before(mine, s)]
            if overtaken:
                same = any(nodes[s].pid == nodes[mine].pid for s in overtaken)
                (late_fifo if same else late_causal).add((pid, nodes[mine].msg))
    found_fifo = {(v.events[0].pid, v.events[0].msg) for v in report.violations}
    found_causal = {(v.events[0].pid, v.events[0].msg) for v in report.delivery_violations}
    assert found_fifo == late_fifo
    assert found_causal == late_causal
    if fifo:
        assert not late_fifo and not late_causal


def test_client_logs_alone_pass_and_order_the_same_pairs():
    run = simulate(clients=4, events=400, seed=7)
    full = check(run.events())
    alone = check(run.events(server=False))
    assert full.ok and alone.ok, format_report(alone)
    assert not alone.summary.server_log
    assert alone.summary.syncs == full.summary.syncs > 0
    assert alone.summary.concurrent_pairs == full.summary.concurrent_pairs


def test_a_run_resumed_from_a_join_clock_passes():
    events = [
        ev("A", "join", {"A": 5, "B": 2}, peer="server"),
        ev("A", "local", {"A": 6, "B": 2}),
        ev("A", "send", {"A": 7, "B": 2}, peer="B", msg="A#7"),
        ev("B", "local", {"B": 1}),
        ev("B", "receive", {"A": 7, "B": 2}, peer="A", msg="A#7"),
    ]
    report = check(events)
    assert report.ok, format_report(report)


def test_ten_thousand_events_over_twenty_processes_are_checked():
    run = simulate(clients=20, events=10_000, seed=2024)
    events = run.events()
    report = check(events)
    assert report.ok, format_report(report)
    s = report.summary
    assert (s.processes, s.events) == (20, 10_000)
    assert s.messages == sum(1 for e in events if e.pid != "server" and e.kind == "send")
    assert 0 < s.concurrent_pairs < 10_000 * 9_999 // 2


# Logs on disk: folders, single files, line numbers


def write_logs(folder: Path, logs: dict[str, list[Event]]) -> None:
    encoder = msgspec.json.Encoder()
    for pid, events in logs.items():
        lines = b"".join(encoder.encode(e) + b"\n" for e in events)
        (folder / f"{pid}.jsonl").write_bytes(lines)


def test_a_run_folder_and_a_single_file_are_checked(tmp_path):
    run = simulate(clients=3, events=150, seed=3)
    write_logs(tmp_path, run.logs)
    assert check(tmp_path).summary == check(run.events()).summary
    assert check(str(tmp_path)).ok
    single = check(tmp_path / "A.jsonl")
    assert single.summary.processes == 1
    assert single.summary.events == sum(1 for e in run.logs["A"] if e.kind in CAUSAL_KINDS)


def test_messages_name_the_file_and_line(tmp_path):
    logs = {
        "A": [ev("A", "join", {}), ev("A", "local", {"A": 1}), ev("A", "local", {"A": 3})],
    }
    write_logs(tmp_path, logs)
    (violation,) = check(tmp_path).violations
    assert violation.rule == "own-entry"
    assert violation.message.startswith("A.jsonl:3 (A local): own entry A:3 skips")
    assert [(r.file, r.line) for r in violation.events] == [("A.jsonl", 3), ("A.jsonl", 2)]


def test_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        check(tmp_path / "nope")


# Corrupted runs: each is caught by the right rule


@pytest.fixture(scope="module")
def good() -> Run:
    run = simulate(clients=4, events=500, seed=11)
    assert check(run.events()).ok
    return run


def pick(run_logs, pid_kinds, rng_seed=0, where=None):
    """A random (pid, index) of a client event of one of ``pid_kinds`` satisfying ``where``."""
    candidates = [
        (pid, i)
        for pid, events in run_logs.items()
        if pid != "server"
        for i, e in enumerate(events)
        if e.kind in pid_kinds and (where is None or where(pid, i, e))
    ]
    assert candidates
    return random.Random(rng_seed).choice(candidates)


def previous_causal(events: list[Event], index: int) -> Event | None:
    for e in reversed(events[:index]):
        if e.kind in CAUSAL_KINDS:
            return e
    return None


def next_causal(events: list[Event], index: int) -> Event | None:
    for e in events[index + 1 :]:
        if e.kind in CAUSAL_KINDS:
            return e
    return None


def test_a_skipped_own_entry_is_caught(good):
    logs = copy_logs(good)
    pid, i = pick(logs, {"local"}, where=lambda p, i, e: next_causal(logs[p], i) is not None)
    after = next_causal(logs[pid], i)
    del logs[pid][i]
    report = check(flatten(logs))
    assert rules(report) == {"own-entry"}, format_report(report)
    (violation,) = report.violations
    assert f"({pid} {after.kind}" in violation.message and "skips" in violation.message
    assert violation.events[0].pid == pid


def test_a_repeated_own_entry_is_caught(good):
    logs = copy_logs(good)
    pid, i = pick(logs, {"local"}, rng_seed=1)
    logs[pid].insert(i + 1, logs[pid][i])
    report = check(flatten(logs))
    assert rules(report) == {"own-entry"}, format_report(report)
    (violation,) = report.violations
    assert "repeats" in violation.message
    assert violation.events[0].line == i + 2  # the copy, one line after the original


def test_a_first_event_above_one_without_a_join_is_caught():
    report = check([ev("A", "local", {"A": 4})])
    assert rules(report) == {"own-entry"}
    assert "expected 1 (one more than the start)" in report.violations[0].message


def test_a_regressed_clock_is_caught(good):
    logs = copy_logs(good)

    def shrinkable(pid, i, e):
        prev = previous_causal(logs[pid], i)
        return prev is not None and any(
            q != pid and prev.clock.get(q) == n for q, n in e.clock.items()
        )

    pid, i = pick(logs, {"local"}, where=shrinkable)
    prev = previous_causal(logs[pid], i)
    event = logs[pid][i]
    q = next(q for q, n in sorted(event.clock.items()) if q != pid and prev.clock.get(q) == n)
    logs[pid][i] = with_clock(event, {**event.clock, q: event.clock[q] - 1})
    report = check(flatten(logs))
    assert rules(report) == {"clock-regressed", "causality"}, format_report(report)
    regressed = next(v for v in report.violations if v.rule == "clock-regressed")
    assert f"{pid}.jsonl:{i + 1} ({pid} local)" in regressed.message
    assert f"{q} ({event.clock[q]} -> {event.clock[q] - 1})" in regressed.message


def test_a_receive_without_its_send_is_caught(good):
    logs = copy_logs(good)
    pid, i = pick(logs, {"receive"}, rng_seed=2)
    event = logs[pid][i]
    logs[pid][i] = msgspec.structs.replace(event, msg=f"{event.peer}#9999")
    report = check(flatten(logs))
    assert rules(report) == {"unmatched-receive"}, format_report(report)
    (violation,) = report.violations
    assert violation.message == (
        f"{pid}.jsonl:{i + 1} ({pid} receive {event.peer}#9999): no send of"
        f" {event.peer}#9999 in the logs"
    )


def sent_clock(logs, msg):
    return next(
        e
        for p, es in logs.items()
        if p != "server"
        for e in es
        if e.kind == "send" and e.msg == msg
    ).clock


def test_a_receive_clock_below_the_send_clock_is_caught(good):
    logs = copy_logs(good)

    def learns(pid, i, e):
        prev = previous_causal(logs[pid], i)
        sender = e.peer
        return prev is not None and sent_clock(logs, e.msg)[sender] > prev.clock.get(sender, 0) + 1

    pid, i = pick(logs, {"receive"}, where=learns)
    event = logs[pid][i]
    sender = event.peer
    logs[pid][i] = with_clock(event, {**event.clock, sender: event.clock[sender] - 1})
    report = check(flatten(logs))
    assert rules(report) == {"receive-clock", "causality"}, format_report(report)
    low = next(v for v in report.violations if v.rule == "receive-clock")
    assert low.message.startswith(f"{pid}.jsonl:{i + 1} ({pid} receive {event.msg}): clock")
    assert f"({sender} send {event.msg})" in low.message


def test_an_inflated_entry_is_caught_with_a_witness(good):
    """An event that knows of an event outside its causal past."""
    logs = copy_logs(good)
    report = check(flatten(logs))
    pid = "A"
    last = previous_causal(logs[pid], len(logs[pid]))
    # an event of B neither before nor after A's last event
    nodes, past, ids = closure(flatten(logs))
    a_last = next(k for k, e in enumerate(nodes) if e is last)
    candidates = [
        k
        for k, e in enumerate(nodes)
        if e.pid == "B" and not past[a_last] >> ids[k] & 1 and not below(last.clock, e.clock)
    ]
    other = nodes[candidates[0]]
    merged = {q: max(last.clock.get(q, 0), other.clock.get(q, 0)) for q in last.clock | other.clock}
    merged[pid] = last.clock[pid] + 1
    logs[pid].append(ev(pid, "local", merged))
    report = check(flatten(logs))
    assert rules(report) == {"causality"}, format_report(report)
    first = report.violations[0]
    assert first.message.startswith(f"{pid}.jsonl:{len(logs[pid])} ({pid} local): clock")
    assert "is not in its past" in first.message
    assert "Witness:" in first.message and "did not happen before" in first.message


def test_a_receive_that_did_not_merge_is_caught(good):
    """A clock entry missing knowledge: the receive ticked but did not merge."""
    logs = copy_logs(good)

    def learns(pid, i, e):
        prev = previous_causal(logs[pid], i)
        return prev is not None and {**prev.clock, pid: prev.clock[pid] + 1} != e.clock

    pid, i = pick(logs, {"receive"}, rng_seed=3, where=learns)
    event = logs[pid][i]
    prev = previous_causal(logs[pid], i)
    logs[pid][i] = with_clock(event, {**prev.clock, pid: prev.clock[pid] + 1})
    report = check(flatten(logs))
    assert rules(report) == {"causality", "receive-clock"}, format_report(report)
    causality = next(v for v in report.violations if v.rule == "causality")
    assert causality.message.startswith(f"{pid}.jsonl:{i + 1} ({pid} receive {event.msg})")
    assert "happened before it" in causality.message
    assert f"({event.peer} send {event.msg})" in causality.message
    assert "Witness:" in causality.message


def test_a_sync_receive_that_did_not_merge_the_frontier_is_caught(good):
    logs = copy_logs(good)

    def learns(pid, i, e):
        prev = previous_causal(logs[pid], i)
        return prev is not None and {**prev.clock, pid: prev.clock[pid] + 1} != e.clock

    pid, i = pick(logs, {"sync-receive"}, where=learns)
    event = logs[pid][i]
    prev = previous_causal(logs[pid], i)
    logs[pid][i] = with_clock(event, {**prev.clock, pid: prev.clock[pid] + 1})
    report = check(flatten(logs))
    assert rules(report) == {"causality", "receive-clock"}, format_report(report)
    low = next(v for v in report.violations if v.rule == "receive-clock")
    assert "is below the frontier of server.jsonl:" in low.message
    assert f"({pid} sync-receive {event.msg})" in low.message


def test_a_fifo_reordering_is_caught():
    events = [
        ev("A", "send", {"A": 1}, peer="B", msg="A#1"),
        ev("A", "send", {"A": 2}, peer="B", msg="A#2"),
        ev("B", "receive", {"A": 2, "B": 1}, peer="A", msg="A#2"),
        ev("B", "receive", {"A": 2, "B": 2}, peer="A", msg="A#1"),
    ]
    report = check(events)
    assert not report.ok
    (violation,) = report.violations
    assert violation.rule == "fifo"
    assert violation.message == (
        "B.jsonl:2 (B receive A#1) comes after B.jsonl:1 (B receive A#2),"
        " but A.jsonl:1 (A send A#1) was sent before A.jsonl:2 (A send A#2)"
    )


def test_fifo_reorderings_in_a_simulated_run_are_caught():
    report = check(simulate(clients=4, events=600, seed=5, fifo=False).events())
    assert rules(report) == {"fifo"}
    assert len(report.violations) >= 3


CAUSAL_DELIVERY = [
    ev("A", "send", {"A": 1}, peer="C", msg="A#1"),
    ev("A", "send", {"A": 2}, peer="B", msg="A#2"),
    ev("B", "receive", {"A": 2, "B": 1}, peer="A", msg="A#2"),
    ev("B", "send", {"A": 2, "B": 2}, peer="C", msg="B#2"),
    ev("C", "receive", {"A": 2, "B": 2, "C": 1}, peer="B", msg="B#2"),
    ev("C", "receive", {"A": 2, "B": 2, "C": 2}, peer="A", msg="A#1"),
]


def test_a_causal_delivery_violation_is_a_warning_by_default():
    report = check(CAUSAL_DELIVERY)
    assert report.ok
    assert report.violations == []
    (warning,) = report.warnings
    assert report.delivery_violations == [warning]
    assert warning.rule == "causal-delivery"
    assert warning.message == (
        "C.jsonl:2 (C receive A#1) comes after C.jsonl:1 (C receive B#2),"
        " but A.jsonl:1 (A send A#1) happened before B.jsonl:2 (B send B#2)"
    )
    text = format_report(report)
    assert text.splitlines()[0] == "OK: causally consistent (1 warning)"
    assert "[causal-delivery] C.jsonl:2" in text


def test_a_causal_delivery_violation_fails_when_required():
    report = check(CAUSAL_DELIVERY, require_causal_delivery=True)
    assert not report.ok
    assert rules(report) == {"causal-delivery"}
    assert report.warnings == []
    assert format_report(report).splitlines()[0] == "FAILED: 1 violation"


def test_a_cycle_is_caught_and_names_its_events():
    # A receives B#2 before sending A#2, which B receives before sending B#2.
    events = [
        ev("A", "receive", {"A": 1, "B": 2}, peer="B", msg="B#2"),
        ev("A", "send", {"A": 2, "B": 2}, peer="B", msg="A#2"),
        ev("B", "receive", {"A": 2, "B": 1}, peer="A", msg="A#2"),
        ev("B", "send", {"A": 2, "B": 2}, peer="A", msg="B#2"),
    ]
    report = check(events)
    assert "cycle" in rules(report)
    cycle = next(v for v in report.violations if v.rule == "cycle")
    for name in (
        "A.jsonl:1 (A receive B#2)",
        "A.jsonl:2 (A send A#2)",
        "B.jsonl:1 (B receive A#2)",
        "B.jsonl:2 (B send B#2)",
    ):
        assert name in cycle.message
    assert len(cycle.events) == 4
    assert report.summary.concurrent_pairs is None
    assert "n/a (cycle)" in format_report(report)


def test_a_message_received_before_it_is_sent_is_a_cycle():
    events = [
        ev("A", "receive", {"A": 1}, peer="A", msg="A#2"),
        ev("A", "send", {"A": 2}, peer="A", msg="A#2"),
    ]
    report = check(events)
    assert "cycle" in rules(report)


# The server's records


def test_a_server_receive_with_another_clock_is_caught(good):
    logs = copy_logs(good)
    server = logs["server"]
    i = next(i for i, e in enumerate(server) if e.kind == "receive")
    event = server[i]
    logs["server"][i] = with_clock(event, {**event.clock, event.peer: event.clock[event.peer] + 5})
    report = check(flatten(logs))
    assert "receive-clock" in rules(report)
    assert any(
        v.message.startswith(f"server.jsonl:{i + 1} (server receive") for v in report.violations
    )


def test_a_sync_frontier_that_is_not_the_max_received_is_caught(good):
    logs = copy_logs(good)
    server = logs["server"]
    i = next(i for i, e in enumerate(server) if e.kind == "sync")
    logs["server"][i] = with_clock(server[i], {**server[i].clock, "Z": 1})
    report = check(flatten(logs))
    assert "sync-frontier" in rules(report)


def crashed_after_storing(b_restored: int) -> list[Event]:
    """A server run killed after it stored B#2 but before it logged receiving it,
    restarted on its data with B:``b_restored`` (found by the chaos run)."""
    return [
        ev("A", "join", {}, peer="server"),
        ev("A", "send", {"A": 1}, peer="server", msg="A#1"),
        ev("B", "join", {}, peer="server"),
        ev("B", "send", {"B": 1}, peer="server", msg="B#1"),
        ev("B", "send", {"B": 2}, peer="server", msg="B#2"),
        ev("A", "sync-receive", {"A": 2, "B": 2}, peer="server", msg="sync#2"),
        ev("server", "start", {}),
        ev("server", "receive", {"A": 1}, peer="A", msg="A#1"),
        ev("server", "receive", {"B": 1}, peer="B", msg="B#1"),
        ev("server", "sync", {"A": 1, "B": 1}, msg="sync#1", to=[]),
        ev("server", "start", {"A": 1, "B": b_restored}),
        ev("server", "sync", {"A": 1, "B": b_restored}, msg="sync#2", to=["A"]),
    ]


def test_a_restart_that_restored_more_than_its_log_says_passes():
    # Without the start event's frontier, sync#2 {A:1, B:2} is "not the max of
    # the clocks received" ({A:1, B:1}): the stored B#2 was never logged.
    report = check(crashed_after_storing(2))
    assert report.ok, format_report(report)


def test_a_restart_that_restores_a_clock_no_client_sent_is_caught():
    report = check(crashed_after_storing(3))
    assert "start-frontier" in rules(report), format_report(report)


def test_a_restart_without_data_starts_the_frontier_afresh():
    events = crashed_after_storing(2)
    events[-2:] = [
        ev("server", "start", {}),
        ev("server", "receive", {"B": 2}, peer="B", msg="B#2"),
        ev("server", "sync", {"B": 2}, msg="sync#2", to=["A"]),
    ]
    events[5] = ev("A", "sync-receive", {"A": 2, "B": 2}, peer="server", msg="sync#2")
    report = check(events)
    assert report.ok, format_report(report)


def test_a_server_run_in_memory_knows_nothing_of_the_run_before():
    # The second run restored nothing: its sync to C does not carry A#1 in its
    # past (the server's program order starts again at each start).
    events = [
        ev("A", "send", {"A": 1}, peer="server", msg="A#1"),
        ev("B", "send", {"B": 1}, peer="server", msg="B#1"),
        ev("C", "sync-receive", {"B": 1, "C": 1}, peer="server", msg="sync#2"),
        ev("server", "start", {}),
        ev("server", "receive", {"A": 1}, peer="A", msg="A#1"),
        ev("server", "sync", {"A": 1}, msg="sync#1", to=[]),
        ev("server", "start", {}),
        ev("server", "receive", {"B": 1}, peer="B", msg="B#1"),
        ev("server", "sync", {"B": 1}, msg="sync#2", to=["C"]),
    ]
    report = check(events)
    assert report.ok, format_report(report)


def test_a_server_run_in_memory_numbers_its_cycles_again_and_still_checks():
    # Both runs sent a sync#1 (a server without --data counts cycles from 1
    # again): each sync-receive is matched to its own run's sync, and a repeat
    # within one run is still a duplicate. Before, the second sync#1 was a
    # duplicate-message and C's receive was held against run 1's frontier.
    run1 = [
        ev("server", "start", {}),
        ev("server", "receive", {"A": 1}, peer="A", msg="A#1"),
        ev("server", "sync", {"A": 1}, msg="sync#1", to=["B"]),
    ]
    run2 = [
        ev("server", "start", {}),
        ev("server", "receive", {"D": 1}, peer="D", msg="D#1"),
        ev("server", "sync", {"D": 1}, msg="sync#1", to=["C"]),
    ]
    clients = [
        ev("A", "send", {"A": 1}, peer="server", msg="A#1"),
        ev("B", "sync-receive", {"A": 1, "B": 1}, peer="server", msg="sync#1"),
        ev("D", "send", {"D": 1}, peer="server", msg="D#1"),
        ev("C", "sync-receive", {"C": 1, "D": 1}, peer="server", msg="sync#1"),
    ]
    report = check(clients + run1 + run2)
    assert report.ok, format_report(report)
    again = ev("server", "sync", {"D": 1}, msg="sync#1", to=["C"])
    assert "duplicate-message" in rules(check(clients + run1 + run2 + [again]))


def test_a_sync_receive_of_an_unknown_sync_is_caught(good):
    logs = copy_logs(good)
    pid, i = pick(logs, {"sync-receive"})
    logs[pid][i] = msgspec.structs.replace(logs[pid][i], msg="sync#999")
    report = check(flatten(logs))
    assert rules(report) == {"unmatched-receive"}, format_report(report)


def test_without_the_server_log_a_sync_receive_is_still_checked_by_its_clock(good):
    logs = copy_logs(good)
    del logs["server"]
    pid, i = pick(logs, {"sync-receive"}, rng_seed=4)
    other = next(q for q in sorted(logs) if q != pid)
    count = sum(1 for e in logs[other] if e.kind in CAUSAL_KINDS)
    logs[pid][i] = with_clock(logs[pid][i], {**logs[pid][i].clock, other: count + 1})
    report = check(flatten(logs))
    assert "causality" in rules(report)
    first = next(v for v in report.violations if v.rule == "causality")
    assert first.message.startswith(f"{pid}.jsonl:{i + 1} ({pid} sync-receive sync#")
    assert f"no event of {other} has own entry {count + 1}" in first.message


def test_a_join_that_changes_the_clock_is_caught():
    events = [
        ev("A", "join", {}),
        ev("A", "local", {"A": 1}),
        ev("A", "leave", {"A": 1}),
        ev("A", "join", {"A": 1, "B": 4}),
    ]
    report = check(events)
    assert rules(report) == {"annotation-clock"}
    assert report.violations[0].events[0].line == 4


def test_a_receive_of_a_report_is_caught():
    events = [
        ev("A", "send", {"A": 1}, peer="server", msg="A#1"),
        ev("B", "receive", {"A": 1, "B": 1}, peer="A", msg="A#1"),
    ]
    report = check(events)
    assert rules(report) == {"unmatched-receive"}
    assert "was a report to the server, not to B" in report.violations[0].message


# The text report


def test_the_text_report_has_the_verdict_first_then_the_counts():
    text = format_report(check(CAUSAL_DELIVERY[:5]))
    lines = text.splitlines()
    assert lines[0] == "OK: causally consistent"
    assert lines[1].split() == ["processes", "3"]
    assert lines[2].split() == ["events", "5"]
    assert "concurrent pairs" in text


def test_the_text_report_caps_the_listing():
    events = [ev("A", "receive", {"A": n}, peer="B", msg=f"B#{n}") for n in range(1, 61)]
    report = check(events)
    assert len(report.violations) == 60
    text = format_report(report)
    assert text.splitlines()[0] == "FAILED: 60 violations"
    assert text.count("[unmatched-receive]") == 50
    assert text.splitlines()[-1] == "  ... and 10 more"


def test_every_rule_is_documented():
    assert set(RULES) == {
        "own-entry",
        "clock-regressed",
        "annotation-clock",
        "unmatched-receive",
        "receive-clock",
        "sync-frontier",
        "start-frontier",
        "duplicate-message",
        "malformed",
        "cycle",
        "causality",
        "fifo",
        "causal-delivery",
        "torn-line",
    }
