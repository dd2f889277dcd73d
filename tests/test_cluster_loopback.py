"""docs/CLUSTER.md's "By hand" path, run as an operator runs it, on loopback nodes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


# ---------------------------------------------------------------- what it found, checked fast
def in_a_ray_job(monkeypatch: pytest.MonkeyPatch, submission_id: str) -> None:
    """The environment Ray's job supervisor gives the entrypoint of `ray job submit`."""
    config = {"runtime_env": {}, "metadata": {"job_submission_id": submission_id}}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(config))


@pytest.mark.parametrize("verb", [["launch", "smoke"], ["launch", "smoke", "--dir", "runs/smoke"]])
def test_relative_sweep_dir_is_refused_inside_a_ray_job(
    verb: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """It would name a folder in the job's copy of the checkout, on the head alone."""
    from cotsweep.cli import main as cli

    monkeypatch.chdir(tmp_path)  # where a job's working_dir copy would be
    in_a_ray_job(monkeypatch, "raysubmit_test")
    assert cli([*verb, "--no-progress"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "inside a Ray job it must be an absolute path on storage every node mounts" in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_status_names_the_ray_job_that_drives_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sweep_support import sweep_file

    from cotsweep.status import status
    from cotsweep.sweep.engine import prepare

    sweep = sweep_file(tmp_path, "job", {"seed": "0,1"})
    in_a_ray_job(monkeypatch, "raysubmit_test")
    _, _, ledger = prepare(str(sweep), [], tmp_path / "sweep")
    try:
        assert status(tmp_path / "sweep")["driver"]["ray_job"] == "raysubmit_test"
    finally:
        ledger.release()
        ledger.close()
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR")
    _, _, ledger = prepare(str(sweep), [], tmp_path / "sweep")  # a driver outside a job
    try:
        assert status(tmp_path / "sweep")["driver"]["ray_job"] is None
    finally:
        ledger.release()
        ledger.close()


def test_trial_stopped_while_queued_returns_without_an_attempt(tmp_path: Path) -> None:
    """On a cluster every trial waits in Ray's queue: a stop must not start each of them."""
    from conftest import tiny_cfg

    from cotsweep.sweep.grid import config_yaml
    from cotsweep.sweep.worker import execute

    trial = tmp_path / "trial"
    stop = tmp_path / ".stop"
    stop.touch()
    cfg = tiny_cfg([f"run.out_dir={trial}"])
    out = execute(config_yaml(cfg), str(stop))
    assert out["status"] == "interrupted" and out["attempts"] == 0, out
    assert not (trial / "attempts.jsonl").exists()
