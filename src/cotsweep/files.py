"""A trial's files: atomic writes, the metrics log, and their fixed names.

Everything about a trial lives at fixed paths in its directory::

    config.yaml      the resolved trial config
    metrics.jsonl    one JSON object per line, each with an explicit "step"
    result.json      final figures; its presence means the trial is done
    ckpt/last.pt     the latest checkpoint (model, optimiser, scheduler, step, RNG)
    heartbeat.json   step, time, host and pid of the live attempt
    attempts.jsonl   one line per execution (host, pid, time): the attempt count
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CONFIG, METRICS, RESULT, CKPT, HEARTBEAT, ATTEMPTS = (
    "config.yaml",
    "metrics.jsonl",
    "result.json",
    "ckpt/last.pt",
    "heartbeat.json",
    "attempts.jsonl",
)


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it.

    The file gets the mode the umask gives (0644 by default), as a plain open()
    would: colleagues reading a sweep on shared storage see its files.
    (``tempfile.mkstemp`` would make every file 0600.)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _create_beside(path: Path) -> tuple[int, str]:
    """A new, empty temporary file next to ``path``, created 0666 less the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # another writer's name: draw again
            continue


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


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
    """Every complete line; a torn last line (a crash mid-write) is dropped."""
    rows = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break
    except FileNotFoundError:
        pass
    return rows


class MetricsLog:
    """Append-only metrics.jsonl; on resume, cut back to the checkpoint's step."""

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = Path(path)
        if resume_step is not None:
            keep = [r for r in read_jsonl(self.path) if r.get("step", 0) <= resume_step]
            atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in keep))
        elif self.path.exists():
            self.path.unlink()
        self._f = open(self.path, "a")

    def write(self, step: int, metrics: dict) -> None:
        self._f.write(json.dumps({"step": step, **metrics}) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def record_attempt(trial_dir: Path) -> int:
    """Append this execution to attempts.jsonl; returns the attempt number (1-based)."""
    path = Path(trial_dir) / ATTEMPTS
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(
            json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})
            + "\n"
        )
        f.flush()
        os.fsync(f.fileno())
    return count_attempts(trial_dir)


def count_attempts(trial_dir: Path) -> int:
    return len(read_jsonl(Path(trial_dir) / ATTEMPTS))


def reset_attempts(trial_dirs: Iterable[Path]) -> None:
    for d in trial_dirs:
        (Path(d) / ATTEMPTS).unlink(missing_ok=True)
