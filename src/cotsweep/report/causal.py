"""The report section of the causal-transitivity study (STUDIES.md §2).

The headline figure is accuracy against chain length (nodes), one line per
positional encoding, one row of panels per training mix, sequential chains on
the left and flipped chains on the right; the reported accuracies of STUDIES.md
§2 (trained on TS2, chains of 7 → 15 nodes) are drawn dashed beside ours, and
kept here as data (:data:`REPORTED`). Then the same numbers as tables, the
headline claim checked on them (NoPE generalises to longer chains, learned
positional encodings fall towards chance), and every other suite (reversal,
branching, long names, the training distribution) as a table.

The figures read ``result["eval"]`` of each finished trial: ``acc`` (the
training distribution) and ``acc/<suite>`` (see
:mod:`cotsweep.tasks.causal`). Seeds are drawn as their mean with a min–max
band; a grid point without a result is a gap, never joined over.

Every figure and table says which kind of suite its numbers come from
(:func:`suite_kind_of`): official-style (built as the published files are),
independent (a fresh graph per question), or the published files themselves
(``task.eval_files``). The reported table was measured on the published
files; where trials of several kinds are present, each row names its kind.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cotsweep.report.aggregate import Cell, seeds_text
from cotsweep.report.document import Section
from cotsweep.report.plots import (
    band,
    chance_line,
    figure_legend,
    new_figure,
    paper_style,
    save,
    titled,
)
from cotsweep.report.records import TrialRecord
from cotsweep.report.registry import ReportContext, section

# STUDIES.md §2, "reported, third-party transcription of the paper's table; to be checked":
# accuracy on chains of 7..15 nodes of models trained on TS2. The transcription does not say
# whether the chains are sequential or flipped, so the figure draws it beside both.
REPORTED = {
    "source": "Vashishtha et al., arXiv 2407.07612, as transcribed in STUDIES.md §2 (to be checked)",
    "mix": "TS2",
    "lengths": [7, 8, 9, 10, 11, 12, 13, 14, 15],
    "rows": {
        "none": [1.00, 0.99, 0.92, 0.88, 0.86, 0.95, 0.96, 0.81, 0.85],
        "learned": [0.98, 0.92, 0.77, 0.59, 0.57, 0.57, 0.55, 0.51, 0.50],
        "sinusoidal": [0.99, 0.95, 0.86, 0.80, 0.76, 0.84, 0.79, 0.85, 0.77],
        "GPT-4": [0.95, 0.97, 0.87, 0.91, 0.90, 0.92, 0.85, 0.93, 0.89],
    },
}
ENCODINGS = ("none", "learned", "sinusoidal", "rope")
ENCODING_LABELS = {
    "none": "NoPE",
    "learned": "learned PE",
    "sinusoidal": "sinusoidal PE",
    "rope": "RoPE",
    "GPT-4": "GPT-4",
}
ENCODING_COLOURS = {
    "none": "#0072B2",
    "learned": "#D55E00",
    "sinusoidal": "#009E73",
    "rope": "#CC79A7",
    "GPT-4": "0.45",
}
# a marker per encoding, so that lines lying on each other (every model at chance) stay told apart
ENCODING_MARKERS = {"none": "o", "learned": "s", "sinusoidal": "^", "rope": "D"}
MIX_ORDER = ("sequential", "TS1", "TS2", "custom")
SUITE_KINDS = {
    "published": "the published evaluation files themselves (task.eval_files)",
    "official": "official-style suites: a few graphs per suite, questions over their node "
    "pairs, built as the published files are",
    "independent": "independent suites: a fresh graph for every question (ours)",
}
CHAIN_KINDS = (("seq", "sequential chains"), ("flip", "flipped chains"))
_CHAIN = re.compile(r"^(seq|flip)_(\d+)$")
_BRANCH = re.compile(r"^branch_(\d+)_bf(\d+)$")


def encoding_of(r: TrialRecord) -> str:
    return str(r.axes.get("pos_encoding", r.setting("model.pos_encoding", "?")))


def mix_of(r: TrialRecord) -> str:
    return str(r.axes.get("task.mix", r.setting("task.mix", "?")))


def suite_kind_of(r: TrialRecord) -> str:
    """published | official | independent: how the trial's evaluation suites were made."""
    if r.setting("task.eval_files"):
        return "published"
    # trials recorded before the key existed drew independent suites
    return str(r.setting("task.suite_kind", "independent"))


