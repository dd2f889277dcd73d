"""A sweep's results as data: pandas DataFrames, `cotsweep export`, `cotsweep compare`.

    >>> from cotsweep.results import trials, curves
    >>> df = trials("runs/smoke")                  # one row per trial
    >>> df[df.state == "done"].groupby(["task", "setting"]).acc.mean()
    >>> c = curves("runs/smoke", metrics=["eval/acc"])   # metrics.jsonl rows, long
    >>> c.pivot_table(index="step", columns="setting", values="value")

:func:`trials` has a row per trial of the ledger: its id, state, attempts,
error, host and times; its axes (the keys its grid varies, as recorded, e.g.
``task``, ``model.depth``); every figure of its ``result.json`` (``acc``,
``chain_acc``, ``steps`` ... and the trial's ``task``, ``setting``, ``depth``,
``length``, ``seed``, which it always records); and the paths of its files.
:func:`curves` has a row per (trial, step, metric) of the trials'
``metrics.jsonl``, with the trial's axes beside it, ready for ``groupby`` and
seaborn. The trials' files are the record; the ledger adds the trials that
have none yet.

pandas (and pyarrow, for Parquet) is imported inside these functions only, so
the light verbs (status, logs) never pay for it.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cotsweep import files
from cotsweep.ledger import Ledger
from cotsweep.logs import attempts_logged, log_path
from cotsweep.selection import Selection, resolve

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("csv", "parquet", "jsonl")
LEDGER_COLUMNS = (
    "id",
    "state",
    "attempts",
    "error_kind",
    "error",
    "host",
    "started",
    "ended",
    "wall_s",
)
PATH_COLUMNS = ("dir", "config_path", "metrics_path", "checkpoint_path", "log_path")


def _rows(sweep_dir: Path, selection: Selection | None) -> tuple[list[dict], list[str]]:
    """The selected ledger rows (axes parsed), and the sweep's axis keys in first-seen order."""
    ledger = Ledger(sweep_dir, read_only=True)
    try:
        raw = ledger.select((*LEDGER_COLUMNS, "axes"))
    finally:
        ledger.close()
    sel = resolve(selection or Selection(), ((r[1], r[-1]) for r in raw))
    rows, axes = [], {}
    for r in raw:
        row = dict(zip(LEDGER_COLUMNS, r[:-1], strict=True))
        row["axes"] = json.loads(r[-1])
        for k in row["axes"]:
            axes.setdefault(k, None)
        if sel.matches(row["state"], row["axes"]):
            rows.append(row)
    # in grid order (axis by axis, numbers as numbers), not in the ledger's order of ids
    rows.sort(key=lambda r: (_natural(tuple(r["axes"].get(k) for k in axes)), r["id"]))
    return rows, list(axes)


def _figures(result: dict, prefix: str = "") -> dict[str, Any]:
    """A result.json's scalar figures, nested ones by dotted key."""
    out: dict[str, Any] = {}
    for k, v in result.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_figures(v, f"{key}."))
        elif v is None or isinstance(v, (int, float, str, bool)):
            out[key] = v
    return out


def trials(sweep_dir: Path | str, selection: Selection | None = None) -> pd.DataFrame:
    """Every trial of the sweep (or those ``selection`` takes) as one DataFrame row."""
    import pandas as pd

    sweep_dir = Path(sweep_dir)
    rows, axes = _rows(sweep_dir, selection)
    records = []
    for row in rows:
        tdir = sweep_dir / "trials" / row["id"]
        result = files.read_json(tdir / files.RESULT)
        rec: dict[str, Any] = {k: row[k] for k in LEDGER_COLUMNS}
        rec.update({k: row["axes"].get(k) for k in axes})
        if isinstance(result, dict):
            for k, v in _figures(result).items():
                rec.setdefault(k, v)  # an axis keeps its recorded value
        logged = attempts_logged(tdir)
        rec.update(
            dir=str(tdir),
            config_path=_if_exists(tdir / files.CONFIG),
            metrics_path=_if_exists(tdir / files.METRICS),
            checkpoint_path=_if_exists(tdir / files.CKPT),
            log_path=str(log_path(tdir, logged[-1])) if logged else None,
        )
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    if df.empty:
        df = pd.DataFrame(columns=[*LEDGER_COLUMNS, *axes, *PATH_COLUMNS])
    # the identity and state first, then axes, figures, paths
    figures = [c for c in df.columns if c not in (*LEDGER_COLUMNS, *axes, *PATH_COLUMNS)]
    return df[[*LEDGER_COLUMNS, *axes, *figures, *PATH_COLUMNS]]


def _if_exists(path: Path) -> str | None:
    return str(path) if path.exists() else None


def curves(
    sweep_dir: Path | str,
    selection: Selection | None = None,
    metrics: list[str] | None = None,
) -> pd.DataFrame:
    """The trials' metrics.jsonl as a long DataFrame: id, axes, step, metric, value.

    ``metrics``: only these keys (``["train/loss", "eval/acc"]``); all numeric ones by default.
    """
    import pandas as pd

    sweep_dir = Path(sweep_dir)
    rows, axes = _rows(sweep_dir, selection)
    wanted = set(metrics) if metrics else None
    ids, steps, names, values = [], [], [], []
    point: dict[str, dict] = {}
    for row in rows:
        point[row["id"]] = row["axes"]
        for m in files.read_jsonl(sweep_dir / "trials" / row["id"] / files.METRICS):
            step = m.get("step")
            if not isinstance(step, int):
                continue
            for k, v in m.items():
                if k == "step" or (wanted is not None and k not in wanted):
                    continue
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    ids.append(row["id"])
                    steps.append(step)
                    names.append(k)
                    values.append(float(v))
    df = pd.DataFrame({"id": ids, "step": steps, "metric": names, "value": values})
    for k in reversed(axes):
        df.insert(1, k, [point[i].get(k) for i in ids])
    return df


