"""Tracer logs of real processes, read by the commands (issue 15, item 1).

``examples/tracer/chain.py`` is run as three separate processes (A -> B -> C and
back over TCP on 127.0.0.1), twice, appending to the same logs; the app logs with
Python's ``logging`` through a TracerHandler. ``examples/tracer/run.py`` (three
processes greeting each other and passing a token) gives a busier execution.
Then ``vclock check``, ``diagram`` and ``merge`` run as commands on the logs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from vclock.tracing import parse_runs

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
    assert len(re.findall(r'<line class="message" ', (tmp_path / "d.svg").read_text())) == 4

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
