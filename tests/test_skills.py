"""The skills simulation (STUDIES.md §4): scaling, tuples, seeds, a trial, and its sweep with its report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import tiny_cfg
from figure_checks import captured_figures, check_paper_figures

import cotsweep  # noqa: F401  (sets Ray's environment before ray is imported)
from cotsweep.report import build_report
from cotsweep.report.skills import crossing_scale, doubling_from_k_star
from cotsweep.tasks import ConfigError, make_task
from cotsweep.tasks.skills import SkillGraph
from cotsweep.trial import run_trial

SMALL = ["task=skills", "task.skills=300", "task.texts=3000", "task.tuples=3000"]
SCALES = [1e7, 1e8, 1e9, 1e10, 1e11, 1e12]


def skill_task(*overrides: str) -> SkillGraph:
    cfg = tiny_cfg([*SMALL, *overrides])
    task = make_task(cfg.task, cfg.setting)
    task.validate()
    return task


def sweep_scales(seed: int = 0, *overrides: str) -> list[dict]:
    """The simulation at every scale of SCALES (one composition; the scale set on copies)."""
    cfg = tiny_cfg([*SMALL, *overrides])
    runs = []
    for n in SCALES:
        task_cfg = cfg.task.copy()
        task_cfg.scale = n
        task = make_task(task_cfg, cfg.setting)
        task.validate()
        runs.append(task.simulate(seed=seed))
    return runs


def test_competence_rises_with_scale_for_every_k():
    runs = sweep_scales()
    for k in range(1, 5):
        comp = [r[f"competence_k{k}"] for r in runs]
        frac = [r[f"competent_frac_k{k}"] for r in runs]
        assert all(b > a for a, b in zip(comp, comp[1:], strict=False)), (k, comp)
        assert all(b >= a for a, b in zip(frac, frac[1:], strict=False)), (k, frac)
        assert comp[0] < 0.8 < comp[-1]
    losses = [r["loss"] for r in runs]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False))
    assert runs[2]["loss"] == pytest.approx(1.69 + 406.4 / 1e9**0.34)


def test_tuples_are_never_easier_than_the_skills_inside_them():
    for r in sweep_scales(seed=1):
        comp = [r[f"competence_k{k}"] for k in range(1, 5)]
        frac = [r[f"competent_frac_k{k}"] for k in range(1, 5)]
        assert all(b < a for a, b in zip(comp, comp[1:], strict=False)), comp
        assert all(b <= a for a, b in zip(frac, frac[1:], strict=False)), frac


def test_the_failure_rate_is_calibrated_to_the_loss():
    for r in sweep_scales():
        assert r["theta"] == pytest.approx(-math.expm1(-r["excess_loss"] / 1.0))
        assert r["theta_graph"] == pytest.approx(r["theta"], abs=1e-9)


def test_graph_competence_is_the_success_rate_on_each_skills_adjacent_pieces():
    task = skill_task("task.skills=8", "task.texts=40", "task.degree=3", "task.scale=1e8")
    weakness, graph, _ = task.draw(seed=2)
    _, theta = task.failure_fraction()
    eps = np.minimum(1.0, task.solve_rate(weakness, graph, theta) * weakness)
    per_skill = []
    for s in range(8):
        pieces = [t for t in graph if s in t]
        if pieces:
            per_skill.append(np.mean([np.prod([1 - eps[q] for q in t]) for t in pieces]))
    assert task.simulate(seed=2)["graph_competence"] == pytest.approx(float(np.mean(per_skill)))
    assert all(len(set(t)) == 3 for t in graph.tolist())  # a piece needs distinct skills


def test_same_seed_same_figures_other_seed_other_graph():
    task = skill_task("task.scale=1e9")
    a, b, c = task.simulate(seed=4), task.simulate(seed=4), task.simulate(seed=5)
    assert a == b
    assert a["competence_k2"] != c["competence_k2"]
    assert a["loss"] == c["loss"]  # the scaling law itself is not random


def test_ten_times_the_scale_multiplies_k_star_by_ten_to_the_alpha():
    """Where few pieces fail, k* grows like N^alpha: doubling k takes 2^(1/alpha) times the scale."""
    runs = sweep_scales(0, "task.alpha=0.3", "task.weakness_shape=0")
    ns = np.array(SCALES)
    kstar = np.array([r["k_star"] for r in runs])
    assert kstar[-1] / kstar[-2] == pytest.approx(10**0.3, rel=0.03)
    b, factor = doubling_from_k_star(ns[-3:], kstar[-3:])
    assert b == pytest.approx(0.3, rel=0.05) and factor == pytest.approx(2 ** (1 / 0.3), rel=0.15)
    assert 8 < factor < 12  # the rule of thumb: 10x scale about doubles k


def test_crossing_scale_interpolates_in_log_scale():
    ns = np.array([1e8, 1e9, 1e10])
    assert crossing_scale(ns, np.array([0.2, 0.6, 1.0]), 0.8) == pytest.approx(10**9.5)
    assert (
        crossing_scale(ns, np.array([0.2, 0.3, 0.4]), 0.8) is None
    )  # never reached inside the grid
    assert (
        crossing_scale(ns, np.array([0.9, 0.95, 1.0]), 0.8) is None
    )  # reached before the grid starts


def test_bad_values_are_refused_by_key():
    with pytest.raises(ConfigError, match="task.alpha"):
        skill_task("task.alpha=0")
    with pytest.raises(ConfigError, match="task.skills"):
        skill_task("task.skills=3")  # fewer skills than a 4-tuple needs
    with pytest.raises(ConfigError, match="task.competence_level"):
        skill_task("task.competence_level=1.0")


def test_a_trial_runs_the_simulation_through_run_trial(tmp):
    cfg = tiny_cfg([*SMALL, "task.scale=3e9", "seed=3"])
    result = run_trial(cfg, tmp)
    saved = json.loads((tmp / "result.json").read_text())
    assert saved["task"] == "skills" and saved["seed"] == 3 and saved["length"] == 4
    expect = make_task(cfg.task, cfg.setting).simulate(
        seed=3
    )  # the trial's own seed reaches the simulation
    for key, value in expect.items():
        assert saved[key] == pytest.approx(value), key
    assert result["competence_k4"] == saved["competence_k4"]
    assert not (tmp / "ckpt").exists()  # nothing was trained


def test_skill_emergence_sweep_runs_end_to_end_and_its_report_renders(tmp_path, ray_local):
    from cotsweep.sweep.engine import launch

    d = tmp_path / "skills"
    out = launch(
        "skill_emergence",
        [
            "task.scale=1e8,1e9,1e10,1e11",
            "seed=0,1",
            "task.skills=300",
            "task.texts=3000",
            "task.tuples=3000",
            "tracking=none",
        ],
        d,
        progress=False,
    )
    assert out.ok and out.counts["done"] == 8
    with captured_figures() as figures:
        report = build_report(d)
    check_paper_figures(report.dir, figures, seeds="2 seeds per point")
    md = report.markdown.read_text()
    assert "Emergence of skill combinations" in md
    assert "rule of thumb" in md and "10×" in md
    assert any(p.name.startswith("skills_competence_vs_scale") for p in report.images)
    assert all(p.stat().st_size > 10_000 for p in report.images)
    # the doubling factor measured from k* sits beside 2^(1/alpha) = 7.7x
    line = next(ln for ln in md.splitlines() if "slope" in ln)
    measured = float(line.split("|")[2].split("×")[0])
    assert 5 < measured < 11
