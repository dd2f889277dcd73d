"""The footprint the feasibility checks refuse by: held to the real model and its real FLOPs."""

from __future__ import annotations

import pytest
from conftest import tiny_cfg

from cotsweep.sweep.feasible import footprint
from cotsweep.trial import build_model, validate


@pytest.mark.parametrize(
    "overrides",
    [
        ["task=s5"],
        ["task=cvp", "setting=cot", "model.pos_encoding=rope", "model.mlp_ratio=2"],
        ["task=modadd", "model.pos_encoding=sinusoidal", "model.max_len=64"],
        ["task=functions"],  # a vector read-in and a read-out of its own
        ["task=isq", "setting=hint", "model.depth=3", "model.width=96", "model.heads=3"],
    ],
)
def test_footprint_counts_the_real_models_parameters_and_flops(overrides):
    cfg = tiny_cfg(overrides)
    task = validate(cfg)
    fp = footprint(cfg, task)
    model = build_model(cfg, task)
    assert fp.params == model.num_params()
    T = task.model_spec().seq_len
    assert fp.flops == cfg.train.steps * cfg.train.batch_size * T * model.flops_per_token(T)
    assert fp.memory >= 16 * fp.params  # weights, gradients and AdamW's two moments at least
