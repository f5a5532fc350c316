"""The ShiViz format: records, executions, merged tracer logs, exported event logs.

Files are checked with an independent reader written here from ShiViz's own code,
not with vclock.tracing's parser: ``js/shiviz.js`` (an uploaded file's line 1 is
the parser regex, line 2 the delimiter, the rest the log), ``js/model/parser.js``
(trim, split on the delimiter, label each execution with ``trace``, scan it with
the parser regex) and ``js/model/modelGraph.js`` (the checks on the clocks).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vclock import VectorClock
from vclock.tools.eventlog import EventLog
from vclock.tools.shiviz import export_shiviz
from vclock.tracing import (
    DELIMITER_PATTERN,
    RECORD_PATTERN,
    SHIVIZ_DELIMITER,
    SHIVIZ_REGEX,
    Record,
    Tracer,
    check_run,
    format_clock,
    format_record,
    merge_logs,
    order_records,
    parse_records,
    parse_runs,
)
from vclock.tracing.shiviz import one_line

# The independent reader

# GoVector's regex as JavaScript runs it: `.` stops at every JS line terminator.
_JS_DOT = r"[^\n\r\u2028\u2029]"
SHIVIZ_RECORD = re.compile(
    rf"(?P<host>\S*) (?P<clock>{{{_JS_DOT}*}})\n(?P<event>{_JS_DOT}*)", re.MULTILINE
)
GOVECTOR_CLOCK = re.compile(r'\{("[^"]+":\d+(, "[^"]+":\d+)*)?\}')


@dataclass
class Execution:
    label: str
    events: list[tuple[str, dict[str, int], str]] = field(default_factory=list)


def read_upload(text: str) -> tuple[str, str, list[Execution]]:
    """What ShiViz does with an uploaded file: (parser regex, delimiter, executions)."""
    parser, delimiter, log = text.split("\n", 2)
    assert parser == r"(?<host>\S*) (?<clock>{.*})\n(?<event>.*)"
    return parser, delimiter, read_log(log, delimiter)


def read_log(log: str, delimiter: str = "") -> list[Execution]:
    """ShiViz's LogParser, plus the check that every non-blank line is in a record."""
    log = log.strip()
    if delimiter.strip():
        named = re.compile(delimiter.strip().replace("(?<", "(?P<"), re.MULTILINE)
        plain = re.compile(re.sub(r"\(\?<\w+>", "(?:", delimiter.strip()), re.MULTILINE)
        pieces = plain.split(log)
        labels = [""] + [m["trace"] for m in named.finditer(log)]
        chunks = [(labels[i], piece) for i, piece in enumerate(pieces) if piece.strip()]
    else:
        chunks = [("", log)]
    executions = []
    for label, chunk in chunks:
        execution = Execution(label)
        for match in SHIVIZ_RECORD.finditer(chunk):
            assert GOVECTOR_CLOCK.fullmatch(match["clock"]), match["clock"]
            execution.events.append((match["host"], json.loads(match["clock"]), match["event"]))
        assert execution.events, f"ShiViz: no events in execution {label!r}"
        lines = [line for line in chunk.split("\n") if line.strip()]
        assert len(lines) == 2 * len(execution.events), "a line outside every record"
        executions.append(execution)
    assert len({e.label for e in executions}) == len(executions), "duplicate labels"
    return executions


def assert_shiviz_accepts(execution: Execution) -> None:
    """modelGraph.js's checks, plus: the file order respects happened-before."""
    counts: dict[str, int] = {}
    seen: set[tuple[str, int]] = set()
    for host, clock, event in execution.events:
        assert "\n" not in event and "\r" not in event
        # own entry starts at 1 and rises by exactly 1 per event, in file order
        assert clock.get(host) == counts.get(host, 0) + 1, (host, clock)
        counts[host] = clock[host]
        # every event this one knows of came earlier in the file
        for other, time in clock.items():
            if other != host:
                assert (other, time) in seen, f"{host} {clock} before {other}'s event {time}"
        seen.add((host, clock[host]))
    for _, clock, _ in execution.events:
        for other, time in clock.items():
            assert other in counts, f"{other} has no events"
            assert 1 <= time <= counts[other], (other, time)


# Formatting a record


