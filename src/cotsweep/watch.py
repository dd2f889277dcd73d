"""`cotsweep status DIR --watch`: the live view of a running sweep, on the bottom layer alone.

Each refresh reads the ledger (read-only) and, for the trials marked running,
their own ``heartbeat.json`` and the tail of ``metrics.jsonl``: the step, the
latest eval accuracy, how long ago the trial last beat, and where it runs. A
trial marked running whose heartbeat is fresh is *training*; the others are
queued in Ray (the driver keeps more in flight than there are free cores) or
were lost, and the table says which.

The ETA is :func:`cotsweep.status.status`'s (finished trials per second of busy
time). Before any trial has finished, it is estimated from the training trials'
own step rates and how many train at once (the measured concurrency), and
marked as early.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from cotsweep import files
from cotsweep.ledger import Ledger
from cotsweep.selection import Selection
from cotsweep.status import summarise

# a heartbeat is written every ~5 s of training; older than this, the trial is not training now
TRAINING_WITHIN_S = 30.0
TAIL_BYTES = 64 * 1024  # enough of metrics.jsonl to hold its latest eval row


def snapshot(
    sweep_dir: Path | str, now: float | None = None, selection: Selection | None = None
) -> dict:
    """status() plus one row per running trial (step, latest accuracy, heartbeat age, host)."""
    now = time.time() if now is None else now
    sweep_dir = Path(sweep_dir)
    st, sel = summarise(sweep_dir, now=now, selection=selection)
    ledger = Ledger(sweep_dir, read_only=True)
    try:
        rows = ledger.select(
            ("id", "axes", "overrides", "started", "step", "heartbeat", "host", "config"),
            states=("running",),
        )
    finally:
        ledger.close()
    running = [
        _running_row(sweep_dir, tid, overrides, started, step, beat_at, host, config, now)
        for tid, axes, overrides, started, step, beat_at, host, config in rows
        if sel.matches("running", json.loads(axes))
    ]
    running.sort(key=lambda r: (not r["training"], r["id"]))
    training = [r for r in running if r["training"]]
    st["running"] = running
    st["training_now"] = len(training)
    st["eta_early"] = False
    if st["eta_s"] is None:
        early = _early_eta(st["counts"], training, now)
        if early is not None:
            st["eta_s"], st["eta_early"] = early, True
    st["time"] = now
    return st


def _running_row(
    sweep_dir: Path,
    tid: str,
    overrides: str,
    started: float | None,
    step: int | None,
    beat_at: float | None,
    host: str | None,
    config: str,
    now: float,
) -> dict:
    trial_dir = sweep_dir / "trials" / tid
    beat = files.read_json(trial_dir / files.HEARTBEAT) or {}
    # the trial's own heartbeat is fresher than the ledger's copy (the driver copies it every 5 s)
    beat_at = beat.get("time", beat_at)
    if beat_at is not None and started is not None and beat_at < started:
        beat_at = None  # a heartbeat of an earlier attempt: this one has not beaten yet
    step = beat.get("step", step) if beat_at is not None else None
    age = now - beat_at if beat_at is not None else None
    return {
        "id": tid,
        "point": " ".join(json.loads(overrides)),
        "step": step,
        "steps": _total_steps(config),
        "acc": latest(trial_dir / files.METRICS, "eval/acc"),
        "heartbeat_age_s": age,
        "host": beat.get("host", host),
        "started": started,
        "training": age is not None and age < TRAINING_WITHIN_S,
    }


def _total_steps(config_yaml: str) -> int | None:
    # the one line needed from the trial's config, without parsing all of it
    in_train = False
    for line in config_yaml.splitlines():
        if line.startswith("train:"):
            in_train = True
        elif in_train and line.startswith("  steps:"):
            try:
                return int(line.split(":", 1)[1])
            except ValueError:
                return None
        elif in_train and line and not line.startswith(" "):
            in_train = False
    return None


def latest(path: Path, key: str) -> float | None:
    """The last value of ``key`` in a metrics.jsonl, read from the file's tail only."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            tail = f.read().decode(errors="replace")
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        if f'"{key}"' not in line:
            continue
        try:
            value = json.loads(line).get(key)
        except json.JSONDecodeError:  # the cut first line, or a torn last one
            continue
        if isinstance(value, (int, float)):
            return float(value)
    return None


