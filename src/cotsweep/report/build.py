"""``cotsweep report DIR``: the trials' files in, ``DIR/report/`` out.

Writes ``report.md`` (figures beside it in ``figures/``), ``report.html`` (the
same content with the figures embedded, one file to mail or attach), and
``manifest.json`` (figures with captions, findings, trial counts) for tools
such as the W&B summary run that want the figures without parsing Markdown.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cotsweep import files
from cotsweep.ledger import Ledger
from cotsweep.report.aggregate import cells, seeds_text
from cotsweep.report.document import Figure, Section, to_html, to_markdown
from cotsweep.report.plots import training_curves
from cotsweep.report.records import (
    DONE,
    FAILED,
    MISSING,
    RUNNING,
    UNFINISHED,
    TrialRecord,
    grid_values,
    load_trials,
)
from cotsweep.report.registry import IMPORT_ERRORS, SECTIONS, ReportContext
from cotsweep.selection import Selection, selected_ids

log = logging.getLogger(__name__)

REPORT_DIR = "report"
MARKDOWN, HTML, MANIFEST, FIGURES = "report.md", "report.html", "manifest.json", "figures"
STATE_ORDER = (DONE, FAILED, RUNNING, UNFINISHED, MISSING)


@dataclass
class Report:
    """What :func:`build_report` wrote."""

    dir: Path
    markdown: Path
    html: Path
    manifest: Path
    figures: list[Figure] = field(default_factory=list)
    records: list[TrialRecord] = field(default_factory=list)
    # what the reader must be told before trusting a figure, one line each (the CLI prints them)
    warnings: list[str] = field(default_factory=list)

    @property
    def images(self) -> list[Path]:
        """Every PNG of the report, in reading order (for the W&B summary run)."""
        return [f.path for f in self.figures]


def build_report(
    sweep_dir: Path | str, *, solve_threshold: float = 0.95, selection: Selection | None = None
) -> Report:
    """Read the sweep's trial files and ledger, write ``DIR/report/``, return what was written.

    Works on a partial sweep: trials that failed, are still running or never
    started are counted, listed with their errors, and drawn as gaps.
    ``selection`` (filters by axis and state) reports only the trials it takes, into
    ``DIR/report_<filters>/``, leaving the whole sweep's report as it was.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no sweep directory at {sweep_dir}")
    records = load_trials(sweep_dir)
    out = sweep_dir / REPORT_DIR
    if selection is not None and not selection.everything:
        ledger = Ledger(sweep_dir, read_only=True)
        try:
            chosen = set(selected_ids(ledger, selection))  # SelectionError: nothing written
        finally:
            ledger.close()
        records = [r for r in records if r.id in chosen]
        out = sweep_dir / f"{REPORT_DIR}_{selection.describe().replace(' ', '_')}"
    ctx = ReportContext(
        sweep_dir=sweep_dir, report_dir=out, solve_threshold=solve_threshold, records=records
    )
    for stale in (out / FIGURES).glob("*.png"):
        stale.unlink()  # figures of a previous build whose grid points may be gone

    warnings = [truncation_warning(r) for r in records if r.truncated]
    sections = [_overview(records, sweep_dir)]
    tasks = grid_values(records, "task")
    claimed: set[str] = set()
    for entry in SECTIONS:
        mine = [r for r in records if r.task in entry.tasks]
        if not mine:
            continue
        claimed |= set(entry.tasks)
        sections.append(_run_section(entry.title, lambda m=mine, e=entry: e.fn(m, ctx)))
    for task in tasks:
        if task not in claimed:
            mine = [r for r in records if r.task == task]
            sections.append(
                _run_section(f"Task {task}", lambda m=mine, t=task: _generic(t, m, ctx))
            )
    sections.append(_all_trials(records))

    title = f"Sweep report: {_sweep_name(records, sweep_dir)}"
    figures = [f for s in sections for f in s.figures]
    files.atomic_write(out / MARKDOWN, to_markdown(title, sections, out))
    files.atomic_write(out / HTML, to_html(title, sections))
    manifest = {
        "sweep_dir": str(sweep_dir),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "solve_threshold": solve_threshold,
        "states": dict(Counter(r.state for r in records)),
        "truncated": [r.id for r in records if r.truncated],
        "warnings": warnings,
        "figures": [
            {"path": f.path.relative_to(out).as_posix(), "caption": f.caption} for f in figures
        ],
    }
    files.write_json(out / MANIFEST, manifest)
    return Report(out, out / MARKDOWN, out / HTML, out / MANIFEST, figures, records, warnings)


