"""Figures for a paper: accuracy against an axis, depth × length heat maps, training curves.

Every figure is a bare :class:`matplotlib.figure.Figure` rendered by Agg and
saved at 150 dpi, never through pyplot, so building a report neither opens a
window nor changes the caller's backend, and is safe off the main thread.
Colours are fixed per training setting (Okabe–Ito, colour-blind safe) so that
``cot`` is the same colour in every figure of every report; depth runs along
viridis. Seeds are drawn as their mean with a min–max band; a grid point
without a result is drawn as a gap (the line breaks and an ✕ sits on the axis)
rather than silently joined over.

What a reviewer checks first, every figure here does by construction:

* **The legend lists only what is drawn.** Artists carry their legend label
  when they are drawn and :func:`figure_legend` collects those labels, so a
  figure of one seed has no "min–max over seeds" entry (:func:`band` draws
  nothing where the seeds do not differ), and no "chance" entry where chance
  is unknown.
* **The seed count is in the title** (:func:`~cotsweep.report.aggregate.seeds_text`;
  sections repeat it in the caption).
* **Log axes carry a few round, unique labels spread over the data**
  (:func:`readable_log_axis`); a range under a decade stays linear.
* **Accuracy is read against chance**: a dashed chance line on every accuracy
  axis, and heat maps coloured by (acc − chance)/(1 − chance) with the raw
  accuracy written in the cell.
* **A curve cut short is marked**: a trial whose metrics.jsonl stops before
  the step its result reports is drawn on its own, dotted, ending in an ✕,
  and left out of the seed mean.

The functions take records and the names of the axes to put on x, on lines
and on panels, so other studies reuse them with their own axes
(``x="length", line="pos_encoding"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.artist import Artist
from matplotlib.collections import Collection, LineCollection
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

from cotsweep.report.aggregate import Cell, above_chance, cells, chance_level, seeds_text
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
CHANCE_STYLE = {"color": "0.35", "linestyle": "--", "linewidth": 1.1}

# Legend labels of the marks a figure may carry besides its data lines; each is the label
# of the artist that draws it, so it reaches the legend only where it was drawn.
BAND = "min–max over seeds"
CHANCE = "chance"
GAP = "no result (failed / missing)"
GAP_CELL = "no result (the cell says why)"
UNFINISHED = "failed / unfinished trial"
TRUNCATED = "metrics.jsonl cut short (✕: its last step)"
SOLVED_PREFIX = "solved"
# in the legend, after the data lines, in this order
MARKS = (BAND, CHANCE, GAP, GAP_CELL, UNFINISHED, TRUNCATED)
# how a mark looks in the legend: neutral grey where the drawn artist is coloured per line
_PROXIES: dict[str, Callable[[Artist], Artist]] = {
    BAND: lambda h: Patch(color="0.5", alpha=0.3, linewidth=0),
    CHANCE: lambda h: Line2D(
        [], [], color="0.35", linestyle=h.get_linestyle(), linewidth=h.get_linewidth()
    ),
    GAP: lambda h: Line2D([], [], color="0.3", marker="X", linestyle="none", markersize=7),
    UNFINISHED: lambda h: Line2D([], [], color="0.3", linestyle="-.", linewidth=1.1),
    TRUNCATED: lambda h: Line2D([], [], color="0.3", linestyle=":", marker="X", linewidth=1.3),
}


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


def band(ax, x: Sequence[float], lo: Sequence[float], hi: Sequence[float], colour) -> bool:
    """The min–max band over seeds between ``lo`` and ``hi``; drawn, and True, only where seeds differ.

    With one seed (or seeds that agree) a band has no height: drawing it would
    put "min–max over seeds" in the legend for nothing a reader can see. A
    point with no neighbour on the line (a single depth, a point between two
    gaps) has a band of no width: it gets a vertical bar instead.
    """
    x_a = np.asarray(x, dtype=float)
    lo_a, hi_a = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    ok = np.isfinite(x_a) & np.isfinite(lo_a) & np.isfinite(hi_a)
    with np.errstate(invalid="ignore"):
        spread = ok & (hi_a - lo_a > 1e-9)
    if not spread.any():
        return False
    alone = ok & ~(np.r_[False, ok[:-1]] | np.r_[ok[1:], False])
    if (spread & ~alone).any():
        ax.fill_between(x_a, lo_a, hi_a, color=colour, alpha=0.18, linewidth=0, label=BAND)
    if (spread & alone).any():
        ax.vlines(
            x_a[spread & alone],
            lo_a[spread & alone],
            hi_a[spread & alone],
            colors=colour,
            alpha=0.45,
            linewidth=4,
            label=BAND,
        )
    return True


def chance_line(ax, chance: float | None, **style) -> bool:
    """The dashed chance level on an accuracy axis, if it is known."""
    if chance is None or not math.isfinite(chance):
        return False
    ax.axhline(chance, **{**CHANCE_STYLE, **style, "zorder": 1, "label": CHANCE})
    return True


def drawn(artist: Artist) -> bool:
    """Whether an artist shows anything: a line with a finite point, a non-empty band, a visible patch."""
    if not artist.get_visible():
        return False
    if isinstance(artist, Line2D):
        x = np.asarray(artist.get_xdata(), dtype=float)
        y = np.asarray(artist.get_ydata(), dtype=float)
        return bool(np.any(np.isfinite(x) & np.isfinite(y)))
    if isinstance(artist, LineCollection):  # bars: some length
        return any(_extent(p.vertices) > 0 for p in artist.get_paths())
    if isinstance(artist, Collection):  # filled areas: some area
        return any(_area(p.vertices) > 0 for p in artist.get_paths())
    return True


def _extent(v: np.ndarray) -> float:
    return float(np.ptp(v[:, 0]) + np.ptp(v[:, 1])) if len(v) else 0.0


def _area(v: np.ndarray) -> float:
    """The area a closed outline encloses (shoelace); zero for a band of no width or no height."""
    if len(v) < 3:
        return 0.0
    x, y = v[:, 0], v[:, 1]
    return float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2)


def figure_legend(fig: Figure, *, first: Sequence[str] = (), **kw) -> Legend | None:
    """One legend for the whole figure, built from the labels of what its panels drew.

    ``first`` orders the data lines (settings as base, cot, hint); other data
    labels follow in the order they were drawn, then the marks (band, chance,
    gaps ...) in :data:`MARKS` order. A label drawn in several panels is listed
    once. Marks drawn in a line's colour are shown by a neutral proxy.
    """
    seen: dict[str, Artist] = {}
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in seen and drawn(handle):
                seen[label] = handle
    if not seen:
        return None
    appearance = list(seen)

    def rank(label: str) -> tuple:
        if label in first:
            return (0, list(first).index(label))
        if label in MARKS:
            return (2, MARKS.index(label))
        if label.startswith(SOLVED_PREFIX):
            return (2, 1.5)  # beside chance: both are reference levels
        return (1, appearance.index(label))

    labels = sorted(seen, key=rank)
    handles = [_PROXIES[lb](seen[lb]) if lb in _PROXIES else seen[lb] for lb in labels]
    kw.setdefault("frameon", False)
    return fig.legend(handles, labels, **kw)


def titled(
    fig: Figure, title: str, records: Sequence[TrialRecord], note: str | None = None
) -> None:
    """The title with the number of seeds behind each point (a pasted figure still says it); ``note`` below.

    The seed count goes on a line of its own where one line would be wider than
    the figure (a one-panel figure), since a suptitle is clipped, not wrapped.
    """
    seeds = seeds_text(records)
    # about 10 characters of the title font per inch of figure
    sep = " — " if len(title) + len(seeds) + 3 <= 10 * fig.get_figwidth() else "\n"
    fig.suptitle(f"{title}{sep}{seeds}" + (f"\n{note}" if note else ""))


def _data_values(ax, which: str) -> np.ndarray:
    """The finite positive coordinates along ``which`` ("x" or "y") of everything drawn on ``ax``."""
    col = 0 if which == "x" else 1
    vals: list[np.ndarray] = []
    for line in ax.lines:
        # data lines only: a reference line (axhline) spans the axes in axes fractions
        if line.get_visible() and line.get_transform() == ax.transData:
            vals.append(np.asarray(line.get_xdata() if col == 0 else line.get_ydata(), float))
    for coll in ax.collections:
        for path in coll.get_paths():
            if len(path.vertices):
                vals.append(np.asarray(path.vertices[:, col], dtype=float))
    if not vals:
        return np.array([])
    v = np.concatenate(vals)
    return v[np.isfinite(v) & (v > 0)]


# Round values per decade to choose ticks from, coarse to fine.
_MANTISSAS = ((1,), (1, 3), (1, 2, 5), (1, 2, 3, 5), (1, 1.5, 2, 3, 5, 7))
_MAX_TICKS = 6


def _round_value(mantissa: float, exp: int) -> float:
    """``mantissa``·10^``exp`` as the decimal reads (0.3, not 3 × 0.1 = 0.30000000000000004)."""
    return float(f"{mantissa}e{exp}")


def log_ticks(lo: float, hi: float, base: int = 10) -> list[float]:
    """Round values inside [lo, hi] to label a log axis with: 3 to 6 of them where the range allows.

    Base 10: the coarsest of the per-decade sets (1; 1, 3; 1, 2, 5; ...) that
    puts at least three labels on the data; across many decades, every
    second (third ...) decade. Base 2: powers of 2. A range too narrow for
    three gets the round values just outside it too, so it is never unlabelled.
    """
    tol = 1e-9

    def inside(cands: list[float]) -> list[float]:
        return [c for c in cands if lo * (1 - tol) <= c <= hi * (1 + tol)]

    if base == 2:
        k0, k1 = math.floor(math.log2(lo)), math.ceil(math.log2(hi))
        powers = [2.0**k for k in range(k0, k1 + 1)]
        ticks = inside(powers)
        step = max(1, math.ceil(len(ticks) / _MAX_TICKS))
        ticks = ticks[::step]
    else:
        e0, e1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        ticks = []
        for mantissas in _MANTISSAS:
            ticks = inside([_round_value(m, e) for e in range(e0, e1 + 1) for m in mantissas])
            if len(ticks) > _MAX_TICKS and mantissas == (1,):
                step = math.ceil(len(ticks) / _MAX_TICKS)  # every n-th decade, aligned on 10^0
                ticks = [t for t in ticks if round(math.log10(t)) % step == 0]
            if len(ticks) >= 3:
                break
        powers = [_round_value(m, e) for e in range(e0, e1 + 1) for m in _MANTISSAS[-1]]
    if len(ticks) < 2:  # the round values on either side of a narrow range
        below = [c for c in powers if c < lo * (1 - tol)]
        above = [c for c in powers if c > hi * (1 + tol)]
        ticks = sorted(set(ticks + below[-1:] + above[:1]))
    return ticks


def log_tick_label(value: float, ticks: Sequence[float]) -> str:
    """Plain numbers (0.002, 0.5, 20) while every tick of the axis reads as one; else ×10ⁿ for all.

    One axis never mixes ``0.0005`` and ``5e-05``: its labels share a notation.
    """
    if all(1e-3 <= t < 1e4 for t in ticks):
        return f"{value:g}"
    exp = math.floor(math.log10(value) + 1e-9)
    mant = round(value / 10.0**exp, 6)
    return f"$10^{{{exp}}}$" if mant == 1 else f"${mant:g}\\times10^{{{exp}}}$"


def readable_log_axis(ax, which: str = "y", *, base: int = 10, min_ratio: float = 10.0) -> bool:
    """A log axis with 3–6 round, unique labels on the data; linear if it spans < ``min_ratio``.

    Matplotlib's own log ticks label only decades (none at all on a curve from
    1.9 to 2.1, or minor ticks that cover a part of the curve) or crowd sixteen
    labels in two notations. Returns whether the axis ended up logarithmic.
    """
    axis = ax.yaxis if which == "y" else ax.xaxis
    vals = _data_values(ax, which)
    if not len(vals) or vals.max() / vals.min() < min_ratio:
        (ax.set_yscale if which == "y" else ax.set_xscale)("linear")
        return False
    lo, hi = float(vals.min()), float(vals.max())
    (ax.set_yscale if which == "y" else ax.set_xscale)("log", base=base)
    ticks = log_ticks(lo, hi, base)
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _: log_tick_label(v, ticks)))
    if base == 10:
        axis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10)))
    else:
        axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())
    # the limits stay the data's (with matplotlib's margins) unless a label lies outside them
    get, set_ = (ax.get_ylim, ax.set_ylim) if which == "y" else (ax.get_xlim, ax.set_xlim)
    a, b = get()
    set_(min(a, ticks[0] / 1.05), max(b, ticks[-1] * 1.05))
    return True


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

    Mean over seeds with a min–max band where seeds differ; a grid point whose
    trials have no result breaks the line and is marked ✕ on the x-axis;
    chance is dashed (in the line's colour where lines differ in chance).
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
        for i, pv in enumerate(panels):
            ax = axes[i // ncols][i % ncols]
            pos0 = _set_x(ax, xs_all, x)
            in_panel = [r for r in records if panel_match(r, panel, pv)]
            for li, lv in enumerate(lines):
                pos = _dodge(pos0, li, len(lines), _log2_axis(xs_all))
                col = colours[lv]
                cs = [grid.get((pv, lv, xv)) for xv in xs_all]
                mean = np.array([c.mean if c else np.nan for c in cs])
                ax.plot(pos, mean, marker="o", color=col, label=value_label(line, lv))
                band(
                    ax,
                    pos,
                    [c.lo if c else np.nan for c in cs],
                    [c.hi if c else np.nan for c in cs],
                    col,
                )
                # a point between two gaps has no line through it: the marker above keeps it visible
                gaps = [p for p, c in zip(pos, cs, strict=True) if c is not None and c.is_gap]
                if gaps:
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
                        label=GAP,
                    )
            if chance:
                levels = {
                    lv: chance_level(r for r in in_panel if r.axes.get(line) == lv) for lv in lines
                }
                known = {lv: c for lv, c in levels.items() if c is not None}
                if len({round(c, 9) for c in known.values()}) <= 1:
                    chance_line(ax, chance_level(in_panel))
                else:  # lines of different tasks or vocabularies: each its own chance
                    for lv, c in known.items():
                        chance_line(ax, c, color=colours[lv], linewidth=0.9)
            ax.set_ylim(-0.07, 1.05)
            ax.set_title(value_label(panel, pv) if pv is not None else "")
            if i % ncols == 0:
                ax.set_ylabel(ylabel)
        for j in range(len(panels), nrows * ncols):
            axes[j // ncols][j % ncols].set_visible(False)
        first = [value_label(line, lv) for lv in lines]
        if beside:
            figure_legend(fig, first=first, loc="outside right center")
        else:
            figure_legend(fig, first=first, loc="outside lower center", ncols=4)
        titled(fig, title, records)
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

    Colour is accuracy relative to chance, (acc − chance)/(1 − chance): dark at
    chance (or below, the colour bar's arrow), bright at 1.0, so that 0.76 on a
    task whose chance is 0.5 looks like what it is, half the way. The cell
    says the raw accuracy. Where a cell's chance is unknown the colour is the
    raw value and the colour bar says so. Cells without a result are hatched
    grey and say why; the smallest ``row`` value whose raw accuracy reaches
    ``threshold`` in each column is outlined.
    """
    rows, cols = grid_values(records, row), grid_values(records, col)
    panels = grid_values(records, panel) or [None]
    cmap = matplotlib.colormaps["viridis"]
    solved = f"{SOLVED_PREFIX}: smallest {_SHORT.get(row, row)} with {metric} ≥ {threshold:g}"
    relative = True  # every cell with a figure knows its chance
    with paper_style():
        nrows, ncols = _panels(len(panels), max_cols=3)
        fig, axes = new_figure(
            nrows,
            ncols,
            panel_w=max(2.6, 0.75 * len(cols) + 1.0),
            panel_h=max(2.4, 0.5 * len(rows) + 1.2),
            extra_w=1.6,
        )
        grids = {
            pv: cells([r for r in records if panel_match(r, panel, pv)], (row, col), metric)
            for pv in panels
        }
        relative = all(
            c.chance is not None for g in grids.values() for c in g.values() if not c.is_gap
        )
        im = None
        for i, pv in enumerate(panels):
            ax = axes[i // ncols][i % ncols]
            ax.grid(False)
            grid = grids[pv]
            data = np.full((len(rows), len(cols)), np.nan)
            for a, rv in enumerate(rows):
                for b, cv in enumerate(cols):
                    c = grid.get((rv, cv))
                    if c is not None and not c.is_gap:
                        data[a, b] = above_chance(c.mean, c.chance) if relative else c.mean
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
                                label=GAP_CELL,
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
                            color="black" if data[a, b] > 0.55 else "white",
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
                            label=solved,
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
            for sp in ax.spines.values():
                sp.set_visible(False)
        for j in range(len(panels), nrows * ncols):
            axes[j // ncols][j % ncols].set_visible(False)
        if im is not None:
            what = "accuracy" if metric == "acc" else metric
            if relative:
                bar = fig.colorbar(
                    im,
                    ax=axes.ravel().tolist(),
                    shrink=0.85,
                    extend="min",  # the arrow: at or below chance
                    label=f"{what} above chance\n(acc − chance) / (1 − chance)",
                )
                bar.set_ticks(
                    [0, 0.25, 0.5, 0.75, 1], labels=["0 chance", "0.25", "0.5", "0.75", "1"]
                )
            else:
                fig.colorbar(
                    im, ax=axes.ravel().tolist(), label=f"{what} (chance unknown)", shrink=0.85
                )
        figure_legend(fig, loc="outside lower center", ncols=2)
        titled(
            fig,
            title,
            records,
            "colour: accuracy above chance; number: accuracy (mean over seeds)"
            if relative
            else "colour and number: accuracy (mean over seeds)",
        )
        return save(fig, path)


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
    min–max where they differ); a trial that did not finish is drawn on its
    own, dash-dotted, up to where it stopped; a finished trial whose
    metrics.jsonl was cut short is drawn on its own, dotted, ending in an ✕,
    and kept out of the mean (its end is not the trial's end). A log y axis is
    used per panel where that panel's values span a decade.
    """
    panels = grid_values(records, panel) or [None]
    cvals = grid_values(records, colour)
    colours = colours_for(colour, cvals)
    with paper_style():
        fig, axes = new_figure(
            len(rows), len(panels), panel_w=3.4, panel_h=2.5, extra_w=2.2, sharex=True
        )
        for j, pv in enumerate(panels):
            in_panel = [r for r in records if panel_match(r, panel, pv)]
            for i, (key, label, logy) in enumerate(rows):
                ax = axes[i][j]
                for cv in cvals:
                    group = [r for r in in_panel if r.axes.get(colour) == cv]
                    col = colours[cv]
                    whole = [r.series(key) for r in group if r.state == DONE and not r.truncated]
                    whole = [w for w in whole if w[0]]
                    if whole:
                        st, m, lo, hi = _mean_curve(whole)
                        ax.plot(st, m, color=col, linewidth=1.6, label=value_label(colour, cv))
                        band(ax, st, lo, hi, col)
                    for r in group:
                        st, vs = r.series(key)
                        if not st:
                            continue
                        if r.state != DONE:
                            ax.plot(
                                st,
                                vs,
                                color=col,
                                linestyle="-.",
                                linewidth=1.1,
                                alpha=0.85,
                                label=UNFINISHED,
                            )
                        elif r.truncated:
                            ax.plot(
                                st, vs, color=col, linestyle=":", linewidth=1.3, label=TRUNCATED
                            )
                            ax.plot(
                                st[-1:],
                                vs[-1:],
                                color=col,
                                marker="X",
                                markersize=8,
                                markeredgecolor="white",
                                markeredgewidth=0.6,
                                linestyle="none",
                            )
                if logy and ax.has_data():
                    readable_log_axis(ax, "y")
                if key == "eval/acc":
                    ax.set_ylim(-0.03, 1.03)
                    if threshold is not None:
                        ax.axhline(
                            threshold,
                            color="0.5",
                            linestyle=":",
                            linewidth=1,
                            label=f"{SOLVED_PREFIX} (acc ≥ {threshold:g})",
                        )
                    chance_line(ax, chance_level(in_panel), linewidth=1)
                if i == 0:
                    ax.set_title(value_label(panel, pv) if pv is not None else "")
                if i == len(rows) - 1:
                    ax.set_xlabel("training step")
                if j == 0:
                    ax.set_ylabel(label)
        figure_legend(
            fig, first=[value_label(colour, cv) for cv in cvals], loc="outside right center"
        )
        titled(fig, title, records)
        return save(fig, path)
