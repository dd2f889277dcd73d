"""One trial id, one result: `cotsweep train`, a sweep on Ray and Hydra's multirun agree exactly.

The same trial is run three ways: `cotsweep train` in a fresh process (where torch
would use every core of the machine if left alone), `cotsweep launch` (a Ray
worker, where Ray sets one thread per reserved CPU) and `cotsweep train -m` with
the cotsweep launcher. On CPU their metrics.jsonl must be identical record for
record, float for float, except the ``perf/`` fields: those measure the run
(throughput), not the trial, and differ whenever the machine is busier.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sweep_support import ledger_rows

import cotsweep  # noqa: F401  (sets Ray's environment before Ray starts)
from cotsweep import files, hydra_app
from cotsweep.compose import compose_trial
from cotsweep.ids import trial_id
from cotsweep.sweep.engine import launch

# the trial of the issue (a smoke-sweep point, where `train` and the sweep disagreed), shortened
TRIAL = [
    "task=modadd",
    "setting=hint",
    "model=tiny",
    "model.depth=1",
    "task.length=4",
    "train.steps=120",
    "train.lr=3e-3",
    "train.warmup_steps=30",
    "train.eval_every=40",
    "train.eval_size=256",
    "tracking=none",
    "run.device=cpu",
    "run.log_every=10",
]

SWEEP = """\
# @package _global_
defaults:
  - override /model: tiny
  - override /tracking: none
setting: hint
model:
  depth: 1
task:
  length: 4
train:
  steps: 120
  lr: 3.0e-3
  warmup_steps: 30
  eval_every: 40
  eval_size: 256
run:
  device: cpu
  log_every: 10
hydra:
  sweeper:
    params:
      task: modadd
"""


def trial_record(trial_dir: Path) -> list[dict]:
    """metrics.jsonl without the run's own measurements (``perf/``: throughput)."""
    return [
        {k: v for k, v in row.items() if not k.startswith("perf/")}
        for row in files.read_jsonl(trial_dir / files.METRICS)
    ]


@pytest.mark.usefixtures("hydra_restore_singletons")
def test_train_sweep_and_multirun_give_the_same_metrics_for_one_id(tmp_path, ray_local):
    tid = trial_id(compose_trial(TRIAL))

    # 1. `cotsweep train` in its own process, with torch's defaults for this machine
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    alone = tmp_path / "train"
    subprocess.run(
        [sys.executable, "-m", "cotsweep.cli", "train", *TRIAL, f"run.out_dir={alone}"],
        env=env,
        check=True,
        capture_output=True,
    )

    # 2. a sweep on Ray
    sweep_file = tmp_path / "one.yaml"
    sweep_file.write_text(SWEEP)
    swept = tmp_path / "sweep"
    assert launch(str(sweep_file), [], swept, progress=False).ok
    assert set(ledger_rows(swept)) == {tid}

    # 3. Hydra's multirun through the cotsweep launcher, as `cotsweep train -m` runs it: the
    # grid checked first, then Hydra's basic sweeper without its own composition of every job
    multirun = tmp_path / "multirun"
    assert (
        hydra_app.train_with_hydra(
            ["-m", *TRIAL, "hydra/launcher=cotsweep", f"hydra.sweep.dir={multirun}"]
        )
        == 0
    )
    assert "checked_sweeper.CheckedGridSweeper" in (multirun / "multirun.yaml").read_text()

    dirs = {"train": alone, "sweep": swept / "trials" / tid, "multirun": multirun / "trials" / tid}
    results = {how: files.read_json(d / files.RESULT) for how, d in dirs.items()}
    assert {r["trial_id"] for r in results.values()} == {tid}
    reference = trial_record(dirs["train"])
    assert len([r for r in reference if "train/loss" in r]) == 12  # the record is not empty
    for how in ("sweep", "multirun"):
        assert trial_record(dirs[how]) == reference, f"{how} differs from cotsweep train"
    for r in results.values():
        assert (r["threads"], r["torch"], r["device"]) == (1, torch.__version__, "cpu")
        assert json.dumps(r["eval"]) == json.dumps(results["train"]["eval"])
