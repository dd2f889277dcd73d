"""The report section of the function-class study (STUDIES.md §3).

Three figures, each with the baselines beside the model: normalised squared
error against the number of in-context examples (one row per pretraining
mixture, one column per function family), against the weight a of the convex
combination a*linear + (1-a)*sinusoid, and against the sinusoid's frequency
(the training range shaded). Lines are model sizes, as mean over seeds with a
min–max band; the baselines (least squares, 3-nearest-neighbours, averaging)
are computed by the task on the same evaluation batches, so they are the same
for every model size of one mixture and are drawn once, dashed.

The figures read ``result["eval"]`` of each finished trial (see
:meth:`cotsweep.tasks.functions.FunctionClasses.evaluate` for the keys); the
headline figure of a trial is ``eval.mse``, the error at the last point on the
pretraining mixture. The task has no accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.ticker import NullLocator

from cotsweep.report.aggregate import seeds_text
from cotsweep.report.document import Section
from cotsweep.report.plots import band, figure_legend, new_figure, paper_style, save, titled
from cotsweep.report.records import TrialRecord
from cotsweep.report.registry import ReportContext, section

BASELINES = {"lsq": "least squares", "knn3": "3-nearest neighbours", "avg": "averaging"}
BASELINE_STYLE = {"lsq": ("0.15", "--"), "knn3": ("0.45", ":"), "avg": ("0.6", "-.")}
FAMILY_TITLES = {
    "linear": "dense linear",
    "sparse_linear": "sparse linear",
    "sinusoid": "sinusoid",
    "mixture": "the pretraining mixture",
}
SIZE_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]
Y_TOP = 1.6  # normalised errors above this are no better than guessing 0; the axis stops there


def mixture_of(r: TrialRecord) -> str:
    return str(r.setting("task.mixture", r.axes.get("task.mixture", "?")))


def size_of(r: TrialRecord) -> str:
    """A model size as layers × heads × width, e.g. ``12L×8H×256``."""
    return f"{r.setting('model.depth', r.axes.get('depth', '?'))}L×{r.setting('model.heads', '?')}H×{r.setting('model.width', '?')}"


def _size_key(size: str) -> tuple:
    try:
        layers, heads, width = (
            int(p[:-1]) if i < 2 else int(p) for i, p in enumerate(size.split("×"))
        )
        return (width, layers, heads)
    except ValueError:
        return (math.inf, size)


def _eval(r: TrialRecord) -> dict:
    return (r.result or {}).get("eval") or {} if r.done else {}


def stack(records: Sequence[TrialRecord], key: str) -> np.ndarray | None:
    """(seeds, n) the list ``eval[key]`` of each finished record (rows of unequal length are dropped)."""
    rows = [_eval(r).get(key) for r in records]
    rows = [row for row in rows if isinstance(row, list) and row]
    if not rows:
        return None
    n = len(rows[0])
    arr = np.array(
        [[np.nan if v is None else float(v) for v in row] for row in rows if len(row) == n]
    )
    return arr if arr.size else None


def scalar(records: Sequence[TrialRecord], key: str) -> list[float]:
    vals = [_eval(r).get(key) for r in records]
    return [float(v) for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]


def _fmt(vals: list[float]) -> str:
    if not vals:
        return "—"
    m = sum(vals) / len(vals)
    return f"{m:.3f}" + (f" [{min(vals):.3f}–{max(vals):.3f}]" if len(vals) > 1 else "")


@section(
    "functions", title="In-context learning of function-class mixtures (STUDIES.md §3)", order=30
)
def functions_study(records: list[TrialRecord], ctx: ReportContext) -> Section:
    sec = Section("")
    done = [r for r in records if r.done]
    mixtures = sorted({mixture_of(r) for r in records})
    sizes = sorted({size_of(r) for r in records}, key=_size_key)
    seeds = sorted({r.axes.get("seed") for r in records}, key=str)
    sec.text(
        f"{len(records)} trials ({len(done)} done): pretraining mixtures {', '.join(f'`{m}`' for m in mixtures)}; "
        f"model sizes {', '.join(sizes)} (layers × heads × width); {len(seeds)} seed{'s' if len(seeds) != 1 else ''}. "
        "Errors are squared errors divided by the family's mean square (for linear functions: by d), so 1 is no "
        "better than predicting 0; model lines are means over seeds with min–max bands, baselines are computed on "
        "the same evaluation batches."
    )
    sec.text(
        "Reported *(STUDIES.md §3)*: trained on linear functions and sinusoids, the model fails on convex "
        "combinations a·linear + (1−a)·sinusoid except when a is near 0 or 1, and on sinusoids of frequencies far "
        "from training; a small 4-layer model was reported to generalise to the combinations. Read the "
        "combination figure and the table below it for each model size."
    )
    if not done:
        sec.text("No trial has finished yet: nothing to draw.")
        return sec
    colours = {s: SIZE_COLOURS[i % len(SIZE_COLOURS)] for i, s in enumerate(sizes)}
    seeds = seeds_text(records)
    by_mix = {m: [r for r in records if mixture_of(r) == m] for m in mixtures}

    p = _curves_figure(by_mix, sizes, colours, ctx.figure_path("functions_error_vs_examples"))
    if p is not None:
        sec.figure(
            p,
            "Normalised squared error against the number of in-context examples, one row per pretraining "
            f"mixture, one column per function family; coloured: model sizes ({seeds}); grey: baselines.",
        )
    p = _sweep_figure(
        by_mix,
        sizes,
        colours,
        "combo",
        "combo_a",
        ctx.figure_path("functions_error_vs_a"),
        xlabel="a in a·linear + (1−a)·sinusoid",
        title="error against the combination weight a",
    )
    if p is not None:
        sec.figure(
            p,
            "Normalised error at the last point against a (a = 1: linear, a = 0: sinusoid), one panel per "
            f"pretraining mixture, beside the baselines; {seeds}.",
        )
    p = _sweep_figure(
        by_mix,
        sizes,
        colours,
        "freq",
        "freq",
        ctx.figure_path("functions_error_vs_frequency"),
        xlabel="sinusoid frequency",
        title="error against the sinusoid's frequency",
        log_x=True,
    )
    if p is not None:
        sec.figure(
            p,
            "Normalised error at the last point against the sinusoid's frequency, one panel per pretraining "
            f"mixture; shaded: the training range of frequencies; {seeds}.",
        )

    rows = []
    for m in mixtures:
        for s in sizes:
            group = [r for r in by_mix[m] if size_of(r) == s]
            if not group:
                continue
            row: list[object] = [f"`{m}`", s, f"{sum(r.done for r in group)}/{len(group)}"]
            for fam in ("mixture", "linear", "sparse_linear", "sinusoid"):
                row.append(_fmt(scalar(group, f"{fam}/model")))
            rows.append(row)
        rows.append(
            [
                f"`{m}`",
                "least squares",
                "",
                *[
                    _fmt(scalar(by_mix[m], f"{f}/lsq"))
                    for f in ("mixture", "linear", "sparse_linear", "sinusoid")
                ],
            ]
        )
    sec.table(
        [
            "mixture",
            "model",
            "seeds done",
            "mixture (= mse)",
            "linear",
            "sparse linear",
            "sinusoid",
        ],
        rows,
        caption="Normalised error at the last point (k−1 examples seen), mean [min–max] over seeds.",
    )

    _sweep_table(
        sec,
        by_mix,
        sizes,
        "combo",
        "combo_a",
        "a",
        "Normalised error at the last point on a·linear + (1−a)·sinusoid; the best baseline is the lowest of "
        "least squares, 3-NN and averaging. Intermediate/ends: mean error over 0 < a < 1 divided by the "
        "mean at a ∈ {0, 1} (above 1: the combinations are harder than the pure families).",
    )
    _sweep_table(
        sec,
        by_mix,
        sizes,
        "freq",
        "freq",
        "freq",
        "Normalised error at the last point on sinusoids of one frequency; † outside the training range.",
    )
    return sec


# ---------------------------------------------------------------- figures
def _band(ax, x, arr: np.ndarray, colour: str, label: str) -> None:
    """A model's mean over seeds, with the min–max band where the seeds differ."""
    ax.plot(x, np.nanmean(arr, axis=0), color=colour, marker="o", markersize=3, label=label)
    band(ax, x, np.nanmin(arr, axis=0), np.nanmax(arr, axis=0), colour)


