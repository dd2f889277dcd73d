"""Bad input, tried as a new user would: one line on stderr, exit 2, no traceback, nothing written.

The table holds every row of issue 11's list of bad inputs and the config
mistakes refused before them. Each command line runs through the real CLI with
its stderr captured at the file descriptor, in a working directory whose whole
tree is compared before and after: a refusal writes nothing anywhere under it
(no sweep directory, no ledger, no runs/ folder).

As root, a read-only directory is only read-only to a process without
CAP_DAC_OVERRIDE: the table then runs under ``setpriv`` with that capability
dropped, so the read-only rows are real refusals by the kernel.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_rows import run_in_process
from sweep_support import sweep_file

HERE = Path(__file__).resolve().parent
NO_DAC = [
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
]

# (id, command line, a phrase the one line must hold). {ro} is a read-only directory, {file}
# a plain file, {empty} an empty directory, {bad_yaml}, {evil}, {no_params}: sweep files.
ROWS: list[tuple[str, list[str], str]] = [
    ("dir-is-a-file", ["launch", "smoke", "--dir", "{file}"], "is not a directory"),
    ("dir-under-a-file", ["launch", "smoke", "--dir", "{file}/sweep"], "is a file"),
    ("dir-read-only", ["launch", "smoke", "--dir", "{ro}"], "is not writable"),
    ("dir-in-read-only", ["launch", "smoke", "--dir", "{ro}/sweep"], "not writable"),
    ("yaml-syntax", ["launch", "{bad_yaml}", "--dir", "d"], "bad_syntax.yaml:6:1: while parsing"),
    ("yaml-python-tag", ["launch", "{evil}", "--dir", "d"], "no !!python tags"),
    ("device-cuda-no-gpu", ["launch", "smoke", "run.device=cuda", "--dir", "d"], "has no GPU"),
    ("gpus-1-no-gpu", ["launch", "smoke", "resources.gpus=1", "--dir", "d"], "asks for 1 GPU"),
    ("cpus-64", ["launch", "smoke", "resources.cpus=64", "--dir", "d"], "asks for 64 CPUs"),
    (
        "max-concurrent-neg",
        ["launch", "smoke", "--max-concurrent", "-1", "--dir", "d"],
        "--max-concurrent -1",
    ),
    ("max-concurrent-0", ["launch", "smoke", "--max-concurrent", "0", "--dir", "d"], "at least 1"),
    ("grid-100k", ["launch", "smoke", "seed=range(0,10000)", "--dir", "d"], "--max-trials 120000"),
    ("max-trials-0", ["launch", "smoke", "--max-trials", "0", "--dir", "d"], "--max-trials 0"),
    ("length-1e6", ["launch", "smoke", "task.length=1000000", "--dir", "d"], "GiB"),
    ("params-empty", ["launch", "{no_params}", "--dir", "d"], "hydra.sweeper.params is empty"),
    ("report-empty-dir", ["report", "{empty}"], "holds no sweep"),
    ("sync-not-a-sweep", ["sync", "{empty}"], "holds no sweep"),
    ("rebuild-not-a-sweep", ["rebuild", "{empty}"], "holds no sweep"),
    ("stop-not-a-sweep", ["stop", "{empty}"], "holds no sweep"),
    ("export-out-read-only", ["export", "{empty}", "--out", "{ro}/t.csv"], "not writable"),
    ("report-threshold-5", ["report", "{empty}", "--threshold", "5"], "between 0 and 1"),
    ("tasks-sample-skills", ["tasks", "sample", "skills"], "simulation"),
    ("multirun-typo", ["train", "-m", "model.dept=2"], "model.dept"),
    ("multirun-bad-value", ["train", "-m", "model.depth=1,two"], "model.depth=two"),
    ("multirun-cpus-64", ["train", "-m", "seed=0,1", "resources.cpus=64"], "asks for 64 CPUs"),
    (
        "launch-schema-entry",
        ["launch", "smoke", "task=cvp_schema", "--dir", "d"],
        "available options in 'task'",
    ),
    ("train-schema-entry", ["train", "task=cvp_schema"], "available options in 'task'"),
    ("cfg-schema-entry", ["train", "--cfg", "job", "task=cvp_schema"], "cvp_schema"),
    ("unknown-sweep", ["launch", "no_such_sweep"], "available sweeps: "),
    ("unknown-key", ["launch", "smoke", "model.no_such_key=3", "--dir", "d"], "no_such_key"),
    ("empty-axis", ["launch", "smoke", "seed=range(0)", "--dir", "d"], "empty"),
    ("depth-0", ["launch", "smoke", "model.depth=0", "--dir", "d"], "model.depth"),
    ("train-cuda-no-gpu", ["train", "run.device=cuda"], "has no GPU"),
    ("train-length-1e6", ["train", "task.length=1000000"], "GiB"),
    ("train-out-is-file", ["train", "run.out_dir={file}"], "is not a directory"),
    ("status-nowhere", ["status", "nowhere"], "no sweep at nowhere"),
    ("resume-nowhere", ["resume", "nowhere"], "no sweep at nowhere"),
    ("unknown-flag", ["launch", "smoke", "--bogus"], "unrecognized arguments: --bogus"),
    (
        "secret-oc-env",
        ["launch", "smoke", "tracking.wandb.entity=${oc.env:WANDB_API_KEY}", "--dir", "d"],
        "reads the secret WANDB_API_KEY",
    ),
]


def _skip_reason(row_id: str, privileged_ro: bool) -> str | None:
    import torch

    from cotsweep.sweep.feasible import local_capacity

    cap = local_capacity()
    if "ro" in row_id.split("-") or "read-only" in row_id:
        if not privileged_ro:
            return "root without setpriv: a read-only directory is writable to this process"
    if row_id in ("device-cuda-no-gpu", "gpus-1-no-gpu", "train-cuda-no-gpu") and (
        cap.node_gpus > 0 or torch.cuda.is_available()
    ):
        return "this machine has a GPU"
    if row_id.endswith("cpus-64") and cap.node_cpus >= 64:
        return "this machine has 64 CPUs"
    return None


def _tree(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its kind, size and modification time."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (p.is_dir(), st.st_size, st.st_mtime_ns, st.st_mode)
    return out


def _world(tmp: Path) -> dict[str, str]:
    """The files the rows point at, in ``tmp/work`` (the rows' working directory)."""
    work = tmp / "work"
    work.mkdir()
    (work / "a_file").write_text("not a directory\n")
    (work / "empty").mkdir()
    ro = work / "read_only"
    ro.mkdir()
    ro.chmod(0o555)
    bad = work / "bad_syntax.yaml"
    bad.write_text("# @package _global_\nhydra:\n  sweeper:\n    params:\n      seed: [0, 1\n")
    evil = work / "evil.yaml"
    evil.write_text("# @package _global_\nseed: !!python/object/apply:os.system ['true']\n")
    no_params = work / "no_params.yaml"
    no_params.write_text("# @package _global_\nhydra:\n  sweeper:\n    params: {}\n")
    return {
        "file": str(work / "a_file"),
        "empty": str(work / "empty"),
        "ro": str(ro),
        "bad_yaml": str(bad),
        "evil": str(evil),
        "no_params": str(no_params),
    }


def _fill(arg: str, names: dict[str, str]) -> str:
    for k, v in names.items():
        arg = arg.replace("{" + k + "}", v)
    return arg


def _privilege_prefix() -> tuple[list[str], bool]:
    """How to run the table so that a read-only directory is read-only to it."""
    if os.geteuid() != 0:
        return [], True
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return [], False
    return [setpriv, *NO_DAC, "--"], True


DEBUG_ROW = ("debug", ["launch", "smoke", "model.depth=0", "--debug", "--dir", "d"], "")


def _run_table(tmp: Path, rows: list[tuple[str, list[str], str]], one_process_per_row: bool):
    """Run the rows (and DEBUG_ROW last), check them, and return the debug row's result."""
    names = _world(tmp)
    work = tmp / "work"
    prefix, privileged_ro = _privilege_prefix()
    todo = [
        (rid, [_fill(a, names) for a in args], phrase)
        for rid, args, phrase in rows
        if _skip_reason(rid, privileged_ro) is None
    ]
    todo.append(DEBUG_ROW)
    before = _tree(tmp)
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src"), "COLUMNS": "2000"}
    env.pop("WANDB_API_KEY", None)
    if one_process_per_row:
        results = []
        for _, args, _ in todo:
            r = subprocess.run(
                [*prefix, sys.executable, "-m", "cotsweep.cli", *args],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            results.append({"rc": r.returncode, "stderr": r.stderr})
    else:
        rows_ = [{"args": a, "cwd": str(work)} for _, a, _ in todo]
        results = run_in_process(rows_, str(tmp), prefix)
    after = _tree(tmp)
    debug = results.pop()
    todo.pop()
    problems = []
    for (rid, _, phrase), res in zip(todo, results, strict=True):
        err = res["stderr"]
        lines = [line for line in err.splitlines() if line.strip()]
        if res["rc"] != 2:
            problems.append(f"{rid}: exit {res['rc']}, not 2: {err[-600:]}")
        elif "Traceback" in err:
            problems.append(f"{rid}: a traceback on stderr: {err[-600:]}")
        elif len(lines) != 1 or not lines[0].startswith("error: "):
            problems.append(f"{rid}: not one 'error:' line: {lines}")
        elif phrase not in lines[0]:
            problems.append(f"{rid}: {phrase!r} not in {lines[0]!r}")
    assert not problems, "\n".join(problems)
    assert after == before, {
        k: (before.get(k), after.get(k))
        for k in set(before) | set(after)
        if before.get(k) != after.get(k)
    }
    return len(todo), debug


def test_every_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path):
    ran, debug = _run_table(tmp_path, ROWS, one_process_per_row=False)
    assert ran >= len(ROWS) - 5  # at most the GPU, CPU-count and read-only rows skipped
    # --debug: the same refusal, its traceback above it
    assert debug["rc"] == 2
    assert "Traceback" in debug["stderr"] and "GridError" in debug["stderr"]
    assert debug["stderr"].strip().splitlines()[-1].startswith("error: trial ")


@pytest.mark.slow
def test_every_bad_input_as_its_own_cotsweep_process(tmp_path):
    _run_table(tmp_path, ROWS, one_process_per_row=True)


# ---------------------------------------------------------------- Ctrl-C and SIGTERM
def _signalled(args: list[str], ready, signals: list[signal.Signals], settle: float) -> tuple:
    """Start `cotsweep ARGS` in its own session, wait for ``ready()``, then ``settle`` seconds,
    send ``signals`` half a second apart; (exit code, stderr, seconds from the last signal)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cotsweep.cli", *args],
        env={**os.environ, "PYTHONPATH": str(HERE.parent / "src")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not ready():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "never got ready"
            time.sleep(0.1)
        time.sleep(settle)
        for i, sig in enumerate(signals):
            if i:
                time.sleep(0.5)
            proc.send_signal(sig)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=60)
        return proc.returncode, err, time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)]
)
def test_a_signal_during_expansion_stops_it_and_records_nothing(tmp_path, sig):
    """A 100,000-point grid, allowed with --max-trials, stopped while it expands: exit 130 in
    seconds, one line saying nothing was recorded, and the sweep directory gone again."""
    sw = sweep_file(tmp_path, "huge", {"seed": "range(0,100000)"})
    d = tmp_path / "sweep"
    args = ["launch", str(sw), "--dir", str(d), "--max-trials", "100000", "--no-progress"]
    # the ledger is created just before the first point is recorded; the expansion then
    # takes far longer than a second
    rc, err, took = _signalled(args, (d / "ledger.sqlite").exists, [sig], settle=1.0)
    assert rc == 130, err
    assert took < 20, took
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "nothing was recorded" in lines[0] and "Traceback" not in err, err
    assert not d.exists()


def test_a_second_ctrl_c_stops_a_long_training_step_at_once(tmp_path):
    """The first Ctrl-C asks the trial to stop at its next step; when that step is long, the
    second stops it mid-step, exit 130, no traceback."""
    out = tmp_path / "trial"
    args = [
        "train",
        "model.depth=8",
        "model.width=512",
        "train.batch_size=512",
        "task.length=64",
        "run.device=cpu",
        "tracking=none",
        "run.progress=false",
        f"run.out_dir={out}",
    ]
    # the trial writes its directory just before training; its steps take seconds each
    rc, err, took = _signalled(args, out.exists, [signal.SIGINT, signal.SIGINT], settle=2.0)
    assert rc == 130, err
    assert "Traceback" not in err, err
    assert took < 15, took
