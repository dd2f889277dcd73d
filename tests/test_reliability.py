"""Every failure path of a sweep, for real: a full disk (a small tmpfs), a deleted or damaged
ledger, SIGTERM / SIGUSR1 / `cotsweep stop`, a stalled worker (SIGSTOP), a time limit, errors
before a trial runs. Each ends with nothing lost, a clear message and a recovery command.

Sweeps run in this process on the session's embedded Ray (``ray_local``), with real trials;
signals are real signals to this process, the driver's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import tiny_cfg
from omegaconf import OmegaConf, open_dict
from sweep_support import ledger_rows, losses, sweep_file

import cotsweep  # noqa: F401  (sets Ray's environment before ray is imported)
from cotsweep import files
from cotsweep.cli import EXIT_BAD_INPUT, EXIT_STOPPED
from cotsweep.cli import main as cli
from cotsweep.errors import LedgerError
from cotsweep.ledger import BACKUP, Ledger
from cotsweep.status import status
from cotsweep.sweep.engine import launch, resume
from cotsweep.sweep.grid import config_yaml, expand

REPO = Path(__file__).parents[1]


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps what the CLI prints at the terminal's width (80 in a pipe), even inside a
    path; a wide one keeps each message on the line it was written as."""
    monkeypatch.setenv("COLUMNS", "1000")


def run(path: Path, d: Path, *overrides: str, **kw) -> object:
    return launch(str(path), list(overrides), d, progress=False, **kw)


def one_line(err: str) -> str:
    """What the CLI printed, with the terminal's wrapping undone."""
    return " ".join(err.split())


def when(
    condition: Callable[[], bool], then: Callable[[], None], timeout: float = 180
) -> threading.Thread:
    """Do ``then`` once ``condition`` holds (polled), on a helper thread."""

    def watch() -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if condition():
                then()
                return
            time.sleep(0.1)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def logged(d: Path) -> int:
    """Losses logged so far by all the trials of the sweep at ``d``."""
    return sum(len(losses(t)) for t in d.glob("trials/*") if (t / "metrics.jsonl").exists())


def training(d: Path, beyond: int = 0) -> Callable[[], bool]:
    """A condition: the sweep's trials have logged a few more losses than ``beyond``."""
    return lambda: logged(d) >= beyond + 3


