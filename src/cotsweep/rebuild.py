"""`cotsweep rebuild DIR`: a new ledger from what the trials wrote, when it is damaged or gone.

The ledger is the sweep's index, but every fact it holds about a trial's
progress was first written by the trial itself, so a damaged or deleted ledger
loses nothing the trials wrote:

* what each trial is (its grid point, axes and composed config) comes from the
  ledger itself where it can still be read, else from the copy kept whenever
  trials are added (``ledger.backup.sqlite``), else from the trial's own
  ``config.yaml`` (its axes then are the keys whose values differ between the
  trials);
* where it stands comes from its files alone: ``result.json`` (or a Hydra job's
  ``return.json``) means done; the journal (``attempts.jsonl``) gives the
  attempts since the last reset, the failed ones, and the last outcome (diverged,
  out of attempts, or a time limit: failed; anything else: pending, to resume
  from its checkpoint); the heartbeat and metrics give its step.

The old file (with its ``-wal`` and ``-shm``) is moved aside as
``ledger.sqlite.damaged-<time>``, never deleted. A sweep whose live driver
holds the ledger is refused (stop it first). Like `status`, this imports
neither torch nor Hydra nor Ray.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from cotsweep import files
from cotsweep.config import NON_RESULT_KEYS
from cotsweep.errors import LedgerError
from cotsweep.ledger import BACKUP, LEDGER, Ledger, driver_alive

RETURN_FILE = "return.json"  # a Hydra job's return value (the launcher writes it)
# journaled outcomes that spent one of a trial's attempts
FAILED_OUTCOMES = ("error", "lost", "stalled", "timeout", "diverged")


@dataclass
class Definition:
    id: str
    overrides: list[str]
    axes: dict
    config: str
    created: float


@dataclass
class Rebuilt:
    path: Path
    counts: dict[str, int]
    from_ledger: int = 0  # definitions read from the old ledger or its backup
    from_files: int = 0  # trials known only from their own directory
    kept_as: list[Path] = field(default_factory=list)
    source: str = "trial files"
    foreign: list[Path] = field(default_factory=list)  # directories holding another trial

    def summary(self) -> str:
        c = self.counts
        kept = f"; the old file is kept as {self.kept_as[0].name}" if self.kept_as else ""
        odd = (
            f"; skipped {len(self.foreign)} directories whose config.yaml is another trial's "
            f"({', '.join(p.name for p in self.foreign[:3])})"
            if self.foreign
            else ""
        )
        return (
            f"rebuilt {self.path}: {sum(c.values())} trials ({self.from_ledger} defined in the "
            f"{self.source}, {self.from_files} from their directories alone): {c['done']} done, "
            f"{c['failed']} failed, {c['pending']} pending{kept}{odd}. Continue with: "
            f"cotsweep resume {self.path.parent}"
        )


def rebuild(sweep_dir: Path | str) -> Rebuilt:
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / LEDGER
    _refuse_if_driven(sweep_dir)
    defs, meta, source = _definitions(path)
    if not defs:
        defs, meta, source = _definitions(sweep_dir / BACKUP)
    known, foreign = len(defs), []
    for tdir in sorted((sweep_dir / "trials").glob("*")):
        config = tdir / files.CONFIG
        if tdir.name in defs or not config.exists():
            continue
        text = config.read_text()
        if _trial_id(text) != tdir.name:  # another trial's files: not this trial's definition
            foreign.append(tdir)
            continue
        defs[tdir.name] = Definition(tdir.name, [], {}, text, config.stat().st_mtime)
    _derive_axes([d for d in defs.values() if not d.axes and not d.overrides], defs)

    work = sweep_dir / f".rebuild-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    ledger = Ledger(work, create=True)
    try:
        ledger.add_trials((d.id, d.overrides, d.axes, d.config) for d in defs.values())
        changes = []
        for d in defs.values():
            cols = {"created": d.created, **_state_from_files(sweep_dir, d)}
            changes.append((d.id, cols))
        ledger.update(changes, [(None, "rebuilt", f"from the {source} and the trial files")])
        ledger.set_meta(**{**meta, "rebuilt": str(time.time())})
        counts = ledger.counts()
    finally:
        ledger.close()
    kept = _set_aside(path)
    os.replace(work / LEDGER, path)
    files.fsync_dir(sweep_dir)
    shutil.rmtree(work, ignore_errors=True)
    final = Ledger(sweep_dir)
    try:
        final.backup()
    finally:
        final.close()
    return Rebuilt(path, counts, known, len(defs) - known, kept, source, foreign)


def _refuse_if_driven(sweep_dir: Path) -> None:
    try:
        ledger = Ledger(sweep_dir, read_only=True)
    except (LedgerError, FileNotFoundError):
        return  # unreadable or gone: nothing can be driving it
    try:
        driver = ledger.driver()
    except LedgerError:
        return
    finally:
        ledger.close()
    if driver is not None and driver_alive(driver):
        raise LedgerError(
            sweep_dir / LEDGER,
            f"ledger {sweep_dir / LEDGER} is held by a live driver (host {driver['host']}, PID "
            f"{driver['pid']}); stop it first: cotsweep stop {sweep_dir}",
        )


def _definitions(path: Path) -> tuple[dict[str, Definition], dict[str, str], str]:
    """What each trial is, from a ledger file that can still be read whole; else nothing."""
    if not path.exists():
        return {}, {}, "trial files"
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                return {}, {}, "trial files"
            rows = db.execute("SELECT id, overrides, axes, config, created FROM trials").fetchall()
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        finally:
            db.close()
    except sqlite3.Error:
        return {}, {}, "trial files"
    defs = {
        tid: Definition(tid, json.loads(ov), json.loads(ax), cfg, created)
        for tid, ov, ax, cfg, created in rows
    }
    return defs, meta, ("backup " + path.name) if path.name == BACKUP else "old ledger"


def _trial_id(config_yaml: str) -> str | None:
    from omegaconf import OmegaConf

    from cotsweep.ids import trial_id

    try:
        return trial_id(OmegaConf.create(config_yaml))
    except Exception:  # not a config at all
        return None


def _state_from_files(sweep_dir: Path, d: Definition) -> dict:
    """A trial's ledger columns from its own files (in the sweep's trials/ folder, wherever
    the sweep directory has moved; else where its config says)."""
    cfg = files.load_yaml(d.config) or {}
    out_dir = sweep_dir / "trials" / d.id
    if not out_dir.is_dir() and (cfg.get("run") or {}).get("out_dir"):
        out_dir = Path(cfg["run"]["out_dir"])
    max_attempts = int((cfg.get("resources") or {}).get("max_attempts") or 2)
    journal = files.journal_records(out_dir)
    attempts = sum(r.get("event", "start") == "start" for r in journal)
    ends = [r for r in journal if r.get("event") == "end"]
    failures = sum(r.get("status") in FAILED_OUTCOMES for r in ends)
    last = journal[-1] if journal and journal[-1].get("event") == "end" else None
    beat = files.read_json(out_dir / files.HEARTBEAT) or {}
    metrics = files.read_jsonl(out_dir / files.METRICS)
    cols: dict = {
        "attempts": attempts,
        "failures": failures,
        "step": beat.get("step", metrics[-1].get("step") if metrics else None),
        "heartbeat": beat.get("time"),
        "host": beat.get("host"),
        "state": "pending",
    }
    result = files.read_json(out_dir / files.RESULT)
    returned = sweep_dir / "trials" / d.id / RETURN_FILE
    if result is not None or returned.exists():
        done_file = out_dir / files.RESULT if result is not None else returned
        wall = (result or {}).get("wall_time_s")
        ended = done_file.stat().st_mtime
        cols.update(
            state="done",
            step=(result or {}).get("steps", cols["step"]),
            wall_s=wall,
            ended=ended,
            started=ended - wall if wall is not None else None,
        )
    elif last is not None and last.get("status") in FAILED_OUTCOMES:
        out_of_attempts = last["status"] in ("diverged", "timeout") or failures >= max_attempts
        cols.update(
            state="failed" if out_of_attempts else "pending",
            error=last.get("error"),
            error_kind=last["status"],
            traceback=last.get("traceback"),
            ended=last.get("time"),
        )
        if last.get("step") is not None:
            cols["step"] = last["step"]
    return cols


def _derive_axes(rows: list[Definition], defs: dict[str, Definition]) -> None:
    """Axes of trials known only from their config.yaml: the keys whose values differ between
    the sweep's trials (its grid, as far as the files can tell)."""
    if not rows:
        return
    flat = {d.id: _flatten(files.load_yaml(d.config) or {}) for d in defs.values()}
    keys = sorted({k for f in flat.values() for k in f})
    varying = [
        k for k in keys if len({json.dumps(f.get(k), default=str) for f in flat.values()}) > 1
    ]
    for d in rows:
        d.axes = {k: flat[d.id].get(k) for k in varying}
        d.overrides = [f"{k}={v}" for k, v in d.axes.items()]


def _flatten(cfg: dict, prefix: str = "") -> dict:
    out: dict = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if not prefix and k in NON_RESULT_KEYS:
            continue
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[key] = v
        else:
            out[key] = json.dumps(v, default=str)
    return out


def _set_aside(path: Path) -> list[Path]:
    """Move a damaged ledger and its WAL files aside (a stale WAL beside a new file would be
    replayed into it)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = []
    for suffix in ("", "-wal", "-shm"):
        f = path.with_name(path.name + suffix)
        if f.exists():
            dest = path.with_name(f"{path.name}.damaged-{stamp}{suffix}")
            os.replace(f, dest)
            kept.append(dest)
    return kept
