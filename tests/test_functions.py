"""The functions task (STUDIES.md §3): families, baselines, curriculum, a real trial, samples."""

from __future__ import annotations

import io
import json
import math
from contextlib import redirect_stdout

import pytest
import torch
from conftest import tiny_cfg
from figure_checks import captured_figures, check_paper_figures

from cotsweep.cli import main as cli
from cotsweep.tasks import ConfigError, make_task
from cotsweep.tasks.functions import (
    COMBINATION,
    FAMILIES,
    LINEAR,
    SINUSOID,
    SPARSE,
    averaging,
    least_squares,
    nearest_neighbours,
    parse_mixture,
)
from cotsweep.trial import run_trial

CPU = torch.device("cpu")
SMALL = ["task=functions", "task.dims=5", "task.length=12", "task.curriculum_every=0"]


def task_for(*overrides: str):
    cfg = tiny_cfg([*SMALL, *overrides])
    task = make_task(cfg.task, cfg.setting)
    task.validate()
    return task


def families(name: str, n: int) -> torch.Tensor:
    return torch.full((n,), FAMILIES.index(name), dtype=torch.long)


def test_least_squares_recovers_a_noiseless_linear_function_once_k_reaches_d():
    task = task_for()
    gen = torch.Generator().manual_seed(0)
    fns = task.draw(families("linear", 64), 5, gen, CPU)
    xs = task.points(64, 12, 5, gen, CPU).double()
    ys = (xs @ fns.w.double()[..., None]).squeeze(-1)
    err = (least_squares(xs, ys) - ys) ** 2  # (B, k): position i has seen i examples
    assert err[:, 5:].max() < 1e-18  # d = 5 examples determine w
    assert (err[:, 1:5].mean(0) > 1e-3).all()  # fewer cannot
    # below d it is the minimum-norm fit: the pseudo-inverse's prediction
    i = 3
    w_min = torch.linalg.pinv(xs[:, :i]) @ ys[:, :i, None]
    assert torch.allclose(
        least_squares(xs, ys)[:, i], (xs[:, i] * w_min[..., 0]).sum(-1), atol=1e-9
    )


def test_nearest_neighbours_and_averaging_by_hand():
    xs = torch.tensor([[[0.0], [1.0], [10.0], [2.0], [9.0]]], dtype=torch.float64)
    ys = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]], dtype=torch.float64)
    knn = nearest_neighbours(xs, ys, 3)[0].tolist()
    # x=1 sees {0}; x=10 sees {0, 1}; x=2 sees {0, 1, 10} -> all three; x=9 nearest three of {0,1,10,2}: 10, 2, 1
    assert knn == pytest.approx([0.0, 1.0, 1.5, 2.0, (3.0 + 4.0 + 2.0) / 3])
    avg = averaging(xs, ys)[0].tolist()
    # x_i * mean_{j<i}(x_j y_j): moments 0, 2, 30, 8
    assert avg == pytest.approx(
        [0.0, 0.0, 10.0 * (0 + 2) / 2, 2.0 * (0 + 2 + 30) / 3, 9.0 * (0 + 2 + 30 + 8) / 4]
    )


def test_sparse_linear_has_exactly_the_promised_support_inside_the_active_dims():
    task = task_for("task.dims=10", "task.sparsity=3")
    gen = torch.Generator().manual_seed(1)
    fns = task.draw(families("sparse_linear", 200), 6, gen, CPU)
    nonzero = fns.w != 0
    assert (nonzero.sum(1) == 3).all()
    assert not nonzero[:, 6:].any()  # never on a dimension the curriculum has switched off
    assert nonzero[:, :6].any(0).all()  # the support is spread over every active dimension
    assert torch.allclose(fns.variance(), torch.full((200,), 3.0))


def test_sinusoid_frequencies_in_range_and_values_are_the_formula():
    task = task_for("task.freq_min=0.5", "task.freq_max=1.5", "task.sin_amplitude=2.0")
    gen = torch.Generator().manual_seed(2)
    fns = task.draw(families("sinusoid", 500), 5, gen, CPU)
    assert fns.freq.min() >= 0.5 and fns.freq.max() <= 1.5
    assert fns.freq.max() - fns.freq.min() > 0.9  # spread over the range, not a constant
    assert torch.allclose(fns.v.norm(dim=1), torch.ones(500))
    xs = task.points(500, 12, 5, gen, CPU)
    expect = 2.0 * torch.sin(fns.freq[:, None] * (xs @ fns.v[..., None]).squeeze(-1))
    assert torch.allclose(fns(xs), expect, atol=1e-5)


def test_convex_combination_equals_the_mix_of_the_linear_and_sinusoid_drawn_from_the_same_stream():
    task = task_for()
    n, a = 100, 0.3
    draws = {}
    for fam in ("linear", "sinusoid", "combination"):
        gen = torch.Generator().manual_seed(3)  # the same stream: the same w, v and frequency
        fns = task.draw(families(fam, n), 5, gen, CPU, a=a if fam == "combination" else None)
        draws[fam] = (fns, task.points(n, 12, 5, gen, CPU))
    (lin, xs), (sin, xs_s), (combo, xs_c) = draws["linear"], draws["sinusoid"], draws["combination"]
    assert torch.equal(xs, xs_s) and torch.equal(xs, xs_c)
    assert torch.allclose(combo(xs), a * lin(xs) + (1 - a) * sin(xs), atol=1e-5)
    assert torch.allclose(combo.variance(), a**2 * lin.variance() + (1 - a) ** 2 * sin.variance())


