"""`cotsweep status`: what a sweep's ledger says, read without importing torch, Hydra or Ray.

This module stands on the bottom layer alone (the ledger), so the command
answers in a fraction of a second on a ledger of any size while a sweep runs.

The ETA comes from measured throughput, not from how many trials are marked
running (the driver keeps up to two trials per CPU in flight, so that count
says how many are queued in Ray, not how many train at once). Each finished
trial was in the driver's hands from ``started`` to ``ended``; the union of
those intervals is the time the sweep was actually being worked on (gaps
between a stop and a resume do not count). Trials finished per second of it is
the throughput, and remaining trials divided by it is the ETA. While a driver
is live, only the trials of its own session are counted (once it has finished
any), so a resume on another cluster is not judged by the last one. The same
intervals give the real concurrency: the trials' own wall time over that busy
time, i.e. how many trained side by side on average.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from cotsweep.ledger import STATES, Ledger, driver_alive
from cotsweep.selection import Selection, resolve

# what `status` calls stalled when the sweep does not say (resources.stall_after_s's default)
DEFAULT_STALL_AFTER_S = 300.0


def status(
    sweep_dir: Path | str, now: float | None = None, selection: Selection | None = None
) -> dict:
    """Counts per state, per-axis breakdown, failures with their errors, ETA — stable JSON.

    ``selection`` (filters by axis and state) narrows every figure to the trials it takes;
    an axis or value the ledger does not know raises SelectionError.
    """
    return summarise(sweep_dir, now, selection)[0]


def summarise(
    sweep_dir: Path | str, now: float | None = None, selection: Selection | None = None
) -> tuple[dict, Selection]:
    """:func:`status`'s figures, and the selection with its axes named by their full keys."""
    now = time.time() if now is None else now
    selection = selection or Selection()
    ledger = Ledger(Path(sweep_dir), read_only=True)
    try:
        rows = ledger.select(("id", "state", "axes", "started", "ended", "wall_s"))
        failed = ledger.trials(("failed",))
        running = ledger.select(("id", "heartbeat", "step", "host", "started"), states=("running",))
        driver = ledger.driver()
        if driver is not None:  # the Ray job it runs in, for `ray job stop` / `ray job logs`
            driver["ray_job"] = ledger.get_meta("driver_job") or None
        name = ledger.get_meta("name")
        stall_after = float(ledger.get_meta("stall_after_s") or DEFAULT_STALL_AFTER_S)
    finally:
        ledger.close()
    selection = resolve(selection, ((r[1], r[2]) for r in rows))
    counts = dict.fromkeys(STATES, 0)
    axes: dict[str, dict[str, dict[str, int]]] = {}
    spans, taken = [], set()
    for tid, state, point, started, ended, wall in rows:
        parsed = json.loads(point)
        if not selection.matches(state, parsed):
            continue
        taken.add(tid)
        counts[state] += 1
        for k, v in parsed.items():
            axes.setdefault(k, {}).setdefault(str(v), dict.fromkeys(STATES, 0))[state] += 1
        if state in ("done", "failed"):
            spans.append((started, ended, wall))
    axes = {k: v for k, v in axes.items() if len(v) > 1}  # only what varies is an axis
    failures = [
        {
            "id": r.id,
            "kind": r.error_kind,
            "error": r.error,
            "attempts": r.attempts,
            "overrides": r.overrides,
            "traceback_tail": (r.traceback or "").strip().splitlines()[-1:] or None,
        }
        for r in failed
        if r.id in taken
    ]
    live = driver is not None and driver_alive(driver, now)
    pace = throughput(spans, session_start=driver["started"] if live else None)
    remaining = counts["pending"] + counts["running"]
    eta = remaining / pace["per_s"] if remaining and pace["per_s"] else None
    left_running, stalled, advice = 0, [], None
    if driver is not None and not live:
        # a driver that died (SIGKILL, a lost node) left its trials marked running: they
        # are pending in truth, and the next driver puts them back
        left_running = counts["running"]
        counts = {**counts, "pending": counts["pending"] + left_running, "running": 0}
        advice = (
            f"the driver (host {driver['host']}, PID {driver['pid']}) is gone: last heartbeat "
            f"{now - driver['heartbeat']:.0f} s ago"
            + (f", {left_running} trials were running" if left_running else "")
            + f"; continue with: cotsweep resume {ledger.dir}"
        )
    elif driver is None and counts["running"]:
        advice = f"no driver holds this sweep; continue with: cotsweep resume {ledger.dir}"
    elif live:
        stalled = [
            {"id": tid, "heartbeat_age_s": now - beat, "step": step, "host": host}
            for tid, beat, step, host, _ in running
            if tid in taken and beat is not None and now - beat > stall_after
        ]
    # a trial marked running is in Ray's hands: it trains once its attempt has beaten (a
    # heartbeat newer than its submission), else it waits in Ray's queue for a free slot
    training_now = (
        sum(
            1
            for tid, beat, _, _, started in running
            if tid in taken and beat is not None and started is not None and beat >= started
        )
        if live
        else 0
    )
    figures = {
        "sweep": name,
        "dir": str(ledger.dir),
        "total": len(taken),
        "selection": selection.describe() or None,
        "counts": counts,
        "axes": axes,
        "failures": failures,
        "eta_s": eta,
        "throughput_per_min": pace["per_s"] * 60 if pace["per_s"] else None,
        "concurrency": pace["concurrency"],
        "driver": driver,
        "driver_alive": live,
        "left_running": left_running,
        "training_now": training_now,
        "stalled": stalled,
        "advice": advice,
    }
    return figures, selection


def throughput(
    spans: list[tuple[float | None, float | None, float | None]],
    session_start: float | None = None,
) -> dict:
    """Finished trials per second of busy time, and how many trained at once on average.

    ``spans``: (started, ended, wall_s) of the finished trials. ``session_start``:
    a live driver's start; its session's trials alone are counted when it has
    finished any.
    """
    finished = [(s, e, w) for s, e, w in spans if s is not None and e is not None]
    start = float("-inf")
    if session_start is not None:
        current = [(s, e, w) for s, e, w in finished if e >= session_start]
        if current:
            finished, start = current, session_start
    busy = union_length([(max(s, start), e) for s, e, _ in finished])
    if not finished or busy <= 0:
        return {"per_s": None, "concurrency": None}
    walls = sum(w or 0.0 for _, _, w in finished)
    return {"per_s": len(finished) / busy, "concurrency": walls / busy if walls else None}


def union_length(spans: list[tuple[float, float]]) -> float:
    """Total length covered by the intervals (overlaps counted once)."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total
