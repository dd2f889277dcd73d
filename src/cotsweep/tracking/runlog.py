"""Reading W&B's own record of a run: the transaction log (``.wandb``) of each run folder.

It is the ground truth of what W&B has: a resumed trial reads it to skip the
steps already mirrored, and tests read it to check what a run holds.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WANDB_DIR = "wandb"  # inside a trial directory (and a sweep directory, for its summary run)

# A .wandb file is a LevelDB-style log: a 7-byte header (":W&B", magic 0xBEE1,
# version), then 32 KiB blocks of chunks (crc32 of type+data, length, type
# FULL/FIRST/MIDDLE/LAST); each record is a wandb_internal_pb2.Record.
_BLOCK, _CHUNK_HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def transaction_records(path: Path) -> Iterator[Any]:
    """The records of one run's .wandb file, stopping quietly at a torn or corrupt tail."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B transaction log")
    pos, parts = _CHUNK_HEADER, b""
    while pos + _CHUNK_HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _CHUNK_HEADER:  # block trailer
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + _CHUNK_HEADER])
        chunk = data[pos + _CHUNK_HEADER : pos + _CHUNK_HEADER + length]
        if len(chunk) < length or zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
            return
        pos += _CHUNK_HEADER + length
        if kind == _FULL:
            parts = chunk
        elif kind in (_FIRST, _MIDDLE):
            parts = chunk if kind == _FIRST else parts + chunk
            continue
        elif kind == _LAST:
            parts += chunk
        else:
            return
        record = pb.Record()
        record.ParseFromString(parts)
        parts = b""
        yield record


def _put(into: dict, item: Any) -> None:
    """Set one config/history/summary item; nested keys (a table's fields) become nested dicts."""
    value = json.loads(item.value_json)
    if item.key:
        into[item.key] = value
        return
    *parents, last = item.nested_key
    for k in parents:
        into = into.setdefault(k, {})
    into[last] = value


def _drop(into: dict, item: Any) -> None:
    *parents, last = [item.key] if item.key else list(item.nested_key)
    for k in parents:
        into = into.get(k, {})
    into.pop(last, None)


@dataclass
class RunLog:
    """What one W&B run folder holds, read back from its transaction log."""

    path: Path
    run_id: str
    start_time: float
    config: dict
    history: list[dict]  # one dict per row, with "_step"
    summary: dict
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)


def read_run_log(path: Path) -> RunLog:
    """Parse a run folder (or its .wandb file): config, history rows and summary."""
    path = Path(path)
    file = path if path.suffix == ".wandb" else next(path.glob("run-*.wandb"))
    out = RunLog(path=file.parent, run_id="", start_time=0.0, config={}, history=[], summary={})
    for rec in transaction_records(file):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out.run_id, out.name, out.group, out.job_type = (
                r.run_id,
                r.display_name,
                r.run_group,
                r.job_type,
            )
            out.tags = list(r.tags)
            out.start_time = r.start_time.seconds + r.start_time.nanos / 1e9
            for item in r.config.update:
                _put(out.config, item)
        elif kind == "config":
            for item in rec.config.update:
                _put(out.config, item)
        elif kind == "history":
            row: dict = {}
            for item in rec.history.item:
                _put(row, item)
            row.setdefault("_step", rec.history.step.num)
            out.history.append(row)
        elif kind == "summary":
            for item in rec.summary.update:
                _put(out.summary, item)
            for item in rec.summary.remove:
                _drop(out.summary, item)
    for k, v in list(out.config.items()):  # wandb stores each top-level key as {"value": ...}
        if isinstance(v, dict) and set(v) == {"value"}:
            out.config[k] = v["value"]
    return out


def run_folders(wandb_dir: Path, run_id: str | None = None) -> list[Path]:
    """Run folders under a wandb/ directory (all, or one id's), oldest first, links skipped."""
    wandb_dir = Path(wandb_dir)
    pattern = f"*/run-{run_id}.wandb" if run_id else "*/run-*.wandb"
    found = []
    for f in wandb_dir.glob(pattern):
        if f.parent.is_symlink():  # latest-run
            continue
        try:
            start = next(
                (
                    r.run.start_time.seconds + r.run.start_time.nanos / 1e9
                    for r in transaction_records(f)
                    if r.HasField("run")
                ),
                0.0,
            )
        except (OSError, ValueError):
            start = 0.0
        found.append((start, f.stat().st_mtime, f.parent))
    return [p for _, _, p in sorted(found)]


def last_logged_step(wandb_dir: Path, run_id: str) -> int:
    """The highest history step any folder of this run holds (-1 when none)."""
    last = -1
    for folder in run_folders(wandb_dir, run_id):
        try:
            for rec in transaction_records(folder / f"run-{run_id}.wandb"):
                if rec.HasField("history"):
                    last = max(last, rec.history.step.num)
        except (OSError, ValueError):
            continue
    return last
