"""The report section of the skill-emergence study (STUDIES.md §4).

Each trial is one simulation at one model scale N (``task.scale``); its
result.json holds ``competence_k1..K``, ``competent_frac_k1..K``, ``k_star``,
``loss`` and ``theta`` at the top level (no training, so no ``eval``).

The section draws competence against scale, one line per k, and the fraction
of k-tuples on which the model is competent; then it measures the scale factor
that doubles k, three ways, beside the rule of thumb of STUDIES.md §4 (10×
scale about doubles k):

* from ``k_star`` (the k at which mean competence falls to the competence
  level): the slope b of log k* against log N, factor 2^(1/b);
* directly: the scale at which mean competence on k-tuples reaches the level,
  interpolated in log N between the grid's scales, for k = 1, 2, 4 — factors
  N(2)/N(1) and N(4)/N(2);
* in closed form for the simulated model, 2^(1/alpha) (k* grows like N^alpha
  while the failure rate is small).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cotsweep.report.aggregate import seeds_text
from cotsweep.report.document import Section
from cotsweep.report.plots import (
    band,
    figure_legend,
    new_figure,
    paper_style,
    readable_log_axis,
    save,
    titled,
)
from cotsweep.report.records import TrialRecord
from cotsweep.report.registry import ReportContext, section

RULE_OF_THUMB = 10.0  # STUDIES.md §4: 10x scale about doubles the number of skills combined
K_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999999"]
# config keys of the simulation besides scale and seed; trials that differ in one are drawn apart
MODEL_KEYS = (
    "length",
    "skills",
    "texts",
    "degree",
    "E",
    "A",
    "alpha",
    "fail_loss",
    "weakness_shape",
    "tuples",
    "competence_level",
)


def _task_cfg(r: TrialRecord) -> dict:
    t = r.config.get("task") if isinstance(r.config, dict) else None
    return t if isinstance(t, dict) else {}


def scale_of(r: TrialRecord) -> float | None:
    v = (r.result or {}).get("scale", _task_cfg(r).get("scale", r.axes.get("task.scale")))
    return float(v) if isinstance(v, (int, float)) else None


def figure(r: TrialRecord, key: str) -> float | None:
    v = (r.result or {}).get(key) if r.done else None
    return (
        float(v)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        else None
    )


def max_k(records: Sequence[TrialRecord]) -> int:
    ks = [
        int(r.result["max_k"]) for r in records if r.done and isinstance(r.result.get("max_k"), int)
    ]
    return max(ks, default=0)


def series(
    records: Sequence[TrialRecord], key: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(scales, mean, min, max) of ``result[key]`` over seeds, per scale, scales ascending."""
    by_scale: dict[float, list[float]] = {}
    for r in records:
        n, v = scale_of(r), figure(r, key)
        if n is not None and v is not None:
            by_scale.setdefault(n, []).append(v)
    ns = np.array(sorted(by_scale))
    vals = [by_scale[n] for n in ns]
    return (
        ns,
        np.array([np.mean(v) for v in vals]),
        np.array([min(v) for v in vals]),
        np.array([max(v) for v in vals]),
    )


def crossing_scale(ns: np.ndarray, comp: np.ndarray, level: float) -> float | None:
    """The scale where competence first reaches ``level``, interpolated linearly in log N; None if never inside the grid."""
    for i in range(len(ns)):
        if comp[i] >= level:
            if i == 0:
                return (
                    None if comp[0] > level else float(ns[0])
                )  # already above at the smallest scale: not placed
            t = (level - comp[i - 1]) / (comp[i] - comp[i - 1])
            return float(
                10 ** (math.log10(ns[i - 1]) + t * (math.log10(ns[i]) - math.log10(ns[i - 1])))
            )
    return None


def doubling_from_k_star(ns: np.ndarray, kstar: np.ndarray) -> tuple[float | None, float | None]:
    """(slope b of log k* on log N, scale factor 2^(1/b)) by least squares; None with fewer than 2 scales."""
    ok = np.isfinite(kstar) & (kstar > 0)
    if ok.sum() < 2:
        return None, None
    b = float(np.polyfit(np.log(ns[ok]), np.log(kstar[ok]), 1)[0])
    return b, (2 ** (1 / b) if b > 0 else None)


def _group_key(r: TrialRecord) -> tuple:
    t = _task_cfg(r)
    return tuple((k, t.get(k)) for k in MODEL_KEYS)