# ---------------------------------------------------------------- export
def export(
    sweep_dir: Path | str,
    fmt: str,
    out: Path | str | None = None,
    selection: Selection | None = None,
    what: str = "trials",
) -> Path:
    """Write :func:`trials` (or :func:`curves`, ``what="curves"``) as csv, parquet or jsonl.

    The file is written whole or not at all (a temporary file renamed over it);
    default: ``DIR/export/<what>.<fmt>``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt}: not one of {', '.join(FORMATS)}")
    sweep_dir = Path(sweep_dir)
    df = (curves if what == "curves" else trials)(sweep_dir, selection)
    path = Path(out) if out is not None else sweep_dir / "export" / f"{what}.{fmt}"
    if fmt == "csv":
        data: bytes | str = df.to_csv(index=False)
    elif fmt == "jsonl":
        data = df.to_json(orient="records", lines=True)
    else:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)  # pyarrow
        data = buf.getvalue()
    files.atomic_write(path, data)
    return path


# ---------------------------------------------------------------- compare
def compare(
    dir_a: Path | str,
    dir_b: Path | str,
    metrics: tuple[str, ...] = ("acc",),
    tolerance: float = 0.0,
) -> dict:
    """The grid points two sweeps share, side by side, and which of them differ.

    Points are matched on the axes both sweeps record (a rerun of the same grid
    with other code or another ``train.lr`` matches point for point); a trial with
    the same id on both sides had the same config. A point differs when its state
    differs or a metric differs by more than ``tolerance``.
    """
    a, b = trials(dir_a), trials(dir_b)
    axes_a = _axis_columns(Path(dir_a))
    axes_b = _axis_columns(Path(dir_b))
    common = [k for k in axes_a if k in axes_b]
    side_a, side_b = _by_point(a, common), _by_point(b, common)
    rows = []
    for key in sorted(set(side_a) & set(side_b), key=_natural):
        ra, rb = side_a[key], side_b[key]
        if len(ra) != 1 or len(rb) != 1:
            continue  # an axis only one side varies: no one-to-one point
        ra, rb = ra[0], rb[0]
        row = {
            "point": dict(zip(common, key, strict=True)),
            "id_a": ra["id"],
            "id_b": rb["id"],
            "same_config": ra["id"] == rb["id"],
            "state_a": ra["state"],
            "state_b": rb["state"],
        }
        differs = ra["state"] != rb["state"]
        for m in metrics:
            va, vb = _number(ra.get(m)), _number(rb.get(m))
            row[f"{m}_a"], row[f"{m}_b"] = va, vb
            delta = vb - va if va is not None and vb is not None else None
            row[f"{m}_delta"] = delta
            if (va is None) != (vb is None) or (delta is not None and abs(delta) > tolerance):
                differs = True
        row["differs"] = differs
        rows.append(row)
    matched_a = {r["id_a"] for r in rows}
    matched_b = {r["id_b"] for r in rows}
    # shown: the axes whose value differs between the points (a Hydra multirun records
    # every override of a job as an axis, constants too)
    shown = [k for k in common if len({json.dumps(r["point"][k], default=str) for r in rows}) > 1]
    return {
        "a": str(dir_a),
        "b": str(dir_b),
        "matched_on": common,
        "axes": shown,
        "metrics": list(metrics),
        "tolerance": tolerance,
        "points": rows,
        "differing": sum(r["differs"] for r in rows),
        "only_a": [i for i in a["id"] if i not in matched_a],
        "only_b": [i for i in b["id"] if i not in matched_b],
    }


def _axis_columns(sweep_dir: Path) -> list[str]:
    return _rows(sweep_dir, None)[1]


def _by_point(df: pd.DataFrame, axes: list[str]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for rec in df.to_dict("records"):
        key = tuple(_plain(rec.get(k)) for k in axes)
        out.setdefault(key, []).append(rec)
    return out


def _plain(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v.item() if hasattr(v, "item") else v  # numpy scalars from pandas


def _number(v: Any) -> float | None:
    v = _plain(v)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _natural(key: tuple) -> tuple:
    return tuple(
        (0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0, str(v))
        for v in key
    )


def render_comparison(cmp: dict) -> object:
    """The comparison as a rich table, differing points in bold red."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.4g}"

    table = Table(box=None, pad_edge=False, header_style="bold")
    for k in cmp["axes"]:
        table.add_column(k)
    table.add_column("A")
    table.add_column("B")
    for m in cmp["metrics"]:
        for col in (f"{m} A", f"{m} B", "Δ"):
            table.add_column(col, justify="right")
    table.add_column("")
    for r in cmp["points"]:
        cells = [escape(str(r["point"][k])) for k in cmp["axes"]] + [r["state_a"], r["state_b"]]
        for m in cmp["metrics"]:
            d = r[f"{m}_delta"]
            cells += [num(r[f"{m}_a"]), num(r[f"{m}_b"]), "-" if d is None else f"{d:+.4g}"]
        cells.append("differs" if r["differs"] else ("same config" if r["same_config"] else ""))
        table.add_row(*cells, style="bold red" if r["differs"] else None)
    head = (
        f"A {escape(cmp['a'])}\nB {escape(cmp['b'])}\n"
        f"{len(cmp['points'])} shared points on {', '.join(cmp['matched_on']) or 'no axis'}, "
        f"{cmp['differing']} differ"
        + (f" by more than {cmp['tolerance']}" if cmp["tolerance"] else "")
        + f"; {len(cmp['only_a'])} only in A, {len(cmp['only_b'])} only in B"
    )
    return Group(head, table)
