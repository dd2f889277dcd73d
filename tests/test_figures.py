"""Figures a reviewer would accept: readable log axes, accuracy against chance, curves cut short marked.

The studies' own tests run :func:`figure_checks.check_paper_figures` on the
reports of their real small sweeps (smoke, causal, functions, skills); here
are the pieces those checks rest on, on the cases the issue names, and a
trial whose metrics.jsonl lost its tail (cut after a line, or inside one) —
real trials, damaged on disk, reported by the real CLI.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny_cfg
from figure_checks import captured_figures, check_paper_figures, legend_labels, tick_problems
from matplotlib.figure import Figure

from cotsweep.cli import main as cli
from cotsweep.report import load_trials
from cotsweep.report.aggregate import above_chance, seeds_text
from cotsweep.report.plots import TRUNCATED, log_tick_label, log_ticks, readable_log_axis
from cotsweep.trial import run_trial


def _curve(lo: float, hi: float, *, base: int = 10) -> tuple[Figure, bool]:
    """A loss-like curve from ``hi`` down to ``lo`` on an axis set up as the report does."""
    fig = Figure()
    ax = fig.subplots()
    ax.plot(np.arange(50), np.geomspace(hi, lo, 50))
    is_log = readable_log_axis(ax, "y", base=base, min_ratio=10 if base == 10 else 2)
    fig.canvas.draw()
    return fig, is_log


@pytest.mark.parametrize(
    "lo, hi, log",
    [
        (
            1.945,
            2.1,
            False,
        ),  # a curve at 1.95 that matplotlib labelled only 2.00–2.10 on a log axis
        (1.7e-5, 2.0, True),  # five decades that got 16 labels mixing 0.0005 and 5e-05
        (0.0037, 1.6, True),
        (0.017, 1.5, True),
        (3e-5, 2e-3, True),  # every label below 0.001: one notation, ×10ⁿ
        (1e-9, 1e3, True),  # twelve decades: every third
    ],
)
def test_log_axes_carry_a_few_unique_labels_in_one_notation_covering_the_data(lo, hi, log):
    fig, is_log = _curve(lo, hi)
    assert is_log == log
    assert tick_problems("curve", fig) == []
    if log:
        ticks = log_ticks(lo, hi)
        assert 3 <= len(ticks) <= 6 and all(lo <= t <= hi for t in ticks)
        labels = [log_tick_label(t, ticks) for t in ticks]
        assert len(set(labels)) == len(labels)
        assert all(lb.startswith("$") for lb in labels) or not any("$" in lb for lb in labels)


def test_the_number_of_skills_k_is_labelled_in_plain_powers_of_two():
    fig, is_log = _curve(1.3, 11.0, base=2)
    assert is_log and tick_problems("k*", fig) == []
    assert [log_tick_label(t, log_ticks(1.3, 11.0, 2)) for t in log_ticks(1.3, 11.0, 2)] == [
        "2",
        "4",
        "8",
    ]


def test_accuracy_relative_to_chance_puts_chance_at_zero_and_perfect_at_one():
    assert above_chance(0.76, 0.5) == pytest.approx(0.52)  # cvp base: half the way, not 0.76
    assert above_chance(0.5, 0.5) == 0 and above_chance(1.0, 1 / 7) == pytest.approx(1.0)
    assert above_chance(0.45, 0.5) < 0  # below chance stays below: the colour bar's arrow
    assert above_chance(0.8, None) == 0.8  # chance unknown: the raw value


def test_a_metrics_log_cut_short_is_flagged_marked_kept_out_of_the_mean_and_warned(
    tmp_path, capsys
):
    """Three seeds of one grid point: one whole, one cut after a line, one cut inside a line."""
    steps = 20
    for seed in (0, 1, 2):
        cfg = tiny_cfg(
            [
                "task=modadd",
                "task.length=4",
                f"seed={seed}",
                f"train.steps={steps}",
                "train.eval_every=10",
                "train.eval_size=32",
                "run.log_every=5",
            ]
        )
        run_trial(cfg, tmp_path / "trials" / f"seed{seed}")
    trials = tmp_path / "trials"
    cut = (trials / "seed1" / "metrics.jsonl").read_text().splitlines(keepends=True)
    (trials / "seed1" / "metrics.jsonl").write_text(
        "".join(r for r in cut if json.loads(r)["step"] <= 10)
    )
    # a copy cut at a byte in the middle of a line: the torn line and everything after it lost
    lines = (trials / "seed2" / "metrics.jsonl").read_text().splitlines(keepends=True)
    first_after_10 = next(i for i, r in enumerate(lines) if json.loads(r)["step"] > 10)
    kept = "".join(lines[:first_after_10]) + lines[first_after_10][:12]
    (trials / "seed2" / "metrics.jsonl").write_text(kept)
    records = {r.dir.name: r for r in load_trials(tmp_path)}
    assert [records[f"seed{s}"].truncated for s in (0, 1, 2)] == [False, True, True]
    assert records["seed2"].last_logged_step == 10

    with captured_figures() as figures:
        assert cli(["report", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    ids = sorted(records[f"seed{s}"].id for s in (1, 2))
    for tid in ids:
        assert f"warning: trial {tid}" in err
    assert "metrics.jsonl ends at step 10 but result.json reports 20 steps" in err
    report = tmp_path / "report"
    manifest = json.loads((report / "manifest.json").read_text())
    assert sorted(manifest["truncated"]) == ids and len(manifest["warnings"]) == 2
    md = (report / "report.md").read_text()
    overview = md.split("## Chain of thought")[0]
    assert "Trials whose metrics.jsonl is cut short" in overview and "**Warning:**" in overview
    for tid in ids:
        assert f"| `{tid}` | modadd base d=1 n=4 seed=" in overview and "| 10 | 20 |" in overview
    # the training table's final loss is the whole seed's alone, and says what it left out
    whole = records["seed0"].series("train/loss")[1][-1]
    assert f"| {whole:.3g} (2 cut short, left out) |" in md

    fig = figures["training_curves_modadd_n4.png"]
    assert TRUNCATED in legend_labels(fig)
    loss_ax = fig.axes[0]
    marked = [ln for ln in loss_ax.lines if ln.get_label() == TRUNCATED]
    assert len(marked) == 2 and all(ln.get_xdata()[-1] == 10 for ln in marked)
    mean = next(ln for ln in loss_ax.lines if ln.get_label() == "depth = 1")
    # the seed mean is the whole seed's curve: the cut ones would drag its end back to step 10
    assert list(mean.get_xdata()) == records["seed0"].series("train/loss")[0]
    assert np.allclose(mean.get_ydata(), records["seed0"].series("train/loss")[1])
    check_paper_figures(report, figures, chance={"modadd": 1 / 7})
    assert "3 seeds per point" in seeds_text(list(records.values()))
