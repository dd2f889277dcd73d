"""The W&B mirror, with real offline W&B runs read back from their transaction logs.

Trials are real (Hydra-composed tiny configs trained on CPU); W&B is real
(wandb.init, wandb-core) in offline mode inside :mod:`wandb_env`'s sandbox,
whose proxy tripwire would record any attempt to reach the network.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from pathlib import Path

import matplotlib
import pytest
from conftest import tiny_cfg
from omegaconf import OmegaConf, open_dict
from wandb_env import all_bytes_under, wandb_sandbox_fixture  # noqa: F401  (registers the fixture)

from cotsweep import files, tracking
from cotsweep.ids import trial_id
from cotsweep.trial import TrialInterrupted, run_trial

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

pytestmark = pytest.mark.usefixtures("wandb_sandbox")

TRIAL = ["task=modadd", "task.length=3", "tracking=wandb"]


def run_tracked(
    cfg, out: Path, **kwargs
) -> tuple[dict | None, tracking.Tracker | None, BaseException | None]:
    """A trial with its W&B mirror, the way the sweep worker runs it: finish always."""
    tracker = tracking.open_tracker(cfg, out, trial_id(cfg))
    try:
        return run_trial(cfg, out, tracker=tracker, **kwargs), tracker, None
    except Exception as e:
        return None, tracker, e
    finally:
        if tracker is not None:
            tracker.finish()


def history_by_step(folders: list[Path]) -> dict[int, list[dict]]:
    rows: dict[int, list[dict]] = {}
    for folder in folders:
        for row in tracking.read_run_log(folder).history:
            rows.setdefault(row["_step"], []).append(row)
    return rows


def metrics_by_step(out: Path) -> dict[int, dict]:
    merged: dict[int, dict] = {}
    for row in files.read_jsonl(out / files.METRICS):
        merged.setdefault(row["step"], {}).update(row)
    return merged


# ---------------------------------------------------------------- one trial, one run
def test_offline_run_holds_config_history_and_summary(tmp_path: Path):
    cfg = tiny_cfg(
        [*TRIAL, "setting=cot", "train.steps=40", "train.eval_every=20", "run.log_every=10"]
    )
    out = tmp_path / "trial"
    result, tracker, err = run_tracked(cfg, out)
    assert (
        err is None and tracker is not None and tracker.mode == "offline" and tracker.error is None
    )

    folders = tracking.run_folders(out / "wandb")
    assert len(folders) == 1 and folders[0].name.startswith("offline-run-")
    run = tracking.read_run_log(folders[0])
    tid = trial_id(cfg)
    assert run.run_id == tid
    assert run.name == "modadd-cot-d1-n3-s0"
    assert run.group == "train" and run.job_type == "modadd-cot"
    assert {"modadd", "cot", "depth=1", "n=3", "seed=0"} <= set(run.tags)

    # the run config is the resolved trial config, as written to config.yaml
    written = OmegaConf.to_container(OmegaConf.load(out / files.CONFIG), resolve=True)
    for key in ("task", "model", "train", "setting", "seed"):
        assert run.config[key] == written[key], key
    assert run.config["trial_id"] == tid

    # history: one row per logged step, every scalar equal to metrics.jsonl
    logged = metrics_by_step(out)
    rows = history_by_step(folders)
    assert sorted(rows) == sorted(logged) == [10, 20, 30, 40]
    for step, (row,) in rows.items():
        for key, value in logged[step].items():
            if key == "step":
                continue
            if isinstance(value, list):  # W&B can't chart a list; it is not a history scalar
                assert not isinstance(row.get(key), list)
            else:
                assert row[key] == pytest.approx(value), (step, key)
    assert {"train/loss", "train/lr", "perf/tokens_per_s", "eval/acc", "eval/chain_acc"} <= set(
        rows[40][0]
    )
    # the final per-step chain accuracy is a native line chart in the last row
    chart = rows[40][0]["eval/chain_acc_per_step_table"]
    assert chart["_type"] == "table-file" and chart["nrows"] == len(result["chain_acc_per_step"])

    # summary: the final figures of result.json
    for key in (
        "acc",
        "chain_acc",
        "steps",
        "params",
        "stop_reason",
        "trial_id",
        "chain_acc_per_step",
    ):
        assert run.summary[key] == result[key], key


def test_resumed_trial_has_one_value_per_step(tmp_path: Path):
    """A crash after the last checkpoint, an interrupt, then a finish: three offline folders, one run."""
    cfg = tiny_cfg(
        [
            *TRIAL,
            "train.steps=30",
            "train.eval_every=10",
            "run.log_every=5",
            "run.checkpoint_every=10",
        ]
    )
    out = tmp_path / "trial"

    class Crash(RuntimeError):
        pass

    def crash_at(step: int):
        calls = iter(range(1, 10**6))  # should_stop is asked once per step

        def should_stop() -> bool:
            if next(calls) == step:
                raise Crash(f"worker lost at step {step}")
            return False

        return should_stop

    # attempt 1 dies at step 17: checkpoint at 10, W&B already has 5, 10, 15
    _, t1, err = run_tracked(cfg, out, should_stop=crash_at(17))
    assert isinstance(err, Crash) and t1.error is None
    # attempt 2 resumes at 10 and replays 15 (skipped), then is interrupted at 22 (checkpointed)
    seen = iter(range(11, 10**6))
    _, t2, err = run_tracked(cfg, out, should_stop=lambda: next(seen) == 22)
    assert isinstance(err, TrialInterrupted) and err.step == 22
    assert t2.skipped_steps == [15] and t2.error is None
    # attempt 3 finishes from 22
    result, t3, err = run_tracked(cfg, out)
    assert err is None and result["steps"] == 30 and t3.skipped_steps == []

    folders = tracking.run_folders(out / "wandb", trial_id(cfg))
    assert len(folders) == 3 and len({f.name for f in folders}) == 3
    assert {tracking.read_run_log(f).run_id for f in folders} == {trial_id(cfg)}
    rows = history_by_step(folders)
    assert sorted(rows) == [5, 10, 15, 20, 25, 30]
    assert all(len(r) == 1 for r in rows.values()), {s: len(r) for s, r in rows.items()}
    # CPU replays are exact: what W&B kept from attempt 1 is what the files hold now
    logged = metrics_by_step(out)
    for step, (row,) in rows.items():
        assert row["train/loss"] == pytest.approx(logged[step]["train/loss"], rel=1e-6), step
        if "eval/acc" in logged[step]:
            assert row["eval/acc"] == logged[step]["eval/acc"], step
    assert tracking.read_run_log(folders[-1]).summary["acc"] == result["acc"]
    # `cotsweep sync` sees one run of three folders, oldest first (wandb replays them in that order)
    assert tracking.offline_runs(out) == {trial_id(cfg): folders}


def lose_wandb_tail(folder: Path, keep_upto: int) -> None:
    """Cut a run's transaction log back to its rows at or below ``keep_upto``, as when a
    killed worker's wandb-core had not yet written what it was sent."""
    log = next(folder.glob("run-*.wandb"))
    data = log.read_bytes()
    lo, hi = 7, len(data)  # the longest prefix whose last history step is <= keep_upto
    while lo < hi:
        mid = (lo + hi + 1) // 2
        log.write_bytes(data[:mid])
        if tracking.last_logged_step(folder.parent, folder.name.rsplit("-", 1)[-1]) <= keep_upto:
            lo = mid
        else:
            hi = mid - 1
    log.write_bytes(data[:lo])


