"""Reports of a sweep: scaling plots, their tables, and the papers' findings beside ours.

``build_report(DIR)`` reads the trials' own files (``DIR/trials/<id>/``:
config.yaml, result.json, metrics.jsonl; never W&B) and the ledger
(``DIR/ledger.sqlite``, for failures and trials that never started), and writes
``DIR/report/``: ``report.md`` with its ``figures/*.png``, a self-contained
``report.html`` with the same content, and ``manifest.json``. It returns a
:class:`Report` whose ``images`` are the PNGs in reading order.

The report is the overview (trial counts, every trial without a result and
its error), then one section per study, then every trial in one table.

Adding a study's section
------------------------
A section is one module in this package; every module here is imported when
the package is, so the file is all it takes. Register a function for the
study's task names; it gets the records of those tasks (failed and missing
ones included) and a :class:`ReportContext` (``report_dir``,
``figure_path(name)``, ``solve_threshold``), and returns a
:class:`Section` built from headings, text, tables and figures::

    # src/cotsweep/report/causal.py
    from cotsweep.report.document import Section
    from cotsweep.report.plots import accuracy_against
    from cotsweep.report.registry import section

    @section("causal", title="Causal transitivity (STUDIES.md §2)", order=20)
    def causal(records, ctx):
        sec = Section("")
        path = accuracy_against(records, ctx.figure_path("causal_accuracy_vs_length"),
                                x="length", line="pos_encoding", panel="setting",
                                title="causal: accuracy against chain length")
        sec.figure(path, "accuracy against chain length, one line per positional "
                         f"encoding; {seeds_text(records)}")  # every caption: its seed count
        return sec

Reusable pieces: :mod:`~cotsweep.report.plots` (``accuracy_against``,
``heatmap``, ``training_curves``: any axes on x, lines and panels; seeds as
mean with min–max bands; gaps drawn; and for a study's own figures ``band``,
``chance_line``, ``readable_log_axis``, ``figure_legend`` and ``titled``, which
keep the legend to what was drawn and put the seed count in the title),
:mod:`~cotsweep.report.aggregate` (``cells``: seeds per grid point;
``seeds_text`` for captions; ``above_chance``), and :mod:`~cotsweep.report.findings`
(published figures as a YAML file of checks, marked reproduced / not
reproduced / not run). The CoT study's section, :mod:`cotsweep.report.cot`,
is the worked example. A task no section claims still gets a generic section.
"""

import importlib
import logging
import pkgutil

from cotsweep.report.build import Report, build_report, manifest_images
from cotsweep.report.document import Section
from cotsweep.report.records import TrialRecord, load_trials
from cotsweep.report.registry import IMPORT_ERRORS, SECTIONS, ReportContext, section

_INFRASTRUCTURE = {"build", "document", "records", "registry", "aggregate", "plots", "findings"}
for _m in pkgutil.iter_modules(__path__):
    if _m.name not in _INFRASTRUCTURE:
        try:
            importlib.import_module(f"{__name__}.{_m.name}")
        except Exception as _e:  # noqa: BLE001 — one study's broken module must not take every report down
            logging.getLogger(__name__).warning(
                "report section module %s failed to import: %s", _m.name, _e
            )
            IMPORT_ERRORS[_m.name] = f"{type(_e).__name__}: {_e}"

__all__ = [
    "SECTIONS",
    "Report",
    "ReportContext",
    "Section",
    "TrialRecord",
    "build_report",
    "load_trials",
    "manifest_images",
    "section",
]
