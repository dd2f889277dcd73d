"""Published findings as data, checked against a sweep's results so that none passes for the wrong reason.

A findings file (``findings_<study>.yaml`` in this package) lists what a paper
reports, each entry as::

    - id: s5-cot-beats-base
      claim: "s5: CoT solves it where answer-only training does not"  # what the write-up says
      reported: "cot 1.00 at depth 1; base ≈ 0.20"                   # its figures, as written
      where: {task: s5, setting: cot}        # the grid points it speaks of
      vs: {setting: base}                    # contrast: each point against this counterpart
      combine: all                           # how the points are judged
      check: {op: ">=", value: 0.5}          # what counts as reproducing it
      budget: {steps: 3000}                  # the least training that makes a point evidence
      unsolved: base                         # the claim says this setting does not solve here

``where`` maps an axis to a value, a list of values, a range ``{min: 4,
max: 16}``, or ``max`` / ``min`` (the largest / smallest value the sweep ran
for the task, e.g. the longest input). Points are seed means of ``metric``
(default ``acc``).

``vs`` makes the finding a *contrast at the same grid points*: every point is
compared with its counterpart, the same task, depth, length (and width, heads,
positional encoding) with the ``vs`` axes changed, and the check is on the
difference (a ``vs`` value may be ``min`` / ``max``: "the deepest base model
against the shallowest"). A point without a counterpart has no result.

``scale: chance`` checks accuracy *above chance*, ``(acc − chance) / (1 −
chance)``: 0 is guessing, 1 is solved (chance from the trials' result.json).
A figure the paper gives ("≈ 20 %") is checked as that figure (``about``),
never as a loose bound that guessing also meets. Every figure in the report is
printed beside its chance level.

``combine``: ``all`` (every point passes), ``any``, ``mean`` (the mean of the
points passes), ``best`` (for each value of ``per``, default ``length``, the
best point over the other axes passes: "some depth learns it at every length").
``check.op`` is ``>=``, ``<=`` or ``about`` (within ``tol`` of ``value``).

Verdicts:

* *reproduced*: the check passes and every point it rests on is evidence;
* *not reproduced*: the check fails on points that are evidence; also, loudly,
  whenever a setting the claim says fails (``unsolved``) *solves* the task at a
  point in scope (mean accuracy ≥ the file's ``solved``) with fewer layers than
  the input has serial steps (depth < length), whatever else holds. (With a
  layer per step a model can compute the chain layer by layer: solving there
  contradicts nothing.);
* *inconclusive*: the verdict rests on a point whose trials stopped before the
  ``budget`` (``steps`` and/or ``tokens``) without having solved the task (an
  early stop means the trial held its target accuracy, so it counts as
  finished). Our reading (*ours*): more training does not make a model worse
  at its own task, so a short point is still evidence where more training could
  only move it further the way it already points (a short base that already
  solves, a short cot that already fails to beat it); elsewhere it is not;
* *not run*: none of its points has a result.

The reason for every verdict other than a clean *reproduced* is in the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cotsweep.report.aggregate import Cell, cells
from cotsweep.report.records import TrialRecord, grid_values

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN = (
    "reproduced",
    "not reproduced",
    "inconclusive",
    "not run",
)
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN)
SOLVED = 0.95  # mean accuracy that counts as solving a task, unless the file says otherwise
_SHORT = {"depth": "d", "length": "n"}
_OPS = (">=", "<=", "about")
_COMBINE = ("all", "any", "mean", "best")
_BUDGET_KEYS = ("steps", "tokens")


@dataclass
class Finding:
    id: str
    claim: str
    reported: str
    where: dict[str, Any]
    check: dict[str, Any]
    combine: str = "all"
    per: str = "length"
    vs: dict[str, Any] | None = None
    metric: str = "acc"
    scale: str | None = None  # "chance": accuracy above chance
    budget: dict[str, float] = field(default_factory=dict)
    unsolved: str | None = None  # the setting the claim says does not solve these points
    note: str = ""

    def rule(self) -> str:
        """The check in words: ``acc ≥ 0.95 at every point, after ≥ 3000 steps``."""
        op, v = self.check["op"], self.check["value"]
        m = f"{self.metric} above chance" if self.scale == "chance" else self.metric
        what = m if not self.vs else f"{m} − the same at {_fmt_where(self.vs)}"
        cond = {
            ">=": f"≥ {v:g}",
            "<=": f"≤ {v:g}",
            "about": f"= {v:g} ± {self.check.get('tol', 0.1):g}",
        }[op]
        scope = {
            "all": "at every point",
            "any": "at some point",
            "mean": "on average over the points",
            "best": f"for the best point at each {self.per}",
        }[self.combine]
        text = f"{what} {cond} {scope}"
        if self.budget:
            text += ", after ≥ " + " and ".join(f"{n:g} {k}" for k, n in self.budget.items())
        if self.unsolved:
            text += f"; {self.unsolved} solving any point: not reproduced"
        return text


@dataclass
class Point:
    """One grid point of a finding: its figure, and whether it is evidence."""

    label: str
    value: float  # what the check judges (a difference for a contrast)
    main: Cell
    other: Cell | None = None
    chance: float | None = None
    short_main: bool = False  # the point's own trials stopped before the budget
    short_other: bool = False  # the counterpart's did


@dataclass
class Verdict:
    finding: Finding
    status: str
    ours: str
    detail: str = ""
    points: list[tuple[str, float]] = field(default_factory=list)
    reason: str = ""  # why inconclusive or not reproduced, in words
    alarm: str = ""  # a setting the claim says fails solves the task: said loudly


def load_findings(path: Path) -> tuple[dict, list[Finding]]:
    """(study header, findings) from a findings YAML file."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    header = {k: v for k, v in data.items() if k != "findings"}
    out = []
    for f in data.get("findings", []):
        finding = Finding(**f)
        if finding.combine not in _COMBINE:
            raise ValueError(
                f"finding {finding.id}: combine must be all, any, mean or best, got {finding.combine!r}"
            )
        if finding.check.get("op") not in _OPS:
            raise ValueError(f"finding {finding.id}: check.op must be >=, <= or about")
        if finding.scale not in (None, "chance"):
            raise ValueError(f"finding {finding.id}: scale must be chance, got {finding.scale!r}")
        bad = set(finding.budget) - set(_BUDGET_KEYS)
        if bad:
            raise ValueError(
                f"finding {finding.id}: budget keys are steps and tokens, got {sorted(bad)}"
            )
        out.append(finding)
    return header, out