def test_a_record_is_govectors_two_lines_with_its_clock_spacing():
    # GoVector's ReturnVCString: ids sorted, "id":n, entries joined by ", "
    assert format_record("A", {"B": 3, "A": 1}, "hello") == 'A {"A":1, "B":3}\nhello\n'
    assert format_clock(VectorClock({"A": 1})) == '{"A":1}'
    assert format_clock({}) == "{}"


def test_the_python_patterns_spell_the_regexes_users_paste():
    assert SHIVIZ_REGEX == r"(?<host>\S*) (?<clock>{.*})\n(?<event>.*)"
    assert SHIVIZ_DELIMITER == r"^=== (?<trace>.*) ===$"
    assert RECORD_PATTERN.pattern == SHIVIZ_REGEX.replace("(?<", "(?P<")
    assert DELIMITER_PATTERN.pattern == SHIVIZ_DELIMITER.replace("(?<", "(?P<")
    match = RECORD_PATTERN.search(format_record("A", {"A": 2, "B": 1}, "send A#2 -> B"))
    assert match is not None
    assert (match["host"], json.loads(match["clock"]), match["event"]) == (
        "A",
        {"A": 2, "B": 1},
        "send A#2 -> B",
    )


@pytest.mark.parametrize("brk", ["\n", "\r\n", "\r", "\u2028", "\u2029", "\x85", "\x0b"])
def test_descriptions_become_one_line(brk):
    text = format_record("A", {"A": 1}, f"first{brk}second")
    [execution] = read_log(text)
    [(_, _, event)] = execution.events
    assert event.startswith("first\\") and event.endswith("second")
    assert parse_records(text)[0].description == event


def test_a_description_that_looks_like_a_delimiter_is_escaped():
    text = format_record("A", {"A": 1}, "=== run 2 ===")
    assert text == 'A {"A":1}\n\\=== run 2 ===\n'
    [execution] = read_log(text, SHIVIZ_DELIMITER)
    assert len(execution.events) == 1


@pytest.mark.parametrize("blank", ["", " ", "\t", "\ufeff"])
def test_an_empty_description_still_makes_a_record(blank):
    # ShiViz trims the log: a blank last line would lose the last event
    assert format_record("A", {"A": 1}, blank) == 'A {"A":1}\n(no description)\n'
    assert format_record("A", {"A": 1}, "x" + blank) == 'A {"A":1}\nx\n'


@pytest.mark.parametrize("host", ["", "A B", "A\tB", "A\n"])
def test_a_host_must_be_one_word(host):
    with pytest.raises(ValueError, match="host"):
        format_record(host, {"A": 1}, "x")


def test_the_clock_must_count_the_hosts_own_event():
    with pytest.raises(ValueError, match="must count that event"):
        format_record("A", {"B": 1}, "x")


@given(
    description=st.text(max_size=40),
    clock=st.dictionaries(st.sampled_from("ABCD"), st.integers(0, 50)),
)
def test_any_description_round_trips_as_one_record(description, clock):
    clock = {**clock, "A": clock.get("A", 0) + 1}
    text = format_record("A", clock, description)
    [execution] = read_log(text, SHIVIZ_DELIMITER)
    [(host, read_clock, event)] = execution.events
    assert host == "A"
    assert read_clock == {pid: n for pid, n in clock.items() if n}
    [record] = parse_records(text)
    assert record == Record("A", VectorClock(clock), event)
    assert event == one_line(description)


# Parsing


GOVECTOR_LOG = """\
=== Execution #Mon Jan  1 10:00:00 UTC 2024  ===
client {"client":1}
Initialization Complete
client {"client":2}
Sending message
server {"server":1}
Initialization Complete
server {"client":2, "server":2}
Received message
"""


def test_reads_a_govector_log_with_its_execution_delimiter():
    [run] = parse_runs(GOVECTOR_LOG)
    assert run.label == "Execution #Mon Jan  1 10:00:00 UTC 2024 "
    assert [(r.host, r.clock.to_dict(), r.description) for r in run.records] == [
        ("client", {"client": 1}, "Initialization Complete"),
        ("client", {"client": 2}, "Sending message"),
        ("server", {"server": 1}, "Initialization Complete"),
        ("server", {"client": 2, "server": 2}, "Received message"),
    ]
    check_run(run.records)