def _baselines(ax, x, records: Sequence[TrialRecord], key: str) -> None:
    for b, (colour, style) in BASELINE_STYLE.items():
        arr = stack(records, key.format(p=b))
        if arr is not None and arr.shape[1] == len(x):
            ax.plot(
                x,
                np.nanmean(arr, axis=0),
                color=colour,
                linestyle=style,
                linewidth=1.3,
                label=BASELINES[b],
            )


def _legend(fig, sizes: Sequence[str]) -> None:
    figure_legend(fig, first=[f"model {s}" for s in sizes], loc="outside right center")


def _curves_figure(by_mix: dict, sizes: list[str], colours: dict, path: Path) -> Path | None:
    fams = ["linear", "sparse_linear", "sinusoid", "mixture"]
    if not any(stack(rs, f"curve/{f}/model") is not None for rs in by_mix.values() for f in fams):
        return None
    with paper_style():
        fig, axes = new_figure(len(by_mix), len(fams), panel_w=3.0, panel_h=2.5)
        for i, (m, recs) in enumerate(by_mix.items()):
            for j, fam in enumerate(fams):
                ax = axes[i][j]
                for s in sizes:
                    arr = stack([r for r in recs if size_of(r) == s], f"curve/{fam}/model")
                    if arr is not None:
                        _band(ax, np.arange(arr.shape[1]), arr, colours[s], f"model {s}")
                ref = stack(recs, f"curve/{fam}/model")
                if ref is not None:
                    _baselines(ax, np.arange(ref.shape[1]), recs, f"curve/{fam}/{{p}}")
                ax.set_ylim(-0.03, Y_TOP)
                ax.set_title(f"{FAMILY_TITLES[fam]}\ntrained on {m}", fontsize=9.5)
                if i == len(by_mix) - 1:
                    ax.set_xlabel("in-context examples")
                if j == 0:
                    ax.set_ylabel("normalised sq. error")
        _legend(fig, sizes)
        titled(
            fig,
            "functions: error against the number of in-context examples",
            [r for rs in by_mix.values() for r in rs],
        )
        return save(fig, path)