def _fmt_where(where: dict) -> str:
    return ", ".join(f"{k}={_fmt_spec(v)}" for k, v in where.items())


def _fmt_spec(v: Any) -> str:
    if isinstance(v, dict):
        lo, hi = v.get("min"), v.get("max")
        return f"{lo if lo is not None else ''}..{hi if hi is not None else ''}"
    if isinstance(v, list):
        return "{" + ",".join(map(str, v)) + "}"
    return str(v)


def condition(f: Finding) -> str:
    """The finding's grid points in words (``s5, cot, depth=1``; a contrast adds ``vs setting=base``)."""
    text = _fmt_where(f.where)
    return f"{text} vs {_fmt_where(f.vs)}" if f.vs else text


def _matches(value: Any, spec: Any, axis_values: list) -> bool:
    if isinstance(spec, dict):
        lo, hi = spec.get("min"), spec.get("max")
        if not isinstance(value, (int, float)):
            return False
        return (lo is None or value >= lo) and (hi is None or value <= hi)
    if isinstance(spec, list):
        return value in spec
    if spec in ("max", "min"):
        return value == _extreme(spec, axis_values)
    return value == spec


def _extreme(spec: Any, axis_values: list) -> Any:
    """``max`` / ``min`` of numeric axis values; the spec itself otherwise."""
    if spec in ("max", "min") and axis_values and all(_is_number(v) for v in axis_values):
        return max(axis_values) if spec == "max" else min(axis_values)
    return spec


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _task_scope(records: list[TrialRecord], where: dict) -> list[TrialRecord]:
    return [r for r in records if "task" not in where or r.axes.get("task") == where["task"]]


