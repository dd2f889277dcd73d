"""Published findings as data, checked against a sweep's results.

A findings file (``findings_<study>.yaml`` in this package) lists what a paper
reports, each entry as::

    - id: s5-cot-1layer
      claim: "s5 with CoT is solved by a 1-layer model"     # what the write-up says
      reported: "100%"                                     # its figure, as written
      where: {task: s5, setting: cot, depth: 1}            # the grid points it speaks of
      combine: all                                         # how the points are judged
      check: {op: ">=", value: 0.95}                       # what counts as reproducing it

``where`` maps an axis to a value, a list of values, a range ``{min: 4,
max: 16}``, or ``max`` / ``min`` (the largest / smallest value the sweep ran,
e.g. the longest input). Points are seed means of ``metric`` (default ``acc``).
``combine``: ``all`` (every point passes), ``any``, ``mean`` (the mean of the
points passes), ``best`` (for each value of ``per``, default ``length``, the
best point over the other axes passes: "some depth learns it at every length").
``vs: {setting: base}`` compares each point with its counterpart (the same
point with these axes changed) and checks the difference. ``check.op`` is
``>=``, ``<=`` or ``about`` (within ``tol`` of ``value``).

A finding is *reproduced* when the check passes on the points that have a
result, *not reproduced* when it fails, *not run* when none of its points has a
result; a partial check says how many points it lacked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cotsweep.report.aggregate import Cell, cells
from cotsweep.report.records import TrialRecord, grid_values

REPRODUCED, NOT_REPRODUCED, NOT_RUN = "reproduced", "not reproduced", "not run"
_SHORT = {"depth": "d", "length": "n"}


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
    note: str = ""

    def rule(self) -> str:
        """The check in words: ``acc ≥ 0.95 at every point``."""
        op, v = self.check["op"], self.check["value"]
        what = (
            self.metric if not self.vs else f"{self.metric} − {self.metric}[{_fmt_where(self.vs)}]"
        )
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
        return f"{what} {cond} {scope}"


@dataclass
class Verdict:
    finding: Finding
    status: str
    ours: str
    detail: str = ""
    points: list[tuple[str, float]] = field(default_factory=list)


def load_findings(path: Path) -> tuple[dict, list[Finding]]:
    """(study header, findings) from a findings YAML file."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    header = {k: v for k, v in data.items() if k != "findings"}
    out = []
    for f in data.get("findings", []):
        finding = Finding(**f)
        if finding.combine not in ("all", "any", "mean", "best"):
            raise ValueError(
                f"finding {finding.id}: combine must be all, any, mean or best, got {finding.combine!r}"
            )
        if finding.check.get("op") not in (">=", "<=", "about"):
            raise ValueError(f"finding {finding.id}: check.op must be >=, <= or about")
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
    """The finding's grid points in words (``s5, cot, depth=1``)."""
    return _fmt_where(f.where)


def _matches(value: Any, spec: Any, axis_values: list) -> bool:
    if isinstance(spec, dict):
        lo, hi = spec.get("min"), spec.get("max")
        if not isinstance(value, (int, float)):
            return False
        return (lo is None or value >= lo) and (hi is None or value <= hi)
    if isinstance(spec, list):
        return value in spec
    if (
        spec in ("max", "min")
        and axis_values
        and all(isinstance(v, (int, float)) for v in axis_values)
    ):
        return value == (max(axis_values) if spec == "max" else min(axis_values))
    return value == spec


def _select(records: list[TrialRecord], where: dict) -> list[TrialRecord]:
    # "max"/"min" resolve over what the sweep ran for this task (the grid), not only what finished
    scope = [r for r in records if "task" not in where or r.axes.get("task") == where["task"]]
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


def evaluate(f: Finding, records: list[TrialRecord]) -> Verdict:
    """Judge one finding on a sweep's records."""
    chosen = _select(records, f.where)
    if not chosen:
        return Verdict(f, NOT_RUN, "—", f"the sweep has no trial at {condition(f)}")
    keys = sorted({k for r in chosen for k in r.axes} - {"seed"})
    grid = cells(chosen, keys, f.metric)
    varying = {k for i, k in enumerate(keys) if len({key[i] for key in grid}) > 1}
    points: list[tuple[tuple, float]] = []
    lacking = 0
    for key, cell in grid.items():
        v = cell.mean
        if f.vs:
            other = _counterpart(records, keys, key, f.vs, f.metric)
            v = v - other.mean if other is not None else math.nan
        if math.isnan(v):
            lacking += 1
        else:
            points.append((key, v))
    if not points:
        return Verdict(f, NOT_RUN, "—", f"none of its {len(grid)} grid points has a result")
    labelled = [(_point_label(k, keys, varying), v) for k, v in points]
    sign = "+" if f.vs else ""

    def fmt(v: float) -> str:
        return f"{v:{sign}.2f}"

    if f.combine == "mean":
        m = sum(v for _, v in points) / len(points)
        ok, ours = _passes(m, f.check), f"{fmt(m)} (mean of {len(points)} points)"
    elif f.combine == "best":
        per_i = keys.index(f.per) if f.per in keys else None
        best: dict[Any, tuple[str, float]] = {}
        for (key, v), (lab, _) in zip(points, labelled, strict=True):
            group = key[per_i] if per_i is not None else None
            if group not in best or v > best[group][1]:
                best[group] = (lab, v)
        ok = all(_passes(v, f.check) for _, v in best.values())
        ours = _listing(
            [
                (f"{_SHORT.get(f.per, f.per)}={g}: best at {lab or 'the one point'}", v)
                for g, (lab, v) in best.items()
            ],
            fmt,
        )
    else:
        passed = [_passes(v, f.check) for _, v in points]
        ok = all(passed) if f.combine == "all" else any(passed)
        ours = _listing(labelled, fmt)
    detail = f"{lacking} of {len(grid)} grid points have no result" if lacking else ""
    return Verdict(f, REPRODUCED if ok else NOT_REPRODUCED, ours, detail, labelled)


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
    return header, [evaluate(f, records) for f in findings]
