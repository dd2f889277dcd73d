"""Figures for a paper: accuracy against an axis, depth × length heat maps, training curves.

Every figure is a bare :class:`matplotlib.figure.Figure` rendered by Agg and
saved at 150 dpi, never through pyplot, so building a report neither opens a
window nor changes the caller's backend, and is safe off the main thread.
Colours are fixed per training setting (Okabe–Ito, colour-blind safe) so that
``cot`` is the same colour in every figure of every report; depth runs along
viridis. Seeds are drawn as their mean with a min–max band; a grid point
without a result is drawn as a gap (the line breaks and an ✕ sits on the axis)
rather than silently joined over.

The functions take records and the names of the axes to put on x, on lines
and on panels, so other studies reuse them with their own axes
(``x="length", line="pos_encoding"``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from cotsweep.report.aggregate import Cell, cells, chance_level
from cotsweep.report.records import DONE, TrialRecord, grid_values

DPI = 150
STYLE = {
    "font.size": 10.5,
    "axes.titlesize": 11.5,
    "axes.labelsize": 10.5,
    "legend.fontsize": 9.5,
    "xtick.labelsize": 9.5,
    "ytick.labelsize": 9.5,
    "figure.titlesize": 12.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.8,
    "lines.markersize": 5,
    "savefig.dpi": DPI,
    "savefig.facecolor": "white",
    "figure.facecolor": "white",
}

SETTING_COLOURS = {"base": "#0072B2", "cot": "#D55E00", "hint": "#009E73"}
_EXTRA_COLOURS = ["#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000", "#999999"]
SETTING_LABELS = {
    "base": "base (answer only)",
    "cot": "cot (chain of thought)",
    "hint": "hint (chain as labels)",
}
AXIS_LABELS = {
    "depth": "depth (layers)",
    "length": "input length n (items)",
    "setting": "training setting",
    "seed": "seed",
    "pos_encoding": "positional encoding",
    "width": "width (model dim.)",
}
_SHORT = {"depth": "depth", "length": "n", "seed": "seed", "width": "width"}
GAP_COLOUR = "#b0b0b0"
SOLVED_EDGE = "#e6194b"


@contextmanager
def paper_style() -> Iterator[None]:
    with matplotlib.rc_context(STYLE):
        yield


def new_figure(
    nrows: int,
    ncols: int,
    *,
    panel_w: float = 3.3,
    panel_h: float = 2.9,
    extra_w: float = 1.8,
    extra_h: float = 0.7,
    sharex: bool | str = False,
):
    """A constrained-layout figure and its (nrows, ncols) axes; call inside :func:`paper_style`."""
    fig = Figure(
        figsize=(panel_w * ncols + extra_w, panel_h * nrows + extra_h), layout="constrained"
    )
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex)
    return fig, axes


def save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def colours_for(axis: str, values: Sequence) -> dict:
    """Fixed colours for settings; viridis along an ordered axis (depth) for everything else."""
    if axis == "setting":
        out, k = {}, 0
        for v in values:
            if v in SETTING_COLOURS:
                out[v] = SETTING_COLOURS[v]
            else:
                out[v] = _EXTRA_COLOURS[k % len(_EXTRA_COLOURS)]
                k += 1
        return out
    cmap = matplotlib.colormaps["viridis"]
    n = len(values)
    return {v: cmap(0.05 + 0.8 * (i / max(1, n - 1))) for i, v in enumerate(values)}


def value_label(axis: str, value: object) -> str:
    if axis == "setting":
        return SETTING_LABELS.get(str(value), str(value))
    return f"{_SHORT.get(axis, axis)} = {value}"


def axis_label(axis: str) -> str:
    return AXIS_LABELS.get(axis, axis)


def _numeric(values: Sequence) -> bool:
    return bool(values) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    )


def _log2_axis(values: Sequence) -> bool:
    """Log2 where the values are positive and span at least a factor of 4 (depths 1..16)."""
    return _numeric(values) and min(values) > 0 and max(values) / min(values) >= 4


def _set_x(ax, values: Sequence, axis: str) -> list[float]:
    """Put ``values`` on x: their own positions (log2 where sensible) or categorical slots."""
    if _numeric(values):
        xs = [float(v) for v in values]
        if _log2_axis(values):
            ax.set_xscale("log", base=2)
            lo, hi = min(xs), max(xs)
            ax.set_xlim(lo / 2**0.3, hi * 2**0.3)
        elif len(xs) > 1:
            pad = 0.08 * (max(xs) - min(xs))
            ax.set_xlim(min(xs) - pad, max(xs) + pad)
        ax.xaxis.set_major_locator(FixedLocator(xs))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{v:g}" for v in xs])
    else:
        xs = list(range(len(values)))
        ax.set_xticks(xs, [str(v) for v in values])
        ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set_xlabel(axis_label(axis))
    return xs


def _dodge(pos: list[float], i: int, k: int, log: bool) -> list[float]:
    """Shift line ``i`` of ``k`` sideways a little, so that lines lying on each other stay visible."""
    if k <= 1:
        return pos
    off = (i - (k - 1) / 2) / max(k - 1, 1)
    if log:
        return [p * 2 ** (0.12 * off) for p in pos]
    span = (max(pos) - min(pos)) if len(pos) > 1 else 1.0
    return [p + 0.025 * span * off for p in pos]


def _plain_log_labels(axis) -> None:
    """Log-axis tick labels as plain numbers (0.2, 1, 3), minor ticks labelled only at 2 and 5."""
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))

    def minor(v: float, _: int) -> str:
        lead = f"{v:e}"[0]
        return f"{v:g}" if lead in "25" else ""

    axis.set_minor_formatter(FuncFormatter(minor))


def _panels(n: int, max_cols: int = 4) -> tuple[int, int]:
    ncols = min(max(n, 1), max_cols)
    return math.ceil(max(n, 1) / ncols), ncols


def accuracy_against(
    records: Sequence[TrialRecord],
    path: Path,
    *,
    x: str,
    line: str,
    panel: str,
    title: str,
    metric: str = "acc",
    ylabel: str = "accuracy (final eval)",
    chance: bool = True,
) -> Path:
    """Final ``metric`` against axis ``x``: one line per value of ``line``, one panel per ``panel``.

    Mean over seeds with a min–max band; a grid point whose trials have no
    result breaks the line and is marked ✕ on the x-axis; chance is dashed.
    """
    xs_all = grid_values(records, x)
    lines = grid_values(records, line)
    panels = grid_values(records, panel) or [None]
    colours = colours_for(line, lines)
    grid = cells(records, (panel, line, x), metric)
    with paper_style():
        nrows, ncols = _panels(len(panels))
        # a legend beside one or two panels, below three or more (where width is to spare)
        beside = ncols <= 2
        fig, axes = new_figure(
            nrows, ncols, extra_w=2.6 if beside else 0.4, extra_h=0.5 if beside else 1.0
        )
        any_gap = False
        chance_drawn = False
        for i, pv in enumerate(panels):
            ax = axes[i // ncols][i % ncols]
            pos0 = _set_x(ax, xs_all, x)
            for li, lv in enumerate(lines):
                pos = _dodge(pos0, li, len(lines), _log2_axis(xs_all))
                col = colours[lv]
                cs = [grid.get((pv, lv, xv)) for xv in xs_all]
                mean = np.array([c.mean if c else np.nan for c in cs])
                lo = np.array([c.lo if c else np.nan for c in cs])
                hi = np.array([c.hi if c else np.nan for c in cs])
                ax.plot(pos, mean, marker="o", color=col, label=value_label(line, lv))
                ax.fill_between(pos, lo, hi, color=col, alpha=0.18, linewidth=0)
                # a point between two gaps has no line through it: the marker above keeps it visible
                gaps = [p for p, c in zip(pos, cs, strict=True) if c is not None and c.is_gap]
                if gaps:
                    any_gap = True
                    ax.plot(
                        gaps,
                        [-0.045] * len(gaps),
                        linestyle="none",
                        marker="X",
                        markersize=7,
                        color=col,
                        markeredgecolor="white",
                        markeredgewidth=0.6,
                        clip_on=False,
                    )
            ch = chance_level([r for r in records if panel_match(r, panel, pv)]) if chance else None
            if ch is not None:
                ax.axhline(ch, color="0.35", linestyle="--", linewidth=1.1, zorder=1)
                chance_drawn = True
            ax.set_ylim(-0.07, 1.05)
            ax.set_title(value_label(panel, pv) if pv is not None else "")
            if i % ncols == 0:
                ax.set_ylabel(ylabel)
        for j in range(len(panels), nrows * ncols):
            axes[j // ncols][j % ncols].set_visible(False)
        handles = [
            Line2D([], [], color=colours[lv], marker="o", label=value_label(line, lv))
            for lv in lines
        ]
        handles.append(Patch(color="0.5", alpha=0.3, label="min–max over seeds"))
        if chance_drawn:
            handles.append(
                Line2D([], [], color="0.35", linestyle="--", linewidth=1.1, label="chance")
            )
        if any_gap:
            handles.append(
                Line2D(
                    [],
                    [],
                    color="0.3",
                    marker="X",
                    linestyle="none",
                    markersize=7,
                    label="no result (failed / missing)",
                )
            )
        if beside:
            fig.legend(handles=handles, loc="outside right center", frameon=False)
        else:
            fig.legend(
                handles=handles,
                loc="outside lower center",
                ncols=min(4, len(handles)),
                frameon=False,
            )
        fig.suptitle(title)
        return save(fig, path)


def panel_match(r: TrialRecord, panel: str, value: object) -> bool:
    return value is None or r.axes.get(panel) == value


def smallest_solving(
    grid: dict[tuple, Cell], rows: Sequence, col: object, threshold: float
) -> object | None:
    """The smallest row value (depth) whose cell in column ``col`` reaches ``threshold``."""
    for rv in rows:
        c = grid.get((rv, col))
        if c is not None and not c.is_gap and c.mean >= threshold:
            return rv
    return None


def heatmap(
    records: Sequence[TrialRecord],
    path: Path,
    *,
    threshold: float,
    title: str,
    row: str = "depth",
    col: str = "length",
    panel: str = "setting",
    metric: str = "acc",
) -> Path:
    """``row`` × ``col`` heat map of the seed-mean ``metric``, one panel per ``panel`` value.

    Each cell is annotated; cells without a result are hatched grey and say why;
    the smallest ``row`` value reaching ``threshold`` in each column is outlined.
    """
    rows, cols = grid_values(records, row), grid_values(records, col)
    panels = grid_values(records, panel) or [None]
    cmap = matplotlib.colormaps["viridis"]
    with paper_style():
        nrows, ncols = _panels(len(panels), max_cols=3)
        fig, axes = new_figure(
            nrows,
            ncols,
            panel_w=max(2.6, 0.75 * len(cols) + 1.0),
            panel_h=max(2.4, 0.5 * len(rows) + 1.2),
            extra_w=1.2,
        )
        im = None
        for i, pv in enumerate(panels):
            ax = axes[i // ncols][i % ncols]
            ax.grid(False)
            sub = [r for r in records if panel_match(r, panel, pv)]
            grid = cells(sub, (row, col), metric)
            data = np.full((len(rows), len(cols)), np.nan)
            for a, rv in enumerate(rows):
                for b, cv in enumerate(cols):
                    c = grid.get((rv, cv))
                    if c is not None and not c.is_gap:
                        data[a, b] = c.mean
            im = ax.imshow(
                np.ma.masked_invalid(data), cmap=cmap, vmin=0, vmax=1, origin="lower", aspect="auto"
            )
            for a, rv in enumerate(rows):
                for b, cv in enumerate(cols):
                    c = grid.get((rv, cv))
                    if c is None or c.is_gap:
                        ax.add_patch(
                            Rectangle(
                                (b - 0.5, a - 0.5),
                                1,
                                1,
                                facecolor="#eeeeee",
                                edgecolor=GAP_COLOUR,
                                hatch="///",
                                linewidth=0,
                            )
                        )
                        ax.text(
                            b,
                            a,
                            c.gap if c is not None else "—",
                            ha="center",
                            va="center",
                            fontsize=8,
                            color="0.3",
                        )
                    else:
                        ax.text(
                            b,
                            a,
                            f"{c.mean:.2f}",
                            ha="center",
                            va="center",
                            fontsize=9,
                            color="black" if c.mean > 0.55 else "white",
                        )
            for b, cv in enumerate(cols):
                best = smallest_solving(grid, rows, cv, threshold)
                if best is not None:
                    a = rows.index(best)
                    ax.add_patch(
                        Rectangle(
                            (b - 0.46, a - 0.46),
                            0.92,
                            0.92,
                            fill=False,
                            edgecolor=SOLVED_EDGE,
                            linewidth=2.4,
                        )
                    )
            ax.set_xticks(range(len(cols)), [str(v) for v in cols])
            ax.set_yticks(range(len(rows)), [str(v) for v in rows])
            ax.set_xlim(-0.5, len(cols) - 0.5)
            ax.set_ylim(-0.5, len(rows) - 0.5)
            ax.set_xlabel(axis_label(col))
            if i % ncols == 0:
                ax.set_ylabel(axis_label(row))
            ax.set_title(value_label(panel, pv) if pv is not None else "")
            for s in ax.spines.values():
                s.set_visible(False)
        for j in range(len(panels), nrows * ncols):
            axes[j // ncols][j % ncols].set_visible(False)
        if im is not None:
            what = "accuracy" if metric == "acc" else metric
            fig.colorbar(
                im, ax=axes.ravel().tolist(), label=f"{what} (mean over seeds)", shrink=0.85
            )
        fig.legend(
            handles=[
                Patch(
                    facecolor="none",
                    edgecolor=SOLVED_EDGE,
                    linewidth=2.2,
                    label=f"smallest {_SHORT.get(row, row)} with {metric} ≥ {threshold:g}",
                ),
                Patch(facecolor="#eeeeee", edgecolor=GAP_COLOUR, hatch="///", label="no result"),
            ],
            loc="outside lower center",
            ncols=2,
            frameon=False,
        )
        fig.suptitle(title)
        return save(fig, path)


def _spans_decade(records: Sequence[TrialRecord], key: str) -> bool:
    vals = [v for r in records for v in r.series(key)[1] if v > 0 and math.isfinite(v)]
    return bool(vals) and max(vals) / min(vals) >= 10


def _mean_curve(
    runs: list[tuple[list[int], list[float]]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max over seeds at every step any seed logged (each step over the seeds that have it)."""
    steps = sorted({s for st, _ in runs for s in st})
    table = [dict(zip(st, vs, strict=True)) for st, vs in runs]
    mean, lo, hi = [], [], []
    for s in steps:
        vals = [t[s] for t in table if s in t and math.isfinite(t[s])]
        mean.append(sum(vals) / len(vals) if vals else np.nan)
        lo.append(min(vals, default=np.nan))
        hi.append(max(vals, default=np.nan))
    return np.array(steps), np.array(mean), np.array(lo), np.array(hi)


