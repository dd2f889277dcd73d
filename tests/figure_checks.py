"""What a reviewer checks on a report's figures, read off the real matplotlib figures the report drew.

:func:`captured_figures` records every figure as it is saved (the report's own
``Figure.savefig`` still runs; nothing is replaced), and
:func:`check_paper_figures` asserts on each of them, computed here without
the report's own helpers:

* every legend entry is something the panels drew, and everything labelled that
  was drawn is in the legend (no "min–max over seeds" band with one seed);
* the caption and the title say how many seeds stand behind each point;
* tick labels read: unique, few, one notation per axis, no ``5e-05``, and a
  log axis labels the range its data covers;
* an accuracy axis has its chance line; a heat map's colour is its written
  accuracy taken relative to chance, (acc − chance)/(1 − chance).

The study tests call it on the reports of their real small sweeps.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from matplotlib.collections import Collection, LineCollection
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D

SEEDS = re.compile(r"\b\d+(?:–\d+)? seeds? per point(?: \(\d+–\d+ finished\))?")
SCI_NOTATION = re.compile(r"\d[eE][-+]?\d")


@contextmanager
def captured_figures() -> Iterator[dict[str, Figure]]:
    """Every figure saved inside the block, by file name, as the report drew it."""
    saved: dict[str, Figure] = {}
    original = Figure.savefig

    def savefig(self: Figure, fname, *args, **kwargs):
        saved[Path(fname).name] = self
        return original(self, fname, *args, **kwargs)

    Figure.savefig = savefig
    try:
        yield saved
    finally:
        Figure.savefig = original


def _has_data(artist) -> bool:
    if not artist.get_visible():
        return False
    if isinstance(artist, Line2D):
        x = np.asarray(artist.get_xdata(), dtype=float)
        y = np.asarray(artist.get_ydata(), dtype=float)
        return bool(np.any(np.isfinite(x) & np.isfinite(y)))
    if isinstance(artist, LineCollection):  # bars (the band of a point alone): some length
        return any(
            len(p.vertices) and np.ptp(p.vertices, axis=0).sum() > 1e-12 for p in artist.get_paths()
        )
    if isinstance(artist, Collection):  # a band: some area (a band of no width shows nothing)
        return any(_area(p.vertices) > 1e-12 for p in artist.get_paths())
    return True  # a patch (a heat map's gap cell or outline, a shaded range)


def _area(v: np.ndarray) -> float:
    if len(v) < 3:
        return 0.0
    x, y = v[:, 0], v[:, 1]
    return abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))) / 2


def drawn_labels(fig: Figure) -> set[str]:
    """The labels of the artists that show something, on every visible panel."""
    out = set()
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for a in [*ax.lines, *ax.collections, *ax.patches]:
            label = a.get_label()
            if label and not label.startswith("_") and _has_data(a):
                out.add(label)
    return out


def legend_labels(fig: Figure) -> list[str]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    return [t.get_text() for leg in legends for t in leg.get_texts()]


def _tick_labels(axis, lo: float, hi: float) -> list[tuple[float, str]]:
    """(position, text) of every labelled tick inside the view, major and minor."""
    out = []
    for locator, formatter in (
        (axis.get_major_locator(), axis.get_major_formatter()),
        (axis.get_minor_locator(), axis.get_minor_formatter()),
    ):
        locs = [v for v in locator() if min(lo, hi) - 1e-12 <= v <= max(lo, hi) + 1e-12]
        formatter.set_locs(locs)
        out += [(v, t) for v, t in zip(locs, formatter.format_ticks(locs), strict=True) if t]
    return out


def tick_problems(name: str, fig: Figure) -> list[str]:
    problems = []
    for k, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        for which, axis, lim in (("x", ax.xaxis, ax.get_xlim()), ("y", ax.yaxis, ax.get_ylim())):
            if not axis.get_visible():
                continue
            ticks = _tick_labels(axis, *lim)
            texts = [t for _, t in ticks]
            where = f"{name} axes {k} {which}: {texts}"
            if len(set(texts)) != len(texts):
                problems.append(f"repeated tick labels, {where}")
            if any(SCI_NOTATION.search(t) for t in texts):
                problems.append(f"tick labels in e-notation, {where}")
            if axis.get_scale() != "log":
                if len(texts) > 12:
                    problems.append(f"crowded ticks, {where}")
                continue
            if not 2 <= len(texts) <= 6:
                problems.append(f"a log axis with {len(texts)} labels, {where}")
            if len({t.startswith("$") for t in texts}) > 1:
                problems.append(f"two notations on one log axis, {where}")
            vals = _data(ax, which)
            if len(ticks) >= 2 and len(vals):
                pos = sorted(v for v, _ in ticks)
                gap = max(b / a for a, b in zip(pos, pos[1:], strict=False))
                # the labels cover the data: no end of it lies more than a tick interval beyond them
                if vals.min() < pos[0] / gap * 0.999 or vals.max() > pos[-1] * gap * 1.001:
                    problems.append(
                        f"labels {pos} leave data {vals.min():.3g}–{vals.max():.3g} unlabelled, {where}"
                    )
    return problems


def _data(ax, which: str) -> np.ndarray:
    col = 0 if which == "x" else 1
    vals = [
        np.asarray(ln.get_xdata() if col == 0 else ln.get_ydata(), dtype=float)
        for ln in ax.lines
        if ln.get_visible() and ln.get_transform() == ax.transData  # not axhline's axes fraction
    ]
    v = np.concatenate(vals) if vals else np.array([])
    return v[np.isfinite(v) & (v > 0)]


def _accuracy_rows(fig: Figure) -> set[tuple[int, int]]:
    """(grid id, row) of the subplot rows whose y label says accuracy (heat maps aside)."""
    rows = set()
    for ax in fig.axes:
        spec = ax.get_subplotspec()
        if spec is not None and "accuracy" in ax.get_ylabel() and not ax.images:
            rows.add((id(spec.get_gridspec()), spec.rowspan.start))
    return rows


def chance_problems(name: str, fig: Figure, chance: float | None) -> list[str]:
    problems = []
    rows = _accuracy_rows(fig)
    for k, ax in enumerate(fig.axes):
        spec = ax.get_subplotspec()
        if spec is None or not ax.get_visible():
            continue
        if (id(spec.get_gridspec()), spec.rowspan.start) not in rows:
            continue
        data = [
            ln
            for ln in ax.lines
            if not ln.get_label().startswith("_") and ln.get_linestyle() != "None"
        ]
        if any(_has_data(ln) for ln in data) and not any(
            ln.get_label() == "chance" for ln in ax.lines
        ):
            problems.append(f"{name} axes {k}: an accuracy panel without its chance line")
    if chance is not None:
        for k, ax in enumerate(fig.axes):
            for im in ax.images:
                problems += _heatmap_problems(f"{name} axes {k}", ax, im, chance)
    return problems


def _heatmap_problems(where: str, ax, im: AxesImage, chance: float) -> list[str]:
    """The colour of each cell is its written accuracy relative to chance."""
    arr = np.ma.filled(im.get_array().astype(float), np.nan)
    problems = []
    checked = 0
    for text in ax.texts:
        try:
            acc = float(text.get_text())
        except ValueError:
            continue  # a gap's reason
        b, a = (round(v) for v in text.get_position())
        want = (acc - chance) / (1 - chance)
        got = arr[a, b]
        # the written value is rounded to 2 decimals
        if not math.isfinite(got) or abs(got - want) > 0.0051 / (1 - chance):
            problems.append(f"{where}: cell ({a}, {b}) reads {acc} but is coloured {got:.3f}")
        checked += 1
    if not checked:
        problems.append(f"{where}: a heat map with no accuracy written in it")
    return problems


def check_paper_figures(
    report_dir: Path,
    figures: dict[str, Figure],
    *,
    chance: dict[str, float] | None = None,
    seeds: str | None = None,
) -> None:
    """Assert the reviewer's checks on every figure of the report at ``report_dir``.

    ``chance`` maps a task name (found in a figure's file name) to its chance
    accuracy, for the heat maps; ``seeds`` is the seed count every caption
    must state (``1 seed per point``), when the sweep has one for all.
    """
    manifest = json.loads((Path(report_dir) / "manifest.json").read_text())
    assert manifest["figures"], "a report without figures"
    problems: list[str] = []
    for entry in manifest["figures"]:
        name = Path(entry["path"]).name
        assert name in figures, f"{name} was not drawn in this process"
        fig = figures[name]
        legend, drawn = legend_labels(fig), drawn_labels(fig)
        if len(set(legend)) != len(legend):
            problems.append(f"{name}: repeated legend entries {legend}")
        if set(legend) != drawn:
            problems.append(
                f"{name}: legend {sorted(set(legend))} but drawn {sorted(drawn)} "
                f"(in the legend only: {sorted(set(legend) - drawn)}; "
                f"drawn, not in the legend: {sorted(drawn - set(legend))})"
            )
        caption = SEEDS.search(entry["caption"])
        title = SEEDS.search(fig.get_suptitle())
        if caption is None:
            problems.append(f"{name}: no seed count in the caption {entry['caption']!r}")
        elif title is None or title.group() != caption.group():
            problems.append(f"{name}: title {fig.get_suptitle()!r} and caption disagree on seeds")
        elif seeds is not None and caption.group() != seeds:
            problems.append(f"{name}: {caption.group()!r}, expected {seeds!r}")
        problems += tick_problems(name, fig)
        task_chance = next((c for t, c in (chance or {}).items() if t in name), None)
        problems += chance_problems(name, fig, task_chance)
    assert not problems, "\n".join(problems)
