"""A trial's files: atomic writes, the metrics log, and their fixed names.

Everything about a trial lives at fixed paths in its directory::

    config.yaml      the resolved trial config
    metrics.jsonl    one JSON object per line, each with an explicit "step"
    result.json      final figures; its presence means the trial is done
    ckpt/last.pt     the latest checkpoint (model, optimiser, scheduler, step, RNG)
    ckpt/prev.pt     the one before it, for when the latest cannot be read
    heartbeat.json   step, time, host and pid of the live attempt
    attempts.jsonl   the trial's journal: one line per execution (host, pid, time: the
                     attempt count), and what happened to it (events, its outcome)
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

CONFIG, METRICS, RESULT, CKPT, CKPT_PREV, HEARTBEAT, ATTEMPTS = (
    "config.yaml",
    "metrics.jsonl",
    "result.json",
    "ckpt/last.pt",
    "ckpt/prev.pt",
    "heartbeat.json",
    "attempts.jsonl",
)


def atomic_write(path: Path, data: bytes | str, durable: bool = True) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it.

    The file gets the mode the umask gives (0644 by default), as a plain open()
    would: colleagues reading a sweep on shared storage see its files.
    (``tempfile.mkstemp`` would make every file 0600.) ``durable=False``: no
    fsync, for files only ever read while their writer lives (see below).
    """
    raw = data.encode() if isinstance(data, str) else data
    atomic_write_with(path, lambda f: f.write(raw), durable=durable)


def atomic_write_with(
    path: Path,
    write: Callable[[IO[bytes]], Any],
    keep_previous: Path | None = None,
    durable: bool = True,
) -> None:
    """``write`` into a uniquely named temporary file beside ``path``, fsync it, rename it over
    ``path`` and fsync the directory, so that a crash leaves the old file or the new one whole.

    ``keep_previous``: the file ``path`` held is renamed there first (an older generation
    to fall back on). A crash between the two renames leaves only that older generation.

    ``durable=False`` skips both fsyncs (5.5 ms a write on the development machine's
    disk, far more on network storage) and keeps the rename: readers still never see
    a torn file, but after a crash of the machine itself the file may be the old one,
    or empty. For the heartbeat, rewritten every few seconds and read only while its
    trial runs; a record that must outlive a crash (a result, a checkpoint, the config,
    the journal) stays durable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def _create_beside(path: Path) -> tuple[int, str]:
    """A new, empty temporary file next to ``path``, created 0666 less the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # another writer's name: draw again
            continue


def fsync_dir(directory: Path) -> None:
    """Make renames in ``directory`` durable (a file's own fsync does not cover its name)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms (or file systems) that cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: Path, obj: Any, durable: bool = True) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n", durable)


def read_json(path: Path) -> Any | None:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def load_yaml(text: str) -> dict:
    """A trial config's YAML (as OmegaConf.to_yaml wrote it), parsed with libyaml where present (4x faster)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def read_jsonl(path: Path) -> list[dict]:
    """Every complete line; a torn line (a crash mid-write) is skipped."""
    rows = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    except FileNotFoundError:
        pass
    return rows


