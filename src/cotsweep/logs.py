"""A trial's own output, one file per attempt, and `cotsweep logs DIR TRIAL [--attempt K]`.

Ray keeps a worker's stdout and stderr in its own session logs, one file per
worker process, mixed with every other trial that worker ran, on whichever node
it ran, and gone with the Ray session. So the worker sends file descriptors 1
and 2 (Python's prints, warnings, logging, and what C extensions write) to
``DIR/trials/<id>/logs/attempt-K.log`` for as long as attempt K runs, and
writes the full traceback there when the trial raises; the ledger keeps only
its last lines. The files sit beside the trial's other files, on the storage
every node reaches, and outlive Ray.

Reading them imports nothing heavy: ``cotsweep logs`` is a light verb.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cotsweep.ledger import Ledger

LOGS = "logs"
_NAME = re.compile(r"attempt-(\d+)\.log")


class NoLogs(LookupError):
    """The trial or the attempt asked for has no log; the message says what there is."""


def log_path(trial_dir: Path, attempt: int) -> Path:
    return Path(trial_dir) / LOGS / f"attempt-{attempt}.log"


@contextmanager
def capture(trial_dir: Path, attempt: int | None) -> Iterator[Path | None]:
    """Send this process's stdout and stderr to the attempt's log while the block runs.

    ``attempt`` None captures nothing (the ranks of a data-parallel trial other than 0).
    The log is appended to, with a line per execution, so an attempt number counted
    again after ``resume --reset-attempts`` keeps the earlier output.
    """
    if attempt is None:
        yield None
        return
    path = log_path(trial_dir, attempt)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o666)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    os.write(
        fd,
        f"== attempt {attempt} on {socket.gethostname()} (pid {os.getpid()}) at {stamp}\n".encode(),
    )
    _flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    # Python's own streams too: a host process (a test runner, a logging set-up) may have
    # replaced sys.stdout with an object that never writes to file descriptor 1
    streams = sys.stdout, sys.stderr
    text = open(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
    sys.stdout = sys.stderr = text
    try:
        yield path
    finally:
        text.flush()
        sys.stdout, sys.stderr = streams
        text.close()
        _flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (*saved, fd):
            os.close(f)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # closed or replaced by the host process
            pass


# ---------------------------------------------------------------- reading
def attempts_logged(trial_dir: Path) -> list[int]:
    """Attempt numbers with a log, in order."""
    found = (_NAME.fullmatch(p.name) for p in (Path(trial_dir) / LOGS).glob("attempt-*.log"))
    return sorted(int(m.group(1)) for m in found if m)


def find_trial(sweep_dir: Path, trial: str) -> tuple[str, str]:
    """(id, state) of the trial whose id is ``trial`` or starts with it; NoLogs if none or many."""
    ledger = Ledger(sweep_dir, read_only=True)
    try:
        rows = ledger.db.execute(
            "SELECT id, state FROM trials WHERE substr(id, 1, ?) = ? ORDER BY id LIMIT 6",
            (len(trial), trial),
        ).fetchall()
    finally:
        ledger.close()
    exact = [r for r in rows if r[0] == trial]
    if exact or len(rows) == 1:
        return (exact or rows)[0]
    if not rows:
        raise NoLogs(f"no trial {trial!r} in {sweep_dir} (ids: cotsweep status {sweep_dir} --json)")
    ids = ", ".join(r[0][:16] for r in rows[:5])
    raise NoLogs(
        f"trial {trial!r} is ambiguous in {sweep_dir}: {ids}{', ...' if len(rows) > 5 else ''}"
    )


def read_log(sweep_dir: Path | str, trial: str, attempt: int | None = None) -> tuple[str, int, str]:
    """(id, attempt, text) of the trial's log: of ``attempt``, else of its latest attempt."""
    sweep_dir = Path(sweep_dir)
    tid, state = find_trial(sweep_dir, trial)
    trial_dir = sweep_dir / "trials" / tid
    have = attempts_logged(trial_dir)
    if not have:
        why = "it has not started yet" if state == "pending" else f"it is {state}"
        raise NoLogs(f"trial {tid} has no logs ({why}; logs are written from the attempt's start)")
    if attempt is None:
        attempt = have[-1]
    elif attempt not in have:
        raise NoLogs(
            f"--attempt {attempt}: trial {tid} has logs of attempt{'s' if len(have) > 1 else ''} "
            f"{', '.join(map(str, have))}"
        )
    return tid, attempt, log_path(trial_dir, attempt).read_text(errors="replace")
