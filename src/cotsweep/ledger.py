"""The ledger: a SQLite file in the sweep directory, the source of truth.

Not Ray and not W&B: the ledger says what each trial is (its overrides and
composed config), what state it is in, how often it ran, what went wrong, where
and when. It survives the driver, the workers and the cluster. Only the driver
writes it; workers report through Ray results and their trial files.

States::

    pending ──▶ running ──▶ done
       ▲           │
       └───────────┴──────▶ failed   (retried up to max_attempts; diverged is never retried)

One live driver per sweep: the ``driver`` table holds its lease (host, pid,
heartbeat). A second driver is refused while the first is alive; the lease of a
dead driver (same host and no such process, or a heartbeat older than
``STALE_AFTER_S``) is taken over.

Every SQLite failure becomes a :class:`~cotsweep.errors.LedgerError`: one line
naming the file, SQLite's real reason and the command that recovers (``cotsweep
resume DIR`` after a full disk, ``cotsweep rebuild DIR`` for a damaged or
deleted ledger). A ledger deleted or replaced under a running driver is noticed
at its next transaction. Whenever trials are added, a copy of the ledger is kept
beside it (``ledger.backup.sqlite``): what each trial is, for ``cotsweep
rebuild``, which takes their states from the trial files.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cotsweep.errors import LedgerError

LEDGER = "ledger.sqlite"
BACKUP = "ledger.backup.sqlite"
# `cotsweep stop DIR` from any host: the sweep's driver polls for this file and stops
STOP_REQUEST = "stop.request"
STATES = ("pending", "running", "done", "failed")
STALE_AFTER_S = 60.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id         TEXT PRIMARY KEY,
    state      TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending','running','done','failed')),
    attempts   INTEGER NOT NULL DEFAULT 0,
    overrides  TEXT NOT NULL,          -- JSON list: the grid point, as Hydra overrides
    axes       TEXT NOT NULL,          -- JSON object: axis -> value, for status and reports
    config     TEXT NOT NULL,          -- the composed trial config, YAML
    error      TEXT,                   -- last error, one line
    error_kind TEXT,                   -- error | diverged | lost | stalled | timeout
    traceback  TEXT,                   -- tail of the last traceback
    failures   INTEGER NOT NULL DEFAULT 0,  -- failed attempts: the retry budget's count
    host       TEXT,
    step       INTEGER,
    created    REAL NOT NULL,
    started    REAL,
    ended      REAL,
    heartbeat  REAL,
    wall_s     REAL                    -- the trial's own wall time when done
);
CREATE INDEX IF NOT EXISTS trials_state ON trials(state);
CREATE TABLE IF NOT EXISTS driver (
    one       INTEGER PRIMARY KEY CHECK (one = 1),
    host      TEXT NOT NULL,
    pid       INTEGER NOT NULL,
    started   REAL NOT NULL,
    heartbeat REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    time REAL NOT NULL, trial TEXT, event TEXT NOT NULL, detail TEXT
);
"""


# columns added after the first ledgers were written: (name, declaration)
ADDED_COLUMNS = (("failures", "INTEGER NOT NULL DEFAULT 0"),)


class LedgerLocked(RuntimeError):
    """Another live driver holds this sweep."""


F = TypeVar("F", bound=Callable[..., Any])