class MetricsLog:
    """Append-only metrics.jsonl; on resume, cut back to the checkpoint's step."""

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = Path(path)
        self.kept: list[dict] = []  # the rows up to the checkpoint's step, on resume
        if resume_step is not None:
            self.kept = [r for r in read_jsonl(self.path) if r.get("step", 0) <= resume_step]
            atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in self.kept))
        elif self.path.exists():
            self.path.unlink()
        self._f = open(self.path, "a")

    def write(self, step: int, metrics: dict) -> None:
        self._f.write(json.dumps({"step": step, **metrics}) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


# ---------------------------------------------------------------- the trial's journal
# attempts.jsonl, append-only: a line per execution ({"event": "start", host, pid, time}),
# per notable event of one ({"event": "checkpoint_unreadable", ...}) and per outcome
# ({"event": "end", "status": ...}). It is what the trial itself wrote, so a ledger
# rebuilt from the trial files (`cotsweep rebuild`) knows attempts, failures and errors.


def journal(trial_dir: Path, record: dict) -> None:
    """Append one record to the trial's journal, durably."""
    path = Path(trial_dir) / ATTEMPTS
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({**record, "time": record.get("time", time.time())}) + "\n"
    with open(path, "a+b") as f:
        if f.tell() > 0:  # a torn last line (a crash mid-append) must not swallow this one
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = "\n" + line
        f.write(line.encode())
        f.flush()
        os.fsync(f.fileno())


def record_attempt(trial_dir: Path) -> int:
    """Journal the start of this execution; returns the attempt number (1-based)."""
    journal(trial_dir, {"event": "start", "host": socket.gethostname(), "pid": os.getpid()})
    return count_attempts(trial_dir)


def record_event(trial_dir: Path, event: str, detail: str) -> None:
    journal(trial_dir, {"event": event, "detail": detail})


def journal_records(trial_dir: Path) -> list[dict]:
    """The journal since the last attempts reset (lines before it are history only)."""
    rows = read_jsonl(Path(trial_dir) / ATTEMPTS)
    resets = [i for i, r in enumerate(rows) if r.get("event") == "reset"]
    return rows[resets[-1] + 1 :] if resets else rows


def count_attempts(trial_dir: Path) -> int:
    # lines without an event are starts written before the journal had events
    return sum(r.get("event", "start") == "start" for r in journal_records(trial_dir))


def attempt_events(trial_dir: Path) -> list[dict]:
    """The notes for the ledger: events journaled since the last outcome a worker returned
    (each returned outcome is journaled as an ``end``). That is this attempt's, and those of
    earlier attempts that died before returning theirs: a killed or stalled worker, or one
    whose driver was killed (an ``end`` the driver wrote for such a one carried no notes)."""
    rows = journal_records(trial_dir)
    ends = [i for i, r in enumerate(rows) if r.get("event") == "end" and r.get("by") != "driver"]
    mine = rows[ends[-1] + 1 :] if ends else rows
    return [r for r in mine if r.get("event", "start") not in ("start", "end", "reset")]


def reset_attempts(trial_dirs: Iterable[Path]) -> None:
    """Start counting attempts again; the journal keeps the earlier ones as history."""
    for d in trial_dirs:
        if (Path(d) / ATTEMPTS).exists():
            journal(d, {"event": "reset"})


def result_figure(result: dict, key: str) -> float:
    """One figure of a trial's result by dotted key (``acc``, ``eval.acc``), as a float.

    Raises ValueError naming the key and the figures there are, for a sweeper that
    optimises it (``run.objective``): a missing or empty figure is not a value to optimise.
    """
    node: Any = result
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        numbers = sorted(
            k for k, v in result.items() if isinstance(v, (int, float)) and v is not None
        )
        raise ValueError(
            f"run.objective={key!r}: the trial's result has no number there ({node!r}); "
            f"its figures: {', '.join(numbers)}"
        )
    return float(node)


def unwritable_dir(path: Path) -> str | None:
    """Why a directory cannot be created or written at ``path``, or None if it can.

    Checked before a sweep records anything: a path that is a file, or a
    read-only directory (or one inside a read-only directory), is named with
    what to do, instead of failing halfway with a traceback.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        return f"{path} exists and is not a directory; pass --dir a directory path"
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe != path and not probe.is_dir():
        return f"{path} cannot be created: {probe} is a file, not a directory; pass another --dir"
    if not os.access(probe, os.W_OK | os.X_OK):
        what = (
            "is not writable" if probe == path else f"cannot be created in {probe} (not writable)"
        )
        return f"{path} {what}; pass --dir a directory you can write, or fix its permissions"
    return None


def missing_dirs(path: Path) -> list[Path]:
    """The directories on the way to ``path`` (itself included) that do not exist yet, deepest first."""
    out = []
    path = Path(path)
    while not path.exists() and path.parent != path:
        out.append(path)
        path = path.parent
    return out
