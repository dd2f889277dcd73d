"""The report section of the CoT study (STUDIES.md §1): depth, length and the three settings.

For each task: the paper figure (accuracy against depth, one line per setting,
one panel per input length, chance drawn), accuracy against input length per
depth, a depth × length heat map per setting marking the smallest depth that
solves each length (the figure none of the papers shows), and training
curves; then the tables behind them. The section opens with the comparison
against the reported findings, kept as data in ``findings_cot.yaml``.
"""

from __future__ import annotations

from pathlib import Path

from cotsweep.report.aggregate import (
    Cell,
    cells,
    chance_level,
    first_step_reaching,
    mean_of,
    seeds_text,
)
from cotsweep.report.document import Section
from cotsweep.report.findings import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    VERDICTS,
    check_findings,
    condition,
)
from cotsweep.report.plots import accuracy_against, heatmap, smallest_solving, training_curves
from cotsweep.report.records import DONE, TrialRecord, grid_values
from cotsweep.report.registry import ReportContext, section

TASKS = ("modadd", "s5", "isq", "cvp")
TASK_TITLES = {
    "modadd": "modadd — sum mod 7 (C7)",
    "s5": "s5 — composition of permutations of 5 elements",
    "isq": "isq — iterated squaring mod p",
    "cvp": "cvp — circuit value problem",
}
FINDINGS = Path(__file__).with_name("findings_cot.yaml")
_PLOTTED = ("task", "setting", "depth", "length", "seed")


@section(*TASKS, title="Chain of thought and serial depth (STUDIES.md §1)", order=10)
def cot_study(records: list[TrialRecord], ctx: ReportContext) -> Section:
    sec = Section("")
    _findings(sec, records)
    for task in [t for t in TASKS if any(r.task == t for r in records)]:
        _task(sec, task, [r for r in records if r.task == task], ctx)
    return sec


def _findings(sec: Section, records: list[TrialRecord]) -> None:
    header, verdicts = check_findings(FINDINGS, records)
    counts = {s: sum(v.status == s for v in verdicts) for s in VERDICTS}
    sec.heading("Comparison with the reported findings")
    sec.text(
        f"Source: {header.get('source', '')}. Each finding is checked on the seed means of this sweep; "
        f"**{counts[REPRODUCED]} reproduced, {counts[NOT_REPRODUCED]} not reproduced, "
        f"{counts[INCONCLUSIVE]} inconclusive, {counts[NOT_RUN]} not run**. Inconclusive: its trials "
        "stopped before the training budget the rule names, without solving. Not run: no result at its "
        "grid points. Contrasts compare settings at the same task, depth and length; figures stand "
        "beside their chance level. The rules are data: `src/cotsweep/report/findings_cot.yaml`."
    )
    alarms = [v for v in verdicts if v.alarm]
    if alarms:
        sec.text(
            "**NOT REPRODUCED — the opposite of the paper:** "
            + " ".join(f"{v.finding.id}: {v.alarm}." for v in alarms)
        )
    rows = []
    for v in verdicts:
        f = v.finding
        ours = v.ours + (f" ({v.detail})" if v.detail else "")
        status = f"**{v.status.upper()}**" if v.alarm else v.status
        rows.append([f.claim, condition(f), f.reported, ours, f.rule(), status, v.reason or "—"])
    sec.table(["finding", "grid points", "reported", "ours", "check", "status", "why"], rows)


