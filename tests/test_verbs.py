"""The researcher's verbs on real small sweeps: filters, status --watch, logs, export, compare.

One sweep (real Ray on loopback, real Hydra, real training) serves the tests
that read: three seeds of modadd, one of which fails twice on a corrupt
checkpoint (a real exception in a real worker). `--watch` follows its own sweep
run by a driver in another process, as a researcher's second shell would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from sweep_support import sweep_file

import cotsweep  # noqa: F401  (sets Ray's environment before ray is imported)
from cotsweep.cli import main as cli
from cotsweep.logs import capture
from cotsweep.results import compare, curves, trials
from cotsweep.status import status
from cotsweep.sweep.engine import launch
from cotsweep.sweep.grid import config_yaml, expand
from cotsweep.watch import watch

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "hydra", "ray", "omegaconf", "wandb", "matplotlib", "pandas")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, ray_local) -> dict:
    """modadd × seed 0,1,2 trained for real; the seed-1 trial raises at every attempt (its
    directory holds another trial's files: a real ConfigError in a real worker)."""
    tmp = tmp_path_factory.mktemp("verbs")
    sw = sweep_file(tmp, "verbs", {"task": "modadd", "seed": "0,1,2"}, steps=20, eval_every=10)
    d = tmp / "sweep"
    points = {t.axes["seed"]: t for t in expand(str(sw), [], d)}
    ids = {seed: t.id for seed, t in points.items()}
    foreign = d / "trials" / ids[1] / "config.yaml"
    foreign.parent.mkdir(parents=True)
    foreign.write_text(config_yaml(points[0].cfg))
    out = launch(str(sw), [], d, progress=False)
    assert out.counts == {"pending": 0, "running": 0, "done": 2, "failed": 1}
    return {"file": sw, "dir": d, "ids": ids, "foreign": foreign, "tmp": tmp}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli(list(argv))
    got = capsys.readouterr()
    return rc, got.out, got.err


def in_fresh_interpreter(argv: list[str], timeout: float = 120) -> tuple[int, str, set[str]]:
    """`cotsweep ARGV` in a new Python: its exit code, stdout, and which heavy packages it loaded."""
    code = (
        "import sys\n"
        "from cotsweep.cli import main\n"
        f"rc = main({argv!r})\n"
        "print('@@', rc, ' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert "@@" in proc.stdout, proc.stderr[-3000:]
    body, tail = proc.stdout.rsplit("@@", 1)
    rc, *loaded = tail.split()
    return int(rc), body, set(loaded) & set(HEAVY)


# ---------------------------------------------------------------- filters
def test_status_filters_by_axis_and_state(sweep, capsys):
    d = str(sweep["dir"])
    rc, out, _ = run_cli(capsys, "status", d, "seed=0,2", "--json")
    st = json.loads(out)
    assert rc == 0 and st["total"] == 2 and st["counts"]["done"] == 2
    assert st["selection"] == "seed=0,2"
    rc, out, _ = run_cli(capsys, "status", d, "--state", "failed", "task=modadd", "--json")
    st = json.loads(out)
    assert st["total"] == 1 and [f["id"] for f in st["failures"]] == [sweep["ids"][1]]


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        (["sed=0"], "the sweep has no axis 'sed'; its axes: seed, task"),
        (["seed=7"], "seed=7: the sweep has no such value; known: 0, 1, 2"),
        (
            ["--state", "finished"],
            "--state finished: no such state; known: pending, running, done, failed",
        ),
        (["seed"], "filter 'seed': expected AXIS=VALUE"),
    ],
)
def test_a_bad_filter_is_refused_in_one_line_naming_what_is_known(sweep, capsys, filters, message):
    d = sweep["dir"]
    before = (d / "ledger.sqlite").read_bytes()
    for verb in ("status", "resume", "report", "export"):
        rc, out, err = run_cli(capsys, verb, str(d), *filters)
        assert rc == 2, (verb, out, err)
        # one message (rich wraps it at the terminal's width: compared with lines joined)
        assert message in " ".join(err.split()) and err.count("error:") == 1, (verb, err)
    assert (d / "ledger.sqlite").read_bytes() == before  # nothing written, nothing run
    assert not list(d.glob("report*")) and not (d / "export").exists()


def test_report_of_a_selection_goes_beside_the_whole_sweeps_report(sweep, capsys):
    d = sweep["dir"]
    rc, _, err = run_cli(capsys, "report", str(d), "seed=0")
    assert rc == 0, err
    manifest = json.loads((d / "report_seed=0" / "manifest.json").read_text())
    assert manifest["states"] == {"done": 1}
    assert not (d / "report").exists()  # the whole sweep's report is not overwritten