def _select(records: list[TrialRecord], where: dict) -> list[TrialRecord]:
    # "max"/"min" resolve over what the sweep ran for this task (the grid), not only what finished
    scope = _task_scope(records, where)
    resolved = {k: grid_values(scope, k) for k in where}
    return [
        r
        for r in scope
        if all(_matches(r.axes.get(k), spec, resolved[k]) for k, spec in where.items())
    ]


def _point_label(key: tuple, keys: list[str], varying: set[str]) -> str:
    parts = [f"{_SHORT.get(k, k)}={v}" for k, v in zip(keys, key, strict=True) if k in varying]
    return " ".join(parts)


def _passes(v: float, check: dict) -> bool:
    op, target = check["op"], float(check["value"])
    if op == ">=":
        return v >= target
    if op == "<=":
        return v <= target
    return abs(v - target) <= float(check.get("tol", 0.1))


def _firm(v: float, check: dict, may_rise: bool, may_fall: bool) -> bool:
    """Whether ``v``'s pass or fail would stand after the training a short trial lacked."""
    op, target, tol = check["op"], float(check["value"]), float(check.get("tol", 0.1))
    if op == ">=":
        return not may_fall if v >= target else not may_rise
    if op == "<=":
        return not may_rise if v <= target else not may_fall
    if v > target + tol:
        return not may_fall
    if v < target - tol:
        return not may_rise
    return not (may_rise or may_fall)


def _short(r: TrialRecord, budget: dict) -> bool:
    """A finished trial that stopped before ``budget`` without holding its target accuracy."""
    if not budget or not r.done:
        return False
    if r.result.get("stop_reason") == "early_stop":
        return False
    ran = {"steps": r.result.get("steps"), "tokens": r.result.get("tokens_seen")}
    return any(ran[k] is None or ran[k] < n for k, n in budget.items())


def _cell_short(c: Cell | None, budget: dict) -> bool:
    return c is not None and any(_short(r, budget) for r in c.records)


def _chance(c: Cell) -> float | None:
    vals = [r.value("chance") for r in c.records]
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def _scaled(v: float, chance: float | None, scale: str | None) -> float:
    if scale != "chance":
        return v
    if chance is None or chance >= 1:
        return math.nan
    return (v - chance) / (1 - chance)


def evaluate(f: Finding, records: list[TrialRecord], solved: float = SOLVED) -> Verdict:
    """Judge one finding on a sweep's records."""
    chosen = _select(records, f.where)
    if not chosen:
        return Verdict(f, NOT_RUN, "—", f"the sweep has no trial at {condition(f)}")
    keys = sorted({k for r in chosen for k in r.axes} - {"seed"})
    grid = cells(chosen, keys, f.metric)
    varying = {k for i, k in enumerate(keys) if len({key[i] for key in grid}) > 1}
    scope = _task_scope(records, f.where)
    vs = {k: _extreme(v, grid_values(scope, k)) for k, v in (f.vs or {}).items()}
    points: list[Point] = []
    lacking = 0
    for key, cell in grid.items():
        label = _point_label(key, keys, varying)
        chance = _chance(cell)
        other = _counterpart(records, keys, key, vs, f.metric) if f.vs else None
        v = _scaled(cell.mean, chance, f.scale)
        if f.vs:
            v = v - _scaled(other.mean, chance, f.scale) if other is not None else math.nan
        if math.isnan(v):
            lacking += 1
            continue
        points.append(
            Point(
                label,
                v,
                cell,
                other,
                chance,
                _cell_short(cell, f.budget),
                _cell_short(other, f.budget),
            )
        )
    if not points:
        return Verdict(f, NOT_RUN, "—", f"none of its {len(grid)} grid points has a result")
    labelled = [(p.label, p.value) for p in points]
    detail = f"{lacking} of {len(grid)} grid points have no result" if lacking else ""
    status, ours, reason = _judge(f, points)
    alarm = _alarm(f, points, solved)
    if alarm:
        status, reason = NOT_REPRODUCED, alarm
    return Verdict(f, status, ours, detail, labelled, reason, alarm)