@section("skills", title="Emergence of skill combinations (STUDIES.md §4)", order=40)
def skills_study(records: list[TrialRecord], ctx: ReportContext) -> Section:
    sec = Section("")
    done = [r for r in records if r.done]
    groups: dict[tuple, list[TrialRecord]] = {}
    for r in records:
        groups.setdefault(_group_key(r), []).append(r)
    scales = sorted({s for s in (scale_of(r) for r in records) if s is not None})
    seeds = sorted({r.axes.get("seed") for r in records}, key=str)
    sec.text(
        f"{len(records)} simulations ({len(done)} done) at {len(scales)} scales "
        f"({scales[0]:.3g} … {scales[-1]:.3g} parameters) × {len(seeds)} seed{'s' if len(seeds) != 1 else ''}"
        + (f", in {len(groups)} simulation settings" if len(groups) > 1 else "")
        + ". "
        "Competence on a k-tuple is the success rate on a text piece that needs exactly those k skills; "
        "test loss follows L(N) = E + A/N^α and sets the fraction of text pieces the model fails "
        "(`src/cotsweep/tasks/skills.py` documents the model, *(ours)* where the paper's choice is not known)."
        if scales
        else f"{len(records)} simulations, none with a scale yet."
    )
    if not done:
        sec.text("No simulation has finished yet: nothing to draw.")
        return sec
    rows = []
    for gi, (key, recs) in enumerate(groups.items()):
        params = dict(key)
        name = (
            ""
            if len(groups) == 1
            else " — "
            + ", ".join(f"{k}={v}" for k, v in key if len({dict(g).get(k) for g in groups}) > 1)
        )
        K = max_k(recs)
        if K == 0:
            continue
        level = next(
            (
                figure(r, "competence_level")
                for r in recs
                if figure(r, "competence_level") is not None
            ),
            0.8,
        )
        p = _figure(recs, K, level, ctx.figure_path(f"skills_competence_vs_scale_{gi}"), name)
        sec.figure(
            p,
            f"Competence against model scale, one line per k ({seeds_text(recs)}; mean, min–max "
            f"band where seeds differ){name}: left, "
            f"mean competence on k-tuples (dotted: the level {level:g}); middle, the fraction of k-tuples "
            f"with competence ≥ {level:g}; right, k* — the k at which competence falls to {level:g}.",
        )
        ns, kstar, _, _ = series(recs, "k_star")
        b, factor_k = doubling_from_k_star(ns, kstar)
        cross = {}
        for k in (1, 2, 4):
            if k <= K:
                n_k, comp, _, _ = series(recs, f"competence_k{k}")
                cross[k] = crossing_scale(n_k, comp, level)
        direct = []
        for lo, hi in ((1, 2), (2, 4)):
            if cross.get(lo) and cross.get(hi):
                direct.append(f"N({hi})/N({lo}) = {cross[hi] / cross[lo]:.1f}×")
            elif lo in cross and hi in cross:
                direct.append(f"N({hi})/N({lo}): not inside the grid")
        alpha = params.get("alpha")
        closed = (
            f"{2 ** (1 / alpha):.1f}×" if isinstance(alpha, (int, float)) and alpha > 0 else "—"
        )
        rows.append(
            [
                name.removeprefix(" — ") or "all",
                f"{factor_k:.1f}× (slope {b:.3f})" if factor_k else "—",
                "; ".join(direct) or "—",
                closed,
                f"{RULE_OF_THUMB:g}×",
            ]
        )
        table = []
        for i, n in enumerate(ns):
            row: list[object] = [f"{n:.3g}"]
            for key2 in ("loss", "theta"):
                _, m, _, _ = series([r for r in recs if scale_of(r) == n], key2)
                row.append(f"{m[0]:.3f}" if len(m) else "—")
            for k in range(1, K + 1):
                _, m, _, _ = series([r for r in recs if scale_of(r) == n], f"competence_k{k}")
                row.append(f"{m[0]:.3f}" if len(m) else "—")
            row.append(f"{kstar[i]:.2f}")
            table.append(row)
        sec.table(
            [
                "scale N",
                "loss L(N)",
                "failed pieces θ",
                *[f"competence k={k}" for k in range(1, K + 1)],
                "k*",
            ],
            table,
            caption=f"Means over seeds{name}.",
        )
    sec.table(
        [
            "setting",
            "from k* (fit over scales)",
            "direct, competence level reached",
            "closed form 2^(1/α)",
            "rule of thumb (STUDIES.md §4)",
        ],
        rows,
        caption="The scale factor needed to double the number of skills combined, beside the rule of thumb "
        "that 10× scale about doubles k.",
    )
    return sec


def _figure(recs: list[TrialRecord], K: int, level: float, path: Path, name: str) -> Path:
    colours = {k: K_COLOURS[(k - 1) % len(K_COLOURS)] for k in range(1, K + 1)}
    with paper_style():
        fig, axes = new_figure(1, 3, panel_w=3.4)
        for j, (prefix, ylabel) in enumerate(
            (
                ("competence_k", "mean competence on k-tuples"),
                ("competent_frac_k", f"fraction of k-tuples ≥ {level:g}"),
            )
        ):
            ax = axes[0][j]
            for k in range(1, K + 1):
                ns, m, lo, hi = series(recs, f"{prefix}{k}")
                if len(ns):
                    ax.plot(ns, m, marker="o", markersize=3.5, color=colours[k], label=f"k = {k}")
                    band(ax, ns, lo, hi, colours[k])
            if j == 0:
                ax.axhline(
                    level,
                    color="0.35",
                    linestyle=":",
                    linewidth=1.1,
                    label=f"competence level {level:g}",
                )
            ax.set_xscale("log")
            ax.set_ylim(-0.03, 1.03)
            ax.set_xlabel("model scale N (parameters)")
            ax.set_ylabel(ylabel)
        ax = axes[0][2]
        ns, m, lo, hi = series(recs, "k_star")
        if len(ns):
            ax.plot(ns, m, marker="o", markersize=3.5, color="0.2", label="k*")
            band(ax, ns, lo, hi, "0.2")
            # k* doubles per factor of scale: powers of 2 as plain numbers (2, 4, 8), not 2³
            readable_log_axis(ax, "y", base=2, min_ratio=2)
        ax.set_xscale("log")
        ax.set_xlabel("model scale N (parameters)")
        ax.set_ylabel(f"k* (competence {level:g})")
        figure_legend(fig, first=[f"k = {k}" for k in colours], loc="outside right center")
        titled(fig, f"skills: competence on k-tuples against scale{name}", recs)
        return save(fig, path)
