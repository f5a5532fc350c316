"""A client's state file (``vclock client --state FILE``): SQLite, a little per event.

A node must make each of its events durable before it tells anyone about it:
before the event-log line is appended (the line travels in the state as a
write-ahead copy, see :meth:`vclock.tools.eventlog.EventLog.complete`), and
before a ``delivered`` frame acknowledges a delivery. The first format rewrote
one JSON document, and fsynced it, on every event: with thousands of held-back
broadcasts or unacknowledged frames, each event cost the whole state, and a
run the square of it.

Here each event is one SQLite transaction (WAL mode, ``synchronous=FULL``: once
:meth:`StateFile.save` returns, the event survives a crash or a power cut) that
writes what changed since the last one: the clock and broadcast entries that
moved, one row per held-back broadcast or unacknowledged frame that came or
went, the delivery number, and the event's log lines. :class:`StateFile` keeps
a copy of what the file holds to find those differences in memory.

A JSON state file of the first format is read once and converted: the new
database is written beside it and then renamed over it, so a crash leaves the
old file or the new one.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import msgspec

from ..client import ClientState, SavedClient
from ..clock import ClockLimits, VectorClock
from ..errors import FrameError
from ..protocol.codec import FrameDecoder, encode_frame
from ..protocol.frames import Broadcast, Deliver, Report, Send

SCHEMA_VERSION = 1
APPLICATION_ID = 0x76434C54  # "vCLT": SQLite's header field for the file's owner program
SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counts (
    vector TEXT NOT NULL, pid TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (vector, pid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS unacked (seq INTEGER PRIMARY KEY, frame BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS held (pos INTEGER PRIMARY KEY, frame BLOB NOT NULL);
"""

#: The maps of process id to counter kept in ``counts``, by the ClientState field.
_VECTORS = ("clock", "bdelivered", "bskip", "last_seq")

# What was stored was checked on the way in (the server's frames by the client's
# limits); read it back whatever those are now.
_STORED_LIMITS = ClockLimits(max_entries=2**31, max_id_length=2**31)
_legacy_decoder: FrameDecoder[SavedClient] = FrameDecoder(SavedClient, limits=_STORED_LIMITS)
_deliver_decoder: FrameDecoder[Deliver] = FrameDecoder(Deliver, limits=_STORED_LIMITS)
_own_decoder: FrameDecoder[Send | Report | Broadcast] = FrameDecoder(
    Send | Report | Broadcast,
    limits=_STORED_LIMITS,
)
_journal_encoder = msgspec.json.Encoder()
_journal_decoder = msgspec.json.Decoder(list[str])


@dataclass(frozen=True, slots=True)
class _Content:
    """A node's state as :meth:`StateFile._transaction` writes it."""

    id: str
    delivered: int
    journal: list[str]
    counts: dict[str, dict[str, int]]  # by vector (clock, bdelivered, last_seq)
    unacked: dict[int, Send | Report | Broadcast]
    held: list[Deliver]


class StateFileError(OSError):
    """The file given for the state is not a vclock client state file."""