def _judge(f: Finding, points: list[Point]) -> tuple[str, str, str]:
    """(status, our figures in words, reason) from the points' values and budgets."""
    contrast = bool(f.vs)

    def fmt(v: float) -> str:
        return f"{v:+.2f}" if contrast else f"{v:.2f}"

    def firm(p: Point) -> bool:
        # more training of the point's own trials raises its figure; of the counterpart's, lowers it
        return _firm(p.value, f.check, may_rise=p.short_main, may_fall=p.short_other)

    if f.combine == "mean":
        m = sum(p.value for p in points) / len(points)
        rise, fall = any(p.short_main for p in points), any(p.short_other for p in points)
        ok, is_firm = _passes(m, f.check), _firm(m, f.check, rise, fall)
        ours = f"{fmt(m)} (mean of {len(points)} points)"
        unfirm = [p for p in points if p.short_main or p.short_other] if not is_firm else []
        status = (REPRODUCED if ok else NOT_REPRODUCED) if is_firm else INCONCLUSIVE
        return status, ours + _chance_note(points, f), _reason(f, status, unfirm, points)
    if f.combine == "best":
        per_i = f.per
        groups: dict[Any, list[Point]] = {}
        for p in points:
            groups.setdefault(_group_of(p, per_i), []).append(p)
        # a group passes through any firm passing point; fails only if every point firmly fails
        group_state = {}
        for g, ps in groups.items():
            if any(_passes(p.value, f.check) and firm(p) for p in ps):
                group_state[g] = "pass"
            elif all(not _passes(p.value, f.check) and firm(p) for p in ps):
                group_state[g] = "fail"
            else:
                group_state[g] = "open"
        best = {g: max(ps, key=lambda p: p.value) for g, ps in groups.items()}
        ours = _listing(
            [
                (f"{_SHORT.get(per_i, per_i)}={g}: best at {p.label or 'the one point'}", p.value)
                for g, p in best.items()
            ],
            fmt,
        )
        states = set(group_state.values())
        status = (
            NOT_REPRODUCED if "fail" in states else INCONCLUSIVE if "open" in states else REPRODUCED
        )
        unfirm = [p for g, ps in groups.items() if group_state[g] == "open" for p in ps]
        return status, ours + _chance_note(points, f), _reason(f, status, unfirm, points)
    passed = [(_passes(p.value, f.check), firm(p)) for p in points]
    if f.combine == "all":
        if any(not ok and fm for ok, fm in passed):
            status = NOT_REPRODUCED
        elif all(ok and fm for ok, fm in passed):
            status = REPRODUCED
        else:
            status = INCONCLUSIVE
    else:  # any
        if any(ok and fm for ok, fm in passed):
            status = REPRODUCED
        elif all(not ok and fm for ok, fm in passed):
            status = NOT_REPRODUCED
        else:
            status = INCONCLUSIVE
    unfirm = [p for p, (_, fm) in zip(points, passed, strict=True) if not fm]
    ours = _listing([(p.label, p.value) for p in points], fmt)
    if len(points) <= 3 and (contrast or f.scale):
        # the raw accuracies behind a difference or a chance-scaled figure
        ours = "; ".join(
            f"{p.label + ': ' if p.label else ''}{fmt(p.value)} ({_raw(p)})" for p in points
        )
    return status, ours + _chance_note(points, f), _reason(f, status, unfirm, points)


def _raw(p: Point) -> str:
    if p.other is not None:
        return f"{p.main.mean:.2f} vs {p.other.mean:.2f}"
    return f"acc {p.main.mean:.2f}"


def _group_of(p: Point, axis: str) -> Any:
    r = p.main.records[0]
    return r.axes.get(axis)