@pytest.mark.parametrize("family", ["linear", "sparse_linear", "sinusoid", "combination"])
def test_normaliser_is_the_families_mean_square(family):
    """The divisor of every reported error is E[f(x)^2]: d for Garg's linear functions."""
    task = task_for("task.freq_min=0.3", "task.freq_max=2.0")
    gen = torch.Generator().manual_seed(4)
    fns = task.draw(families(family, 4000), 5, gen, CPU)
    xs = task.points(4000, 12, 5, gen, CPU)
    empirical = (fns(xs) ** 2).mean()
    assert math.isclose(empirical.item(), fns.variance().mean().item(), rel_tol=0.06)
    if family == "linear":
        assert torch.allclose(fns.variance(), torch.full((4000,), 5.0))


def test_mixture_parsing_and_draws_follow_the_weights():
    assert parse_mixture("linear:3+sinusoid") == {"linear": 0.75, "sinusoid": 0.25}
    with pytest.raises(ValueError, match="unknown family"):
        parse_mixture("linear+cubic")
    task = task_for("task.mixture=linear:3+sinusoid")
    fam = task.mixture_families(8000, torch.Generator().manual_seed(5), CPU)
    counts = torch.bincount(fam, minlength=4).float() / 8000
    assert counts[SPARSE] == 0 and counts[COMBINATION] == 0
    assert abs(counts[LINEAR].item() - 0.75) < 0.02 and abs(counts[SINUSOID].item() - 0.25) < 0.02