def wandb_steps(out: Path, cfg) -> list[int]:
    """Every history step of the trial's run, over all its folders, duplicates included."""
    folders = tracking.run_folders(out / "wandb", trial_id(cfg))
    return sorted(row["_step"] for f in folders for row in tracking.read_run_log(f).history)


def test_steps_that_wandb_lost_in_a_crash_are_sent_on_resume(tmp_path: Path):
    """W&B wrote steps 5, 10 of attempt 1 before the crash at 27; metrics.jsonl has 5..25 and
    the checkpoint is at 20. The resume sends 15 and 20 from the file, then trains on."""
    cfg = tiny_cfg(
        [*TRIAL, "train.steps=30", "train.eval_every=10", "run.log_every=5"]
        + ["run.checkpoint_every=10"]
    )
    out = tmp_path / "trial"
    calls = iter(range(1, 10**6))

    def crash_at_27() -> bool:
        if next(calls) == 27:
            raise RuntimeError("worker lost")
        return False

    _, t1, err = run_tracked(cfg, out, should_stop=crash_at_27)
    assert isinstance(err, RuntimeError) and t1.error is None
    (first,) = tracking.run_folders(out / "wandb", trial_id(cfg))
    lose_wandb_tail(first, keep_upto=10)
    assert wandb_steps(out, cfg) == [5, 10]

    result, t2, err = run_tracked(cfg, out)
    assert err is None and result["steps"] == 30
    assert t2.backfilled_steps == [15, 20] and t2.skipped_steps == []
    assert wandb_steps(out, cfg) == sorted(metrics_by_step(out)) == [5, 10, 15, 20, 25, 30]
    logged = metrics_by_step(out)
    for step, (row,) in history_by_step(tracking.run_folders(out / "wandb")).items():
        assert row["train/loss"] == pytest.approx(logged[step]["train/loss"], rel=1e-6), step


