"""Tracer: GoVector's three verbs around an immutable VectorClock, a lock and a log."""

from __future__ import annotations

import io
import logging
import threading

import msgspec
import pytest

from vclock import VClockError, VectorClock
from vclock.tracing import (
    ClockFilter,
    Tracer,
    TracerHandler,
    UnpackError,
    format_record,
    parse_runs,
)


@pytest.fixture
def tracers(tmp_path):
    made = {pid: Tracer(pid, tmp_path / f"{pid}.log") for pid in "ABC"}
    yield made
    for tracer in made.values():
        tracer.close()


def clock(**entries: int) -> VectorClock:
    return VectorClock(entries)


# The clock rules


def test_a_new_tracer_has_an_empty_clock(tracers):
    assert tracers["A"].clock == VectorClock()


def test_local_event_and_send_tick_the_own_entry(tracers):
    a = tracers["A"]
    assert a.local_event("one") == clock(A=1)
    a.prepare_send("two", None)
    assert a.clock == clock(A=2)


def test_three_tracers_exchanging_messages_get_the_textbook_clocks(tracers):
    a, b, c = tracers["A"], tracers["B"], tracers["C"]
    to_b = a.prepare_send("A to B", {"n": 1})  # A1
    b.local_event("B works")  # B1
    assert b.unpack_receive("B got A's", to_b) == {"n": 1}
    assert b.clock == clock(A=1, B=2)
    to_c = b.prepare_send("B to C", [1, 2, 3])
    assert b.clock == clock(A=1, B=3)
    c.local_event("C1")
    c.local_event("C2")
    assert c.unpack_receive("C got B's", to_c) == [1, 2, 3]
    assert c.clock == clock(A=1, B=3, C=3)
    to_a = c.prepare_send("C to A", "hi")
    a.local_event("A2")
    assert a.unpack_receive("A got C's", to_a) == "hi"
    assert a.clock == clock(A=3, B=3, C=4)


def test_receive_merges_then_ticks(tracers):
    a, b = tracers["A"], tracers["B"]
    for _ in range(5):
        b.local_event("B is ahead")
    stale = a.prepare_send("old news", None)  # A1, concurrent with B's five events
    b.unpack_receive("late", stale)
    # max({B:5}, {A:1}) = {A:1, B:5}, then B ticks
    assert b.clock == clock(A=1, B=6)


def test_receiving_an_old_message_still_ticks_once(tracers):
    a, b = tracers["A"], tracers["B"]
    first = a.prepare_send("first", 1)
    second = a.prepare_send("second", 2)
    b.unpack_receive("second", second)
    b.unpack_receive("first, delivered late", first)
    assert b.clock == clock(A=2, B=2)


def test_the_wire_form_is_pid_clock_payload(tracers):
    data = tracers["A"].prepare_send("x", {"k": "v"})
    assert msgspec.json.decode(data) == {"pid": "A", "clock": {"A": 1}, "payload": {"k": "v"}}


def test_msgpack_encoding_round_trips(tmp_path):
    with (
        Tracer("A", tmp_path / "A.log", encoding="msgpack") as a,
        Tracer("B", tmp_path / "B.log", encoding="msgpack") as b,
    ):
        data = a.prepare_send("x", {"n": [1, 2]})
        assert b.unpack_receive("y", data) == {"n": [1, 2]}
        assert b.clock == clock(A=1, B=1)
        with pytest.raises(UnpackError):
            b.unpack_receive("json to a msgpack tracer", b'{"pid":"A","clock":{"A":1}}')


# Errors are raised, never swallowed


BAD_MESSAGES = [
    b"",
    b"garbage",
    b"[]",
    b"{}",
    b'{"clock": {"A": 1}}',  # no pid
    b'{"pid": "A"}',  # no clock
    b'{"pid": 7, "clock": {"A": 1}}',
    b'{"pid": "A", "clock": {"A": "1"}}',
    b'{"pid": "A", "clock": {"A": -1}}',
    b'{"pid": "A", "clock": {"": 1}}',
    b'{"pid": "A", "clock": {"A": 0}}',  # the send is not counted
    b'{"pid": "A", "clock": {"B": 2}}',
    b'{"pid": "", "clock": {"A": 1}}',
    b'{"pid": "A", "clock": {"A": 1}, "payload": ',
    b"\xff\xfe",
]