# ---------------------------------------------------------------- logs
def test_capture_takes_python_c_level_and_child_process_output(tmp_path: Path):
    before = os.dup(1)
    try:
        with capture(tmp_path, 1) as path:
            print("from python", flush=True)
            os.write(2, b"from the file descriptor\n")
            subprocess.run(["echo", "from a child process"], check=True)
        with capture(tmp_path, 1):  # the same attempt again (after --reset-attempts): appended
            print("second execution", flush=True)
        assert os.path.sameopenfile(1, before)  # stdout is the process's own again
    finally:
        os.close(before)
    text = path.read_text()
    for line in (
        "from python",
        "from the file descriptor",
        "from a child process",
        "second execution",
    ):
        assert line in text
    assert text.count("== attempt 1 on ") == 2


def test_logs_show_a_trials_output_and_the_full_traceback_of_each_attempt(sweep):
    d, ids = str(sweep["dir"]), sweep["ids"]
    rc, out, heavy = in_fresh_interpreter(["logs", d, ids[0][:10]])
    assert rc == 0 and not heavy, heavy
    assert out.startswith("== attempt 1 on ") and "== attempt 1: done, acc=" in out
    for k in (1, 2):  # the failing trial ran twice; each attempt has its own log
        rc, out, _ = in_fresh_interpreter(["logs", d, ids[1], "--attempt", str(k)])
        assert rc == 0
        assert f"== attempt {k} on " in out and "Traceback (most recent call last)" in out
        assert "in run_trial" in out  # the whole traceback, down to where it raised
        assert f"== attempt {k}: error " in out
    rc, out, _ = in_fresh_interpreter(["logs", d, ids[1]])
    assert "== attempt 2 on " in out and "== attempt 1 on " not in out  # the latest by default


def test_logs_refuse_an_unknown_trial_or_attempt(sweep, capsys):
    d, ids = str(sweep["dir"]), sweep["ids"]
    rc, _, err = run_cli(capsys, "logs", d, ids[1], "--attempt", "9")
    assert rc == 2 and f"--attempt 9: trial {ids[1]} has logs of attempts 1, 2" in err
    rc, _, err = run_cli(capsys, "logs", d, "zzzz")
    assert rc == 2 and "no trial 'zzzz' in" in err
    rc, _, err = run_cli(capsys, "logs", d, "")
    assert rc == 2 and "ambiguous" in err


# ---------------------------------------------------------------- results as data
def test_trials_dataframe_has_axes_state_final_metrics_and_paths(sweep):
    df = trials(sweep["dir"])
    assert list(df["seed"]) == [0, 1, 2] and set(df["task"]) == {"modadd"}
    by_seed = df.set_index("seed")
    assert list(by_seed["state"]) == ["done", "failed", "done"]
    assert by_seed.loc[1, "attempts"] == 2 and by_seed.loc[1, "error"].startswith(
        "ConfigError: run.out_dir="
    )
    for seed in (0, 2):
        result = json.loads((Path(by_seed.loc[seed, "dir"]) / "result.json").read_text())
        assert by_seed.loc[seed, "acc"] == result["acc"]
        assert by_seed.loc[seed, "steps"] == 20 and by_seed.loc[seed, "eval.acc"] == result["acc"]
        assert Path(by_seed.loc[seed, "checkpoint_path"]).exists()
        assert Path(by_seed.loc[seed, "log_path"]).name == "attempt-1.log"
    assert pd.isna(by_seed.loc[1, "acc"])


def test_curves_are_the_metrics_rows_long(sweep):
    c = curves(sweep["dir"], metrics=["train/loss", "eval/acc"])
    assert list(c.columns) == ["id", "task", "seed", "step", "metric", "value"]
    done = c[c["id"] == sweep["ids"][0]]
    rows = [
        json.loads(x)
        for x in (sweep["dir"] / "trials" / sweep["ids"][0] / "metrics.jsonl")
        .read_text()
        .splitlines()
    ]
    want = sorted((r["step"], k, r[k]) for r in rows for k in ("train/loss", "eval/acc") if k in r)
    assert sorted(zip(done["step"], done["metric"], done["value"], strict=True)) == want
    assert set(done["seed"]) == {0}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_writes_every_trial_in_each_format(sweep, capsys, fmt):
    d = sweep["dir"]
    out = sweep["tmp"] / f"out.{fmt}"
    rc, _, err = run_cli(capsys, "export", str(d), "--format", fmt, "--out", str(out), "seed=0,1")
    assert rc == 0 and str(out) in err
    read = {"csv": pd.read_csv, "parquet": pd.read_parquet}.get(fmt) or (
        lambda p: pd.read_json(p, lines=True)
    )
    back = read(out)
    assert list(back["seed"]) == [0, 1] and list(back["state"]) == ["done", "failed"]
    want = trials(d)
    assert back.loc[0, "acc"] == pytest.approx(want.loc[0, "acc"])
    assert list(back.columns) == list(want.columns)