def _sweep_figure(
    by_mix: dict,
    sizes: list[str],
    colours: dict,
    prefix: str,
    xkey: str,
    path: Path,
    *,
    xlabel: str,
    title: str,
    log_x: bool = False,
) -> Path | None:
    if not any(stack(rs, f"{prefix}/model") is not None for rs in by_mix.values()):
        return None
    with paper_style():
        ncols = min(3, len(by_mix))
        nrows = math.ceil(len(by_mix) / ncols)
        fig, axes = new_figure(nrows, ncols)
        for i, (m, recs) in enumerate(by_mix.items()):
            ax = axes[i // ncols][i % ncols]
            xs = stack(recs, xkey)
            if xs is None:
                ax.set_visible(False)
                continue
            x = xs[0]
            for s in sizes:
                arr = stack([r for r in recs if size_of(r) == s], f"{prefix}/model")
                if arr is not None and arr.shape[1] == len(x):
                    _band(ax, x, arr, colours[s], f"model {s}")
            _baselines(ax, x, recs, f"{prefix}/{{p}}")
            if prefix == "freq":
                lo, hi = scalar(recs, "freq_train_min"), scalar(recs, "freq_train_max")
                if lo and hi:
                    ax.axvspan(
                        min(lo),
                        max(hi),
                        color="#F0E442",
                        alpha=0.25,
                        linewidth=0,
                        label="training frequencies",
                    )
            if log_x:
                ax.set_xscale("log")
                ax.xaxis.set_minor_locator(NullLocator())
                ax.set_xticks(list(x), [f"{v:g}" for v in x])
            ax.set_ylim(-0.03, Y_TOP)
            ax.set_title(f"trained on {m}")
            ax.set_xlabel(xlabel)
            if i % ncols == 0:
                ax.set_ylabel("normalised sq. error")
        for j in range(len(by_mix), nrows * ncols):
            axes[j // ncols][j % ncols].set_visible(False)
        _legend(fig, sizes)
        titled(fig, f"functions: {title}", [r for rs in by_mix.values() for r in rs])
        return save(fig, path)


def _sweep_table(
    sec: Section, by_mix: dict, sizes: list[str], prefix: str, xkey: str, label: str, caption: str
) -> None:
    rows, header = [], None
    for m, recs in by_mix.items():
        xs = stack(recs, xkey)
        if xs is None:
            continue
        x = [float(v) for v in xs[0]]
        lo, hi = scalar(recs, "freq_train_min"), scalar(recs, "freq_train_max")

        def col(v: float, lo: list[float] = lo, hi: list[float] = hi) -> str:
            out = f"{label}={v:g}"
            return out + (
                " †" if prefix == "freq" and lo and hi and not min(lo) <= v <= max(hi) else ""
            )

        if header is None:
            header = ["mixture", "predictor", *[col(v) for v in x]] + (
                ["intermediate/ends"] if prefix == "combo" else []
            )
        series = []
        for s in sizes:
            arr = stack([r for r in recs if size_of(r) == s], f"{prefix}/model")
            if arr is not None and arr.shape[1] == len(x):
                series.append((f"model {s}", np.nanmean(arr, axis=0)))
        base = [stack(recs, f"{prefix}/{b}") for b in BASELINES]
        base = [np.nanmean(b, axis=0) for b in base if b is not None and b.shape[1] == len(x)]
        if base:
            series.append(("best baseline", np.min(np.stack(base), axis=0)))
        for name, vals in series:
            row: list[object] = [f"`{m}`", name, *[f"{v:.3f}" for v in vals]]
            if prefix == "combo":
                ends = [v for a, v in zip(x, vals, strict=True) if a in (0.0, 1.0)]
                mid = [v for a, v in zip(x, vals, strict=True) if 0.0 < a < 1.0]
                row.append(
                    f"{np.mean(mid) / np.mean(ends):.2f}"
                    if ends and mid and np.mean(ends) > 0
                    else "—"
                )
            rows.append(row)
    if rows and header:
        sec.table(header, rows, caption=caption)