def _chance_note(points: list[Point], f: Finding) -> str:
    """``; chance 0.01``: every figure beside its guessing level."""
    ch = [p.chance for p in points if p.chance is not None]
    if not ch or f.metric != "acc":
        return ""
    lo, hi = min(ch), max(ch)
    return f"; chance {lo:.3f}" if hi - lo < 5e-4 else f"; chance {lo:.3f}–{hi:.3f}"


def _reason(f: Finding, status: str, unfirm: list[Point], points: list[Point]) -> str:
    if status == INCONCLUSIVE:
        budget = " and ".join(f"{n:g} {k}" for k, n in f.budget.items())
        which = []
        for p in unfirm:
            ran = []
            if p.short_main:
                ran.append(f"trained {_ran(p.main)}")
            if p.short_other:
                ran.append(f"its counterpart {_ran(p.other)}")
            which.append(f"{p.label or 'its point'}: {', '.join(ran)}")
        more = f"; and {len(which) - 4} more" if len(which) > 4 else ""
        return f"stopped before the budget of {budget}: " + "; ".join(which[:4]) + more
    if status == NOT_REPRODUCED:
        failing = [p for p in points if not _passes(p.value, f.check)]
        if failing:
            # how long they trained: "not at this budget" is a different statement from "never"
            return f"{len(failing)} of {len(points)} points fail the check, trained {_ran(failing[0].main)}"
    return ""


def _ran(c: Cell | None) -> str:
    if c is None:
        return "?"
    steps = [r.result.get("steps") for r in c.records if r.done]
    steps = [s for s in steps if s is not None]
    return f"{min(steps)} steps" if steps else "an unknown number of steps"


def _alarm(f: Finding, points: list[Point], solved: float) -> str:
    """The loud case: a setting the claim says fails solves the task at a point in scope."""
    if not f.unsolved:
        return ""
    hits = []
    for p in points:
        for c in (p.main, p.other):
            if c is None or c.is_gap or c.records[0].axes.get("setting") != f.unsolved:
                continue
            r = c.records[0]
            depth, length = r.axes.get("depth"), r.axes.get("length")
            # a model with a layer per serial step can compute the chain layer by layer: solving
            # there contradicts nothing; with fewer layers than steps it contradicts the paper
            serial = not (_is_number(depth) and _is_number(length)) or depth < length
            if serial and c.mean >= solved:
                where = " ".join(
                    f"{_SHORT.get(k, k)}={r.axes[k]}" for k in ("depth", "length") if k in r.axes
                )
                hits.append(f"{where} (acc {c.mean:.2f})")
    if not hits:
        return ""
    task = f.where.get("task", "the task")
    return (
        f"{f.unsolved} SOLVES {task} at {', '.join(sorted(set(hits)))}, where the paper says it "
        "fails: the task is easier here than in the paper"
    )


def _listing(items: list[tuple[str, float]], fmt) -> str:
    if len(items) <= 6:
        return "; ".join(f"{lab}: {fmt(v)}" if lab else fmt(v) for lab, v in items)
    vals = [v for _, v in items]
    return f"{fmt(min(vals))} to {fmt(max(vals))} over {len(vals)} points"


# what makes two points counterparts; other axes (train.steps, say) may differ by design between settings
_MATCH_AXES = ("task", "setting", "depth", "length", "pos_encoding", "width", "heads")


def _counterpart(
    records: list[TrialRecord], keys: list[str], key: tuple, vs: dict, metric: str
) -> Cell | None:
    want = {k: v for k, v in zip(keys, key, strict=True) if k in _MATCH_AXES} | vs
    match = [r for r in records if all(r.axes.get(k) == v for k, v in want.items())]
    if not match:
        return None
    c = next(iter(cells(match, list(want), metric).values()))
    return None if c.is_gap else c


def check_findings(path: Path, records: list[TrialRecord]) -> tuple[dict, list[Verdict]]:
    header, findings = load_findings(path)
    solved = float(header.get("solved", SOLVED))
    return header, [evaluate(f, records, solved) for f in findings]