def _kinds(records: Sequence[TrialRecord]) -> list[str]:
    order = list(SUITE_KINDS)
    return sorted(
        {suite_kind_of(r) for r in records},
        key=lambda k: (order.index(k) if k in order else len(order), k),
    )


def _kinds_text(records: Sequence[TrialRecord]) -> str:
    kinds = _kinds(records)
    return "; ".join(f"{k}: {SUITE_KINDS.get(k, k)}" for k in kinds)


def _eval_keys(records: Sequence[TrialRecord]) -> list[str]:
    keys: set[str] = set()
    for r in records:
        if r.done:
            keys |= {k for k in ((r.result or {}).get("eval") or {}) if k.startswith("acc/")}
    return sorted(keys)


def chain_lengths(records: Sequence[TrialRecord], kind: str) -> list[int]:
    """The chain lengths of suite family ``kind`` (seq or flip) that any trial evaluated."""
    ns = {
        int(m.group(2))
        for k in _eval_keys(records)
        if (m := _CHAIN.match(k[4:])) and m.group(1) == kind
    }
    return sorted(ns)


def other_suites(records: Sequence[TrialRecord]) -> list[str]:
    """Suites other than the chain-length ones, in a reading order: reversal, branching, names."""
    names = [k[4:] for k in _eval_keys(records) if not _CHAIN.match(k[4:])]

    def order(name: str) -> tuple:
        if m := _BRANCH.match(name):
            return (1, int(m.group(2)), int(m.group(1)), name)
        return (0 if name.startswith("reversal") else 2, 0, 0, name)

    return sorted(names, key=order)


def suite_title(name: str) -> str:
    if name == "val":
        return "held-out training set"
    if m := _BRANCH.match(name):
        return f"branching {m.group(1)} nodes, factor {int(m.group(2)) / 10:g}"
    if name == "long_names":
        return "longer names"
    return name.replace("_", " ")


def _groups(records: Sequence[TrialRecord]) -> dict[tuple[str, str, str], list[TrialRecord]]:
    """Seeds of one grid point: (mix, encoding, any other varying axis as text).

    When the trials' suites are of more than one kind, the kind leads the text,
    so no row mixes numbers measured on different suites.
    """
    skip = {"seed", "pos_encoding", "task.mix", "task", "setting"}
    skip |= {"task.suite_kind", "task.eval_files"}
    varying = sorted(
        k
        for k in {k for r in records for k in r.axes if k not in skip}
        if len({str(r.axes.get(k)) for r in records}) > 1
    )
    several_kinds = len({suite_kind_of(r) for r in records}) > 1
    out: dict[tuple[str, str, str], list[TrialRecord]] = {}
    for r in records:
        parts = [f"({suite_kind_of(r)} suites)"] if several_kinds else []
        rest = " ".join(parts + [f"{k}={r.axes.get(k)}" for k in varying])
        out.setdefault((mix_of(r), encoding_of(r), rest), []).append(r)

    def order(key: tuple[str, str, str]) -> tuple:
        mix, enc, rest = key
        return (
            MIX_ORDER.index(mix) if mix in MIX_ORDER else 9,
            mix,
            ENCODINGS.index(enc) if enc in ENCODINGS else 9,
            enc,
            rest,
        )

    return {k: out[k] for k in sorted(out, key=order)}


def _cell(records: list[TrialRecord], suite: str | None) -> Cell:
    return Cell(records=records, metric="eval.acc" if suite is None else f"eval.acc/{suite}")


def _row_label(mix: str, enc: str, rest: str) -> str:
    return " ".join(p for p in (mix, ENCODING_LABELS.get(enc, enc), rest) if p)


