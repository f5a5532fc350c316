"""Durable server state in SQLite: latest clocks, the cycle counter, held inboxes,
and how many broadcasts each sender had relayed.

The hub says what to store (:mod:`vclock.hub.actions`); :meth:`Store.apply` writes
one batch in one transaction and returns only once it is committed, with
``synchronous=FULL`` in WAL mode, so the server can then send its acks. On
start, :meth:`Store.load` gives the hub back its :class:`~vclock.hub.HubState`.
``":memory:"`` keeps everything in memory (nothing survives a restart).

Opening is careful: the database holds acknowledged messages, so a file that
is empty, is not an SQLite database, fails SQLite's ``quick_check``, or belongs
to another program is refused with a :class:`StoreError` that says what to do,
never silently replaced by a fresh database. A new database, and the folder
made for it, are readable by their owner only (:mod:`vclock.files`); SQLite
gives its ``-wal`` and ``-shm`` files the database file's mode.
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import msgspec

from .clock import ClockLimits, VectorClock
from .errors import VClockError
from .files import make_private_dirs, open_private
from .hub import (
    DropInbox,
    HubState,
    Inbox,
    SaveBroadcasts,
    SaveClock,
    SaveCycle,
    SaveInbox,
    SaveMessage,
    StoreAction,
)
from .protocol.codec import FrameDecoder, encode_frame, encode_json
from .protocol.frames import Deliver

SCHEMA_VERSION = 3  # 2: inboxes.base; 3: a held message's frame stored once (payloads)
MEMORY = ":memory:"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS clocks (client_id TEXT PRIMARY KEY, clock TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inboxes (client_id TEXT PRIMARY KEY, acked INTEGER NOT NULL, base TEXT);
CREATE TABLE IF NOT EXISTS payloads (
    sender TEXT NOT NULL, seq INTEGER NOT NULL, frame BLOB NOT NULL, refs INTEGER NOT NULL,
    PRIMARY KEY (sender, seq)
);
CREATE TABLE IF NOT EXISTS held (
    receiver TEXT NOT NULL, n INTEGER NOT NULL, sender TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (receiver, n)
);
CREATE TABLE IF NOT EXISTS broadcasts (sender TEXT PRIMARY KEY, count INTEGER NOT NULL);
"""

# Stored clocks and frames were checked on the way in; read them back whatever the
# limits are now. (A latest clock, the merge of many received ones, may also have
# more entries than one frame may carry.)
_STORED_LIMITS = ClockLimits(max_entries=2**31, max_id_length=2**31)
_deliver_decoder: FrameDecoder[Deliver] = FrameDecoder(Deliver, limits=_STORED_LIMITS)

#: What to do about a database that cannot be used, said after each refusal.
_WHAT_TO_DO = (
    "restore it from a backup (with its -wal file), or move it away to start with"
    " no state (its clocks and held messages are then lost)"
)


class StoreError(VClockError, RuntimeError):
    """The database cannot be used as it is: corrupt, truncated, empty, not vclock's,
    or of another schema version. The message says what to do."""


class StoreWriteError(StoreError):
    """The database refused a write (disk full, an I/O error): nothing of the batch
    was stored. ``path`` is the database, ``cause`` SQLite's own error."""

    def __init__(self, path: Path | None, cause: sqlite3.Error) -> None:
        self.path = path
        self.cause = cause
        where = path if path is not None else MEMORY
        super().__init__(f"cannot write to {where}: {cause}")