def truncation_warning(r: TrialRecord) -> str:
    """One line for a finished trial whose metrics.jsonl stops before its result's last step."""
    last = r.last_logged_step
    where = f"ends at step {last}" if last is not None else "holds no step"
    return (
        f"trial {r.id} ({r.label()}): metrics.jsonl {where} but result.json reports "
        f"{(r.result or {}).get('steps')} steps; its curve is marked cut short and its final "
        "loss is left out (result.json's figures stand)"
    )


def _run_section(title: str, make) -> Section:
    """A section that raises still leaves the rest of the report, with the error in its place."""
    try:
        sec = make()
    except Exception as e:  # noqa: BLE001 — one study's bug must not cost the whole report
        log.exception("report section %r failed", title)
        sec = Section(title)
        sec.text(f"**This section failed to build:** `{type(e).__name__}: {e}`")
        sec.bullets(traceback.format_exc().strip().splitlines()[-6:])
    sec.title = title
    return sec


def _sweep_name(records: list[TrialRecord], sweep_dir: Path) -> str:
    names = {
        r.config.get("sweep", {}).get("name")
        for r in records
        if isinstance(r.config.get("sweep"), dict)
    }
    names.discard("")
    names.discard(None)
    return next(iter(names)) if len(names) == 1 else sweep_dir.resolve().name


def _overview(records: list[TrialRecord], sweep_dir: Path) -> Section:
    sec = Section("Overview")
    counts = Counter(r.state for r in records)
    states = [s for s in STATE_ORDER if counts[s]] + sorted(
        s for s in counts if s not in STATE_ORDER
    )
    summary = ", ".join(f"{counts[s]} {s}" for s in states) or "none"
    ledger = (sweep_dir / "ledger.sqlite").exists()
    sec.text(
        f"{len(records)} trials: {summary}. Read from the trial files in `{sweep_dir}/trials/`"
        + (
            " and the ledger `ledger.sqlite`"
            if ledger
            else " (no ledger: trials that never started are not known)"
        )
        + f"; generated {time.strftime('%Y-%m-%d %H:%M')}."
    )
    if IMPORT_ERRORS:
        sec.text(
            "**Report sections that could not be loaded** (their tasks fall back to the generic view):"
        )
        sec.bullets(
            [f"`cotsweep.report.{m}`: {_one_line(e)}" for m, e in sorted(IMPORT_ERRORS.items())]
        )
    tasks = grid_values(records, "task")
    if tasks:
        rows = [
            [t] + [sum(r.state == s and r.task == t for r in records) for s in states]
            for t in tasks
        ]
        unknown = [r for r in records if r.task is None]
        if unknown:
            rows.append(["(unknown)"] + [sum(r.state == s for r in unknown) for s in states])
        sec.table(["task"] + states, rows, caption="Trials per task and state.")
    cut = [r for r in records if r.truncated]
    if cut:
        sec.heading("Trials whose metrics.jsonl is cut short")
        sec.text(
            f"**Warning:** {len(cut)} finished trial{'s' if len(cut) != 1 else ''} logged fewer "
            "steps than their result.json reports (a copy cut short, a torn or corrupt line, a full "
            "disk). Their final accuracy comes from result.json and stands; their curves end early "
            "and are drawn dotted, ending in ✕, outside the seed means, and their final loss is "
            "left out of the tables."
        )
        sec.table(
            ["trial", "grid point", "last logged step", "steps (result.json)"],
            [
                [
                    f"`{r.id}`",
                    r.label(),
                    r.last_logged_step if r.last_logged_step is not None else "none",
                    (r.result or {}).get("steps"),
                ]
                for r in cut
            ],
        )
    lacking = [r for r in records if not r.done]
    if lacking:
        sec.heading("Trials without a result")
        sec.text(
            "Shown as gaps in every figure and table below; rerun them with `cotsweep resume DIR`."
        )
        sec.table(
            ["trial", "grid point", "state", "error"],
            [[f"`{r.id}`", r.label(), r.state, _one_line(r.error) or "—"] for r in lacking],
        )
    return sec


