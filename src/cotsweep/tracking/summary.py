"""The sweep's summary run (job type ``summary``): every trial in a table, the report's plots,
native charts of accuracy against depth. One run id per sweep directory, so every report
continues the same run."""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from cotsweep.tracking.mode import notify_offline, resolve_mode
from cotsweep.tracking.runlog import WANDB_DIR, last_logged_step
from cotsweep.tracking.runs import finish_run, init_run

log = logging.getLogger(__package__)  # one logger for the whole W&B mirror: cotsweep.tracking

SUMMARY_RUN_FILE = (
    "summary_run.json"  # in DIR/wandb: the sweep's summary run id, stable across reports
)

_SCALAR = (str, int, float, bool, type(None))
_AXES = ("trial_id", "task", "setting", "depth", "length", "seed", "state")


def _summary_run_id(sweep_dir: Path, sweep_name: str) -> str:
    """One id per sweep directory, kept in DIR/wandb so every report continues the same run."""
    path = sweep_dir / WANDB_DIR / SUMMARY_RUN_FILE
    try:
        return json.loads(path.read_text())["id"]
    except (OSError, ValueError, KeyError):
        pass
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", sweep_name or "sweep").strip("-")[:40] or "sweep"
    rid = f"{slug}-summary-{secrets.token_hex(3)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"id": rid}) + "\n")
    return rid


def _table_columns(rows: Sequence[dict]) -> list[str]:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    first = [k for k in _AXES if k in keys]
    return first + [k for k in keys if k not in first and k != "eval"]


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, _SCALAR) else json.dumps(value)


def accuracy_by_depth(rows: Iterable[dict]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Per task, per series "setting n=length": (depth, mean accuracy over seeds) of done trials."""
    acc: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.get("state", "done") != "done" or not isinstance(r.get("acc"), (int, float)):
            continue  # failed and missing trials are gaps, not zeros
        if any(r.get(k) is None for k in ("task", "setting", "length", "depth")):
            continue
        acc[(r["task"], f"{r['setting']} n={r['length']}")][int(r["depth"])].append(float(r["acc"]))
    out: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(dict)
    for (task, series), by_depth in sorted(acc.items()):
        out[task][series] = [(d, sum(v) / len(v)) for d, v in sorted(by_depth.items())]
    return dict(out)


def log_sweep_summary(
    sweep_dir: Path | str,
    sweep_name: str,
    rows: list[dict],
    images: list[Path],
    cfg_tracking: Any = None,
) -> str | None:
    """One summary run per sweep (job type ``summary``): trials table, report plots, native charts.

    Returns the run id, or None when W&B is disabled or failed (logged; the
    report itself is never affected).
    """
    wcfg: dict[str, Any] = {"mode": "auto", "project": "cotsweep", "entity": None, "tags": []}
    if cfg_tracking is not None:  # the tracking node ({wandb: {...}}) or its wandb node
        node = OmegaConf.to_container(OmegaConf.create(cfg_tracking), resolve=True)
        wcfg.update(node if "mode" in node else node.get("wandb") or {})
    try:
        mode = resolve_mode(wcfg["mode"])
    except ValueError as e:
        log.error("W&B summary run off: %s", e)
        return None
    if mode == "disabled":
        return None
    sweep_dir = Path(sweep_dir)
    run = None
    try:
        import wandb

        rid = _summary_run_id(sweep_dir, sweep_name)
        step = last_logged_step(sweep_dir / WANDB_DIR, rid) + 1
        run, mode = init_run(
            mode,
            sweep_dir,
            id=rid,
            project=wcfg["project"] or "cotsweep",
            entity=wcfg["entity"] or None,
            group=sweep_name or "train",
            name=f"{sweep_name or 'sweep'}-summary",
            job_type="summary",
            tags=["summary", *[str(t) for t in wcfg["tags"] or []]],
            config={
                "sweep": sweep_name,
                "sweep_dir": str(sweep_dir.resolve()),
                "trials": len(rows),
            },
            dir=str(sweep_dir),
        )
        step = max(step, int(getattr(run, "starting_step", 0) or 0))
        columns = _table_columns(rows)
        table = wandb.Table(
            columns=columns,
            data=[[_cell(r.get(c)) for c in columns] for r in rows],
            allow_mixed_types=True,
        )
        payload: dict[str, Any] = {"trials": table}
        for image in images:
            if Path(
                image
            ).is_file():  # a plot the report could not draw is not a reason to lose the table
                payload[f"report/{Path(image).stem}"] = wandb.Image(str(image))
        for task, series in accuracy_by_depth(rows).items():
            names = list(series)
            payload[f"acc_vs_depth/{task}"] = wandb.plot.line_series(
                xs=[[d for d, _ in series[s]] for s in names],
                ys=[[a for _, a in series[s]] for s in names],
                keys=names,
                title=f"{task}: accuracy against depth",
                xname="depth",
            )
        run.log(payload, step=step, commit=True)
        states: dict[str, int] = defaultdict(int)
        for r in rows:
            states[str(r.get("state", "done"))] += 1
        run.summary.update({f"trials/{k}": v for k, v in states.items()})
        finishing, run = run, None
        finish_run(finishing)
        if mode == "offline":
            notify_offline(sweep_dir)
        return rid
    except Exception as e:
        log.error(
            "W&B summary run of sweep %s failed (%s: %s); the report is unaffected",
            sweep_name,
            type(e).__name__,
            e,
        )
        if run is not None:
            try:
                finish_run(run, exit_code=1)
            except Exception:
                pass
        return None