@section("causal", title="Causal transitivity by axiomatic training (STUDIES.md §2)", order=20)
def causal_section(records: list[TrialRecord], ctx: ReportContext) -> Section:
    sec = Section("")
    groups = _groups(records)
    done = sum(r.done for r in records)
    mixes = sorted(
        {k[0] for k in groups}, key=lambda m: (MIX_ORDER.index(m) if m in MIX_ORDER else 9, m)
    )
    sec.text(
        f"{len(records)} trials ({done} finished) over training mixes {', '.join(f'`{m}`' for m in mixes)} and "
        f"positional encodings {', '.join(sorted({ENCODING_LABELS.get(k[1], k[1]) for k in groups}))}. "
        "Each model is trained on chains of the training lengths and evaluated on longer chains, "
        "reversed premises, branching graphs and longer node names it never saw; chance is 0.5 "
        "on every suite (each generated suite is exactly balanced; the published files hold "
        "0.49–0.51 Yes)."
    )
    sec.text(f"Suites — {_kinds_text(records)}.")
    if any(suite_kind_of(r) == "published" for r in records):
        sec.text(
            "The published files are named by length, and scored under those names: the "
            "published file for 10 nodes (simple_linear_subset_test/10_len_test.pkl) holds "
            "15-node chains, so seq_10 read from it measures 15-node chains (STUDIES.md §2)."
        )
    if not done:
        sec.text("No trial has finished yet: nothing to plot.")
        return sec
    _headline(sec, groups)
    path = length_figure(groups, ctx.figure_path("causal_accuracy_vs_chain_length"))
    kinds = _kinds_text([r for r in records if r.done])
    sec.figure(
        path,
        "accuracy against chain length (nodes), one line per positional encoding, one row per "
        f"training mix; {seeds_text(records)}; dotted: chance; dashed: the reported accuracies (trained on TS2, measured on the published "
        "files), drawn in both columns since the transcription does not say which chains they are. "
        f"Our suites — {kinds}",
    )
    for kind, title in CHAIN_KINDS:
        _length_table(sec, groups, records, kind, title, kinds)
    _others_table(sec, groups, records, kinds)
    return sec


def _headline(sec: Section, groups: dict) -> None:
    """The paper's claim on 7..15 nodes: NoPE holds up, learned PE falls towards chance."""
    lengths = REPORTED["lengths"]
    rep = {enc: float(np.mean(v)) for enc, v in REPORTED["rows"].items()}
    items = [
        f"reported (TS2, mean over {lengths[0]}–{lengths[-1]} nodes): "
        + ", ".join(f"{ENCODING_LABELS[e]} {rep[e]:.2f}" for e in REPORTED["rows"])
    ]
    for (mix, enc, rest), recs in groups.items():
        for kind, title in CHAIN_KINDS:
            vals = [_cell(recs, f"{kind}_{n}").mean for n in lengths]
            vals = [v for v in vals if not math.isnan(v)]
            if len(vals) == len(lengths):
                kinds = "/".join(sorted({suite_kind_of(r) for r in recs}))
                items.append(
                    f"ours, {_row_label(mix, enc, rest)}, {title} ({kinds} suites): "
                    f"{np.mean(vals):.2f}"
                )
    verdicts = []
    for mix, rest in sorted({(m, r) for m, _, r in groups}):
        for kind, title in CHAIN_KINDS:
            mean = {}
            for enc in ("none", "learned"):
                recs = groups.get((mix, enc, rest))
                vals = [_cell(recs, f"{kind}_{n}").mean for n in lengths] if recs else []
                if vals and not any(math.isnan(v) for v in vals):
                    mean[enc] = float(np.mean(vals))
            if len(mean) == 2:
                held = mean["none"] > mean["learned"]
                verdicts.append(
                    f"{mix}{' ' + rest if rest else ''}, {title}: NoPE {mean['none']:.2f} vs learned PE "
                    f"{mean['learned']:.2f} — {'as reported (NoPE ahead)' if held else 'not as reported'}"
                )
    sec.heading("Comparison with the reported table")
    sec.text(
        f"Source: {REPORTED['source']}. Mean accuracy over chains of {lengths[0]}–{lengths[-1]} nodes:"
    )
    sec.bullets(
        items
        + (
            verdicts
            or [
                "the headline check needs NoPE and learned PE trials with the "
                f"{lengths[0]}–{lengths[-1]} node suites"
            ]
        )
    )


