"""Every named sweep composes in full and trains for a step, so no study rots.

Each sweep's whole grid is expanded and validated (Hydra composition of every
point, the trial checks), then the first point of each task in it runs one real
training step at the sweep's own model size on the CPU.
"""

from __future__ import annotations

import pytest
from omegaconf import open_dict

from cotsweep.compose import available_sweeps
from cotsweep.sweep.grid import expand
from cotsweep.trial import run_trial


@pytest.mark.parametrize("name", available_sweeps())
def test_every_sweep_expands_and_its_tasks_train_one_step(name, tmp_path, one_thread):
    trials = expand(name, [], tmp_path / name)
    assert trials, f"sweep {name} has no trials"
    assert len({t.id for t in trials}) == len(trials)
    firsts = {}
    for t in trials:
        firsts.setdefault(t.cfg.task.name, t)
    for task, t in firsts.items():
        cfg = t.cfg
        with open_dict(cfg):
            cfg.train.steps = 1
            cfg.train.eval_size = 8
            cfg.train.batch_size = 2 * cfg.resources.workers
            cfg.tracking.wandb.mode = "disabled"
            cfg.run.device = "cpu"
            if "suite_size" in cfg.task:  # causal: every evaluation suite, two examples each
                cfg.task.suite_size = 2
            if cfg.task.get("train_set_size"):  # causal: a fixed set (and its held-out share)
                cfg.task.train_set_size = 20
        result = run_trial(cfg, tmp_path / name / task)
        assert result["stop_reason"] == "completed"
        assert result.get("steps", 1) == 1  # simulations have no steps
        assert (tmp_path / name / task / "result.json").exists()