def test_a_finished_trial_run_again_sends_only_what_wandb_lacks(tmp_path: Path):
    """Killed after result.json, before W&B had its last rows: executed again (as Ray does after
    a lost worker), the trial costs no attempt and W&B gets the missing steps, once."""
    from cotsweep.sweep.worker import execute

    cfg = tiny_cfg([*TRIAL, "train.steps=20", "train.eval_every=10", "run.log_every=5"])
    out = tmp_path / "trial"
    with open_dict(cfg):
        cfg.run.out_dir = str(out)
    cfg_yaml = OmegaConf.to_yaml(cfg)
    assert execute(cfg_yaml, None)["status"] == "done"
    assert files.count_attempts(out) == 1
    (first,) = tracking.run_folders(out / "wandb")
    lose_wandb_tail(first, keep_upto=10)
    again = execute(cfg_yaml, None)
    assert again["status"] == "done" and again["attempts"] == 1
    assert wandb_steps(out, cfg) == [5, 10, 15, 20]
    execute(cfg_yaml, None)  # W&B holds everything now: no new run folder
    assert len(tracking.run_folders(out / "wandb")) == 2


# ---------------------------------------------------------------- the sweep's summary run
def test_summary_run_has_one_table_row_per_trial(tmp_path: Path):
    sweep = tmp_path / "sweep"
    (sweep / "report").mkdir(parents=True)
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([1, 2, 4], [0.2, 0.6, 0.9])
    png = sweep / "report" / "acc_vs_depth.png"
    fig.savefig(png)
    plt.close(fig)
    rows = []
    for task in ("s5", "modadd"):
        for setting in ("base", "cot"):
            for depth in (1, 2):
                acc = 0.3 * depth + (0.3 if setting == "cot" else 0.0)
                rows.append(
                    dict(
                        trial_id=f"{task}{setting}{depth}",
                        task=task,
                        setting=setting,
                        depth=depth,
                        length=8,
                        seed=0,
                        state="done",
                        acc=acc,
                        chain_acc_per_step=[0.5, 0.25],
                        eval={"acc": acc},
                    )
                )
    rows.append(
        dict(
            trial_id="failed1",
            task="s5",
            setting="base",
            depth=4,
            length=8,
            seed=0,
            state="failed",
            acc=None,
        )
    )
    tracking_cfg = {
        "wandb": {"mode": "auto", "project": "cotsweep", "entity": None, "tags": ["study"]}
    }

    rid = tracking.log_sweep_summary(sweep, "smoke", rows, [png], tracking_cfg)
    assert rid is not None
    (folder,) = tracking.run_folders(sweep / "wandb", rid)
    run = tracking.read_run_log(folder)
    assert run.job_type == "summary" and run.group == "smoke" and "study" in run.tags
    (row,) = run.history
    table = json.loads((folder / "files" / row["trials"]["path"]).read_text())
    assert len(table["data"]) == len(rows)
    cols = table["columns"]
    assert cols[:7] == ["trial_id", "task", "setting", "depth", "length", "seed", "state"]
    by_id = {r[0]: dict(zip(cols, r, strict=True)) for r in table["data"]}
    assert by_id["failed1"]["state"] == "failed" and by_id["failed1"]["acc"] is None
    assert by_id["s5cot2"]["acc"] == pytest.approx(0.9)
    image = row["report/acc_vs_depth"]
    assert (
        image["_type"] == "image-file" and (folder / "files" / image["path"]).stat().st_size > 1000
    )
    for task in (
        "s5",
        "modadd",
    ):  # native line charts, one per task: a series per setting and length
        chart = json.loads(
            (folder / "files" / row[f"acc_vs_depth/{task}_table"]["path"]).read_text()
        )
        assert chart["columns"] == ["step", "lineKey", "lineVal"]  # x = depth, one line per series
        points = {(depth, series): acc for depth, series, acc in chart["data"]}
        assert points == pytest.approx(
            {(1, "base n=8"): 0.3, (2, "base n=8"): 0.6, (1, "cot n=8"): 0.6, (2, "cot n=8"): 0.9}
        )

    # a second report continues the same run at the next step: one summary run per sweep
    assert tracking.log_sweep_summary(sweep, "smoke", rows[:3], [], tracking_cfg) == rid
    folders = tracking.run_folders(sweep / "wandb", rid)
    assert [h["_step"] for f in folders for h in tracking.read_run_log(f).history] == [0, 1]
    assert tracking.offline_runs(sweep) == {rid: folders}


