"""The registry of report sections, keyed by task name.

A study adds its part of the report as one module in this package::

    from cotsweep.report.document import Section
    from cotsweep.report.registry import ReportContext, section

    @section("causal", title="Causal transitivity (STUDIES.md §2)")
    def causal(records, ctx: ReportContext) -> Section:
        sec = Section("")                      # the title comes from the decorator
        path = ctx.figure_path("causal_accuracy_vs_length")
        ...                                     # draw with cotsweep.report.plots, save to path
        sec.figure(path, "accuracy against chain length, one line per positional "
                         f"encoding; {seeds_text(records)}")  # every caption: its seed count
        sec.table(["pos. encoding", "n=7", ...], rows)
        return sec

The function gets every record whose task is one of the named tasks (done,
failed and missing alike) and a :class:`ReportContext`; it returns a
:class:`~cotsweep.report.document.Section`. Tasks no section claims get the
generic section (a table of final figures and training curves), so a new task
is never left out of a report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cotsweep.report.document import Section
from cotsweep.report.records import TrialRecord


@dataclass
class ReportContext:
    """What a section needs besides its records."""

    sweep_dir: Path
    report_dir: Path
    # a cell (grid point, seeds averaged) counts as solved when its accuracy reaches this
    solve_threshold: float = 0.95
    records: list[TrialRecord] = field(default_factory=list)  # the whole sweep's

    @property
    def figure_dir(self) -> Path:
        return self.report_dir / "figures"

    def figure_path(self, name: str) -> Path:
        """Where a figure named ``name`` goes (``figures/NAME.png``)."""
        self.figure_dir.mkdir(parents=True, exist_ok=True)
        return self.figure_dir / f"{name}.png"


SectionFn = Callable[[list[TrialRecord], ReportContext], Section]


@dataclass(frozen=True)
class SectionEntry:
    tasks: tuple[str, ...]
    title: str
    fn: SectionFn
    order: int


SECTIONS: list[SectionEntry] = []
# section modules that failed to import, by module name: the report says so instead of lacking them quietly
IMPORT_ERRORS: dict[str, str] = {}


def section(*tasks: str, title: str, order: int = 100) -> Callable[[SectionFn], SectionFn]:
    """Register ``fn`` as the report section for ``tasks``; lower ``order`` comes first."""
    if not tasks:
        raise ValueError("a report section names at least one task")

    def wrap(fn: SectionFn) -> SectionFn:
        # a module imported twice (tests, reloads) replaces its own entry instead of clashing
        SECTIONS[:] = [
            e
            for e in SECTIONS
            if (e.fn.__module__, e.fn.__qualname__) != (fn.__module__, fn.__qualname__)
        ]
        taken = {t for e in SECTIONS for t in e.tasks} & set(tasks)
        if taken:
            raise ValueError(f"tasks {sorted(taken)} already have a report section")
        SECTIONS.append(SectionEntry(tuple(tasks), title, fn, order))
        SECTIONS.sort(key=lambda e: e.order)
        return fn

    return wrap


def section_for(task: str) -> SectionEntry | None:
    return next((e for e in SECTIONS if task in e.tasks), None)