def _early_eta(counts: dict, training: list[dict], now: float) -> float | None:
    """Before any trial finished: a trial's length from the training trials' step rates, the
    work left in trial-equivalents, divided by how many train at once."""
    lengths, left = [], 0.0
    for r in training:
        if not (r["step"] and r["steps"] and r["started"] is not None):
            continue
        elapsed = now - r["heartbeat_age_s"] - r["started"]  # submission to its last beat
        if elapsed > 0:
            lengths.append(r["steps"] * elapsed / r["step"])
            left += 1 - min(r["step"], r["steps"]) / r["steps"]
    if not lengths:
        return None
    waiting = counts["pending"] + counts["running"] - len(training)
    return (waiting + left) * (sum(lengths) / len(lengths)) / len(training)


def watch(
    sweep_dir: Path | str,
    show: Callable[[dict], None],
    *,
    interval: float = 2.0,
    selection: Selection | None = None,
) -> dict:
    """Show a snapshot every ``interval`` seconds until no live driver runs the sweep; the last
    snapshot is returned (after one more, taken once the driver is gone)."""
    while True:
        snap = snapshot(sweep_dir, selection=selection)
        show(snap)
        if not snap["driver_alive"]:
            return snap
        time.sleep(interval)


# ---------------------------------------------------------------- the table
def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def render(snap: dict, rows: int = 20) -> object:
    """The snapshot as a rich renderable: a heading, counts and ETA, and the running trials."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table

    c = snap["counts"]
    what = f" ({snap['selection']})" if snap.get("selection") else ""
    lines = [
        f"[bold]{escape(str(snap['sweep']))}[/] at {escape(snap['dir'])}{escape(what)}: "
        f"{snap['total']} trials   " + "  ".join(f"{k} {v}" for k, v in c.items()),
    ]
    pace = []
    if snap["throughput_per_min"]:
        pace.append(f"{snap['throughput_per_min']:.1f} trials/min")
    if snap["concurrency"]:
        pace.append(f"{snap['concurrency']:.1f} trained at once")
    pace.append(f"{snap['training_now']} training now")
    eta = "-"
    if snap["eta_s"] is not None:
        eta = f"about {_minutes(snap['eta_s'])}" + (
            " (early estimate)" if snap["eta_early"] else ""
        )
    lines.append(f"ETA {eta}   ({', '.join(pace)})")
    if not snap["driver_alive"]:
        left = c["pending"] + c["running"]
        lines.append(
            "no driver is running this sweep"
            + (f"; {left} trials unfinished: cotsweep resume {snap['dir']}" if left else "")
        )
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col, just in (
        ("trial", "left"),
        ("point", "left"),
        ("step", "right"),
        ("acc", "right"),
        ("beat", "right"),
        ("host", "left"),
    ):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in snap["running"][:rows]:
        step = "queued" if not r["training"] and r["step"] is None else str(r["step"])
        if r["steps"] and r["step"] is not None:
            step += f"/{r['steps']}"
        table.add_row(
            r["id"][:12],
            escape(r["point"]),
            step,
            "-" if r["acc"] is None else f"{r['acc']:.3f}",
            _age(r["heartbeat_age_s"]) + ("" if r["training"] or r["step"] is None else " (stale)"),
            escape(str(r["host"] or "-")),
        )
    parts: list = [*lines]
    if snap["running"]:
        parts.append(table)
        if len(snap["running"]) > rows:
            parts.append(f"... and {len(snap['running']) - rows} more marked running")
    return Group(*parts)