def _guarded(method: F) -> F:
    """SQLite's exceptions leave the ledger as one LedgerError naming the file."""

    @functools.wraps(method)
    def wrapper(self: Ledger, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as e:
            raise self.error(e) from e

    return wrapper  # type: ignore[return-value]


@dataclass
class TrialRow:
    id: str
    state: str
    attempts: int
    overrides: list[str]
    axes: dict
    config: str
    error: str | None
    error_kind: str | None
    traceback: str | None
    failures: int
    host: str | None
    step: int | None
    created: float
    started: float | None
    ended: float | None
    heartbeat: float | None
    wall_s: float | None


def exists(sweep_dir: Path) -> bool:
    return (Path(sweep_dir) / LEDGER).exists()


def describe_sqlite_error(path: Path, e: BaseException) -> str:
    """One line: the file, SQLite's reason, and the command that recovers."""
    sweep_dir = Path(path).parent
    why = " ".join(str(e).split()) or type(e).__name__
    low = why.lower()
    if "full" in low:
        return (
            f"ledger {path}: the disk is full (sqlite: {why}); what was recorded is kept: "
            f"free space on that disk, then: cotsweep resume {sweep_dir}"
        )
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return (
            f"ledger {path} is damaged (sqlite: {why}); rebuild it from the trial files: "
            f"cotsweep rebuild {sweep_dir}"
        )
    if "locked" in low or "busy" in low:
        return (
            f"ledger {path} stayed locked by another process (sqlite: {why}); "
            f"is a driver stuck? see: cotsweep status {sweep_dir}"
        )
    if "readonly" in low or "read-only" in low or "unable to open" in low or "permission" in low:
        return f"ledger {path} cannot be opened for writing (sqlite: {why}); check its permissions and those of {sweep_dir}"
    if "disk i/o" in low:
        return (
            f"ledger {path}: the disk failed a read or write (sqlite: {why}); "
            f"check the disk, then: cotsweep resume {sweep_dir} (or cotsweep rebuild {sweep_dir})"
        )
    return f"ledger {path}: sqlite: {why}; if it persists, rebuild it: cotsweep rebuild {sweep_dir}"


class Ledger:
    def __init__(self, sweep_dir: Path | str, create: bool = False, read_only: bool = False):
        """The sweep's ledger; ``read_only`` opens it for readers such as ``status``,
        which then write nothing (not even the schema) and never wait on the driver's lock."""
        self.dir = Path(sweep_dir)
        self.path = self.dir / LEDGER
        if not create and not self.path.exists():
            if (self.dir / "trials").is_dir():  # a sweep whose ledger was lost
                raise FileNotFoundError(
                    f"no ledger at {self.path}, but {self.dir / 'trials'} holds trials: "
                    f"rebuild the ledger from their files: cotsweep rebuild {self.dir}"
                )
            raise FileNotFoundError(f"no sweep at {self.dir} (no {LEDGER})")
        self._owner = False
        self.read_only = read_only
        try:
            if read_only:
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            else:
                self.dir.mkdir(parents=True, exist_ok=True)
                # explicit transactions
                self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.executescript(SCHEMA)
            self._columns = {r[1] for r in self.db.execute("PRAGMA table_info(trials)")}
            if not self._columns:
                raise sqlite3.DatabaseError("file is not a database (it has no trials table)")
            if not read_only:
                for name, decl in ADDED_COLUMNS:
                    if name not in self._columns:
                        self.db.execute(f"ALTER TABLE trials ADD COLUMN {name} {decl}")
                        self._columns.add(name)
        except sqlite3.Error as e:
            raise self.error(e) from e
        self._identity = _identity(self.path)

    def error(self, e: BaseException) -> LedgerError:
        return LedgerError(self.path, describe_sqlite_error(self.path, e))

    def close(self) -> None:
        self.db.close()

    def _check_file(self) -> None:
        """A ledger deleted (or replaced) under this connection would take every later write
        into a file no one can open again: refuse at the next transaction instead."""
        if _identity(self.path) != self._identity:
            raise LedgerError(
                self.path,
                f"ledger {self.path} was deleted or replaced while this process had it open; "
                f"nothing more is written to it. Rebuild it from the trial files: "
                f"cotsweep rebuild {self.dir}",
            )

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        self._check_file()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise self.error(e) from e
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException as e:
            # SQLite may have rolled back already (a full disk does): then ROLLBACK itself
            # fails with "cannot rollback - no transaction is active", hiding the real error
            if self.db.in_transaction:
                try:
                    self.db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            if isinstance(e, sqlite3.Error):
                raise self.error(e) from e
            raise

    def backup(self) -> None:
        """Copy the ledger to ledger.backup.sqlite (a whole file, renamed into place)."""
        tmp = self.dir / f".{BACKUP}.{os.getpid()}.tmp"
        try:
            dst = sqlite3.connect(tmp)
            try:
                self.db.backup(dst)
            finally:
                dst.close()
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.dir / BACKUP)
        except (sqlite3.Error, OSError) as e:
            tmp.unlink(missing_ok=True)
            raise LedgerError(
                self.dir / BACKUP,
                f"ledger backup {self.dir / BACKUP} could not be written ({type(e).__name__}: "
                f"{' '.join(str(e).split())}); free space on the disk, then: cotsweep resume {self.dir}",
            ) from e

    # -- meta ------------------------------------------------------------------
    @_guarded
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    @_guarded
    def set_meta(self, **values: str) -> None:
        with self.tx() as db:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(values.items()))

    # -- the driver lock -------------------------------------------------------------
    @_guarded
    def acquire(self) -> None:
        """Take the sweep for this process, or raise LedgerLocked naming the live driver."""
        host, pid, now = socket.gethostname(), os.getpid(), time.time()
        with self.tx() as db:
            row = db.execute("SELECT host, pid, started, heartbeat FROM driver").fetchone()
            if row is not None and not (row[0] == host and row[1] == pid):
                other_host, other_pid, other_started, beat = row
                lease = {"host": other_host, "pid": other_pid, "started": other_started}
                if driver_alive({**lease, "heartbeat": beat}, now):
                    raise LedgerLocked(
                        f"sweep {self.dir} is being run by another driver: host {other_host}, PID {other_pid} "
                        f"(last heartbeat {now - beat:.0f}s ago); stop it first, or wait"
                    )
                db.execute(
                    "INSERT INTO events VALUES (?, NULL, 'lock_taken_over', ?)",
                    (now, f"{other_host}:{other_pid}"),
                )
            db.execute(
                "INSERT OR REPLACE INTO driver VALUES (1, ?, ?, ?, ?)", (host, pid, now, now)
            )
        self._owner = True

    @_guarded
    def beat(self) -> None:
        if self._owner:
            self._check_file()
            self.db.execute(
                "UPDATE driver SET heartbeat=? WHERE pid=? AND host=?",
                (time.time(), os.getpid(), socket.gethostname()),
            )

    @_guarded
    def release(self) -> None:
        if self._owner:
            self.db.execute(
                "DELETE FROM driver WHERE pid=? AND host=?", (os.getpid(), socket.gethostname())
            )
            self._owner = False

    @_guarded
    def driver(self) -> dict | None:
        row = self.db.execute("SELECT host, pid, started, heartbeat FROM driver").fetchone()
        return dict(zip(("host", "pid", "started", "heartbeat"), row, strict=True)) if row else None

    # -- trials ------------------------------------------------------------------------
    @_guarded
    def add_trials(
        self,
        trials: Iterable[tuple[str, list[str], dict, str]],
        meta: dict[str, str] | None = None,
        batch: int = 1000,
    ) -> int:
        """Record (id, overrides, axes, config_yaml) trials; existing ids are left untouched.

        ``trials`` may be a generator that composes them as it goes (a large grid is
        never held in memory): they are inserted a batch at a time, all in one
        transaction with ``meta``, so if the generator raises (a bad point, Ctrl-C)
        nothing of it is recorded.
        """
        now = time.time()
        sql = "INSERT OR IGNORE INTO trials (id, overrides, axes, config, created) VALUES (?, ?, ?, ?, ?)"
        with self.tx() as db:
            before = db.total_changes
            rows: list[tuple] = []
            for tid, ov, axes, cfg in trials:
                rows.append((tid, json.dumps(ov), json.dumps(axes), cfg, now))
                if len(rows) >= batch:
                    db.executemany(sql, rows)
                    rows.clear()
            db.executemany(sql, rows)
            added = db.total_changes - before
            if meta:
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(meta.items()))
        if added:  # what each trial is changed: keep a copy for `cotsweep rebuild`
            self.backup()
        return added

    @_guarded
    def trials(self, states: Iterable[str] | None = None) -> list[TrialRow]:
        fields = list(TrialRow.__dataclass_fields__)
        out = []
        for r in self.select(fields, states):
            d = dict(zip(fields, r, strict=True))
            d["overrides"], d["axes"] = json.loads(d["overrides"]), json.loads(d["axes"])
            out.append(TrialRow(**d))
        return out

    @_guarded
    def select(self, columns: Iterable[str], states: Iterable[str] | None = None) -> list[tuple]:
        """Raw values of a few columns of every trial (in ``states``), in creation order.

        For readers that need little of each row of a big ledger (``status`` never
        reads the configs, most of its bytes); JSON columns come back as text.
        """
        columns = list(columns)
        unknown = set(columns) - set(TrialRow.__dataclass_fields__)
        if unknown:
            raise ValueError(f"no such ledger columns: {sorted(unknown)}")
        # a ledger written before a column existed reads as its default (read-only opens
        # cannot add it)
        names = [c if c in self._columns else f"0 AS {c}" for c in columns]
        sql, args = f"SELECT {', '.join(names)} FROM trials", ()
        if states is not None:
            args = tuple(states)
            sql += f" WHERE state IN ({','.join('?' * len(args))})"
        return self.db.execute(sql + " ORDER BY created, id", args).fetchall()

    @_guarded
    def counts(self) -> dict[str, int]:
        c = dict.fromkeys(STATES, 0)
        for state, n in self.db.execute("SELECT state, COUNT(*) FROM trials GROUP BY state"):
            c[state] = n
        return c

    @_guarded
    def update(
        self, changes: list[tuple[str, dict]], events: list[tuple[str, str, str]] = ()
    ) -> None:
        """Apply many (trial id, {column: value}) updates and events in one transaction."""
        now = time.time()
        with self.tx() as db:
            for tid, cols in changes:
                keys = list(cols)
                db.execute(
                    f"UPDATE trials SET {', '.join(f'{k}=?' for k in keys)} WHERE id=?",
                    [cols[k] for k in keys] + [tid],
                )
            db.executemany(
                "INSERT INTO events VALUES (?, ?, ?, ?)", [(now, t, e, d) for t, e, d in events]
            )
            if self._owner:
                db.execute("UPDATE driver SET heartbeat=? WHERE pid=?", (now, os.getpid()))

    @_guarded
    def requeue_running(self, ids: Iterable[str] | None = None) -> int:
        """Trials left 'running' go back to pending (their checkpoints stay): all of them
        (those of a dead driver, once this one holds the lease), or just ``ids``."""
        with self.tx() as db:
            if ids is None:
                return db.execute(
                    "UPDATE trials SET state='pending' WHERE state='running'"
                ).rowcount
            return db.executemany(
                "UPDATE trials SET state='pending' WHERE state='running' AND id=?",
                [(i,) for i in ids],
            ).rowcount

    @_guarded
    def events(self, trial: str | None = None) -> list[tuple]:
        if trial is None:
            return list(self.db.execute("SELECT * FROM events ORDER BY time"))
        return list(self.db.execute("SELECT * FROM events WHERE trial=? ORDER BY time", (trial,)))


def driver_alive(driver: dict, now: float | None = None) -> bool:
    """Whether the driver named in a lease still runs: on this host, its process (the same
    one: started before it took the lease, not a later process given its PID); elsewhere,
    a heartbeat younger than STALE_AFTER_S."""
    now = time.time() if now is None else now
    if driver["host"] != socket.gethostname():
        return now - driver["heartbeat"] < STALE_AFTER_S
    if not _pid_alive(driver["pid"]):
        return False
    born = process_start_time(driver["pid"])
    return born is None or born <= driver["started"] + 1.0


def process_start_time(pid: int) -> float | None:
    """When a process started (seconds since the epoch), where /proc says; else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        ticks = float(stat.rsplit(")", 1)[1].split()[19])  # field 22: starttime
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