def done_files(d: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in d.glob("trials/*/result.json")}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a disk that really fills (root only; skipped elsewhere)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(disk: Path) -> Path:
    """Write until the disk says ENOSPC, to the last byte; returns the filler (delete it to
    free the disk)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        chunk = 1 << 16
        while chunk:
            try:
                f.write(b"\0" * chunk)
            except OSError:
                chunk //= 2
    return filler


# ---------------------------------------------------------------- the ledger
def test_random_bytes_in_the_ledger_are_one_line_naming_the_file(tmp_path, capsys):
    sw = sweep_file(tmp_path, "bytes", {"seed": "0,1"})
    d = tmp_path / "sweep"
    Ledger(d, create=True).close()
    (d / "ledger.sqlite").write_bytes(os.urandom(16384))
    for args in (
        ["status", str(d)],
        ["resume", str(d), "--no-progress"],
        ["launch", str(sw), "--dir", str(d), "--no-progress"],
    ):
        assert cli(args) == EXIT_BAD_INPUT
        err = capsys.readouterr().err
        assert "Traceback" not in err and "sqlite3." not in err, err
        msg = one_line(err)
        assert f"ledger {d / 'ledger.sqlite'} is damaged" in msg, msg
        assert f"cotsweep rebuild {d}" in msg, msg


def test_a_deleted_ledger_is_noticed_at_the_next_transaction(tmp_path):
    ledger = Ledger(tmp_path, create=True)
    ledger.add_trials([("a", ["seed=0"], {"seed": 0}, "seed: 0\n")])
    (tmp_path / "ledger.sqlite").unlink()
    with pytest.raises(LedgerError, match="was deleted or replaced") as info:
        ledger.update([("a", {"state": "done"})])
    assert f"cotsweep rebuild {tmp_path}" in str(info.value)
    ledger.close()


def test_a_full_disk_reports_sqlites_own_error(small_disk):
    ledger = Ledger(small_disk, create=True)
    ledger.add_trials([("a", ["seed=0"], {"seed": 0}, "seed: 0\n")])
    filler = fill(small_disk)
    with pytest.raises(LedgerError) as info:
        ledger.add_trials([(f"t{i}", [], {}, "x" * 4096) for i in range(200)])
    msg = str(info.value)
    assert "database or disk is full" in msg and "cannot rollback" not in msg, msg
    assert f"cotsweep resume {small_disk}" in msg
    filler.unlink()
    assert [r.id for r in ledger.trials()] == ["a"]  # what was recorded is intact
    ledger.close()


def test_a_full_disk_mid_sweep_stops_cleanly_and_resume_loses_nothing(
    tmp_path, small_disk, ray_local
):
    sw = sweep_file(
        tmp_path, "full", {"task": "modadd", "seed": "0,1,2"}, steps=400, ckpt=50, eval_every=200
    )
    d = small_disk / "sweep"
    # the trials' files on another disk: the full disk hits the ledger (a trial's own
    # ENOSPC is an ordinary trial error, recorded as such)
    (tmp_path / "trials").mkdir()
    d.mkdir()
    (d / "trials").symlink_to(tmp_path / "trials")
    filled: list[Path] = []
    when(lambda: len(done_files(d)) >= 1, lambda: filled.append(fill(small_disk)))
    with pytest.raises(LedgerError) as info:
        run(sw, d, max_concurrent=1)
    msg = str(info.value)
    assert "database or disk is full" in msg and f"cotsweep resume {d}" in msg, msg
    filled[0].unlink()
    before = done_files(d)
    # the ledger is readable and whole (its lease still names this process, the driver, which
    # could not write its release: a new driver takes it over once this one is gone)
    assert status(d)["total"] == 3
    out = resume(d, progress=False)
    assert out.ok and out.counts["done"] == 3
    assert {p: done_files(d)[p] for p in before} == before  # nothing finished ran again
    for t in d.glob("trials/*"):
        steps = [s for s, _ in losses(t)]
        assert steps == sorted(set(steps)) and steps[-1] == 400


def test_deleted_then_damaged_ledger_is_rebuilt_from_the_trial_files(tmp_path, ray_local, capsys):
    sw = sweep_file(
        tmp_path, "lost", {"task": "modadd", "seed": "0,1,2,3"}, steps=150, ckpt=50, eval_every=75
    )
    d = tmp_path / "sweep"
    trials = expand(str(sw), [], d)
    bad = trials[3].id  # holds another trial's files: fails at every attempt
    (d / "trials" / bad).mkdir(parents=True)
    (d / "trials" / bad / "config.yaml").write_text(config_yaml(trials[0].cfg))
    when(lambda: len(done_files(d)) >= 2, lambda: (d / "ledger.sqlite").unlink())
    with pytest.raises(LedgerError, match="deleted or replaced"):
        run(sw, d, max_concurrent=1)
    assert cli(["status", str(d)]) == EXIT_BAD_INPUT
    assert f"cotsweep rebuild {d}" in one_line(capsys.readouterr().err)

    assert cli(["rebuild", str(d)]) == 0
    assert "rebuilt" in one_line(capsys.readouterr().err)
    truth = done_files(d)
    st = status(d)
    assert st["total"] == 4 and st["counts"]["done"] == len(truth) >= 2
    out = resume(d, progress=False)
    assert out.counts["done"] == 3 and out.counts["failed"] == 1
    assert {p: done_files(d)[p] for p in truth} == truth  # nothing finished ran again
    rows = ledger_rows(d)
    assert rows[bad]["failures"] == 2 and rows[bad]["error"].startswith("ConfigError")
    assert all(rows[p.parent.name]["attempts"] == 1 for p in truth)  # each ran once

    # random bytes now: the copy kept beside it still says what each trial is
    (d / "ledger.sqlite").write_bytes(os.urandom(8192))
    assert cli(["status", str(d)]) == EXIT_BAD_INPUT
    assert "is damaged" in one_line(capsys.readouterr().err)
    assert cli(["rebuild", str(d)]) == 0
    assert list(d.glob("ledger.sqlite.damaged-*"))  # kept, never deleted
    assert status(d)["counts"] == {"pending": 0, "running": 0, "done": 3, "failed": 1}
    assert ledger_rows(d)[bad]["failures"] == 2
    again = resume(d, progress=False)
    assert again.ran == 0 and again.exhausted == 1  # the failed one used its attempts

    # ledger and copy both gone: the trial files alone (the failing trial never wrote its
    # own config: its directory holds another's, which rebuild says and skips)
    (d / "ledger.sqlite").unlink()
    (d / BACKUP).unlink()
    capsys.readouterr()
    assert cli(["rebuild", str(d)]) == 0
    assert f"skipped 1 directories whose config.yaml is another trial's ({bad})" in one_line(
        capsys.readouterr().err
    )
    alone = status(d)
    assert alone["counts"] == {"pending": 0, "running": 0, "done": 3, "failed": 0}
    assert set(alone["axes"]["seed"]) == {"0", "1", "2"}  # axes: what differs between trials
    assert resume(d, progress=False).ran == 0
    assert {p: done_files(d)[p] for p in truth} == truth


# ---------------------------------------------------------------- stopping
def test_sigterm_stop_request_and_sigusr1_each_checkpoint_and_return_trials_to_pending(
    tmp_path, ray_local, capsys
):
    sw = sweep_file(
        tmp_path, "stop", {"task": "modadd", "seed": "0,1"}, steps=1500, ckpt=500, eval_every=750
    )
    d = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    stopper: list[subprocess.CompletedProcess] = []

    def stop_from_another_shell() -> None:  # same host: the CLI signals the lease's driver
        stopper.append(
            subprocess.run(
                [sys.executable, "-m", "cotsweep.cli", "stop", str(d)],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
        )

    def all_pending_with_checkpoints(out) -> None:
        assert out.interrupted and out.counts["pending"] == 2, out
        rows = ledger_rows(d)
        assert {r["state"] for r in rows.values()} == {"pending"}
        assert not any(r["failures"] for r in rows.values())
        for t in d.glob("trials/*"):
            if (t / "metrics.jsonl").exists():
                assert (t / files.CKPT).exists()

    helper = when(training(d), stop_from_another_shell)
    out = run(sw, d, max_concurrent=2)
    assert out.stopped_by == "SIGTERM"
    all_pending_with_checkpoints(out)
    helper.join(timeout=60)  # `cotsweep stop` waits to see the driver leave
    assert stopper[0].returncode == 0 and "it stopped" in one_line(stopper[0].stderr)

    # from another host: a stop request in the sweep directory, through the CLI's exit code
    when(training(d, logged(d)), lambda: (d / "stop.request").write_text("{}\n"))
    assert cli(["resume", str(d), "--no-progress", "--no-report"]) == EXIT_STOPPED
    assert "stopped (stop request)" in one_line(capsys.readouterr().err)
    assert not (d / "stop.request").exists()

    # Slurm's warning before pre-emption
    when(training(d, logged(d)), lambda: os.kill(os.getpid(), signal.SIGUSR1))
    out = resume(d, progress=False)
    assert out.stopped_by == "SIGUSR1"
    all_pending_with_checkpoints(out)

    assert resume(d, progress=False).ok
    for t in d.glob("trials/*"):
        steps = [s for s, _ in losses(t)]
        assert steps == sorted(set(steps)) and steps[-1] == 1500
    assert cli(["stop", str(d)]) == 0  # no driver: nothing to stop, said so
    assert "nothing to stop" in one_line(capsys.readouterr().err)


# ---------------------------------------------------------------- liveness
def test_a_stalled_worker_is_cancelled_and_retried_without_anyone_watching(tmp_path, ray_local):
    sw = sweep_file(
        tmp_path, "stall", {"task": "modadd", "seed": "0"}, steps=1000, ckpt=100, eval_every=500
    )
    d = tmp_path / "sweep"
    stopped: list[int] = []

    def beat() -> dict:
        return next((files.read_json(p) or {} for p in d.glob("trials/*/heartbeat.json")), {})

    def sigstop() -> None:
        pid = beat()["pid"]
        stopped.append(pid)
        os.kill(pid, signal.SIGSTOP)

    def past_first_checkpoint() -> bool:
        # the metrics log, not the heartbeat's step: on a fast machine the whole trial can run
        # between two heartbeats, while every logged loss is on disk as it happens
        try:
            logged_steps = [
                s for t in d.glob("trials/*/metrics.jsonl") for s, _ in losses(t.parent)
            ]
        except ValueError:  # a line read while it is being written
            return False
        return bool(beat().get("pid")) and max(logged_steps, default=0) >= 150

    when(past_first_checkpoint, sigstop)
    try:
        out = run(sw, d, "resources.stall_after_s=10", max_concurrent=1)
    finally:
        for pid in stopped:  # never leave a stopped process behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert stopped and out.ok, out
    (tid,) = ledger_rows(d)
    row = ledger_rows(d)[tid]
    assert row["failures"] == 1 and row["attempts"] == 2, row
    events = Ledger(d, read_only=True).events(tid)
    (stall,) = [e for e in events if e[2] == "stalled"]
    assert "no heartbeat for" in stall[3] and f"PID {stopped[0]}" in stall[3]
    steps = [s for s, _ in losses(d / "trials" / tid)]
    assert steps == sorted(set(steps)) and steps[-1] == 1000
    journal = files.journal_records(d / "trials" / tid)
    assert any(r.get("status") == "stalled" for r in journal)  # for a rebuilt ledger too


def test_a_time_limit_checkpoints_and_stops_the_attempt(tmp):
    from cotsweep.trial import TrialTimedOut, run_trial

    cfg = tiny_cfg(
        ["task=modadd", "task.length=3", "train.steps=1000000", "resources.time_limit_s=1"]
    )
    t0 = time.monotonic()
    with pytest.raises(TrialTimedOut, match="time limit of 1 s") as info:
        run_trial(cfg, tmp)
    assert time.monotonic() - t0 < 60
    import torch

    assert torch.load(tmp / files.CKPT, weights_only=True)["state"]["step"] == info.value.step


# ---------------------------------------------------------------- errors
def test_an_error_before_the_trial_runs_is_recorded_with_type_path_and_traceback(tmp_path):
    from cotsweep.sweep.worker import execute

    cfg = tiny_cfg(["task=modadd", "task.length=3", "train.steps=2"])
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the trial's directory should be\n")
    with open_dict(cfg):
        cfg.run.out_dir = str(blocked)
    out = execute(OmegaConf.to_yaml(cfg), None)
    assert out["status"] == "error"
    assert out["error"].startswith("NotADirectoryError") and str(blocked) in out["error"]
    assert "Traceback" in out["traceback"] and "\x1b[" not in out["traceback"]
    json.dumps(out)  # plain data: it crosses Ray and lands in the ledger as it is


def test_notes_of_an_attempt_that_died_reach_the_ledger_with_the_next_outcome(tmp_path):
    # an attempt set a torn checkpoint aside, then died before returning its outcome (its
    # worker or the driver was killed): the next outcome carries that note, once
    from cotsweep.sweep.worker import execute

    cfg = tiny_cfg(["task=modadd", "task.length=3", "train.steps=2"])
    trial = tmp_path / "trial"
    with open_dict(cfg):
        cfg.run.out_dir = str(trial)
    files.journal(trial, {"event": "start", "host": "h", "pid": 1})
    files.record_event(trial, "checkpoint_unreadable", "ckpt/last.pt: torn; from ckpt/prev.pt")
    files.journal(trial, {"event": "end", "status": "lost", "by": "driver"})  # no notes there
    out = execute(OmegaConf.to_yaml(cfg), None)
    assert out["status"] == "done" and out["attempts"] == 2
    assert [e for e, _ in out["events"]] == ["checkpoint_unreadable"]
    again = execute(OmegaConf.to_yaml(cfg), None)  # found done: nothing to report again
    assert again["status"] == "done" and again["events"] == []
