"""`cotsweep status` on real ledgers: the ETA comes from measured throughput, not from 'running'."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cotsweep.cli import main
from cotsweep.ledger import Ledger
from cotsweep.status import status, union_length


def sweep_with_history(d: Path, driver_started: float | None) -> None:
    """14 trials, 10 s each, 2 training at a time while the driver keeps 4 in flight.

    Submitted at 0: a b (train 0-10), c d (queued, train 10-20); at 10: e f (20-30);
    at 20: g h; at 30: i j. Now (t=35): 6 finished, g h i j marked running, k l m n
    pending. What is left truly takes 35 s more (g h end at 40, then three pairs).
    """
    ledger = Ledger(d, create=True)
    ids = "abcdefghijklmn"
    ledger.add_trials([(t, [f"seed={i}"], {"seed": i}, "seed: 0\n") for i, t in enumerate(ids)])
    spans = {"a": (0, 10), "b": (0, 10), "c": (0, 20), "d": (0, 20), "e": (10, 30), "f": (10, 30)}
    changes = [
        (t, {"state": "done", "started": s, "ended": e, "wall_s": 10.0})
        for t, (s, e) in spans.items()
    ]
    changes += [
        (t, {"state": "running", "started": s})
        for t, s in zip("ghij", (20, 20, 30, 30), strict=True)
    ]
    ledger.update(changes)
    if driver_started is not None:
        ledger.db.execute(
            "INSERT INTO driver VALUES (1, 'node-1', 4242, ?, ?)", (driver_started, 34.0)
        )
    ledger.close()


def test_eta_from_measured_throughput_not_from_trials_marked_running(tmp_path: Path):
    sweep_with_history(tmp_path, driver_started=0.0)
    st = status(tmp_path, now=35.0)
    assert st["counts"] == {"pending": 4, "running": 4, "done": 6, "failed": 0}
    # 6 trials in 30 s of busy time: 0.2/s, 8 left: 40 s (the truth is 35 s). Dividing the
    # median wall by the 4 marked running gave 10 * ceil(8 / 4) = 20 s.
    assert st["eta_s"] == pytest.approx(40.0)
    assert st["throughput_per_min"] == pytest.approx(12.0)
    assert st["concurrency"] == pytest.approx(2.0)  # 60 s of training in 30 s


def test_running_splits_into_training_and_queued_in_ray_by_this_attempts_heartbeat(
    tmp_path: Path,
):
    sweep_with_history(tmp_path, driver_started=0.0)
    ledger = Ledger(tmp_path)
    # g h beat since their submission at 20; i was submitted at 30 and its heartbeat (12) is
    # an earlier attempt's; j has none: both wait in Ray's queue for a slot
    ledger.update(
        [("g", {"heartbeat": 34.0}), ("h", {"heartbeat": 33.5}), ("i", {"heartbeat": 12.0})]
    )
    ledger.close()
    st = status(tmp_path, now=35.0)
    assert st["counts"]["running"] == 4 and st["training_now"] == 2
    # a dead driver trains nothing: its trials are pending in truth
    assert status(tmp_path, now=86400.0)["training_now"] == 0


def test_eta_counts_only_busy_time_and_the_live_drivers_session(tmp_path: Path):
    sweep_with_history(tmp_path, driver_started=None)
    # a second, earlier session, a day before, twice as slow: its idle gap does not count
    ledger = Ledger(tmp_path)
    ledger.add_trials([(t, ["seed=0"], {"seed": 0}, "") for t in ("old1", "old2")])
    ledger.update(
        [(t, {"state": "done", "started": -86400.0, "ended": -86380.0}) for t in ("old1", "old2")]
    )
    ledger.close()
    # no live driver: all history, 8 trials in 50 s of busy time (not a day and 30 s)
    assert status(tmp_path, now=35.0)["eta_s"] == pytest.approx(8 / (8 / 50))
    # a live driver that started at 0: its own session alone, 6 trials in 30 s
    db = Ledger(tmp_path).db
    db.execute("INSERT INTO driver VALUES (1, 'node-1', 4242, 0.0, 34.0)")
    db.close()
    assert status(tmp_path, now=35.0)["eta_s"] == pytest.approx(40.0)
    # a driver whose heartbeat is a day old is dead: history again
    assert status(tmp_path, now=86400.0)["eta_s"] == pytest.approx(50.0)


def test_no_eta_before_anything_finished_or_when_nothing_is_left(tmp_path: Path):
    ledger = Ledger(tmp_path, create=True)
    ledger.add_trials([("a", ["seed=0"], {"seed": 0}, "")])
    ledger.close()
    assert status(tmp_path, now=1.0)["eta_s"] is None
    ledger = Ledger(tmp_path)
    ledger.update([("a", {"state": "done", "started": 0.0, "ended": 5.0, "wall_s": 4.0})])
    ledger.close()
    st = status(tmp_path, now=6.0)
    assert st["eta_s"] is None and st["throughput_per_min"] == pytest.approx(12.0)


def test_union_length():
    assert union_length([]) == 0
    assert union_length([(0, 10), (5, 15), (20, 25), (21, 22)]) == 20


def test_status_reads_without_writing(tmp_path: Path, capsys):
    sweep_with_history(tmp_path, driver_started=0.0)
    before = (tmp_path / "ledger.sqlite").read_bytes()
    assert main(["status", str(tmp_path), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["total"] == 14 and st["failures"] == []
    # SQLite may leave its WAL index beside the file; the ledger itself is untouched
    assert (tmp_path / "ledger.sqlite").read_bytes() == before
    assert (
        not (tmp_path / "ledger.sqlite-wal").exists()
        or not (tmp_path / "ledger.sqlite-wal").stat().st_size
    )
    assert main(["status", str(tmp_path / "nowhere")]) == 2
    assert "no sweep at" in capsys.readouterr().err