class Store:
    """The server's SQLite database.

    Args:
        path: a folder (the database is ``<folder>/vclock.sqlite3``), a ``.sqlite3``
            file, or ``":memory:"``.
    """

    def __init__(self, path: str | Path) -> None:
        if str(path) == MEMORY:
            self.path: Path | None = None
            target = MEMORY
        else:
            p = Path(path)
            if p.suffix not in {".sqlite3", ".db"}:
                _make_folder(p)
                p = p / "vclock.sqlite3"
            self.path = p
            target = str(p)
        self._db = _connect(target, self.path)
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        elif row[0] in (1, 2):
            self._upgrade(row[0])
        elif row[0] != SCHEMA_VERSION:
            raise StoreError(
                f"{target} has schema version {row[0]}; this vclock reads version {SCHEMA_VERSION}"
            )

    def _upgrade(self, version: int) -> None:
        """Upgrade a database of an older schema in place, in one transaction."""
        db = self._db
        db.execute("BEGIN")
        try:
            if version == 1:  # inboxes gain base (NULL, read as empty, for those there)
                db.execute("ALTER TABLE inboxes ADD COLUMN base TEXT")
            # 2 -> 3: each held message was a whole frame per receiver; now the frame
            # is stored once (payloads) and each inbox refers to it (held).
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
            if "messages" in tables:
                rows = db.execute("SELECT receiver, n, frame FROM messages").fetchall()
                for receiver, n, frame in rows:
                    self._hold(receiver, n, _deliver_decoder.decode(frame))
                db.execute("DROP TABLE messages")
            db.execute("UPDATE meta SET value = ? WHERE key='schema'", (SCHEMA_VERSION,))
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def load(self) -> HubState:
        """The state a previous run left (empty for a new database)."""
        state = HubState()
        row = self._db.execute("SELECT value FROM meta WHERE key='cycle'").fetchone()
        state.cycle = row[0] if row else 0
        for client_id, clock in self._db.execute("SELECT client_id, clock FROM clocks"):
            state.latest[client_id] = VectorClock.from_json(clock, limits=_STORED_LIMITS)
        for client_id, acked, base in self._db.execute(
            "SELECT client_id, acked, base FROM inboxes"
        ):
            known = VectorClock.from_json(base or b"{}", limits=_STORED_LIMITS)
            state.inboxes[client_id] = Inbox(acked=acked, base=known)
        counts = dict(self._db.execute("SELECT sender, count FROM broadcasts"))
        state.broadcasts = VectorClock(counts, limits=_STORED_LIMITS)
        query = (
            "SELECT h.receiver, h.n, p.frame FROM held h JOIN payloads p USING (sender, seq)"
            " ORDER BY h.receiver, h.n"
        )
        replace = msgspec.structs.replace
        for receiver, n, frame in self._db.execute(query):
            deliver = replace(_deliver_decoder.decode(frame), n=n)
            state.inboxes[receiver].messages.append(deliver)
        return state

    def apply(self, actions: Iterable[StoreAction]) -> None:
        """Write a batch of store actions in one transaction; returns once committed.

        Raises:
            StoreError: the write failed; nothing of the batch is stored.
        """
        db = self._db
        actions = list(actions)
        # A client's latest clock only grows: the last one of the batch is enough.
        clocks = {a.client_id: a.clock for a in actions if isinstance(a, SaveClock)}
        try:
            db.execute("BEGIN")
            db.executemany(
                "INSERT OR REPLACE INTO clocks VALUES (?, ?)",
                [(client_id, encode_json(clock)) for client_id, clock in clocks.items()],
            )
            for action in actions:
                match action:
                    case SaveClock():
                        pass
                    case SaveCycle(cycle=cycle):
                        db.execute("INSERT OR REPLACE INTO meta VALUES ('cycle', ?)", (cycle,))
                    case SaveMessage(receiver=receiver, deliver=deliver):
                        self._unhold("receiver = ? AND n = ?", (receiver, deliver.n))
                        self._hold(receiver, deliver.n, deliver)
                    case SaveInbox(receiver=receiver, acked=acked, base=base):
                        db.execute(
                            "INSERT OR REPLACE INTO inboxes VALUES (?, ?, ?)",
                            (receiver, acked, encode_json(base)),
                        )
                        self._unhold("receiver = ? AND n <= ?", (receiver, acked))
                    case SaveBroadcasts(sender=sender, count=count):
                        db.execute(
                            "INSERT OR REPLACE INTO broadcasts VALUES (?, ?)", (sender, count)
                        )
                    case DropInbox(receiver=receiver):
                        db.execute("DELETE FROM inboxes WHERE client_id = ?", (receiver,))
                        self._unhold("receiver = ?", (receiver,))
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise StoreWriteError(self.path, exc) from exc
        except BaseException:
            self._rollback()
            raise

    def _hold(self, receiver: str, n: int | None, deliver: Deliver) -> None:
        """Keep ``deliver`` as message ``n`` of ``receiver``: its frame once, however
        many inboxes hold it (a broadcast), and a reference to it per inbox."""
        frame = encode_frame(msgspec.structs.replace(deliver, n=None))
        self._db.execute(
            "INSERT INTO payloads VALUES (?, ?, ?, 1)"
            " ON CONFLICT (sender, seq) DO UPDATE SET refs = refs + 1",
            (deliver.sender, deliver.seq, frame),
        )
        self._db.execute(
            "INSERT INTO held VALUES (?, ?, ?, ?)", (receiver, n, deliver.sender, deliver.seq)
        )

    def _unhold(self, where: str, args: tuple[object, ...]) -> None:
        """Forget the held messages ``where`` says, and the frames no inbox holds."""
        db = self._db
        gone = Counter(db.execute(f"SELECT sender, seq FROM held WHERE {where}", args))
        if not gone:
            return
        db.execute(f"DELETE FROM held WHERE {where}", args)
        db.executemany(
            "UPDATE payloads SET refs = refs - ? WHERE sender = ? AND seq = ?",
            [(count, sender, seq) for (sender, seq), count in gone.items()],
        )
        db.executemany(
            "DELETE FROM payloads WHERE sender = ? AND seq = ? AND refs <= 0", list(gone)
        )

    def _rollback(self) -> None:
        """Undo a failed batch, keeping the error that made it fail the one reported:
        after some errors (disk full) SQLite has already rolled back, and a
        ROLLBACK of its own would raise "no transaction is active"."""
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def close(self) -> None:
        self._db.close()


