"""A sweep's trials as records read from its files and its ledger (never from W&B).

The trial's own files are the record: ``result.json`` present means done,
whatever else says so. The ledger adds what files cannot know — trials that
never started (their directory may not exist: they are *missing*), failures and
their errors — so that a partial sweep shows its gaps instead of dropping them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cotsweep import files
from cotsweep.config import NON_RESULT_KEYS
from cotsweep.ledger import LEDGER

TRIALS = "trials"

# Trial states as a report sees them. The ledger's four, plus what files alone can say.
DONE, FAILED, RUNNING, PENDING, UNFINISHED, MISSING = (
    "done",
    "failed",
    "running",
    "pending",  # the ledger's word; a report says unfinished or missing instead
    "unfinished",  # a directory without result.json: started, never finished
    "missing",  # listed in the ledger, never started (no directory)
)

# Config keys with a short axis name; every other axis keeps its dotted config key.
AXIS_NAMES = {
    "task.name": "task",
    "task": "task",
    "setting": "setting",
    "model.depth": "depth",
    "task.length": "length",
    "seed": "seed",
    "model.pos_encoding": "pos_encoding",
    "model.width": "width",
    "model.heads": "heads",
}
STANDARD_AXES = ("task", "setting", "depth", "length", "seed", "pos_encoding", "width", "heads")


@dataclass
class TrialRecord:
    """One trial of a sweep: where it stands, what it is, and what it produced."""

    id: str
    state: str
    axes: dict[str, Any]
    config: dict = field(default_factory=dict)
    result: dict | None = None
    metrics: list[dict] = field(default_factory=list)
    error: str | None = None
    dir: Path | None = None

    @property
    def done(self) -> bool:
        return self.state == DONE and self.result is not None

    @property
    def task(self) -> str | None:
        return self.axes.get("task")

    def setting(self, key: str, default: Any = None) -> Any:
        """A value of the trial's config by dotted key (``model.pos_encoding``), or ``default``."""
        return _dig(self.config, key, default)

    def value(self, metric: str = "acc") -> float | None:
        """A final figure from result.json (``acc``, ``chain_acc``, ``eval.acc`` ...), if done."""
        if not self.done:
            return None
        node = _dig(self.result, metric, None)
        return (
            float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else None
        )

    @property
    def last_logged_step(self) -> int | None:
        """The last step metrics.jsonl holds, or None when it holds none."""
        steps = [int(r["step"]) for r in self.metrics if isinstance(r.get("step"), (int, float))]
        return max(steps, default=None)

    @property
    def truncated(self) -> bool:
        """A finished trial whose metrics.jsonl stops before the step its result.json reports.

        The trial always logs its last step, so a shorter log lost its tail (a
        copy cut short, a torn or corrupt line, a full disk): its curve and any
        figure read off the curve's end are not the trial's, though result.json is.
        """
        steps = (self.result or {}).get("steps") if self.done else None
        if not isinstance(steps, int) or isinstance(steps, bool) or steps <= 0:
            return False  # no training (a simulation) or no step count: nothing to compare
        last = self.last_logged_step
        return last is None or last < steps

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(steps, values) of one metric in metrics.jsonl, in step order."""
        pts = sorted(
            (int(r["step"]), float(r[key]))
            for r in self.metrics
            if "step" in r and isinstance(r.get(key), (int, float))
        )
        return [s for s, _ in pts], [v for _, v in pts]

    def label(self, keys: Iterable[str] = ("task", "setting", "depth", "length", "seed")) -> str:
        """A readable name such as ``s5 cot d=2 n=8 seed=0``."""
        short = {"depth": "d", "length": "n"}
        parts = []
        for k in keys:
            if k in self.axes:
                v = self.axes[k]
                parts.append(str(v) if k in ("task", "setting") else f"{short.get(k, k)}={v}")
        return " ".join(parts) or self.id


def load_trials(sweep_dir: Path | str) -> list[TrialRecord]:
    """Every trial of the sweep at ``sweep_dir``: from ``trials/*/`` and ``ledger.sqlite``.

    A trial in the ledger whose directory does not exist yet is kept (state
    ``missing`` or its ledger state), so that reports show it as a gap; a trial
    directory the ledger does not know is kept too. Records come back sorted by
    their axes.
    """
    root = Path(sweep_dir)
    ledger = _read_ledger(root / LEDGER)
    trial_dirs = {p.name: p for p in sorted((root / TRIALS).glob("*")) if p.is_dir()}
    records = []
    for tid in list(ledger) + [t for t in trial_dirs if t not in ledger]:
        records.append(_record(tid, trial_dirs.get(tid), ledger.get(tid)))
    _add_varying_axes(records)
    records.sort(key=lambda r: _sort_key(r.axes, r.id))
    return records


def _record(tid: str, tdir: Path | None, row: dict | None) -> TrialRecord:
    config: dict = {}
    if tdir is not None and (tdir / files.CONFIG).exists():
        config = _load_yaml(tdir / files.CONFIG)
    elif row and row.get("config"):
        config = _load_yaml_text(row["config"])
    result = files.read_json(tdir / files.RESULT) if tdir is not None else None
    if result is not None and not isinstance(result, dict):
        result = None
    metrics = files.read_jsonl(tdir / files.METRICS) if tdir is not None else []
    error = (row or {}).get("error")
    ledger_state = (row or {}).get("state")
    if result is not None:
        state = DONE  # the files are the record
    elif ledger_state == FAILED:
        state = FAILED
    elif ledger_state == RUNNING:
        state = RUNNING
    elif ledger_state == PENDING:
        # started once and sent back to the queue, or never started at all
        state = UNFINISHED if tdir is not None else MISSING
    elif ledger_state == DONE:
        state = UNFINISHED
        error = error or "the ledger marks it done but result.json is absent"
    else:
        state = UNFINISHED
    axes = _axes(config, result, row)
    return TrialRecord(
        id=tid,
        state=state,
        axes=axes,
        config=config,
        result=result,
        metrics=metrics,
        error=error,
        dir=tdir,
    )


def _read_ledger(path: Path) -> dict[str, dict]:
    """Rows of the ledger's ``trials`` table by id, with whichever columns it has."""
    if not path.exists():
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        cols = {r[1] for r in db.execute("PRAGMA table_info(trials)")}
        if not cols:
            return {}
        want = [c for c in ("id", "state", "error", "config", "axes", "overrides") if c in cols]
        rows = db.execute(f"SELECT {', '.join(want)} FROM trials ORDER BY rowid").fetchall()
    finally:
        db.close()
    return {r[0]: dict(zip(want, r, strict=True)) for r in rows}


def _load_yaml(path: Path) -> dict:
    try:
        return _load_yaml_text(path.read_text())
    except OSError:
        return {}


def _load_yaml_text(text: str) -> dict:
    try:
        data = files.load_yaml(text)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _axes(config: dict, result: dict | None, row: dict | None) -> dict[str, Any]:
    """The standard axes from the config; the result's and the ledger's fill what it lacks."""
    axes: dict[str, Any] = {}
    flat = flatten(config)
    for key, name in AXIS_NAMES.items():
        if key in flat and name not in axes and not isinstance(flat[key], dict):
            axes[name] = flat[key]
    for name in ("task", "setting", "depth", "length", "seed"):
        if name not in axes and result and name in result:
            axes[name] = result[name]
    for key, value in _ledger_axes(row).items():
        axes.setdefault(AXIS_NAMES.get(key, key), value)
    return axes


def _ledger_axes(row: dict | None) -> dict[str, Any]:
    if not row:
        return {}
    if row.get("axes"):
        try:
            data = json.loads(row["axes"])
            if isinstance(data, dict):
                return data
        except json.JSONDecodeError:
            pass
    out: dict[str, Any] = {}
    try:
        overrides = json.loads(row.get("overrides") or "[]")
    except json.JSONDecodeError:
        overrides = []
    for ov in overrides:
        if isinstance(ov, str) and "=" in ov:
            k, v = ov.split("=", 1)
            try:
                out[k.lstrip("+~")] = yaml.safe_load(v)
            except yaml.YAMLError:
                out[k.lstrip("+~")] = v
    return out


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted leaf keys of a nested config (``{"model": {"depth": 2}}`` -> ``model.depth``)."""
    out: dict[str, Any] = {}
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict) and v:
                out.update(flatten(v, key))
            else:
                out[key] = v
    return out


def _add_varying_axes(records: list[TrialRecord]) -> None:
    """Add as axes the result-changing config leaves that differ between trials.

    A sweep's grid is whatever varies, and a study other than the CoT one varies
    other keys (``task.mix``, ``model.pos_encoding``); they become axes without
    anyone listing them.
    """
    flats = [
        {k: v for k, v in flatten(r.config).items() if k.split(".")[0] not in NON_RESULT_KEYS}
        for r in records
    ]
    keys = set().union(*flats) if flats else set()
    for key in sorted(keys):
        values = {json.dumps(f.get(key), sort_keys=True, default=str) for f in flats if key in f}
        if len(values) <= 1:
            continue
        name = AXIS_NAMES.get(key, key)
        for r, f in zip(records, flats, strict=True):
            if key in f and not isinstance(f[key], (dict, list)):
                r.axes.setdefault(name, f[key])


def _sort_key(axes: dict, tid: str) -> tuple:
    def part(v: Any) -> tuple:
        return (
            (0, v, "")
            if isinstance(v, (int, float)) and not isinstance(v, bool)
            else (1, 0, str(v))
        )

    return tuple(part(axes.get(k, "")) for k in ("task", "setting", "length", "depth", "seed")) + (
        tuple(sorted((k, str(v)) for k, v in axes.items() if k not in STANDARD_AXES)),
        tid,
    )


def grid_values(records: Iterable[TrialRecord], axis: str) -> list:
    """The distinct values of one axis, in natural order (settings as base, cot, hint)."""
    vals = {r.axes[axis] for r in records if axis in r.axes and r.axes[axis] is not None}
    if axis == "setting":
        order = {"base": 0, "cot": 1, "hint": 2}
        return sorted(vals, key=lambda s: (order.get(s, 9), str(s)))
    nums = sorted(v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool))
    return nums + sorted((v for v in vals if v not in nums), key=str)


def _dig(node: Any, key: str, default: Any) -> Any:
    """``node[a][b]`` for the dotted key ``a.b``, or ``default`` where a part is missing."""
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node