def test_curriculum_grows_dims_and_points_and_zeroes_the_unused_dims():
    task = task_for(
        "task.dims=8",
        "task.length=15",
        "task.curriculum_every=10",
        "task.dims_start=3",
        "task.points_start=5",
        "task.points_step=4",
        "task.dims_step=2",
    )
    gen = torch.Generator().manual_seed(6)
    seen = {}
    for step in (1, 10, 11, 21, 31, 1000):
        b = task.train_batch(16, gen, CPU, step)
        x_tokens, y_tokens = b.x[:, 0::2], b.x[:, 1::2]
        active = int((x_tokens != 0).any(0).any(0).sum())
        seen[step] = (b.x.shape[1] // 2, active)
        assert b.x.shape[2] == 8 and b.y.shape == b.mask.shape == b.x.shape[:2]
        assert (
            b.mask[:, 0::2].all() and not b.mask[:, 1::2].any()
        )  # predictions count at the x positions
        assert torch.equal(y_tokens[..., 0], b.y[:, 0::2])  # y read as [y, 0, .., 0] after its x
        assert not y_tokens[..., 1:].any()
    assert seen == {1: (5, 3), 10: (5, 3), 11: (9, 5), 21: (13, 7), 31: (15, 8), 1000: (15, 8)}
    assert (
        task.model_spec().seq_len == 30
        and task.model_spec().in_dim == 8
        and task.model_spec().out_dim == 1
    )


def test_bad_values_are_refused_by_key():
    with pytest.raises(ConfigError, match="task.mixture"):
        task_for("task.mixture=linear+cubic")
    with pytest.raises(ConfigError, match="task.sparsity"):
        task_for("task.sparsity=0")
    with pytest.raises(ConfigError, match="task.freq_min"):
        task_for("task.freq_min=3.0", "task.freq_max=2.0")
    with pytest.raises(ConfigError, match="setting"):
        task_for("setting=cot")


def test_a_short_trial_trains_evaluates_beside_the_baselines_and_writes_its_result(tmp, one_thread):
    cfg = tiny_cfg(
        [
            *SMALL,
            "task.dims=3",
            "task.length=8",
            "task.mixture=linear+sinusoid",
            "task.curriculum_every=30",
            "task.dims_start=2",
            "task.points_start=5",
            "task.eval_alphas=[0.0,0.5,1.0]",
            "task.eval_freqs=[0.5,1.5,4.0]",
            "train.steps=90",
            "train.eval_every=45",
            "train.eval_size=64",
            "train.warmup_steps=10",
            "train.lr=3e-3",
            "run.log_every=15",
        ]
    )
    result = run_trial(cfg, tmp)
    saved = json.loads((tmp / "result.json").read_text())
    assert saved["task"] == "functions" and saved["steps"] == 90
    ev = saved["eval"]
    assert math.isfinite(ev["mse"]) and ev["mse"] == ev["mixture/model"]
    assert "acc" not in ev and saved["acc"] is None  # this task reports errors, not accuracy
    for suite in ("mixture", "linear", "sparse_linear", "sinusoid"):
        for p in ("model", "lsq", "knn3", "avg"):
            assert len(ev[f"curve/{suite}/{p}"]) == 8
    # least squares on the same batch is exact once it has seen d = 3 examples of a linear function
    assert max(ev["curve/linear/lsq"][3:]) < 1e-12
    # with no example every baseline predicts 0: the same error, the batch's mean square over d
    first = [ev[f"curve/linear/{p}"][0] for p in ("lsq", "knn3", "avg")]
    assert first[0] > 0 and first == pytest.approx([first[0]] * 3)
    assert (
        ev["combo_a"] == [0.0, 0.5, 1.0]
        and len(ev["combo/model"]) == 3
        and ev["combo/lsq"][2] < 1e-12
    )
    assert ev["freq"] == [0.5, 1.5, 4.0] and len(ev["freq/knn3"]) == 3
    assert ev["freq_train_min"] == 1.0 and ev["freq_train_max"] == 2.0
    losses = [
        json.loads(line)["train/loss"]
        for line in (tmp / "metrics.jsonl").read_text().splitlines()
        if "train/loss" in line
    ]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    assert result["eval"] == saved["eval"]


def test_baselines_are_cached_per_generator_state_and_match_a_fresh_computation(one_thread):
    task = task_for("task.eval_alphas=[0.5]", "task.eval_freqs=[1.0]")
    cfg = tiny_cfg(SMALL)
    from cotsweep.trial import build_model

    model = build_model(cfg, task)
    first = task.evaluate(model, 32, torch.Generator().manual_seed(7), CPU)
    again = task.evaluate(model, 32, torch.Generator().manual_seed(7), CPU)
    other = task.evaluate(model, 32, torch.Generator().manual_seed(8), CPU)
    fresh = make_task(task.cfg, cfg.setting).evaluate(
        model, 32, torch.Generator().manual_seed(8), CPU
    )
    assert first == again
    assert other["linear/lsq"] != first["linear/lsq"]
    assert other == fresh


def test_tasks_sample_prints_family_params_xs_ys():
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert cli(["tasks", "sample", "functions", "--count", "50", "--seed", "5"]) == 0
    rows = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert len(rows) == 50
    for row in rows:
        assert row["family"] == "linear"  # the default mixture
        assert (
            len(row["xs"]) == 41 and all(len(x) == 20 for x in row["xs"]) and len(row["ys"]) == 41
        )
        w = torch.tensor(row["params"]["w"], dtype=torch.float64)
        ys = torch.tensor(row["xs"], dtype=torch.float64) @ w
        assert torch.allclose(ys, torch.tensor(row["ys"], dtype=torch.float64), atol=1e-4)
    again = io.StringIO()
    with redirect_stdout(again):
        cli(["tasks", "sample", "functions", "--count", "50", "--seed", "5"])
    assert again.getvalue() == buf.getvalue()
    mixed = io.StringIO()
    with redirect_stdout(mixed):
        cli(
            [
                "tasks",
                "sample",
                "functions",
                "--count",
                "40",
                "--seed",
                "1",
                "--set",
                "mixture=sparse_linear+sinusoid+combination",
            ]
        )
    rows = [json.loads(line) for line in mixed.getvalue().splitlines()]
    kinds = {r["family"] for r in rows}
    assert kinds == {"sparse_linear", "sinusoid", "combination"}
    for r in rows:
        p = r["params"]
        if r["family"] == "sparse_linear":
            assert len(p["support"]) == 3 and sum(v != 0 for v in p["w"]) == 3
        elif r["family"] == "sinusoid":
            assert 1.0 <= p["freq"] <= 2.0 and "w" not in p
        else:
            assert 0.0 <= p["a"] <= 1.0 and {"w", "v", "freq"} <= set(p)


def test_function_mixtures_cpu_sweep_runs_end_to_end_and_its_report_renders(tmp_path, ray_local):
    from cotsweep.report import build_report
    from cotsweep.sweep.engine import launch

    d = tmp_path / "functions"
    out = launch(
        "function_mixtures_cpu",
        [
            "model.depth=1",
            "train.steps=40",
            "train.eval_every=20",
            "train.eval_size=32",
            "train.warmup_steps=5",
            "run.log_every=10",
            "tracking=none",
        ],
        d,
        progress=False,
    )
    assert out.ok and out.counts["done"] == 2  # mixtures linear and linear+sinusoid
    with captured_figures() as figures:
        report = build_report(d)
    check_paper_figures(report.dir, figures, seeds="1 seed per point")
    md = report.markdown.read_text()
    assert "In-context learning of function-class mixtures" in md
    assert "failed to build" not in md
    names = {p.name for p in report.images}
    assert {
        "functions_error_vs_examples.png",
        "functions_error_vs_a.png",
        "functions_error_vs_frequency.png",
    } <= names
    assert all(p.stat().st_size > 10_000 for p in report.images)
    # the tables behind the figures: a row per mixture and model, and the baselines beside them
    assert "| `linear+sinusoid` | model 1L×4H×64 |" in md and "best baseline" in md
    assert "freq=4 †" in md  # outside the training range [1, 2]