def _make_folder(path: Path) -> None:
    try:
        make_private_dirs(path)
    except OSError as exc:
        raise StoreError(
            f"cannot make the data folder {path}: {exc.strerror or exc}"
            " (--data takes a folder, a .sqlite3 or .db file, or :memory:)"
        ) from None


def _connect(target: str, path: Path | None) -> sqlite3.Connection:
    """Open the database at ``path`` (None: in memory), refusing one that cannot be
    trusted (:class:`StoreError`); a new file is created with mode 0600."""
    existed = path is not None and _check_existing(path)
    if path is not None and not existed:
        try:
            os.close(open_private(path, os.O_RDWR | os.O_EXCL))
        except OSError as exc:
            raise StoreError(f"cannot create the database {path}: {exc.strerror or exc}") from None
    try:
        db = sqlite3.connect(target, isolation_level=None)  # explicit transactions
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        if existed:
            _check_contents(db, target)
    except sqlite3.Error as exc:
        raise StoreError(
            f"{target} cannot be read as a vclock database (SQLite: {exc});"
            f" it may be corrupt or truncated: {_WHAT_TO_DO}"
        ) from None
    return db


def _check_existing(path: Path) -> bool:
    """True if the database file exists; refuses one that is empty or not a file."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StoreError(f"cannot open the database {path}: {exc.strerror or exc}") from None
    if not path.is_file():
        raise StoreError(f"{path} is not a file: --data needs a database file or a folder")
    if info.st_size == 0:
        raise StoreError(
            f"{path} is empty (0 bytes), not a vclock database; a crash or a full disk"
            f" may have truncated it. It is not replaced by a fresh database: {_WHAT_TO_DO}"
        )
    return True


def _check_contents(db: sqlite3.Connection, target: str) -> None:
    """An existing database: intact (``quick_check``), and vclock's."""
    problems = [row[0] for row in db.execute("PRAGMA quick_check(3)")]
    if problems != ["ok"]:
        raise StoreError(
            f"{target} is damaged (SQLite quick_check: {'; '.join(map(str, problems))}):"
            f" {_WHAT_TO_DO}"
        )
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if tables and "meta" not in tables:
        raise StoreError(
            f"{target} is an SQLite database, but not a vclock one (tables:"
            f" {', '.join(sorted(tables))}); give --data another path"
        )