def _task(sec: Section, task: str, records: list[TrialRecord], ctx: ReportContext) -> None:
    thr = ctx.solve_threshold
    settings, depths, lengths = (grid_values(records, a) for a in ("setting", "depth", "length"))
    chance = chance_level(records)
    chance_txt = (
        f"chance = {chance:.3f}" if chance is not None else "chance unknown (no finished trial)"
    )
    n_seeds = len(grid_values(records, "seed"))
    seeds = seeds_text(records)
    sec.heading(TASK_TITLES.get(task, task))
    done = sum(r.done for r in records)
    sec.text(
        f"{len(records)} trials ({done} done) over settings {', '.join(map(str, settings))}; "
        f"depths {', '.join(map(str, depths))}; input lengths {', '.join(map(str, lengths))}; "
        f"{n_seeds} seed{'s' if n_seeds != 1 else ''}. Points are means over seeds, bands their min–max; {chance_txt}."
    )
    pooled = [
        k
        for k in sorted({k for r in records for k in r.axes})
        if k not in _PLOTTED and len(grid_values(records, k)) > 1
    ]
    if pooled:
        sec.text(
            f"**Note:** these trials also vary in {', '.join(f'`{k}`' for k in pooled)}; the figures and tables "
            "below pool those values together with the seeds. The last table of the report separates them."
        )

    p = accuracy_against(
        records,
        ctx.figure_path(f"accuracy_vs_depth_{task}"),
        x="depth",
        line="setting",
        panel="length",
        title=f"{task}: accuracy against depth",
    )
    scale = " (log2 scale)" if depths and min(depths) > 0 and max(depths) / min(depths) >= 4 else ""
    sec.figure(
        p,
        f"{task}: accuracy against depth{scale}, one line per setting, one panel per input length; "
        f"{seeds}; dashed: chance; ✕: no result.",
    )
    if len(lengths) > 1:
        p = accuracy_against(
            records,
            ctx.figure_path(f"accuracy_vs_length_{task}"),
            x="length",
            line="depth",
            panel="setting",
            title=f"{task}: accuracy against input length",
        )
        sec.figure(
            p,
            f"{task}: accuracy against input length, one line per depth, one panel per setting; "
            f"{seeds}; dashed: chance.",
        )
    else:
        sec.text(
            f"One input length only (n = {lengths[0] if lengths else '?'}): no figure against length."
        )
    grid = cells(records, ("setting", "depth", "length"))
    rows = []
    for s in settings:
        for d in depths:
            rows.append([s, d] + [_cell_text(grid.get((s, d, n))) for n in lengths])
    sec.table(
        ["setting", "depth"] + [f"n={n}" for n in lengths],
        rows,
        caption=f"{task}: final accuracy, mean [min–max] over seeds ({chance_txt}); the data of the figures above.",
    )

    p = heatmap(
        records,
        ctx.figure_path(f"depth_length_heatmap_{task}"),
        threshold=thr,
        title=f"{task}: accuracy over depth × input length",
    )
    sec.figure(
        p,
        f"{task}: depth × input length heat map per setting ({seeds}); colour: accuracy above chance, "
        f"(acc − chance)/(1 − chance), so chance is dark whatever the task's chance; number: the "
        f"accuracy itself. The outlined cell in each column is the smallest depth that solves that "
        f"length (mean acc ≥ {thr:g}).",
    )
    rows = []
    undetermined = False
    for s in settings:
        sub = cells([r for r in records if r.axes.get("setting") == s], ("depth", "length"))
        row: list[object] = [s]
        for n in lengths:
            best = smallest_solving(sub, depths, n, thr)
            col = [sub.get((d, n)) for d in depths]
            if all(c is None or c.is_gap for c in col):
                row.append("no result")
                continue
            below = [c for d, c in zip(depths, col, strict=True) if best is None or d < best]
            gap_below = any(c is not None and c.is_gap for c in below)
            undetermined |= gap_below
            mark = " †" if gap_below else ""
            row.append(f"{best}{mark}" if best is not None else f"none ≤ {max(depths)}{mark}")
        rows.append(row)
    sec.table(
        ["setting"] + [f"n={n}" for n in lengths],
        rows,
        caption=f"{task}: smallest depth that solves each input length (mean acc ≥ {thr:g})"
        + (
            "; † a smaller depth has no result, so the true minimum may be lower"
            if undetermined
            else ""
        ),
    )

    rows = []
    for n in lengths:
        sub = [r for r in records if r.axes.get("length") == n]
        if not any(r.metrics for r in sub):
            continue
        p = training_curves(
            sub,
            ctx.figure_path(f"training_curves_{task}_n{n}"),
            threshold=thr,
            title=f"{task}, input length n = {n}: training curves",
        )
        sec.figure(
            p,
            f"{task}, n = {n}: training loss and eval accuracy against step, one column per "
            f"setting, coloured by depth; {seeds_text(sub)}; dash-dotted: trials that did not "
            "finish; dotted, ending in ✕: a metrics.jsonl cut short.",
        )
        for s in settings:
            for d in depths:
                group = [r for r in sub if r.axes.get("setting") == s and r.axes.get("depth") == d]
                if group:
                    rows.append([s, n, d] + _curve_row(group, thr))
    if rows:
        sec.table(
            [
                "setting",
                "n",
                "depth",
                "seeds done",
                "final loss",
                "final acc",
                f"first step with acc ≥ {thr:g}",
                "steps",
            ],
            rows,
            caption=f"{task}: the training curves in numbers (means over finished seeds).",
        )


def _cell_text(c: Cell | None) -> str:
    return c.text() if c is not None else "—"


def _curve_row(group: list[TrialRecord], thr: float) -> list[object]:
    done = [r for r in group if r.state == DONE]
    # a metrics.jsonl cut short ends before the trial did: its last loss is not the final one
    losses = [r.series("train/loss")[1] for r in done if not r.truncated]
    loss = mean_of(v[-1] if v else None for v in losses)
    cut = sum(r.truncated for r in done)
    acc = Cell(done).text() if done else ", ".join(sorted({r.state for r in group}))
    reach = [first_step_reaching(r, thr) for r in done]
    hit = [s for s in reach if s is not None]
    if not done:
        reached = "—"
    elif hit:
        reached = f"{sum(hit) / len(hit):.0f}" + (
            f" ({len(hit)}/{len(done)} seeds)" if len(hit) < len(done) else ""
        )
    else:
        reached = "never"
    steps = mean_of(r.result.get("steps") for r in done if r.result)
    return [
        f"{len(done)}/{len(group)}",
        (f"{loss:.3g}" if loss is not None else "—")
        + (f" ({cut} cut short, left out)" if cut else ""),
        acc,
        reached,
        f"{steps:.0f}" if steps is not None else "—",
    ]
