"""The ledger: a SQLite file in the sweep directory, the source of truth.

Not Ray and not W&B: the ledger says what each trial is (its overrides and
composed config), what state it is in, how often it ran, what went wrong, where
and when. It survives the driver, the workers and the cluster. Only the driver
writes it; workers report through Ray results and their trial files.

States::

    pending ──▶ running ──▶ done
       ▲           │
       └───────────┴──────▶ failed   (retried up to max_attempts; diverged is never retried)

One live driver per sweep: the ``driver`` table holds the lock (host, pid,
heartbeat). A second driver is refused while the first is alive; the lock of a
dead driver (same host and no such process, or a heartbeat older than
``STALE_AFTER_S``) is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LEDGER = "ledger.sqlite"
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
    error_kind TEXT,                   -- exception | diverged | lost
    traceback  TEXT,                   -- tail of the last traceback
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


class LedgerLocked(RuntimeError):
    """Another live driver holds this sweep."""


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
    host: str | None
    step: int | None
    created: float
    started: float | None
    ended: float | None
    heartbeat: float | None
    wall_s: float | None


def exists(sweep_dir: Path) -> bool:
    return (Path(sweep_dir) / LEDGER).exists()


class Ledger:
    def __init__(self, sweep_dir: Path | str, create: bool = False, read_only: bool = False):
        """The sweep's ledger; ``read_only`` opens it for readers such as ``status``,
        which then write nothing (not even the schema) and never wait on the driver's lock."""
        self.dir = Path(sweep_dir)
        path = self.dir / LEDGER
        if not create and not path.exists():
            raise FileNotFoundError(f"no sweep at {self.dir} (no {LEDGER})")
        self._owner = False
        if read_only:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None)  # explicit transactions
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    # -- meta ------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, **values: str) -> None:
        with self.tx() as db:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(values.items()))

    # -- the driver lock -------------------------------------------------------------
    def acquire(self) -> None:
        """Take the sweep for this process, or raise LedgerLocked naming the live driver."""
        host, pid, now = socket.gethostname(), os.getpid(), time.time()
        with self.tx() as db:
            row = db.execute("SELECT host, pid, heartbeat FROM driver").fetchone()
            if row is not None and not (row[0] == host and row[1] == pid):
                other_host, other_pid, beat = row
                alive = _pid_alive(other_pid) if other_host == host else now - beat < STALE_AFTER_S
                if alive:
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

    def beat(self) -> None:
        if self._owner:
            self.db.execute(
                "UPDATE driver SET heartbeat=? WHERE pid=? AND host=?",
                (time.time(), os.getpid(), socket.gethostname()),
            )

    def release(self) -> None:
        if self._owner:
            self.db.execute(
                "DELETE FROM driver WHERE pid=? AND host=?", (os.getpid(), socket.gethostname())
            )
            self._owner = False

    def driver(self) -> dict | None:
        row = self.db.execute("SELECT host, pid, started, heartbeat FROM driver").fetchone()
        return dict(zip(("host", "pid", "started", "heartbeat"), row, strict=True)) if row else None

    # -- trials ------------------------------------------------------------------------
    def add_trials(self, trials: Iterable[tuple[str, list[str], dict, str]]) -> int:
        """Record (id, overrides, axes, config_yaml) trials; existing ids are left untouched."""
        now = time.time()
        rows = [(tid, json.dumps(ov), json.dumps(axes), cfg, now) for tid, ov, axes, cfg in trials]
        with self.tx() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO trials (id, overrides, axes, config, created) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            return db.total_changes - before

    def trials(self, states: Iterable[str] | None = None) -> list[TrialRow]:
        fields = list(TrialRow.__dataclass_fields__)
        out = []
        for r in self.select(fields, states):
            d = dict(zip(fields, r, strict=True))
            d["overrides"], d["axes"] = json.loads(d["overrides"]), json.loads(d["axes"])
            out.append(TrialRow(**d))
        return out

    def select(self, columns: Iterable[str], states: Iterable[str] | None = None) -> list[tuple]:
        """Raw values of a few columns of every trial (in ``states``), in creation order.

        For readers that need little of each row of a big ledger (``status`` never
        reads the configs, most of its bytes); JSON columns come back as text.
        """
        columns = list(columns)
        unknown = set(columns) - set(TrialRow.__dataclass_fields__)
        if unknown:
            raise ValueError(f"no such ledger columns: {sorted(unknown)}")
        sql, args = f"SELECT {', '.join(columns)} FROM trials", ()
        if states is not None:
            args = tuple(states)
            sql += f" WHERE state IN ({','.join('?' * len(args))})"
        return self.db.execute(sql + " ORDER BY created, id", args).fetchall()

    def counts(self) -> dict[str, int]:
        c = dict.fromkeys(STATES, 0)
        for state, n in self.db.execute("SELECT state, COUNT(*) FROM trials GROUP BY state"):
            c[state] = n
        return c

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

    def requeue_running(self) -> int:
        """Trials a dead driver left 'running' go back to pending (their checkpoints stay)."""
        with self.tx() as db:
            return db.execute("UPDATE trials SET state='pending' WHERE state='running'").rowcount

    def events(self, trial: str | None = None) -> list[tuple]:
        if trial is None:
            return list(self.db.execute("SELECT * FROM events ORDER BY time"))
        return list(self.db.execute("SELECT * FROM events WHERE trial=? ORDER BY time", (trial,)))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