def test_export_is_light_until_it_needs_pandas(sweep):
    """status and logs never import pandas; export imports it, but neither torch nor Hydra."""
    rc, _, heavy = in_fresh_interpreter(["export", str(sweep["dir"]), "--format", "csv"])
    assert rc == 0 and heavy == {"pandas"}, heavy
    assert (sweep["dir"] / "export" / "trials.csv").exists()


def test_compare_sets_the_same_points_side_by_side(sweep, capsys, ray_local):
    d = sweep["dir"]
    rc, out, _ = run_cli(capsys, "compare", str(d), str(d), "--json")
    same = json.loads(out)
    assert rc == 0 and same["differing"] == 0 and len(same["points"]) == 3
    assert all(p["same_config"] for p in same["points"])
    # the same grid trained longer: other ids, matched on the axes
    other = sweep["tmp"] / "longer"
    assert launch(str(sweep["file"]), ["train.steps=30"], other, progress=False).counts["done"] == 3
    cmp = compare(d, other, metrics=("acc", "steps"))
    assert cmp["matched_on"] == ["task", "seed"] and len(cmp["points"]) == 3
    assert cmp["axes"] == ["seed"]  # the one that varies is shown
    by_seed = {p["point"]["seed"]: p for p in cmp["points"]}
    assert not any(p["same_config"] for p in cmp["points"])
    assert by_seed[1]["state_a"] == "failed" and by_seed[1]["state_b"] == "done"
    assert by_seed[1]["differs"]  # a state that differs is a difference
    assert (by_seed[0]["steps_a"], by_seed[0]["steps_b"], by_seed[0]["steps_delta"]) == (20, 30, 10)
    assert by_seed[0]["differs"]
    assert by_seed[0]["acc_delta"] == pytest.approx(by_seed[0]["acc_b"] - by_seed[0]["acc_a"])
    rc, out, _ = run_cli(capsys, "compare", str(d), str(other), "--metric", "steps")
    assert rc == 0 and "3 shared points on task, seed" in out and "differs" in out


# ---------------------------------------------------------------- status --watch
def test_watch_follows_a_running_sweep_until_it_ends(tmp_path: Path, ray_local):
    """The driver in a thread of this process (on the tests' Ray), the watch in the main one."""
    sw = sweep_file(
        tmp_path, "watched", {"task": "modadd", "seed": "0,1"}, steps=300, ckpt=100, eval_every=50
    )
    d = tmp_path / "sweep"
    outcome: list = []
    driver = threading.Thread(
        target=lambda: outcome.append(launch(str(sw), [], d, progress=False, max_concurrent=1))
    )
    driver.start()
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not status_has_driver(d):
            time.sleep(0.1)
        frames: list[dict] = []
        last = watch(d, frames.append, interval=0.2)
    finally:
        driver.join(timeout=300)
    assert outcome and outcome[0].ok
    live = [r for f in frames for r in f["running"] if r["training"]]
    assert live, "the watch never saw a trial training"
    assert any(r["step"] and r["step"] > 0 and r["host"] for r in live)
    assert all(r["heartbeat_age_s"] < 30 for r in live)
    assert any(r["acc"] is not None for r in live)  # the latest eval, read while it trained
    assert any(f["eta_s"] is not None for f in frames)
    # before the first trial finished, the ETA came from the step rates of the one training
    assert any(f["eta_early"] for f in frames if f["counts"]["done"] == 0)
    # it stopped by itself once the driver was gone
    assert not last["driver_alive"] and last["counts"]["done"] == 2


def status_has_driver(d: Path) -> bool:
    try:
        return status(d)["driver_alive"]
    except Exception:  # the ledger is being created
        return False


def test_watch_is_light_and_stops_at_once_on_a_finished_sweep(sweep):
    rc, out, heavy = in_fresh_interpreter(["status", str(sweep["dir"]), "--watch", "seed=0"])
    assert rc == 0 and not heavy, heavy
    assert "(seed=0): 1 trials" in out and "no driver is running this sweep" in out


# ---------------------------------------------------------------- resume with filters
def test_resume_reruns_only_the_selected_trials(sweep, capsys):
    d, ids = sweep["dir"], sweep["ids"]
    sweep["foreign"].unlink()  # the cause of the failure is gone
    rc, _, err = run_cli(capsys, "resume", str(d), "seed=0,2", "--no-progress", "--no-report")
    assert rc == 1 and "(ran 0 this time)" in err  # seed 1 was not selected: still failed
    rc, _, err = run_cli(capsys, "resume", str(d), "--state", "done", "--no-progress")
    assert rc == 2 and "resume reruns pending and failed trials" in err
    rc, _, err = run_cli(
        capsys,
        "resume",
        str(d),
        "seed=1",
        "--state",
        "failed",
        "--reset-attempts",
        "--no-progress",
        "--no-report",
    )
    assert rc == 0 and "(ran 1 this time)" in err, err
    assert json.loads((d / "trials" / ids[1] / "result.json").read_text())["steps"] == 20
