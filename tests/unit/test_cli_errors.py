"""Errors a user can make on the command line, each reported in one line that names
the option at fault (issue 15, item 3). Run through click's CliRunner: every case
here fails before any socket is opened or process started; those that need a
listening server are in tests/integration/test_cli_errors.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from vclock.cli import cli
from vclock.tools.eventlog import EventLog, iter_events


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def one_error_line(result: Result) -> str:
    """The one line that says what went wrong (click's usage lines aside)."""
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.fixture
def in_the_way(tmp_path: Path) -> Path:
    """A file where a folder should be: unusable as a parent, even for root."""
    path = tmp_path / "a-file"
    path.write_text("not a folder\n")
    return path


# --port and --server: 0-65535


@pytest.mark.parametrize(
    "args",
    [
        ["server", "--port", "70000"],  # the kernel would take 70000 % 65536 = 4464
        ["server", "--port", "-1"],
        ["client", "--port", "65536"],
        ["client", "--port", "-1"],
    ],
)
def test_a_port_outside_0_to_65535_is_a_usage_error_naming_port(args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "'--port'" in line and "0<=x<=65535" in line, line


def test_a_server_address_with_a_port_above_65535_names_server() -> None:
    result = run("client", "--server", "127.0.0.1:70000")
    assert result.exit_code == 2, result.output
    assert "--server" in one_error_line(result)


# --interval


@pytest.mark.parametrize("interval", ["5-2", "soon", "0-1"])
def test_a_bad_interval_names_interval(interval: str) -> None:
    result = run("client", "--interval", interval)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "--interval" in line and repr(interval) in line, line


# --state, --log, --data: a file that cannot be used


@pytest.mark.parametrize(
    "content", [b"not a database\n", bytes(range(256)) * 8, b"SQLite format 3\x00" + b"\x01" * 200]
)
def test_a_state_file_that_is_not_one_is_refused_in_one_line_naming_state(
    tmp_path: Path, content: bytes
) -> None:
    state = tmp_path / "A.state"
    state.write_bytes(content)
    result = run("client", "--id", "A", "--port", "1", "--state", str(state))
    assert result.exit_code == 1, result.output
    line = one_error_line(result)
    assert line.startswith(f"Error: --state {state}: "), line
    assert "not a vclock client state file" in line, line
    assert state.read_bytes() == content  # left as it was


def test_a_state_file_that_cannot_be_opened_names_state(in_the_way: Path) -> None:
    state = in_the_way / "A.state"
    result = run("client", "--id", "A", "--port", "1", "--state", str(state))
    assert result.exit_code == 1, result.output
    line = one_error_line(result)
    assert line.startswith(f"Error: --state {state}: cannot open"), line
    assert "Not a directory" in line, line


@pytest.mark.parametrize("command", ["server", "client"])
def test_a_log_folder_that_cannot_be_made_names_log(in_the_way: Path, command: str) -> None:
    logs = in_the_way / "logs"
    who = ["--id", "A"] if command == "client" else []
    result = run(command, *who, "--port", "0", "--log", str(logs))
    assert result.exit_code == 1, result.output
    line = one_error_line(result)
    assert line.startswith(f"Error: --log {logs}: cannot write the event log"), line
    assert "Not a directory" in line and "--port" not in line, line


@pytest.mark.parametrize("name", ["data", "vclock.sqlite3"])
def test_a_data_path_that_cannot_be_used_names_data(in_the_way: Path, name: str) -> None:
    data = in_the_way / name
    result = run("server", "--port", "0", "--data", str(data))
    assert result.exit_code == 1, result.output
    line = one_error_line(result)
    assert line.startswith(f"Error: --data {data}: "), line
    assert "Not a directory" in line and "--port" not in line, line


def test_a_data_file_that_is_not_a_database_names_data(tmp_path: Path) -> None:
    data = tmp_path / "vclock.sqlite3"
    data.write_bytes(b"not a database, " * 100)
    result = run("server", "--port", "0", "--data", str(data))
    assert result.exit_code == 1, result.output
    line = one_error_line(result)
    assert line.startswith(f"Error: --data {data}: "), line
    assert "cannot be read as a vclock database" in line, line


# vclock check: 0 consistent, 1 inconsistent, 2 cannot read


def write_log(folder: Path, pid: str, *events: dict[str, object]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    log = EventLog(folder, pid)
    for event in events:
        log.record(**event)  # type: ignore[arg-type]
    log.close()
    return log.path


def a_consistent_run(folder: Path) -> Path:
    write_log(
        folder,
        "A",
        {"kind": "join", "clock": {}, "peer": "server"},
        {"kind": "send", "clock": {"A": 1}, "peer": "B", "msg": "A#1"},
    )
    write_log(
        folder,
        "B",
        {"kind": "join", "clock": {}, "peer": "server"},
        {"kind": "receive", "clock": {"A": 1, "B": 1}, "peer": "A", "msg": "A#1"},
    )
    return folder


def test_check_exits_0_for_a_consistent_run(tmp_path: Path) -> None:
    result = run("check", str(a_consistent_run(tmp_path / "run")))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: causally consistent")


def test_check_exits_1_for_an_inconsistent_run(tmp_path: Path) -> None:
    run_dir = a_consistent_run(tmp_path / "run")
    write_log(run_dir, "B", {"kind": "local", "clock": {"A": 1, "B": 5}})  # B's entry jumps
    result = run("check", str(run_dir))
    assert result.exit_code == 1, result.output
    assert result.output.startswith("FAILED"), result.output


def unreadable_line(folder: Path) -> Path:
    a_consistent_run(folder)
    with (folder / "A.jsonl").open("ab") as file:
        file.write(b'{"ts": "not an event"}\n')
    return folder


def folder_named_like_a_log(folder: Path) -> Path:
    (folder / "A.jsonl").mkdir(parents=True)
    return folder


def empty_logs(folder: Path) -> Path:
    folder.mkdir()
    (folder / "A.jsonl").touch()
    (folder / "server.jsonl").write_text("\n\n")
    return folder


def no_logs(folder: Path) -> Path:
    folder.mkdir()
    (folder / "notes.md").write_text("no logs here\n")
    return folder


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (no_logs, "no .jsonl, .log or .txt logs"),
        (empty_logs, "no events in"),
        (unreadable_line, "A.jsonl:3: not an event"),
        (folder_named_like_a_log, "Is a directory"),
    ],
)
def test_check_exits_2_when_it_cannot_read_the_logs(tmp_path: Path, make, says: str) -> None:
    source = make(tmp_path / "run")
    result = run("check", str(source))
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert line.startswith(f"Error: cannot check {source}: ") and says in line, line


def test_check_exits_2_for_a_missing_folder(tmp_path: Path) -> None:
    result = run("check", str(tmp_path / "nothing"))
    assert result.exit_code == 2, result.output
    assert "does not exist" in one_error_line(result)


def test_a_torn_last_line_is_a_warning_and_the_run_is_still_checked(tmp_path: Path) -> None:
    run_dir = a_consistent_run(tmp_path / "run")
    with (run_dir / "B.jsonl").open("ab") as file:  # a crash in the middle of a write
        file.write(b'{"ts":"2026-12-07T10:00:00+00:00","pid":"B","kind":"se')
    result = run("check", str(run_dir))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: causally consistent (1 warning)"), result.output
    assert "[torn-line] B.jsonl:3: the last line was cut off" in result.output
    assert "causal delivery is not guaranteed" not in result.output  # that note is not for this


def test_a_torn_last_line_does_not_hide_a_violation(tmp_path: Path) -> None:
    run_dir = a_consistent_run(tmp_path / "run")
    write_log(run_dir, "B", {"kind": "local", "clock": {"A": 1, "B": 5}})
    with (run_dir / "B.jsonl").open("ab") as file:
        file.write(b'{"ts":"2026-12-07T1')
    result = run("check", str(run_dir))
    assert result.exit_code == 1, result.output
    assert "[own-entry]" in result.output and "[torn-line]" in result.output, result.output


def test_a_log_reopened_after_a_torn_line_loses_only_that_line(tmp_path: Path) -> None:
    run_dir = a_consistent_run(tmp_path / "run")
    with (run_dir / "A.jsonl").open("ab") as file:
        file.write(b'{"ts":"2026-12-07T10:00:00+00:00","pid":"A","ki')
    # A restarted process appends to the same file (docs/eventlog.md)
    write_log(run_dir, "A", {"kind": "join", "clock": {"A": 1}, "peer": "server"})
    result = run("check", str(run_dir))
    assert result.exit_code == 0, result.output
    assert "torn-line" not in result.output  # cut off at reopening: the file is whole
    kinds = [event.kind for _, event in iter_events(run_dir / "A.jsonl")]
    assert kinds == ["join", "send", "join"]


def test_a_whole_last_event_without_its_newline_is_kept_at_reopening(tmp_path: Path) -> None:
    run_dir = a_consistent_run(tmp_path / "run")
    path = run_dir / "A.jsonl"
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # the write stopped just before "\n"
    write_log(run_dir, "A", {"kind": "leave", "clock": {"A": 1}, "peer": "server"})
    assert len(path.read_text().splitlines()) == 3
    result = run("check", str(run_dir))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("text", "address"),
    [("[::1]:4999", ("::1", 4999)), ("127.0.0.1:5000", ("127.0.0.1", 5000))],
)
def test_a_server_address_may_be_bracketed_ipv6(text: str, address: tuple[str, int]) -> None:
    # Before, "[::1]:4999" kept its brackets as the host name, which no resolver
    # takes; --server and --web now share one parser (vclock.net.parse_address).
    from vclock.cli import _address

    assert _address(text) == address


@pytest.mark.parametrize("text", ["localhost", "[::1", "host:port"])
def test_a_server_address_that_is_not_host_port_names_server(text: str) -> None:
    result = run("client", "--server", text)
    assert result.exit_code == 2, result.output
    assert "--server" in one_error_line(result)