def test_reads_executions_after_a_header():
    text = (
        f"{SHIVIZ_REGEX}\n{SHIVIZ_DELIMITER}\n\n=== one ===\n"
        + format_record("A", {"A": 1}, "a")
        + "\n=== two ===\n"
        + format_record("B", {"B": 1}, "b")
        + format_record("B", {"B": 2}, "c")
    )
    runs = parse_runs(text)
    assert [(run.label, len(run.records)) for run in runs] == [("one", 1), ("two", 2)]
    assert [record.run for record in parse_records(text)] == ["one", "two", "two"]
    assert [(e.label, len(e.events)) for e in read_upload(text)[2]] == [("one", 1), ("two", 2)]


def test_spacing_of_the_clock_does_not_matter_when_reading():
    [record] = parse_records('A {"A": 1, "B": 3}\nx\n')
    assert record.clock == VectorClock({"A": 1, "B": 3})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hello\n", "line 1: expected 'HOST {clock}'"),
        ('A {"A":1}\nx\nstray line\n', "line 3: expected"),
        ('A {"A":1}', "line 1: the record has no description line"),
        ('A {"A":one}\nx\n', "line 1: not valid JSON"),
        ('A {"A":-1}\nx\n', "line 1: counter of 'A'"),
        ('A {"A":1}\r\nx\n', "line 1: expected"),
        ('=== a ===\nA {"A":1}\nx\n=== a ===\nA {"A":1}\nx\n', "two executions"),
        (r"(?<event>.*)\n(?<host>\S*) (?<clock>{.*})" "\n\n", "line 1: this parser reads"),
    ],
)
def test_parsing_refuses_what_shiviz_would_skip_or_misread(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_runs(text)


# Checking and ordering


def test_check_run_names_the_process_at_fault():
    a1 = Record("A", VectorClock({"A": 1}), "x")
    a3 = Record("A", VectorClock({"A": 3}), "x", origin="A.log:7")
    with pytest.raises(ValueError, match=r"process 'A'.*number 2 has A=3 \(A\.log:7\)"):
        check_run([a1, a3])
    b = Record("B", VectorClock({"B": 1, "Z": 1}), "x")
    with pytest.raises(ValueError, match="mentions process 'Z', which has no events"):
        check_run([b])
    c = Record("C", VectorClock({"C": 1, "A": 2}), "x")
    with pytest.raises(ValueError, match="counts 2 events of process 'A', but only 1"):
        check_run([a1, c])


def simulate(seed: int, steps: int) -> list[Record]:
    """A random execution of three processes exchanging messages."""
    rng = random.Random(seed)
    clocks = {pid: VectorClock() for pid in "ABC"}
    in_flight: list[tuple[str, VectorClock]] = []
    records = []
    for _ in range(steps):
        pid = rng.choice("ABC")
        mine = [m for m in in_flight if m[0] == pid]
        if mine and rng.random() < 0.5:
            message = rng.choice(mine)
            in_flight.remove(message)
            clocks[pid] = clocks[pid].receive(message[1], pid)
            what = "receive"
        else:
            clocks[pid] = clocks[pid].tick(pid)
            if rng.random() < 0.6:
                in_flight.append((rng.choice([p for p in "ABC" if p != pid]), clocks[pid]))
            what = "send or local"
        records.append(Record(pid, clocks[pid], what))
    return records


@settings(max_examples=50)
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 40))
def test_order_records_respects_happened_before(seed, steps):
    records = simulate(seed, steps)
    shuffled = records[:]
    random.Random(seed).shuffle(shuffled)
    check_run(shuffled)
    ordered = order_records(shuffled)
    assert sorted(map(id, ordered)) == sorted(map(id, records))
    text = "".join(format_record(r.host, r.clock, r.description) for r in ordered)
    [execution] = read_log(text)
    assert_shiviz_accepts(execution)


# Merging tracer logs


def traced_exchange(tmp_path: Path) -> list[Path]:
    """Three tracers exchanging messages in memory, in a tangled order."""
    a, b, c = (Tracer(pid, tmp_path / f"{pid}.log") for pid in "ABC")
    with a, b, c:
        to_b = a.prepare_send("A to B", 1)
        to_c = b.prepare_send("B to C", 2)
        c.local_event("C thinks")
        c.unpack_receive("C got B's", to_c)
        b.unpack_receive("B got A's", to_b)
        to_a = c.prepare_send("C to A", 3)
        a.local_event("A waits\nstill waiting")
        a.unpack_receive("A got C's", to_a)
    return [tmp_path / f"{pid}.log" for pid in "CBA"]  # any order will do