# ---------------------------------------------------------------- mode, network, credentials
def test_no_key_and_no_mode_is_offline_and_touches_no_network(
    tmp_path: Path, monkeypatch, wandb_sandbox, capsys
):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    before = len(wandb_sandbox.requests)
    cfg = tiny_cfg([*TRIAL, "train.steps=10", "train.eval_every=10", "run.log_every=5"])
    assert cfg.tracking.wandb.mode == "auto"
    out = tmp_path / "trial"
    t0 = time.monotonic()
    tracker = tracking.open_tracker(cfg, out, trial_id(cfg))
    assert tracker is not None and tracker.mode == "offline"
    run_trial(cfg, out, tracker=tracker)
    t1 = time.monotonic()
    tracker.finish()
    finish_s = time.monotonic() - t1
    assert tracker.error is None
    assert finish_s < 15, f"finish took {finish_s:.1f} s"  # offline never waits on the network
    assert [
        h["_step"] for h in tracking.read_run_log(tracking.run_folders(out / "wandb")[0]).history
    ] == [5, 10]
    assert wandb_sandbox.requests[before:] == [], "W&B tried the network"
    notice = capsys.readouterr().err
    assert f"cotsweep sync {out}" in notice and notice.count("W&B is offline") == 1
    # the tripwire works: any outside request through the environment's proxy lands on it
    with pytest.raises(OSError):
        urllib.request.urlopen("http://api.wandb.ai/", timeout=5)
    assert len(wandb_sandbox.requests) > before
    assert time.monotonic() - t0 < 120