class StateFile:
    """One client's state file, open for the life of the node.

    Args:
        path: the file; created (readable by its owner only) if missing, and
            converted if it holds the JSON format of earlier versions.

    Raises:
        StateFileError: the file exists but is not a client state file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            legacy = _read_legacy(path)
            if legacy is not None:
                _convert(path, legacy)
            self._db = _open(path)
        except StateFileError:
            raise
        except OSError as exc:  # a folder in the way, no permission, a missing parent
            raise StateFileError(f"cannot open {path}: {exc.strerror or exc}") from None
        self._saved = self._read()
        self._mirror(self._saved)

    def load(self) -> SavedClient | None:
        """What the file held when it was opened; None for a new file."""
        return self._saved

    def save(self, state: ClientState, journal: list[str]) -> None:
        """Make ``state`` and the event-log lines of its last event durable, in one
        transaction that writes only what changed since the last save."""
        assert state.id is not None, "a node without an id has nothing to save"
        self._transaction(
            _Content(
                id=state.id,
                delivered=state.delivered,
                journal=journal,
                counts={
                    "clock": state.clock._entries,
                    "bdelivered": state.bdelivered._entries,
                    "bskip": state.bskip._entries,
                    "last_seq": state.last_seq,
                },
                unacked=state.unacked,
                held=state.held,
            )
        )

    def write(self, saved: SavedClient) -> None:
        """Replace the whole content with ``saved`` (one transaction)."""
        self._transaction(
            _Content(
                id=saved.id,
                delivered=saved.delivered,
                journal=list(saved.journal),
                counts={
                    "clock": saved.clock.to_dict(),
                    "bdelivered": saved.bdelivered.to_dict(),
                    "bskip": saved.bskip.to_dict(),
                    "last_seq": dict(saved.last_seq),
                },
                unacked={frame.seq: frame for frame in saved.unacked},
                held=list(saved.held),
            )
        )

    def close(self) -> None:
        self._db.close()

    # Writing the differences

    def _transaction(self, content: _Content) -> None:
        db = self._db
        db.execute("BEGIN")
        try:
            self._save_meta(content)
            for vector, entries in content.counts.items():
                self._save_counts(vector, entries)
            self._save_unacked(content.unacked)
            self._save_held(content.held)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._mirror(self._read())  # what the file holds after all
            raise

    def _save_meta(self, content: _Content) -> None:
        values: dict[str, object] = {
            "id": content.id,
            "delivered": content.delivered,
            "journal": content.journal,
        }
        for key, value in values.items():
            if self._meta.get(key) == value:
                continue
            stored = _journal_encoder.encode(value).decode() if key == "journal" else value
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, stored))
            self._meta[key] = list(value) if isinstance(value, list) else value

    def _save_counts(self, vector: str, entries: dict[str, int]) -> None:
        saved = self._counts[vector]
        changed = [(vector, pid, n) for pid, n in entries.items() if saved.get(pid) != n]
        if changed:
            self._db.executemany("INSERT OR REPLACE INTO counts VALUES (?, ?, ?)", changed)
            saved.update((pid, n) for _, pid, n in changed)
        if len(saved) > len(entries):  # entries gone (only when a state is replaced)
            gone = [pid for pid in saved if pid not in entries]
            self._db.executemany(
                "DELETE FROM counts WHERE vector = ? AND pid = ?", [(vector, p) for p in gone]
            )
            for pid in gone:
                del saved[pid]

    def _save_unacked(self, unacked: dict[int, Send | Report | Broadcast]) -> None:
        saved = self._unacked
        new = [(seq, encode_frame(frame)) for seq, frame in unacked.items() if seq not in saved]
        gone = [(seq,) for seq in saved if seq not in unacked]
        if new:
            self._db.executemany("INSERT OR REPLACE INTO unacked VALUES (?, ?)", new)
            saved.update(seq for seq, _ in new)
        if gone:
            self._db.executemany("DELETE FROM unacked WHERE seq = ?", gone)
            saved.difference_update(seq for (seq,) in gone)

    def _save_held(self, held: list[Deliver]) -> None:
        """Held-back broadcasts are told apart by identity: the node keeps the very
        objects (two copies of one broadcast may be held at once). The mirror keeps
        each saved object alive, so an id is never reused while it is listed."""
        saved = self._held
        current = {id(frame) for frame in held}
        gone = [key for key in saved if key not in current]
        for key in gone:
            self._db.execute("DELETE FROM held WHERE pos = ?", (saved.pop(key)[1],))
        for frame in held:
            if id(frame) not in saved:
                self._next_pos += 1
                self._db.execute(
                    "INSERT INTO held VALUES (?, ?)", (self._next_pos, encode_frame(frame))
                )
                saved[id(frame)] = (frame, self._next_pos)

    # Reading

    def _read(self) -> SavedClient | None:
        db = self._db
        meta = dict(db.execute("SELECT key, value FROM meta"))
        if meta.get("id") is None:
            return None
        counts: dict[str, dict[str, int]] = {vector: {} for vector in _VECTORS}
        for vector, pid, n in db.execute("SELECT vector, pid, n FROM counts"):
            counts[vector][pid] = n
        return SavedClient(
            id=meta["id"],
            clock=VectorClock(counts["clock"], limits=_STORED_LIMITS),
            delivered=meta.get("delivered", 0),
            unacked=[
                _own_decoder.decode(frame)
                for (frame,) in db.execute("SELECT frame FROM unacked ORDER BY seq")
            ],
            bdelivered=VectorClock(counts["bdelivered"], limits=_STORED_LIMITS),
            held=[
                _deliver_decoder.decode(frame)
                for (frame,) in db.execute("SELECT frame FROM held ORDER BY pos")
            ],
            last_seq=counts["last_seq"],
            bskip=VectorClock(counts["bskip"], limits=_STORED_LIMITS),
            journal=_journal_decoder.decode(meta.get("journal", "[]")),
        )

    def _mirror(self, saved: SavedClient | None) -> None:
        """Remember what the file holds (``saved``: as read back from it)."""
        self._meta: dict[str, object] = {}
        self._counts: dict[str, dict[str, int]] = {vector: {} for vector in _VECTORS}
        self._unacked: set[int] = set()
        self._held: dict[int, tuple[Deliver, int]] = {}
        row = self._db.execute("SELECT max(pos) FROM held").fetchone()
        self._next_pos: int = row[0] or 0
        if saved is None:
            return
        self._meta = {"id": saved.id, "delivered": saved.delivered, "journal": saved.journal}
        self._counts = {
            "clock": saved.clock.to_dict(),
            "bdelivered": saved.bdelivered.to_dict(),
            "bskip": saved.bskip.to_dict(),
            "last_seq": dict(saved.last_seq),
        }
        self._unacked = {frame.seq for frame in saved.unacked}
        positions = [pos for (pos,) in self._db.execute("SELECT pos FROM held ORDER BY pos")]
        self._held = {
            id(frame): (frame, pos) for frame, pos in zip(saved.held, positions, strict=True)
        }


def _open(path: Path) -> sqlite3.Connection:
    if not path.exists():
        # Owner-only from the start: the file holds message bodies.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    db = sqlite3.connect(str(path), isolation_level=None)  # explicit transactions
    try:
        # Another program's database is refused before anything is written to it.
        (application,) = db.execute("PRAGMA application_id").fetchone()
        if application != APPLICATION_ID:
            (tables,) = db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if tables:
                raise StateFileError(
                    f"{path} is an SQLite database, but not a vclock client state file"
                )
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        elif row[0] != SCHEMA_VERSION:
            raise StateFileError(
                f"{path} is a client state file of version {row[0]};"
                f" this vclock reads version {SCHEMA_VERSION}"
            )
    except sqlite3.DatabaseError as exc:
        db.close()
        raise StateFileError(f"{path} is not a vclock client state file ({exc})") from None
    except BaseException:
        db.close()
        raise
    return db


def _read_legacy(path: Path) -> SavedClient | None:
    """The state in ``path`` if it is a JSON state file of the first format."""
    try:
        with path.open("rb") as file:
            head = file.read(len(SQLITE_MAGIC))
            if head == SQLITE_MAGIC or not head:
                return None  # the database, or a file SQLite created and never wrote
            data = head + file.read()
    except FileNotFoundError:
        return None
    if not data.lstrip().startswith(b"{"):
        raise StateFileError(
            f"{path} is not a vclock client state file (neither SQLite nor the JSON of"
            " earlier versions)"
        )
    try:
        return _legacy_decoder.decode(data)
    except (FrameError, msgspec.DecodeError) as exc:
        raise StateFileError(f"{path} is not a vclock client state file ({exc})") from None


def _convert(path: Path, saved: SavedClient) -> None:
    """Replace a JSON state file by a database with the same content."""
    tmp = path.with_name(path.name + ".converting")
    for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
    new = StateFile(tmp)
    try:
        new.write(saved)
    finally:
        new.close()  # the last connection: SQLite folds the WAL into the file
    os.replace(tmp, path)


def load_state(path: Path) -> SavedClient | None:
    """A node's saved state, or None when the file does not exist yet.

    Raises:
        StateFileError: the file is not a client state file.
    """
    if not path.exists():
        return None
    legacy = _read_legacy(path)
    if legacy is not None:
        return legacy
    state = StateFile(path)
    try:
        return state.load()
    finally:
        state.close()


def save_state(path: Path, saved: SavedClient) -> None:
    """Write ``saved`` as the whole content of the state file ``path``."""
    state = StateFile(path)
    try:
        state.write(saved)
    finally:
        state.close()
