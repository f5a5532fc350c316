"""The files that hold messages: refused when they cannot be trusted, private when made.

A database given to ``vclock server --data`` that is empty, not SQLite, damaged
or another program's stops the server with one clear line (exit status 1, no
traceback) and is left as it was. The database (with its -wal and -shm), the
event logs and a client's state file are created readable by their owner only,
whatever the umask lets through.
"""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from .conftest import Process, Processes, RawClient, ServerProcess, vclock_argv, wait_until

pytestmark = pytest.mark.timeout(60)


def refused_start(processes: Processes, data: Path) -> str:
    """Run a server on ``data``; it must exit non-zero with one line on stderr."""
    argv = vclock_argv("server", "--port", "0", "--data", str(data))
    server = processes.add(lambda: Process("server", argv, cwd=processes.cwd))
    status = server.wait()
    assert status != 0, server.describe()
    err = server.err_lines()
    assert len(err) == 1 and "Traceback" not in err[0], server.describe()
    assert not any("listening" in line for line in server.lines()), server.describe()
    return err[0]


def a_vclock_database(processes: Processes, data: Path, raw_client) -> bytes:
    """Make a real database (a few clocks in it), stop its server; return its bytes."""
    server = processes.server("--data", str(data))
    for n in range(20):
        raw: RawClient = raw_client(server.port)
        raw.hello(f"C{n}")
        raw.send_line({"type": "report", "seq": 1, "clock": {f"C{n}": 1, "pad" * 20: 1}})
        raw.close()
    server.wait_for_line(r"^C19 \(")
    server.stop()
    return data.read_bytes()


def test_an_empty_database_file_is_refused_not_started_fresh(
    processes: Processes, tmp_path: Path
) -> None:
    data = tmp_path / "vclock.sqlite3"
    data.touch()
    line = refused_start(processes, data)
    assert f"{data} is empty (0 bytes)" in line and "restore it from a backup" in line, line
    assert data.stat().st_size == 0  # left as it was, for whoever restores it


def test_a_file_that_is_not_sqlite_is_refused(processes: Processes, tmp_path: Path) -> None:
    data = tmp_path / "state.db"
    data.write_bytes(b"these are not the bytes you are looking for\n" * 100)
    line = refused_start(processes, data)
    assert "cannot be read as a vclock database" in line and "file is not a database" in line
    assert "restore it from a backup" in line, line


def test_a_truncated_database_is_refused(processes: Processes, tmp_path: Path, raw_client) -> None:
    data = tmp_path / "vclock.sqlite3"
    whole = a_vclock_database(processes, data, raw_client)
    data.write_bytes(whole[: len(whole) // 2])
    line = refused_start(processes, data)
    assert str(data) in line and "restore it from a backup" in line, line
    assert "malformed" in line or "quick_check" in line, line


def test_a_damaged_database_is_refused(processes: Processes, tmp_path: Path, raw_client) -> None:
    data = tmp_path / "vclock.sqlite3"
    whole = bytearray(a_vclock_database(processes, data, raw_client))
    page = 4096
    whole[page : 2 * page] = bytes(range(256)) * (page // 256)  # a page of noise
    data.write_bytes(bytes(whole))
    line = refused_start(processes, data)
    assert str(data) in line and "restore it from a backup" in line, line


def test_another_programs_sqlite_database_is_refused_and_left_alone(
    processes: Processes, tmp_path: Path
) -> None:
    data = tmp_path / "app.db"
    with sqlite3.connect(data) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    line = refused_start(processes, data)
    assert "an SQLite database, but not a vclock one (tables: users)" in line, line
    with sqlite3.connect(data) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert tables == {"users"}


def test_a_file_where_the_data_folder_should_be_is_refused(
    processes: Processes, tmp_path: Path
) -> None:
    data = tmp_path / "vclock-data"
    data.write_text("oops")
    line = refused_start(processes, data)
    assert f"cannot make the data folder {data}" in line, line


# File modes


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def umask_022(argv: list[str]) -> list[str]:
    """Run ``argv`` with the usual umask: without care, files come out 0644."""
    return ["sh", "-c", 'umask 022 && exec "$@"', "sh", *argv]


def test_data_logs_and_state_are_created_private(processes: Processes, tmp_path: Path) -> None:
    data, logs = tmp_path / "var" / "vclock", tmp_path / "logs"
    state = tmp_path / "B.state"
    server_argv = vclock_argv(
        "server", "--port", "0", "--sync-interval", "0.5", "--data", str(data), "--log", str(logs)
    )
    server = processes.add(lambda: ServerProcess(umask_022(server_argv), cwd=processes.cwd))
    client_argv = vclock_argv(
        "client", "--port", str(server.port), "--id", "B", "--interval", "0.1-0.2",
        "--log", str(logs), "--state", str(state),
    )  # fmt: skip
    client = processes.add(lambda: Process("client B", umask_022(client_argv)))
    client.wait_for_line(r"report -> server")
    database = data / "vclock.sqlite3"
    wal, shm = (database.with_name(database.name + suffix) for suffix in ("-wal", "-shm"))
    wait_until(lambda: wal.exists() and shm.exists(), what="the -wal and -shm files")
    files = [database, wal, shm, logs / "server.jsonl", logs / "B.jsonl", state]
    wait_until(lambda: all(path.exists() for path in files), what=f"{files}")
    assert {str(path): oct(mode(path)) for path in files} == dict.fromkeys(
        map(str, files), oct(0o600)
    )
    folders = [data, data.parent, logs]
    assert {str(path): oct(mode(path)) for path in folders} == dict.fromkeys(
        map(str, folders), oct(0o700)
    )