def _one_line(text: str | None, limit: int = 240) -> str:
    if not text:
        return ""
    s = " ".join(text.split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _generic(task: str, records: list[TrialRecord], ctx: ReportContext) -> Section:
    """A task no study section claims: its final figures per grid point and its training curves."""
    sec = Section(f"Task {task}")
    axes = [a for a in _varying(records) if a not in ("task", "seed")]
    grid = cells(records, axes)
    sec.text(
        f"No report section is registered for `{task}`; this is the generic view of its {len(records)} trials."
    )
    rows = [
        [*key, c.text(), cells(c.records, (), "chain_acc")[()].text() if c.records else "—"]
        for key, c in grid.items()
    ]
    sec.table(
        [*axes, "final acc", "final chain acc"],
        rows,
        caption=f"{task}: final figures, mean [min–max] over seeds.",
    )
    if any(r.metrics for r in records):
        colour = "depth" if "depth" in axes else (axes[0] if axes else "seed")
        panel = "setting" if "setting" in axes and colour != "setting" else "task"
        p = training_curves(
            records,
            ctx.figure_path(f"training_curves_{task}"),
            colour=colour,
            panel=panel,
            threshold=ctx.solve_threshold,
            title=f"{task}: training curves",
        )
        sec.figure(
            p,
            f"{task}: training loss and eval accuracy against step, coloured by {colour}; "
            f"{seeds_text(records)}.",
        )
    return sec


def _varying(records: list[TrialRecord]) -> list[str]:
    keys: list[str] = []
    for r in records:
        keys += [k for k in r.axes if k not in keys]
    return [
        k for k in keys if len(grid_values(records, k)) > 1 or k in ("setting", "depth", "length")
    ]


def _headline(res: dict) -> str:
    """The figure of tasks scored otherwise than by accuracy (function error, skill k*)."""
    ev = res.get("eval") or {}
    if isinstance(ev.get("mse"), (int, float)):
        return f"mse {ev['mse']:.3f}"
    if isinstance(res.get("k_star"), (int, float)):
        return f"k* {res['k_star']:.2f}"
    return ""


def _all_trials(records: list[TrialRecord]) -> Section:
    sec = Section("All trials")
    # the other axes only where they vary: a constant width is not a column worth reading
    extra = [
        k
        for k in sorted(
            {k for r in records for k in r.axes} - {"task", "setting", "depth", "length", "seed"}
        )
        if len(grid_values(records, k)) > 1
    ]
    head = [
        "trial",
        "task",
        "setting",
        "depth",
        "n",
        "seed",
        *extra,
        "state",
        "acc",
        "chain acc",
        "other",
        "steps",
        "wall time (s)",
    ]
    rows = []
    for r in records:
        a = r.axes
        res = r.result or {}

        def num(key: str, fmt: str, res: dict = res) -> str:
            v = res.get(key)
            return (
                format(v, fmt) if isinstance(v, (int, float)) and not isinstance(v, bool) else "—"
            )

        rows.append(
            [
                f"`{r.id}`",
                a.get("task", "?"),
                a.get("setting", "?"),
                a.get("depth", "?"),
                a.get("length", "?"),
                a.get("seed", "?"),
                *[a.get(k, "") for k in extra],
                r.state,
                num("acc", ".3f"),
                num("chain_acc", ".3f"),
                _headline(res),
                num("steps", "d"),
                num("wall_time_s", ".1f"),
            ]
        )
    sec.table(
        head, rows, caption="Every trial of the sweep, as its files and the ledger record it."
    )
    if any(r.state == FAILED for r in records):
        sec.text("Errors of failed trials are listed in the overview.")
    return sec


def manifest_images(report_dir: Path | str) -> list[Path]:
    """The figures of an already built report, from its manifest (no rebuilding)."""
    report_dir = Path(report_dir)
    data = json.loads((report_dir / MANIFEST).read_text())
    return [report_dir / f["path"] for f in data["figures"]]
