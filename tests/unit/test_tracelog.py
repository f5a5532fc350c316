"""GoVector/ShiViz logs are first-class: one reader, messages read from the clocks,
and ``vclock check``, ``diagram``, ``merge`` and ``export shiviz`` on them.

The GoVector logs here are written by hand, byte for byte as GoVector writes them
(``govec/govec.go`` ``logThis``: ``pid {"a":1, "b":2}`` then the message line;
``InitGoVector`` logs "Initialization Complete" at 1; ``UnpackReceive`` ticks,
then merges; ``AppendLog`` starts each execution with a line holding one space
and ``=== Execution #<date>  ===``; ``UseTimestamps`` puts the Unix time in
nanoseconds first; the merge tool, root ``govec.go``, writes the regex, an empty
line, then the files one after the other).
"""

from __future__ import annotations

import logging
import random
import re
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from vclock.cli import cli
from vclock.events import EVERYONE
from vclock.tools.checker import check
from vclock.tools.eventlog import EventLog
from vclock.tools.merge import merge
from vclock.tools.tracelog import SERVER_ALIAS, detect_format, infer_events, read_trace
from vclock.tracing import SHIVIZ_REGEX, Tracer, parse_records, parse_runs

# GoVector's ClientServer example: the client sends, the server answers.
CLIENT = """\
client {"client":1}
Initialization Complete
client {"client":2}
Sending message to server
client {"client":3, "server":3}
Received reply from server
"""
SERVER = """\
server {"server":1}
Initialization Complete
server {"client":2, "server":2}
Received message from client
server {"client":2, "server":3}
Sending reply to client
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def govector(tmp_path: Path) -> list[Path]:
    return [
        write(tmp_path / "client-Log.txt", CLIENT),
        write(tmp_path / "server-Log.txt", SERVER),
    ]


def run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def kinds(events) -> list[tuple[str, str, str | None, str | None]]:
    return [(e.pid, e.kind, e.msg, e.peer) for e in events]


# Reading and inferring


def test_the_format_is_detected_from_the_first_line(tmp_path, govector):
    log = EventLog(tmp_path, "A")
    log.record("local", {"A": 1})
    log.close()
    assert detect_format(tmp_path / "A.jsonl") == "events"
    assert detect_format(govector[0]) == "shiviz"
    merged = write(tmp_path / "m.log", f"{SHIVIZ_REGEX}\n\n{CLIENT}")
    assert detect_format(merged) == "shiviz"


def test_a_govector_receive_is_matched_to_its_send_by_the_clocks(govector):
    [execution] = read_trace(govector).executions
    assert kinds(execution.events) == [
        ("client", "local", None, None),
        ("client", "send", "client#2", SERVER_ALIAS),
        ("client", "receive", "server'#3", SERVER_ALIAS),
        (SERVER_ALIAS, "local", None, None),
        (SERVER_ALIAS, "receive", "client#2", "client"),
        (SERVER_ALIAS, "send", "server'#3", "client"),
    ]
    assert execution.refs[1] == "client-Log.txt:3"
    assert execution.events[1].desc == "Sending message to server"


def test_per_process_files_a_govector_merge_and_a_folder_read_alike(tmp_path, govector):
    merged = write(tmp_path / "shiviz.log", f"{SHIVIZ_REGEX}\n\n{CLIENT}{SERVER}")
    apart = read_trace(govector).executions[0].events
    assert read_trace([merged]).executions[0].events == apart
    folder = tmp_path / "logs"
    folder.mkdir()
    for path in govector:
        write(folder / path.name, path.read_text())
    assert read_trace([folder]).executions[0].events == apart


def test_executions_are_told_apart_by_their_delimiters_across_files(tmp_path):
    # GoVector's AppendLog: a line with one space, then the delimiter, each run.
    def appended(text: str) -> str:
        return "".join(
            f" \n=== Execution #{day} Dec  7 10:00:00 UTC 2026  ===\n{text}"
            for day in ("Mon", "Tue")
        )

    files = [
        write(tmp_path / "client-Log.txt", appended(CLIENT)),
        write(tmp_path / "server-Log.txt", appended(SERVER)),
    ]
    trace = read_trace(files)
    assert [e.label for e in trace.executions] == [
        "Execution #Mon Dec  7 10:00:00 UTC 2026 ",
        "Execution #Tue Dec  7 10:00:00 UTC 2026 ",
    ]
    assert all(len(e.events) == 6 for e in trace.executions)
    code, out = run("check", *files)
    assert code == 0, out
    assert out.count("OK: causally consistent") == 2


def test_govector_timestamps_are_read(tmp_path):
    log = write(
        tmp_path / "a-Log.txt",
        '1733565600000000000 a {"a":1}\nInitialization Complete\n',
    )
    [event] = read_trace([log]).executions[0].events
    assert event.ts == "2024-12-07T10:00:00+00:00"
    merged = write(
        tmp_path / "ts.log",
        "(?<timestamp>\\d+) (?<host>\\S*) (?<clock>{.*})\\n(?<event>.*)\n\n" + log.read_text(),
    )
    assert len(parse_records(merged.read_text())) == 1


def test_a_message_received_by_two_processes_is_sent_to_everyone():
    records = parse_records(
        'a {"a":1}\nping\nb {"a":1, "b":1}\ngot it\nc {"a":1, "c":1}\ngot it too\n'
    )
    assert kinds(infer_events(records)) == [
        ("a", "send", "a#1", EVERYONE),
        ("b", "receive", "a#1", "a"),
        ("c", "receive", "a#1", "a"),
    ]


def test_a_receive_that_brings_nothing_new_reads_as_a_local_event():
    # b learns a#1 through c first; a's message to b itself then adds nothing.
    records = parse_records(
        'a {"a":1}\nto b and c\n'
        'c {"a":1, "c":1}\nfrom a\nc {"a":1, "c":2}\nto b\n'
        'b {"a":1, "b":1, "c":2}\nfrom c\nb {"a":1, "b":2, "c":2}\nfrom a, late\n'
    )
    assert [e.kind for e in infer_events(records)] == [
        "send",
        "receive",
        "send",
        "receive",
        "local",
    ]


def test_sources_in_both_formats_are_refused(tmp_path, govector):
    log = EventLog(tmp_path, "A")
    log.record("local", {"A": 1})
    log.close()
    with pytest.raises(ValueError, match="mix vclock event logs"):
        read_trace([tmp_path / "A.jsonl", govector[0]])


# vclock check


def test_check_passes_govector_logs_and_exits_0(govector):
    code, out = run("check", *govector)
    assert code == 0, out
    assert "OK: causally consistent" in out
    assert "messages          2" in out


@pytest.mark.parametrize(
    ("server_log", "rule"),
    [
        # own entry skips 2
        (SERVER.replace('{"client":2, "server":3}', '{"client":2, "server":4}'), "own-entry"),
        # the reply's receive cannot know client:5, which was never logged
        (SERVER.replace('{"client":2, "server":3}', '{"client":5, "server":3}'), "unmatched"),
        # knows of the client's receive of the reply before sending the reply
        (
            SERVER.replace('{"client":2, "server":2}', '{"client":3, "server":2}').replace(
                '{"client":2, "server":3}', '{"client":3, "server":3}'
            ),
            "cycle",
        ),
        # the clock goes back: client 2 -> 1
        (
            SERVER.replace('{"client":2, "server":3}', '{"client":1, "server":3}'),
            "clock-regressed",
        ),
    ],
)
def test_check_finds_inconsistent_govector_logs_and_exits_1(tmp_path, server_log, rule):
    files = [write(tmp_path / "client-Log.txt", CLIENT), write(tmp_path / "s-Log.txt", server_log)]
    code, out = run("check", *files)
    assert code == 1, out
    assert "FAILED" in out and f"[{rule}" in out


def test_check_finds_a_receive_that_knows_more_than_it_was_sent(tmp_path):
    # The server's receive claims third#1, which nobody sent it.
    files = [
        write(tmp_path / "client-Log.txt", CLIENT.replace('"server":3}', '"server":3, "third":1}')),
        write(
            tmp_path / "server-Log.txt",
            SERVER.replace('"client":2, "server":2}', '"client":2, "server":2, "third":1}').replace(
                '"client":2, "server":3}', '"client":2, "server":3, "third":1}'
            ),
        ),
        write(tmp_path / "third-Log.txt", 'third {"third":1}\nInitialization Complete\n'),
    ]
    code, out = run("check", *files)
    assert code == 1, out
    assert "[causality] server-Log.txt:3" in out


def test_check_names_a_missing_log(govector):
    code, out = run("check", govector[0])
    assert code == 1
    assert "no send of server'#3 in the logs" in out


@pytest.mark.parametrize(
    "text",
    [
        "client {not json}\nx\n",
        'client {"client":1}\n',  # no description line
        "just some text\n",
        "(?<event>.*)\\n(?<host>\\S*) (?<clock>{.*})\n\n",  # ShiViz's default regex
    ],
)
def test_check_exits_2_on_a_log_it_cannot_read(tmp_path, text):
    code, out = run("check", write(tmp_path / "bad.log", text))
    assert code == 2, out
    assert "Error:" in out


def test_check_exits_2_on_a_broken_event_log(tmp_path):
    code, out = run("check", write(tmp_path / "A.jsonl", '{"pid": "A"\n'))
    assert code == 2, out
    assert "not an event" in out


# vclock diagram


def test_diagram_draws_arrows_from_govector_sends_to_receives(tmp_path, govector):
    out = tmp_path / "d.svg"
    code, text = run("diagram", *govector, "-o", out)
    assert code == 0, text
    svg = out.read_text()
    arrows = re.findall(r'<polyline class="message" [^>]*data-msg="([^"]*)"', svg)
    assert sorted(arrows) == ["client#2", "server&#x27;#3"]


def test_diagram_asks_which_execution_of_several(tmp_path):
    two = write(tmp_path / "two.log", f"=== one ===\n{CLIENT}{SERVER}=== two ===\n{CLIENT}{SERVER}")
    code, out = run("diagram", two, "-o", tmp_path / "d.html")
    assert code == 1 and "2 executions" in out
    code, out = run("diagram", two, "--execution", "two", "-o", tmp_path / "d.html")
    assert code == 0, out


# vclock merge


def test_merge_writes_one_shiviz_log_in_causal_order(tmp_path, govector):
    out = tmp_path / "merged.log"
    code, text = run("merge", *govector, "-o", out)
    assert code == 0, text
    lines = out.read_text().split("\n")
    assert lines[0] == SHIVIZ_REGEX and lines[1] == ""
    records = parse_records(out.read_text())
    assert len(records) == 6
    order = [(r.host, r.description) for r in records]
    assert order.index(("client", "Sending message to server")) < order.index(
        ("server", "Received message from client")
    )
    assert order.index(("server", "Sending reply to client")) < order.index(
        ("client", "Received reply from server")
    )

    # and it reads back as the same events, in another order
    def key(e):
        return (e.pid, e.clock[e.pid])

    back = read_trace([out]).executions[0].events
    assert sorted(back, key=key) == sorted(read_trace(govector).executions[0].events, key=key)


def test_merge_to_jsonl_writes_the_messages_down(tmp_path, govector):
    out = tmp_path / "merged.jsonl"
    code, text = run("merge", *govector, "-o", out)
    assert code == 0, text
    assert detect_format(out) == "events"
    [execution] = read_trace([out]).executions
    assert ("client", "send", "client#2", SERVER_ALIAS) in kinds(execution.events)
    assert check(out).ok


def test_merge_keeps_executions_apart(tmp_path):
    files = [
        write(tmp_path / "c.log", f"=== one ===\n{CLIENT}=== two ===\n{CLIENT}"),
        write(tmp_path / "s.log", f"=== one ===\n{SERVER}=== two ===\n{SERVER}"),
    ]
    out = tmp_path / "merged.log"
    code, text = run("merge", *files, "-o", out)
    assert code == 0, text
    assert [(r.label, len(r.records)) for r in parse_runs(out.read_text())] == [
        ("one", 6),
        ("two", 6),
    ]
    code, text = run("merge", *files, "-o", tmp_path / "m.jsonl")
    assert code == 1 and "one execution" in text


def test_merge_refuses_what_shiviz_cannot_load_and_writes_nothing(tmp_path, govector):
    out = tmp_path / "merged.log"
    code, text = run("merge", govector[0], "-o", out)
    assert code == 1 and "'server'" in text
    assert not out.exists()


def test_export_shiviz_takes_govector_logs_too(tmp_path, govector):
    out = tmp_path / "x.log"
    code, text = run("export", "shiviz", govector[0].parent, "-o", out)
    assert code == 0, text
    assert len(parse_records(out.read_text())) == 6


# Tracer executions, any schedule


def traced_run(folder: Path, seed: int, steps: int) -> tuple[list[Path], set[tuple[str, str]]]:
    """Three Tracers exchanging messages in a random order, delivered in any order.

    Returns their logs and the messages whose receive learnt the send (the
    receiver did not already know of it): ``(send msg id, receiver)``.
    """
    rng = random.Random(seed)
    names = ["A", "B", "C"]
    tracers = {n: Tracer(n, folder / f"{n}.log") for n in names}
    pending: dict[str, list[tuple[str, bytes]]] = {n: [] for n in names}
    learnt: set[tuple[str, str]] = set()
    for _ in range(steps):
        name = rng.choice(names)
        tracer = tracers[name]
        action = rng.random()
        if action < 0.4 and pending[name]:
            sent_id, data = pending[name].pop(rng.randrange(len(pending[name])))
            sender, _, n = sent_id.partition("#")
            knew = tracer.clock[sender] >= int(n)
            tracer.unpack_receive(f"receive {sent_id}", data)
            if not knew:
                learnt.add((sent_id, name))
        elif action < 0.8:
            to = rng.choice([n for n in names if n != name])
            data = tracer.prepare_send(f"send to {to}", None)
            pending[to].append((f"{name}#{tracer.clock[name]}", data))
        else:
            tracer.local_event("work")
    for tracer in tracers.values():
        tracer.close()
    return [folder / f"{n}.log" for n in names if (folder / f"{n}.log").stat().st_size], learnt


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 60))
def test_any_tracer_run_checks_ok_and_its_messages_are_read_from_the_clocks(seed, steps):
    with tempfile.TemporaryDirectory() as folder:
        logs, learnt = traced_run(Path(folder), seed, steps)
        if not logs:
            return
        [execution] = read_trace(logs).executions
        report = check(execution)
        assert report.ok, report.violations
        received = {(e.msg, e.pid) for e in execution.events if e.kind == "receive"}
        assert received == learnt
        # merged, as ShiViz or as an event log, the same events read back
        for name in ("merged.log", "merged.jsonl"):
            merge(logs, Path(folder) / name)
            [back] = read_trace([Path(folder) / name]).executions
            assert sorted(back.events, key=by_clock) == sorted(execution.events, key=by_clock)


def by_clock(event):
    return (event.pid, event.clock[event.pid])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), steps=st.integers(2, 40), data=st.data())
def test_a_tracer_run_with_one_clock_entry_raised_fails_the_check(seed, steps, data):
    with tempfile.TemporaryDirectory() as folder:
        logs, _ = traced_run(Path(folder), seed, steps)
        if not logs:
            return
        path = data.draw(st.sampled_from(logs))
        records = parse_records(path.read_text())
        index = data.draw(st.integers(0, len(records) - 1))
        host = records[index].host
        lines = path.read_text().split("\n")
        head = lines[2 * index]
        own = f'"{host}":{records[index].clock[host]}'
        lines[2 * index] = head.replace(own, f'"{host}":{records[index].clock[host] + 1}')
        path.write_text("\n".join(lines))
        code, out = run("check", *logs)
        assert code == 1, out


# The examples of docs/tracing.md, run


DOC = (Path(__file__).resolve().parents[2] / "docs" / "tracing.md").read_text(encoding="utf-8")


def doc_blocks(kind: str) -> list[tuple[str, str]]:
    """Each ```kind block of docs/tracing.md with the line before it."""
    found = re.finditer(rf"([^\n]*)\n\n```{kind}\n(.*?)```", DOC, re.DOTALL)
    return [(m[1], m[2]) for m in found]


def test_the_check_draw_merge_examples_of_the_docs_do_what_they_show(tmp_path, monkeypatch):
    files = {name[1:-2]: text for name, text in doc_blocks("text") if re.fullmatch(r"`\S+`:", name)}
    assert set(files) == {"client-Log.txt", "store-Log.txt"}
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        write(tmp_path / name, text)
    sessions = [text for _, text in doc_blocks("console")]
    ran = 0
    for session in sessions:
        for command in re.split(r"^\$ ", session, flags=re.MULTILINE)[1:]:
            line, _, shown = command.partition("\n")
            args = line.split()
            assert args[0] == "vclock"
            code, out = run(*args[1:])
            assert out == shown, line
            assert code == (1 if "FAILED" in shown else 0)
            ran += 1
    assert ran == 4
    merged = next(
        text
        for before, text in doc_blocks("text")
        if before.endswith("every send before its receive:")
    )
    assert (tmp_path / "merged.log").read_text() == merged
    assert (tmp_path / "trace.html").exists()


def test_the_logging_example_of_the_docs_writes_what_the_docs_say(tmp_path, monkeypatch):
    [code] = [text for _, text in doc_blocks("python") if "TracerHandler(tracer)" in text]
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    try:
        exec(compile(code, "docs/tracing.md", "exec"), namespace)
    finally:
        logging.getLogger("app").handlers.clear()
        namespace["tracer"].close()  # type: ignore[attr-defined]
    assert (tmp_path / "logs" / "A.log").read_text() == 'A {"A":1}\nWARNING cache miss for k7\n'
    assert 'A {"A":1}` then `WARNING cache miss for k7`' in DOC