@pytest.mark.parametrize("data", BAD_MESSAGES)
def test_bad_bytes_raise_unpack_error_and_change_nothing(tracers, data):
    b = tracers["B"]
    b.local_event("before")
    log_before = b.log_path.read_text()
    with pytest.raises(UnpackError, match=r"not a traced message \(\d+ bytes\)"):
        b.unpack_receive("bad", data)
    assert b.clock == clock(B=1)
    assert b.log_path.read_text() == log_before


def test_unpack_error_is_a_vclock_error_and_a_value_error(tracers):
    with pytest.raises(UnpackError) as info:
        tracers["A"].unpack_receive("bad", b'{"pid": "B", "clock": {"B": "x"}}')
    assert isinstance(info.value, VClockError)
    assert isinstance(info.value, ValueError)
    assert info.value.size == 33
    assert "$.clock" in str(info.value)  # msgspec's path to the bad field


def test_a_payload_msgspec_cannot_encode_raises_type_error_and_changes_nothing(tracers):
    a = tracers["A"]
    with pytest.raises(TypeError, match="cannot encode the payload"):
        a.prepare_send("bad", object())
    assert a.clock == VectorClock()
    assert a.log_path.read_text() == ""


@pytest.mark.parametrize("pid", ["", "A B", "tab\there", "x" * 65])
def test_a_process_id_must_be_a_shiviz_host_name(tmp_path, pid):
    with pytest.raises(ValueError):
        Tracer(pid, tmp_path / "x.log")


def test_an_unknown_encoding_is_refused(tmp_path):
    with pytest.raises(ValueError, match="encoding"):
        Tracer("A", tmp_path / "A.log", encoding="gob")  # type: ignore[arg-type]


# The log


def test_the_log_holds_one_shiviz_record_per_event(tracers):
    a, b = tracers["A"], tracers["B"]
    a.local_event("start")
    b.unpack_receive("got it", a.prepare_send("send it", None))
    assert a.log_path.read_text() == format_record("A", {"A": 1}, "start") + format_record(
        "A", {"A": 2}, "send it"
    )
    assert b.log_path.read_text() == 'B {"A":2, "B":1}\ngot it\n'


def test_the_log_is_truncated_when_a_tracer_opens_it(tmp_path):
    with Tracer("A", tmp_path / "A.log") as a:
        a.local_event("first run")
    with Tracer("A", tmp_path / "A.log") as a:
        a.local_event("second run")
    assert (tmp_path / "A.log").read_text() == 'A {"A":1}\nsecond run\n'


def test_missing_folders_of_the_log_are_created(tmp_path):
    with Tracer("A", tmp_path / "logs" / "today" / "A.log") as a:
        a.local_event("x")
    assert (tmp_path / "logs" / "today" / "A.log").read_text() == 'A {"A":1}\nx\n'


def test_append_keeps_earlier_executions_and_numbers_the_new_one(tmp_path):
    path = tmp_path / "A.log"
    for run in (1, 2, 3):
        with Tracer("A", path, append=True) as a:
            assert a.execution == f"execution {run}"
            a.local_event(f"run {run}")
    assert path.read_text() == (
        '=== execution 1 ===\nA {"A":1}\nrun 1\n'
        '\n=== execution 2 ===\nA {"A":1}\nrun 2\n'
        '\n=== execution 3 ===\nA {"A":1}\nrun 3\n'
    )
    runs = parse_runs(path.read_text())
    assert [(r.label, [x.description for x in r.records]) for r in runs] == [
        ("execution 1", ["run 1"]),
        ("execution 2", ["run 2"]),
        ("execution 3", ["run 3"]),
    ]


def test_append_takes_a_label_and_only_with_append(tmp_path):
    with Tracer("A", tmp_path / "A.log", append=True, execution="monday") as a:
        a.local_event("x")
    assert (tmp_path / "A.log").read_text().startswith("=== monday ===\n")
    with pytest.raises(ValueError, match="append=True"):
        Tracer("A", tmp_path / "B.log", execution="monday")
    with pytest.raises(ValueError, match="one non-empty line"):
        Tracer("A", tmp_path / "C.log", append=True, execution="two\nlines")


# Python's logging


