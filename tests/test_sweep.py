"""The sweep engine on a real local Ray (loopback), real Hydra, real SQLite, real training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sweep_support import ledger_rows, losses, start_driver, sweep_file

import cotsweep  # noqa: F401  (sets Ray's environment before ray is imported)
from cotsweep.cli import main as cli
from cotsweep.status import status
from cotsweep.sweep.engine import launch, resume
from cotsweep.sweep.grid import config_yaml, expand


def run(path: Path, d: Path, *overrides: str, **kw) -> object:
    return launch(str(path), list(overrides), d, progress=False, **kw)


# ---------------------------------------------------------------- ids and grid
def test_ids_ignore_what_does_not_change_results(tmp_path):
    sw = sweep_file(tmp_path, "g", {"task": "modadd,s5", "seed": "0,1"})
    a = {t.id for t in expand(str(sw), [], tmp_path / "a")}
    b = {
        t.id
        for t in expand(
            str(sw),
            ["tracking.wandb.project=other", "resources.gpus=0.5", "run.log_every=5"],
            tmp_path / "b",
        )
    }
    c = {t.id for t in expand(str(sw), ["train.lr=0.002"], tmp_path / "c")}
    assert len(a) == 4 and a == b
    assert not a & c  # a result-changing key changes every id


def test_relaunch_runs_nothing_and_extension_runs_only_new_points(tmp_path, ray_local):
    sw = sweep_file(tmp_path, "ext", {"task": "modadd", "seed": "0,1"}, steps=20)
    d = tmp_path / "sweep"
    first = run(sw, d)
    assert first.ok and first.ran == 2
    mtimes = {p: p.stat().st_mtime_ns for p in d.glob("trials/*/result.json")}
    again = run(sw, d)
    assert again.ok and again.ran == 0
    more = run(sw, d, "seed=0,1,2")
    assert more.ok and more.ran == 1 and more.counts["done"] == 3
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # finished trials untouched
    st = status(d)
    assert st["counts"] == {"pending": 0, "running": 0, "done": 3, "failed": 0}
    assert set(st["axes"]["seed"]) == {"0", "1", "2"}


def test_failing_trial_is_retried_then_failed_while_others_complete(tmp_path, ray_local):
    # a directory that holds another trial's files makes one trial raise at every attempt
    sw = sweep_file(tmp_path, "fail", {"seed": "0,1,2"}, steps=10)
    d = tmp_path / "sweep"
    trials = expand(str(sw), [], d)
    victim = trials[1].id
    foreign = d / "trials" / victim / "config.yaml"
    foreign.parent.mkdir(parents=True)
    foreign.write_text(config_yaml(trials[0].cfg))
    out = run(sw, d)
    assert not out.ok and out.counts["done"] == 2 and out.counts["failed"] == 1
    bad = ledger_rows(d)[victim]
    assert bad["state"] == "failed" and bad["attempts"] == 2 and bad["error_kind"] == "error"
    assert bad["error"].startswith("ConfigError: run.out_dir="), bad["error"]
    assert str(d / "trials" / victim) in bad["error"]  # the error names the trial's directory
    assert "Traceback" in bad["traceback"] and "\x1b[" not in bad["traceback"]
    assert foreign.read_text() == config_yaml(trials[0].cfg)  # nothing destroyed
    st = status(d)
    assert st["failures"][0]["id"] == victim and st["failures"][0]["attempts"] == 2
    # the retry budget lives in the ledger: a resume does not start it again
    again = resume(d, progress=False)
    assert again.ran == 0 and again.exhausted == 1
    # unless asked to; the journal keeps the earlier attempts as history
    again = resume(d, progress=False, reset_attempts=True)
    assert again.ran == 2 and again.counts["failed"] == 1
    assert ledger_rows(d)[victim]["attempts"] == 2 and ledger_rows(d)[victim]["failures"] == 2


def test_killed_worker_is_retried_from_its_checkpoint_with_identical_metrics(tmp_path, ray_local):
    sw = sweep_file(
        tmp_path, "kill", {"task": "modadd", "seed": "0"}, steps=1500, ckpt=100, eval_every=500
    )
    ref = tmp_path / "undisturbed"
    assert run(sw, ref).ok
    d = tmp_path / "killed"
    import threading

    def killer():
        deadline = time.time() + 120
        while time.time() < deadline:
            trials = list(d.glob("trials/*"))
            if trials and (trials[0] / "metrics.jsonl").exists() and len(losses(trials[0])) >= 30:
                pid = json.loads((trials[0] / "attempts.jsonl").read_text().splitlines()[0])["pid"]
                os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    t = threading.Thread(target=killer)
    t.start()
    # a short stall grace: the dead worker's heartbeat stops while Ray starts its retry,
    # which must not be taken for a stall (that would cancel the retry and spend an attempt)
    out = run(sw, d, "resources.stall_after_s=8")
    t.join()
    assert out.ok
    (tid,) = ledger_rows(d)
    assert ledger_rows(d)[tid]["attempts"] == 2 and ledger_rows(d)[tid]["failures"] == 0
    assert losses(d / "trials" / tid) == losses(ref / "trials" / tid)
    a = json.loads((d / "trials" / tid / "result.json").read_text())
    b = json.loads((ref / "trials" / tid / "result.json").read_text())
    assert a["acc"] == b["acc"] and a["steps"] == b["steps"] == 1500


def test_data_parallel_trial_matches_one_worker(tmp_path, ray_local):
    sw = sweep_file(tmp_path, "ddp", {"task": "modadd", "seed": "0"}, steps=30, eval_every=30)
    one, two = tmp_path / "one", tmp_path / "two"
    assert run(sw, one).ok
    assert run(sw, two, "resources.workers=2").ok
    (tid,) = ledger_rows(one)
    a, b = losses(one / "trials" / tid), losses(two / "trials" / tid)
    assert [s for s, _ in a] == [s for s, _ in b]
    assert all(abs(x - y) < 1e-4 for (_, x), (_, y) in zip(a, b, strict=True)), (a, b)
    assert json.loads((two / "trials" / tid / "result.json").read_text())["world_size"] == 2


def test_two_node_cluster_loses_a_node_and_every_trial_still_finishes(tmp_path):
    sw = sweep_file(
        tmp_path, "nodes", {"task": "modadd", "seed": "0,1,2,3"}, steps=600, ckpt=50, eval_every=300
    )
    d = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "multinode_driver.py"), str(sw), str(d)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["killed"], "the worker node was never lost: the test proved nothing"
    assert summary["ok"] and summary["counts"]["done"] == 4, summary
    rows = ledger_rows(d)
    assert max(r["attempts"] for r in rows.values()) >= 2  # the lost node's trial ran again
    for tid in rows:  # and continued from its checkpoint to the full run
        assert json.loads((d / "trials" / tid / "result.json").read_text())["steps"] == 600


def test_ctrl_c_and_sigterm_to_the_process_group_checkpoint_trials_and_return_them_to_pending(
    tmp_path,
):
    """A terminal's Ctrl-C and Slurm's SIGTERM both reach the driver's whole process group
    (Ray's own processes and the workers too): trials checkpoint, return to pending, and the
    driver exits 130 and 75; Ray outlives both signals long enough to hear them return."""
    sw = sweep_file(
        tmp_path,
        "ctrlc",
        {"task": "modadd", "seed": "0,1,2"},
        steps=2000,
        ckpt=500,
        eval_every=1000,
    )
    d = tmp_path / "sweep"

    def logged() -> int:
        return sum(len(losses(t)) for t in d.glob("trials/*") if (t / "metrics.jsonl").exists())

    step_at_stop: dict[str, int] = {}
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 75)):
        before = logged()
        driver = start_driver(sw, d, max_concurrent=2, capture=True)
        try:
            deadline = time.time() + 120
            while time.time() < deadline and logged() < before + 5:
                time.sleep(0.1)
            if logged() < before + 5:
                pytest.fail("no trial trained")
            os.killpg(driver.pid, sig)  # the whole group, as a terminal or Slurm does
            out, _ = driver.communicate(timeout=90)
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait()
        assert driver.returncode == code, out
        rows = ledger_rows(d)
        # none running, none failed, none lost
        assert {r["state"] for r in rows.values()} == {"pending"}, rows
        stopped = [t for t in d.glob("trials/*") if (t / "metrics.jsonl").exists()]
        assert stopped and all((t / "ckpt" / "last.pt").exists() for t in stopped)
        # a trial stopped before its first log step has no loss yet (seen on a loaded machine)
        step_at_stop.update({t.name: (losses(t) or [(0, None)])[-1][0] for t in stopped})
    assert resume(d, progress=False).ok  # and nothing was lost: every trial finishes
    for name, at_stop in step_at_stop.items():
        steps = [s for s, _ in losses(d / "trials" / name)]
        assert steps == sorted(set(steps)) and steps[-1] == 2000 and at_stop < 2000


# ---------------------------------------------------------------- bad input
# (every refusal of bad input: tests/test_bad_input.py)
def test_second_driver_on_a_live_sweep_is_refused(tmp_path, capsys):
    from cotsweep.ledger import Ledger

    sw = sweep_file(tmp_path, "busy", {"seed": "0,1"})
    d = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from cotsweep.ledger import Ledger; l = Ledger({str(d)!r}, create=True); l.acquire(); "
            "print('locked', flush=True); import time; time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = (d / "ledger.sqlite").read_bytes()
        assert cli(["launch", str(sw), "--dir", str(d), "--no-progress"]) == 2
        err = capsys.readouterr().err.replace("\n", " ")
        assert f"PID {holder.pid}" in err and "host" in err
        assert Ledger(d).trials() == []  # nothing recorded
        assert (d / "ledger.sqlite").read_bytes() == before
    finally:
        holder.kill()
        holder.wait()
    # the dead driver's lock is stale now: a new launch takes it over
    lg = Ledger(d)
    lg.acquire()
    assert lg.driver()["pid"] == os.getpid()
    lg.release()


# ---------------------------------------------------------------- crashes
def test_sigkilled_driver_then_resume_reruns_no_finished_trial(tmp_path):
    sw = sweep_file(
        tmp_path,
        "crash",
        {"task": "modadd", "seed": "0,1,2,3,4,5"},
        steps=300,
        ckpt=50,
        eval_every=150,
    )
    d = tmp_path / "sweep"
    driver = start_driver(sw, d, max_concurrent=1)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            if (d / "ledger.sqlite").exists() and sum(
                r["state"] == "done" for r in ledger_rows(d).values()
            ) >= 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the driver did not finish two trials in time")
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    time.sleep(1.0)  # let Ray's reaper take the orphaned workers down
    done_before = {
        tid: (d / "trials" / tid / "result.json").stat().st_mtime_ns
        for tid, r in ledger_rows(d).items()
        if r["state"] == "done"
    }
    assert ledger_rows(d) and len(done_before) < 6
    st = status(d)  # the dead driver is named as gone, its trials as pending
    assert not st["driver_alive"] and st["counts"]["running"] == 0
    assert f"PID {driver.pid}" in st["advice"] and f"cotsweep resume {d}" in st["advice"]
    out = resume(d, progress=False)
    assert out.ok and out.counts["done"] == 6
    assert out.ran == 6 - len(done_before)
    for tid, mtime in done_before.items():
        assert (d / "trials" / tid / "result.json").stat().st_mtime_ns == mtime