def training_curves(
    records: Sequence[TrialRecord],
    path: Path,
    *,
    title: str,
    colour: str = "depth",
    panel: str = "setting",
    threshold: float | None = None,
    rows: Sequence[tuple[str, str, bool]] = (
        ("train/loss", "training loss (cross-entropy, nats)", True),
        ("eval/acc", "eval accuracy", False),
    ),
) -> Path:
    """Each metric of ``rows`` (key, label, log y) against step: one column per ``panel`` value.

    Lines are coloured by ``colour``; finished seeds are averaged (band =
    min–max); a trial that did not finish is drawn on its own, dashed, up to
    where it stopped.
    """
    panels = grid_values(records, panel) or [None]
    cvals = grid_values(records, colour)
    colours = colours_for(colour, cvals)
    with paper_style():
        fig, axes = new_figure(
            len(rows), len(panels), panel_w=3.4, panel_h=2.5, extra_w=2.2, sharex=True
        )
        unfinished_drawn = chance_drawn = False
        # log y only where the values span a decade: a loss from 2.1 to 1.9 reads better on a linear axis
        logs = {key: logy and _spans_decade(records, key) for key, _, logy in rows}
        for j, pv in enumerate(panels):
            for i, (key, label, _) in enumerate(rows):
                ax = axes[i][j]
                for cv in cvals:
                    group = [
                        r for r in records if panel_match(r, panel, pv) and r.axes.get(colour) == cv
                    ]
                    done = [r.series(key) for r in group if r.state == DONE]
                    done = [d for d in done if d[0]]
                    if done:
                        st, m, lo, hi = _mean_curve(done)
                        ax.plot(st, m, color=colours[cv], linewidth=1.6)
                        if len(done) > 1:
                            ax.fill_between(st, lo, hi, color=colours[cv], alpha=0.18, linewidth=0)
                    for r in group:
                        if r.state != DONE:
                            st, vs = r.series(key)
                            if st:
                                ax.plot(
                                    st,
                                    vs,
                                    color=colours[cv],
                                    linestyle="-.",
                                    linewidth=1.1,
                                    alpha=0.85,
                                )
                                unfinished_drawn = True
                if logs[key] and ax.has_data():
                    ax.set_yscale("log")
                    _plain_log_labels(ax.yaxis)
                if key == "eval/acc":
                    ax.set_ylim(-0.03, 1.03)
                    if threshold is not None:
                        ax.axhline(threshold, color="0.5", linestyle=":", linewidth=1)
                    ch = chance_level([r for r in records if panel_match(r, panel, pv)])
                    if ch is not None:
                        ax.axhline(ch, color="0.35", linestyle="--", linewidth=1)
                        chance_drawn = True
                if i == 0:
                    ax.set_title(value_label(panel, pv) if pv is not None else "")
                if i == len(rows) - 1:
                    ax.set_xlabel("training step")
                if j == 0:
                    ax.set_ylabel(label)
        handles = [Line2D([], [], color=colours[cv], label=value_label(colour, cv)) for cv in cvals]
        handles.append(Patch(color="0.5", alpha=0.3, label="min–max over seeds"))
        if chance_drawn:
            handles.append(
                Line2D([], [], color="0.35", linestyle="--", linewidth=1, label="chance")
            )
        if threshold is not None:
            handles.append(
                Line2D(
                    [],
                    [],
                    color="0.5",
                    linestyle=":",
                    linewidth=1,
                    label=f"solved (acc ≥ {threshold:g})",
                )
            )
        if unfinished_drawn:
            handles.append(
                Line2D(
                    [],
                    [],
                    color="0.3",
                    linestyle="-.",
                    linewidth=1.1,
                    label="failed / unfinished trial",
                )
            )
        fig.legend(handles=handles, loc="outside right center", frameon=False)
        fig.suptitle(title)
        return save(fig, path)