def length_figure(groups: dict, path: Path) -> Path:
    """Accuracy against chain length: a row per (mix, other axes), sequential and flipped columns."""
    rows = sorted(
        {(m, rest) for m, _, rest in groups},
        key=lambda k: (MIX_ORDER.index(k[0]) if k[0] in MIX_ORDER else 9, k),
    )
    all_recs = [r for recs in groups.values() for r in recs]
    lengths = {kind: chain_lengths(all_recs, kind) for kind, _ in CHAIN_KINDS}
    encs = [e for e in ENCODINGS if any(k[1] == e for k in groups)] + sorted(
        {k[1] for k in groups if k[1] not in ENCODINGS}
    )
    lowest = 0.3
    # the reported figures sit beside the trials of their own training set; on every row if none ran
    reported_row = any(m == REPORTED["mix"] for m, _ in rows)
    with paper_style():
        fig, axes = new_figure(len(rows), 2, panel_w=4.6, extra_w=0.4, extra_h=1.1)
        for i, (mix, rest) in enumerate(rows):
            for j, (kind, title) in enumerate(CHAIN_KINDS):
                ax = axes[i][j]
                ns = lengths[kind]
                # categorical slots: 7..15 stay readable beside 20 and 50
                pos = {n: float(k) for k, n in enumerate(ns)}
                ax.set_xticks(list(pos.values()), [str(n) for n in ns])
                for e, enc in enumerate(encs):
                    recs = groups.get((mix, enc, rest))
                    if not recs:
                        continue
                    cs = [_cell(recs, f"{kind}_{n}") for n in ns]
                    col = ENCODING_COLOURS.get(enc, "0.2")
                    # a small sideways shift per encoding: equal accuracies do not hide each other
                    xs = [pos[n] + 0.06 * (e - (len(encs) - 1) / 2) for n in ns]
                    ax.plot(
                        xs,
                        [c.mean for c in cs],
                        marker=ENCODING_MARKERS.get(enc, "o"),
                        color=col,
                        label=ENCODING_LABELS.get(enc, enc),
                    )
                    band(ax, xs, [c.lo for c in cs], [c.hi for c in cs], col)
                    lowest = min([lowest] + [c.lo for c in cs if not c.is_gap])
                for enc, vals in (
                    REPORTED["rows"].items() if mix == REPORTED["mix"] or not reported_row else ()
                ):
                    pts = [
                        (pos[n], v)
                        for n, v in zip(REPORTED["lengths"], vals, strict=True)
                        if n in pos
                    ]
                    if pts:
                        ax.plot(
                            *zip(*pts, strict=True),
                            linestyle="--",
                            linewidth=1.2,
                            marker=".",
                            color=ENCODING_COLOURS.get(enc, "0.45"),
                            alpha=0.8,
                            label=f"{ENCODING_LABELS.get(enc, enc)} (reported)",
                        )
                chance_line(ax, 0.5, linestyle=":", linewidth=1.0)  # every suite is balanced
                ax.set_title(f"trained on {mix}{' ' + rest if rest else ''}: {title}")
                ax.set_xlabel("chain length (nodes)")
                if j == 0:
                    ax.set_ylabel("accuracy")
        for ax in axes.flat:  # one scale for every panel; below 0.3 only if some model is there
            ax.set_ylim(max(0.0, lowest - 0.05) if lowest < 0.3 else 0.3, 1.03)
        figure_legend(
            fig,
            first=[ENCODING_LABELS.get(e, e) for e in encs],
            loc="outside lower center",
            ncols=4,
        )
        kinds = _kinds([r for r in all_recs if r.done])
        titled(
            fig,
            "causal transitivity: accuracy against chain length",
            all_recs,
            f"{' / '.join(kinds)} suites; dashed: reported, on the published files",
        )
        return save(fig, path)


def _length_table(
    sec: Section, groups: dict, records: Sequence[TrialRecord], kind: str, title: str, kinds: str
) -> None:
    ns = chain_lengths(records, kind)
    if not ns:
        return
    rows = [
        [_row_label(*key)] + [_cell(recs, f"{kind}_{n}").text() for n in ns]
        for key, recs in groups.items()
    ]
    rep_cols = {n: i for i, n in enumerate(REPORTED["lengths"])}
    for enc, vals in REPORTED["rows"].items():
        rows.append(
            [f"{ENCODING_LABELS[enc]} — reported ({REPORTED['mix']})"]
            + [f"{vals[rep_cols[n]]:.2f}" if n in rep_cols else "" for n in ns]
        )
    sec.table(
        ["model"] + [f"{n}" for n in ns],
        rows,
        caption=f"Accuracy on {title} by number of nodes (mean [min–max] over seeds). "
        f"Suites — {kinds}; reported rows: the published files",
    )


def _others_table(sec: Section, groups: dict, records: Sequence[TrialRecord], kinds: str) -> None:
    suites = other_suites(records)
    headers = ["model", "training distribution"] + [suite_title(s) for s in suites]
    rows = [
        [_row_label(*key), _cell(recs, None).text()] + [_cell(recs, s).text() for s in suites]
        for key, recs in groups.items()
    ]
    sec.table(
        headers,
        rows,
        caption=f"Accuracy on the other suites (mean [min–max] over seeds). Suites — {kinds}",
    )