def test_merged_tracer_logs_load_in_shiviz(tmp_path):
    result = merge_logs(traced_exchange(tmp_path), tmp_path / "merged.log")
    assert (result.runs, result.events) == (1, 8)
    text = (tmp_path / "merged.log").read_text()
    assert text.startswith(SHIVIZ_REGEX + "\n\n")  # GoVector's merge tool header
    parser, delimiter, [execution] = read_upload(text)
    assert delimiter == ""
    assert len(execution.events) == 8
    assert_shiviz_accepts(execution)
    assert ("C", {"B": 1, "C": 2}, "C got B's") in execution.events
    assert ("A", {"A": 3, "B": 1, "C": 3}, "A got C's") in execution.events
    assert ("A", {"A": 2}, "A waits\\nstill waiting") in execution.events


def test_each_tracer_log_is_itself_a_shiviz_log(tmp_path):
    for path in traced_exchange(tmp_path):
        [execution] = read_log(path.read_text())
        host = path.stem
        assert [clock[host] for _, clock, _ in execution.events] == list(
            range(1, len(execution.events) + 1)
        )


def test_merging_without_a_log_the_others_heard_from_fails_and_writes_nothing(tmp_path):
    paths = traced_exchange(tmp_path)
    without_b = [p for p in paths if p.stem != "B"]
    with pytest.raises(ValueError, match="process 'B', which has no events"):
        merge_logs(without_b, tmp_path / "merged.log")
    assert not (tmp_path / "merged.log").exists()


