"""Seeds aggregated per grid point: mean with a min–max band, and gaps kept as gaps.

A *cell* is one point of the grid without its seed axis (``s5, cot, depth 2,
length 8``). Its figure is the mean over the seeds that finished; the band is
their min and max; a cell with no finished seed is a gap, labelled with why
(failed, running, unfinished, missing) so that plots and tables show it instead
of dropping it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cotsweep.report.records import DONE, FAILED, MISSING, RUNNING, UNFINISHED, TrialRecord

# When seeds of one cell fail for different reasons, the label shows the most telling one.
_GAP_ORDER = (FAILED, RUNNING, UNFINISHED, MISSING)
NOT_IN_GRID = "—"


@dataclass
class Cell:
    """The seeds of one grid point and their final figure."""

    records: list[TrialRecord] = field(default_factory=list)
    metric: str = "acc"

    @property
    def values(self) -> list[float]:
        vals = [r.value(self.metric) for r in self.records]
        return [v for v in vals if v is not None and math.isfinite(v)]

    @property
    def n(self) -> int:
        return len(self.records)

    @property
    def n_done(self) -> int:
        return sum(r.done for r in self.records)

    @property
    def mean(self) -> float:
        v = self.values
        return sum(v) / len(v) if v else math.nan

    @property
    def lo(self) -> float:
        return min(self.values, default=math.nan)

    @property
    def hi(self) -> float:
        return max(self.values, default=math.nan)

    @property
    def chance(self) -> float | None:
        """Chance accuracy of the grid point, as its finished seeds report it."""
        return chance_level(r for r in self.records if r.done)

    @property
    def is_gap(self) -> bool:
        return not self.values

    @property
    def gap(self) -> str:
        """Why there is no figure: the most telling state among its seeds, or ``—`` (no trial)."""
        if not self.records:
            return NOT_IN_GRID
        states = {r.state for r in self.records if not r.done}
        for s in _GAP_ORDER:
            if s in states:
                return s
        return "no value" if self.n_done else next(iter(states), MISSING)

    def text(self, digits: int = 2) -> str:
        """``0.97 [0.95–0.99]``, with ``2/3 seeds`` when some seeds have no result; or the gap."""
        if self.is_gap:
            return self.gap
        m = f"{self.mean:.{digits}f}"
        if len(self.values) > 1:
            m += f" [{self.lo:.{digits}f}–{self.hi:.{digits}f}]"
        if len(self.values) < self.n:
            m += f" ({len(self.values)}/{self.n} seeds)"
        return m


def cells(
    records: Iterable[TrialRecord], keys: Sequence[str], metric: str = "acc"
) -> dict[tuple, Cell]:
    """Records grouped by the values of ``keys`` (every axis but the seed, usually)."""
    out: dict[tuple, Cell] = {}
    for r in records:
        key = tuple(r.axes.get(k) for k in keys)
        out.setdefault(key, Cell(metric=metric)).records.append(r)
    return out


def chance_level(records: Iterable[TrialRecord]) -> float | None:
    """Mean chance accuracy reported by finished trials (result.json ``chance``)."""
    vals = [r.value("chance") for r in records]
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def above_chance(acc: float, chance: float | None) -> float:
    """Accuracy as the share of the way from chance to perfect: 0 at chance, 1 at 1.0, below 0 under chance.

    A raw 0.76 reads well on a 0–1 scale, but on the circuit value problem
    (chance 0.5) it is only about half the way: 0.52.
    """
    if chance is None or not math.isfinite(chance) or chance >= 1:
        return acc
    return (acc - chance) / (1 - chance)


def seeds_text(records: Iterable[TrialRecord]) -> str:
    """How many seeds stand behind each plotted point: ``1 seed per point``, ``3 seeds per point``.

    A point is a grid point without its seed axis. Where some points have more
    seeds than others the range is given (``1–3 seeds per point``), and where
    seeds did not finish, how many did (``3 seeds per point (2–3 finished)``),
    since a mean over two is not a mean over three.
    """
    points = by(
        records,
        lambda r: tuple(sorted((k, str(v)) for k, v in r.axes.items() if k != "seed")),
    )
    if not points:
        return "0 seeds"
    planned = [len(rs) for rs in points.values()]
    finished = [sum(r.done for r in rs) for rs in points.values()]
    lo, hi = min(planned), max(planned)
    text = f"{lo}–{hi}" if lo != hi else f"{hi}"
    text += f" seed{'s' if hi != 1 else ''} per point"
    if finished != planned:
        text += f" ({min(finished)}–{max(finished)} finished)"
    return text


def first_step_reaching(record: TrialRecord, threshold: float, key: str = "eval/acc") -> int | None:
    """The first evaluated step at which ``key`` reached ``threshold``, if it did."""
    for step, v in zip(*record.series(key), strict=True):
        if v >= threshold:
            return step
    return None


def mean_of(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def select(records: Iterable[TrialRecord], **axes: object) -> list[TrialRecord]:
    """The records whose axes equal every given value."""
    return [r for r in records if all(r.axes.get(k) == v for k, v in axes.items())]


def by(
    records: Iterable[TrialRecord], key: Callable[[TrialRecord], object]
) -> dict[object, list[TrialRecord]]:
    out: dict[object, list[TrialRecord]] = {}
    for r in records:
        out.setdefault(key(r), []).append(r)
    return out


__all__ = [
    "DONE",
    "above_chance",
    "seeds_text",
    "NOT_IN_GRID",
    "Cell",
    "by",
    "cells",
    "chance_level",
    "first_step_reaching",
    "mean_of",
    "select",
]