@pytest.fixture
def app_logger():
    logger = logging.getLogger(f"test-app-{id(object())}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)


def test_a_tracer_handler_makes_each_log_record_a_local_event(tmp_path, app_logger):
    with Tracer("A", tmp_path / "A.log") as a:
        app_logger.addHandler(TracerHandler(a, level=logging.INFO))
        app_logger.info("cache miss for %s", "k7")
        app_logger.debug("below the handler's level")
        a.prepare_send("send", None)
        app_logger.warning("slow\nreply")
    assert (tmp_path / "A.log").read_text() == (
        'A {"A":1}\nINFO cache miss for k7\nA {"A":2}\nsend\nA {"A":3}\nWARNING slow\\nreply\n'
    )


def test_a_closed_tracer_handler_reports_like_a_failing_handler(tmp_path, app_logger):
    a = Tracer("A", tmp_path / "A.log")
    handler = TracerHandler(a)
    failures = []
    handler.handleError = failures.append  # type: ignore[method-assign]
    app_logger.addHandler(handler)
    a.close()
    app_logger.error("after close")
    assert [record.getMessage() for record in failures] == ["after close"]


def test_a_clock_filter_puts_the_clock_in_every_line(tmp_path, app_logger):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(vclock_pid)s %(vclock)s %(message)s"))
    with Tracer("B", tmp_path / "B.log") as b, Tracer("A", tmp_path / "A.log") as a:
        handler.addFilter(ClockFilter(b))
        app_logger.addHandler(handler)
        app_logger.info("starting")
        b.unpack_receive("got", a.prepare_send("hi", None))
        app_logger.info("handled")
    assert stream.getvalue() == 'B {} starting\nB {"A":1, "B":1} handled\n'
    assert (tmp_path / "B.log").read_text() == 'B {"A":1, "B":1}\ngot\n'


def test_close_is_idempotent_and_events_after_it_raise(tmp_path):
    with Tracer("A", tmp_path / "A.log") as a:
        a.local_event("x")
    a.close()
    for call in (
        lambda: a.local_event("late"),
        lambda: a.prepare_send("late", 1),
        lambda: a.unpack_receive("late", b'{"pid":"B","clock":{"B":1}}'),
    ):
        with pytest.raises(RuntimeError, match="closed"):
            call()
    assert a.clock == clock(A=1)


# Threads


def test_threads_sharing_a_tracer_lose_no_tick_and_log_in_clock_order(tmp_path):
    threads, per_thread = 8, 150
    with Tracer("A", tmp_path / "A.log") as a, Tracer("B", tmp_path / "B.log") as b:
        message = b.prepare_send("one message for everyone", None)
        start = threading.Barrier(threads)

        def work(n: int) -> None:
            start.wait()
            for i in range(per_thread):
                match i % 3:
                    case 0:
                        a.local_event(f"thread {n} local {i}")
                    case 1:
                        a.prepare_send(f"thread {n} send {i}", i)
                    case _:
                        a.unpack_receive(f"thread {n} receive {i}", message)

        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    events = threads * per_thread
    assert a.clock == clock(A=events, B=1)
    lines = (tmp_path / "A.log").read_text().splitlines()
    assert len(lines) == 2 * events
    own = [msgspec.json.decode(line.split(" ", 1)[1])["A"] for line in lines[::2]]
    assert own == list(range(1, events + 1))


# The clock in a header


def test_a_header_carries_the_clock_in_ascii_and_counts_as_a_message(tmp_path):
    with Tracer("é", tmp_path / "e.log") as e, Tracer("B", tmp_path / "B.log") as b:
        value = e.send_header("GET /")
        assert value == '{"pid":"\\u00e9","clock":{"\\u00e9":1}}'
        assert value.isascii()
        assert b.receive_header("request", value) == clock(**{"é": 1, "B": 1})
        assert b.receive_header("again, as bytes", value.encode()) == clock(**{"é": 1, "B": 2})


@pytest.mark.parametrize("value", ["", "{}", '{"pid":"A","clock":{"A":0}}', "not json", "\u20ac"])
def test_a_bad_header_raises_unpack_error_and_changes_nothing(tracers, value):
    b = tracers["B"]
    with pytest.raises(UnpackError):
        b.receive_header("bad", value)
    assert b.clock == VectorClock()
    assert b.log_path.read_text() == ""