def test_merge_needs_logs_and_refuses_several_executions(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        merge_logs([], tmp_path / "out.log")
    log = tmp_path / "multi.log"
    log.write_text("=== one ===\n" + format_record("A", {"A": 1}, "x"))
    with pytest.raises(ValueError, match="several executions"):
        merge_logs([log], tmp_path / "out.log")


def test_merge_without_header_is_ready_to_paste(tmp_path):
    merge_logs(traced_exchange(tmp_path), tmp_path / "merged.log", header=False)
    text = (tmp_path / "merged.log").read_text()
    [execution] = read_log(text)
    assert_shiviz_accepts(execution)


# Exporting vclock event logs


def write_run(folder: Path, events: list[tuple[str, str, dict[str, int], dict[str, Any]]]) -> Path:
    """Event logs written with the real EventLog, one file per pid, in the given order."""
    logs: dict[str, EventLog] = {}
    for pid, kind, clock, extra in events:
        if pid not in logs:
            logs[pid] = EventLog(folder, pid)
        logs[pid].record(kind, clock, **extra)
    for log in logs.values():
        log.close()
    return folder


def a_run(folder: Path) -> Path:
    """Clients A, B, C and the server: sends through the server, a report, a sync."""
    return write_run(
        folder,
        [
            ("server", "join", {}, {"peer": "A"}),
            ("A", "join", {}, {}),
            ("B", "join", {}, {}),
            ("C", "join", {}, {}),
            ("A", "local", {"A": 1}, {"desc": "boot"}),
            ("A", "receive", {"A": 2, "B": 1}, {"peer": "B", "msg": "B#1"}),  # A.jsonl first
            ("B", "send", {"B": 1}, {"peer": "A", "msg": "B#1"}),
            ("server", "receive", {"B": 1}, {"peer": "B", "msg": "B#1"}),
            ("A", "send", {"A": 3, "B": 1}, {"peer": "B", "msg": "A#3", "desc": "ping"}),
            ("B", "receive", {"A": 3, "B": 2}, {"peer": "A", "msg": "A#3"}),
            ("A", "send", {"A": 4, "B": 1}, {"peer": "server", "msg": "A#4"}),
            ("server", "sync", {"A": 4, "B": 1}, {"msg": "sync#1", "to": ["B", "C"]}),
            ("C", "sync-receive", {"A": 4, "B": 1, "C": 1}, {"peer": "server", "msg": "sync#1"}),
            ("B", "sync-receive", {"A": 4, "B": 3}, {"peer": "server", "msg": "sync#1"}),
            ("C", "leave", {"A": 4, "B": 1, "C": 1}, {}),
        ],
    )


def test_export_keeps_client_causal_events_in_causal_order(tmp_path):
    result = export_shiviz([a_run(tmp_path / "run1")], tmp_path / "out.log")
    assert (result.runs, result.events) == (1, 8)
    _, delimiter, [execution] = read_upload((tmp_path / "out.log").read_text())
    assert delimiter == ""
    assert_shiviz_accepts(execution)
    assert {host for host, _, _ in execution.events} == {"A", "B", "C"}  # no server
    descriptions = [event for _, _, event in execution.events]
    assert descriptions.index("send B#1 -> A") < descriptions.index("receive B#1 <- B")
    assert set(descriptions) == {
        "local: boot",
        "send B#1 -> A",
        "receive B#1 <- B",
        "send A#3 -> B: ping",
        "receive A#3 <- A",
        "send A#4 -> server",
        "sync-receive sync#1",
    }


def test_export_two_runs_into_one_file(tmp_path):
    first = a_run(tmp_path / "monday")
    second = write_run(
        tmp_path / "tuesday",
        [
            ("X", "send", {"X": 1}, {"peer": "Y", "msg": "X#1"}),
            ("Y", "receive", {"X": 1, "Y": 1}, {"peer": "X", "msg": "X#1"}),
        ],
    )
    result = export_shiviz([first, second], tmp_path / "out.log")
    assert (result.runs, result.events) == (2, 10)
    text = (tmp_path / "out.log").read_text()
    _, delimiter, executions = read_upload(text)
    assert delimiter == r"^=== (?<trace>.*) ===$"
    assert [(e.label, len(e.events)) for e in executions] == [("monday", 8), ("tuesday", 2)]
    for execution in executions:
        assert_shiviz_accepts(execution)
    assert [(run.label, len(run.records)) for run in parse_runs(text)] == [
        ("monday", 8),
        ("tuesday", 2),
    ]


def test_export_accepts_a_single_event_log_file(tmp_path):
    folder = a_run(tmp_path / "run")
    (folder / "C.jsonl").unlink()
    (folder / "B.jsonl").unlink()
    write_run(tmp_path / "solo", [("S", "local", {"S": 1}, {}), ("S", "local", {"S": 2}, {})])
    result = export_shiviz([tmp_path / "solo" / "S.jsonl"], tmp_path / "out.log")
    assert (result.runs, result.events) == (1, 2)
    [execution] = read_upload((tmp_path / "out.log").read_text())[2]
    assert execution.events == [("S", {"S": 1}, "local"), ("S", {"S": 2}, "local")]


def test_export_names_a_process_missing_from_the_run(tmp_path):
    folder = a_run(tmp_path / "run")
    (folder / "B.jsonl").unlink()
    with pytest.raises(ValueError, match="process 'B', which has no events"):
        export_shiviz([folder], tmp_path / "out.log")
    assert not (tmp_path / "out.log").exists()


def test_export_names_a_process_with_a_gap(tmp_path):
    folder = write_run(
        tmp_path / "run",
        [("A", "local", {"A": 1}, {}), ("A", "local", {"A": 3}, {})],
    )
    with pytest.raises(ValueError, match=r"process 'A' must be numbered.*run/A\.jsonl:2"):
        export_shiviz([folder], tmp_path / "out.log")


def test_export_escapes_multiline_descriptions(tmp_path):
    folder = write_run(tmp_path / "run", [("A", "local", {"A": 1}, {"desc": "two\nlines"})])
    export_shiviz([folder], tmp_path / "out.log")
    [execution] = read_upload((tmp_path / "out.log").read_text())[2]
    assert execution.events == [("A", {"A": 1}, "local: two\\nlines")]


def test_export_makes_labels_unique(tmp_path):
    one = write_run(tmp_path / "x" / "run", [("A", "local", {"A": 1}, {})])
    two = write_run(tmp_path / "y" / "run", [("B", "local", {"B": 1}, {})])
    export_shiviz([one, two], tmp_path / "out.log")
    executions = read_upload((tmp_path / "out.log").read_text())[2]
    assert [e.label for e in executions] == ["run", "run (2)"]


def test_export_refuses_a_run_without_client_events(tmp_path):
    folder = write_run(tmp_path / "run", [("server", "sync", {"A": 1}, {}), ("A", "join", {}, {})])
    with pytest.raises(ValueError, match="no client events"):
        export_shiviz([folder], tmp_path / "out.log")
    with pytest.raises(ValueError, match="at least one"):
        export_shiviz([], tmp_path / "out.log")
    with pytest.raises(FileNotFoundError):
        export_shiviz([tmp_path / "nothing"], tmp_path / "out.log")