def test_auto_mode_follows_the_credentials(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert tracking.resolve_mode("auto") == "offline"
    assert tracking.resolve_mode("online") == "offline"  # online without a key would stop to ask
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "n" * 40 + "\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert tracking.api_key_configured() and tracking.resolve_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")  # an explicit WANDB_MODE wins over the key
    assert tracking.resolve_mode("auto") == "offline"
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert tracking.resolve_mode("auto") == "online"
    assert tracking.resolve_mode("disabled") == "disabled"
    assert tracking.open_tracker(tiny_cfg(["tracking=none"]), tmp_path / "t", "x") is None


def test_api_key_never_lands_in_the_trial_files(tmp_path: Path, monkeypatch, wandb_sandbox):
    key = "cafe" * 10
    monkeypatch.setenv("WANDB_API_KEY", key)
    cfg = tiny_cfg(
        [
            *TRIAL,
            "tracking.wandb.mode=offline",
            "train.steps=10",
            "train.eval_every=10",
            "run.log_every=5",
        ]
    )
    out = tmp_path / "trial"
    result, tracker, err = run_tracked(cfg, out)
    assert err is None and tracker.error is None and result is not None
    checked = 0
    for path, data in all_bytes_under(out):
        assert key.encode() not in data, path
        checked += 1
    assert checked > 5 and (out / "wandb").is_dir()


def test_a_wandb_failure_does_not_break_the_trial(tmp_path: Path, caplog):
    cfg = tiny_cfg([*TRIAL, "train.steps=10", "train.eval_every=10", "run.log_every=5"])
    out = tmp_path / "trial"
    out.mkdir()
    (out / "wandb").write_text("not a directory: W&B cannot write here\n")
    with caplog.at_level(logging.ERROR, logger="cotsweep.tracking"):
        result, tracker, err = run_tracked(cfg, out)
    assert err is None and result["steps"] == 10
    assert tracker.error and "wandb.init" in tracker.error
    assert (out / files.RESULT).exists() and sorted(metrics_by_step(out)) == [5, 10]
    errors = [
        r for r in caplog.records if r.name == "cotsweep.tracking" and r.levelno >= logging.ERROR
    ]
    assert len(errors) == 1 and "turned off" in errors[0].getMessage()


def test_sync_without_a_key_says_so(tmp_path: Path, wandb_sandbox):
    sweep = tmp_path / "sweep"
    rows = [
        dict(
            trial_id="a",
            task="modadd",
            setting="base",
            depth=1,
            length=8,
            seed=0,
            state="done",
            acc=0.5,
        )
    ]
    rid = tracking.log_sweep_summary(sweep, "smoke", rows, [], {"wandb": {"mode": "offline"}})
    assert rid is not None
    before = len(wandb_sandbox.requests)
    with pytest.raises(tracking.SyncError, match="no W&B API key.*cotsweep sync"):
        tracking.sync_sweep(sweep)
    # wandb's own `wandb sync --dry-run` accepts the folders we would hand it
    assert tracking.sync_sweep(sweep, dry_run=True) == 1
    assert wandb_sandbox.requests[before:] == []
    assert tracking.sync_sweep(tmp_path / "empty") == 0


def test_online_init_failure_falls_back_to_offline(tmp_path: Path, monkeypatch):
    """A key but no reachable server (a closed loopback port): the trial mirrors offline instead."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again when the block ends
    key = "beef" * 10
    monkeypatch.setenv("WANDB_API_KEY", key)
    monkeypatch.setenv("WANDB_BASE_URL", dead)
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "3")
    cfg = tiny_cfg(
        [
            *TRIAL,
            "tracking.wandb.mode=online",
            "train.steps=10",
            "train.eval_every=10",
            "run.log_every=5",
        ]
    )
    out = tmp_path / "trial"
    result, tracker, err = run_tracked(cfg, out)
    assert err is None and result["steps"] == 10
    assert tracker.error is None and tracker.mode == "offline"
    offline = [f for f in tracking.run_folders(out / "wandb") if f.name.startswith("offline-run-")]
    assert [h["_step"] for h in tracking.read_run_log(offline[0]).history] == [5, 10]
    for path, data in all_bytes_under(out):
        assert key.encode() not in data, path
