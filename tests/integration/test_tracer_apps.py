"""Tracer logs of real processes, read by the commands (issue 15, item 1).

``examples/tracer/chain.py`` is run as three separate processes (A -> B -> C and
back over TCP on 127.0.0.1), twice, appending to the same logs; the app logs with
Python's ``logging`` through a TracerHandler. ``examples/tracer/run.py`` (three
processes greeting each other and passing a token) gives a busier execution.
Then ``vclock check``, ``diagram`` and ``merge`` run as commands on the logs. Last,
a client and a Starlette app served by uvicorn trace HTTP requests through the
``x-vclock`` header (TracingMiddleware).
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from vclock import VectorClock
from vclock.tracing import Tracer, parse_runs
from vclock.tracing.asgi import HEADER, TracingMiddleware

from ..helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
CHAIN = ROOT / "examples" / "tracer" / "chain.py"
TIMEOUT = 60


def vclock(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vclock", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def run_chain(logdir: Path, label: str | None = None) -> None:
    """C, then B forwarding to C, then A asking B; each a process of its own."""
    extra = ["--execution", label] if label else []
    started: list[subprocess.Popen[str]] = []
    try:
        port = None
        for name in ("C", "B"):
            args = [sys.executable, str(CHAIN), name, str(logdir), *extra]
            if port is not None:
                args += ["--next", port]
            process = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            started.append(process)
            assert process.stdout is not None
            line = process.stdout.readline()  # blocks until it listens (or dies: "")
            match = re.fullmatch(rf"{name} listening on (\d+)\n", line)
            assert match, (line, process.stderr.read() if process.stderr else "")
            port = match[1]
        assert port is not None
        first = subprocess.run(
            [sys.executable, str(CHAIN), "A", str(logdir), "--first", "--next", port, *extra],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert first.returncode == 0, first.stderr
        assert first.stdout == "A got A -> B -> C\n"
        # the app's own log lines carry the clock (ClockFilter): the TracerHandler,
        # added first, has just made the record event A:4 of the trace
        assert first.stderr.splitlines() == [
            'A {"A":1} starting a request',
            'A {"A":4, "B":5, "C":3} answer: A -> B -> C',
        ]
        for process in started:
            _, err = process.communicate(timeout=TIMEOUT)
            assert process.returncode == 0, err
    finally:
        for process in started:  # only the processes started above, by their Popen
            if process.poll() is None:
                process.kill()
                process.wait()


def test_a_chain_of_three_processes_run_twice_checks_merges_and_draws(tmp_path):
    logs = tmp_path / "logs" / "chain"  # created by the Tracers
    run_chain(logs)
    run_chain(logs)
    runs = parse_runs((logs / "B.log").read_text())
    assert [r.label for r in runs] == ["execution 1", "execution 2"]

    checked = vclock("check", logs)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("OK: causally consistent") == 2
    assert checked.stdout.count("messages          4") == 2

    merged = vclock(
        "merge", logs / "A.log", logs / "B.log", logs / "C.log", "-o", tmp_path / "m.log"
    )
    assert merged.returncode == 0, merged.stderr
    assert "Wrote 28 events of 2 execution(s)" in merged.stdout
    executions = parse_runs((tmp_path / "m.log").read_text())
    assert [(r.label, len(r.records)) for r in executions] == [
        ("execution 1", 14),
        ("execution 2", 14),
    ]
    # causal order: the request goes down the chain before the answers come up
    order = [(r.host, r.description) for r in executions[1].records]
    hops = [o for o in order if o[1] in ("request in", "answer in")]
    assert hops == [
        ("B", "request in"),
        ("C", "request in"),
        ("B", "answer in"),
        ("A", "answer in"),
    ]

    drawn = vclock("diagram", logs, "--execution", "execution 2", "-o", tmp_path / "d.svg")
    assert drawn.returncode == 0, drawn.stderr
    assert len(re.findall(r'<polyline class="message" ', (tmp_path / "d.svg").read_text())) == 4

    # the merged file is itself a log the commands read
    assert vclock("check", tmp_path / "m.log").returncode == 0


def test_a_chain_log_with_a_process_left_out_fails_the_check(tmp_path):
    run_chain(tmp_path, "only-run")
    checked = vclock("check", tmp_path / "A.log", tmp_path / "B.log")
    assert checked.returncode == 1
    assert "no send of C#" in checked.stdout


def test_the_token_ring_example_checks_and_merges_as_jsonl(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "tracer" / "run.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    logs = [tmp_path / f"{name}.log" for name in "ABC"]
    checked = vclock("check", *logs)
    assert checked.returncode == 0, checked.stdout
    assert "messages          12" in checked.stdout  # 6 greetings + 6 token hops
    merged = vclock("merge", *logs, "-o", tmp_path / "ring.jsonl")
    assert merged.returncode == 0, merged.stderr
    again = vclock("check", tmp_path / "ring.jsonl")
    assert again.returncode == 0 and "messages          12" in again.stdout
    # a corrupted record: the check fails with 1, a broken file with 2
    text = logs[1].read_text().replace('"B":3}', '"B":5}', 1)
    logs[1].write_text(text)
    assert vclock("check", *logs).returncode == 1
    logs[2].write_text("C {\n")
    assert vclock("check", *logs).returncode == 2


# The clock in HTTP headers: TracingMiddleware on a real uvicorn server


@pytest.fixture
def traced_web_app(tmp_path):
    """A Starlette app behind TracingMiddleware, served by uvicorn on port 0."""
    uvicorn = pytest.importorskip("uvicorn")
    starlette = pytest.importorskip("starlette.applications")
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request):
        return PlainTextResponse(f"hello {request.query_params.get('name', '')}")

    tracer = Tracer("web", tmp_path / "web.log")
    app = TracingMiddleware(starlette.Starlette(routes=[Route("/hello", hello)]), tracer)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, "uvicorn to start")
        yield server.servers[0].sockets[0].getsockname()[1], tracer
    finally:
        server.should_exit = True
        thread.join(timeout=TIMEOUT)
        tracer.close()


def get(port: int, path: str, headers: dict[str, str]) -> tuple[int, str, str | None]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, response.read().decode(), response.headers.get(HEADER)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), error.headers.get(HEADER)


def test_a_client_and_an_asgi_app_trace_requests_through_a_header(tmp_path, traced_web_app):
    port, web = traced_web_app
    with Tracer("client", tmp_path / "client.log") as client:
        for name in ("ann", "bob"):
            status, body, answer = get(
                port, f"/hello?name={name}", {HEADER: client.send_header(f"ask {name}")}
            )
            assert (status, body) == (200, f"hello {name}")
            assert answer is not None
            client.receive_header(f"answer for {name}", answer)
        assert client.clock == VectorClock({"client": 4, "web": 4})
        # untraced requests pass through, untraced
        assert get(port, "/hello?name=x", {})[:2] == (200, "hello x")
        # a bad header is refused, and nothing is logged
        status, body, _ = get(port, "/hello", {HEADER: "nonsense"})
        assert status == 400 and "bad x-vclock header" in body
    web.close()
    checked = vclock("check", tmp_path / "client.log", tmp_path / "web.log")
    assert checked.returncode == 0, checked.stdout
    assert "messages          4" in checked.stdout
