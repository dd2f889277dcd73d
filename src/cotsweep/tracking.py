"""W&B mirror of trials and sweeps: one run per trial, a summary run per sweep.

W&B is a mirror; a trial's own files (metrics.jsonl, result.json) are the
record. So nothing here may slow or break a trial:

* every W&B call runs on one background thread that owns the run; the training
  loop only puts rows on a queue, so a slow ``wandb.init`` (online, a bad
  network) or a W&B crash never holds up a step;
* the first W&B error is logged once and the tracker turns itself off; the
  trial goes on with its files.

Mode: ``auto`` is online when an API key is configured (``WANDB_API_KEY`` or a
netrc entry for the W&B host) and offline otherwise, so a machine without a key
never waits on the network. Offline runs live in ``<trial dir>/wandb/`` and
``cotsweep sync DIR`` uploads them (:func:`sync_sweep`).

Resume without duplicates: a retried or resumed trial continues the same run id
(resume="allow"), and replays the steps between its last checkpoint and where it
stopped. wandb 0.31 writes a new run folder for each offline resume and would
upload both copies of those steps, so before a run starts the tracker reads the
run's transaction logs already in the trial directory (the ``.wandb`` files, the
ground truth of what W&B has) and drops every row at or below their last step.
Each W&B row is sent whole (all of a step's metrics in one committed log call),
so a row is either wholly in the transaction log or not at all: after a crash
W&B ends up with exactly one row per step. On CPU the replayed values are those
already mirrored; elsewhere W&B keeps the first attempt's values for the
replayed steps while metrics.jsonl holds the replay's.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import re
import secrets
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

WANDB_DIR = "wandb"  # inside a trial directory (and a sweep directory, for its summary run)
SUMMARY_RUN_FILE = (
    "summary_run.json"  # in DIR/wandb: the sweep's summary run id, stable across reports
)
DEFAULT_INIT_TIMEOUT_S = 30.0  # wandb's own default is 90 s; WANDB_INIT_TIMEOUT still wins
FLUSH_TIMEOUT_S = 10.0  # how long finish waits for wandb-core to write the run's transaction log
SYNC_BATCH = 200  # run folders per `wandb sync` call: keeps the command line short

_notified: set[str] = set()  # offline notices already printed in this process
_live_runs = 0  # runs of this process between init and finish (wandb-core is shared by them)
_live_lock = threading.Lock()


class SyncError(RuntimeError):
    """Offline runs cannot be uploaded (no API key, or `wandb sync` failed)."""


# ---------------------------------------------------------------- mode and credentials
def _base_url() -> str:
    try:
        from wandb.sdk.lib import urls

        default = urls.DEFAULT_BASE_URL
    except Exception:  # an internal module that may move between wandb releases
        default = "https://api.wandb.ai"
    return os.environ.get("WANDB_BASE_URL") or default


def _netrc_path() -> Path:
    """Where wandb looks for a netrc file (NETRC, else ~/.netrc, else ~/_netrc)."""
    if os.environ.get("NETRC"):
        return Path(os.environ["NETRC"]).expanduser()
    home = Path("~/.netrc").expanduser()
    return (
        home
        if home.exists() or not Path("~/_netrc").expanduser().exists()
        else Path("~/_netrc").expanduser()
    )


def api_key_configured() -> bool:
    """Whether W&B credentials exist on this machine, found without any network call.

    The key itself is never returned, so it cannot leak into a config or a log.
    Without a netrc file this does not even import wandb (a second of start-up).
    """
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    if not _netrc_path().is_file():
        return False
    host = _base_url()
    try:
        from wandb.sdk.lib.wbauth import wbnetrc

        return wbnetrc.read_netrc_auth(host=host) is not None
    except ImportError:
        pass
    except Exception:  # a malformed entry: online would fail too
        return False
    import netrc
    from urllib.parse import urlsplit

    try:
        entries = netrc.netrc(str(_netrc_path()))
    except (OSError, netrc.NetrcParseError):
        return False
    hosts = {urlsplit(host).hostname, "api.wandb.ai"}
    return any(h and entries.authenticators(h) for h in hosts)


def resolve_mode(mode: str | None) -> str:
    """``online``, ``offline`` or ``disabled`` for a configured mode (auto|online|offline|disabled).

    ``auto`` follows WANDB_MODE when it is set, else online exactly when a key is
    configured. ``online`` without a key falls back to offline (wandb would
    otherwise stop the trial to ask for one).
    """
    mode = (mode or "auto").lower()
    if mode == "auto":
        env = os.environ.get("WANDB_MODE", "").lower()
        if env in ("online", "offline", "disabled"):
            mode = env
        elif env == "dryrun":
            mode = "offline"
        elif os.environ.get("WANDB_DISABLED", "").lower() in ("1", "true", "yes"):
            mode = "disabled"
        else:
            mode = "online" if api_key_configured() else "offline"
    if mode not in ("online", "offline", "disabled"):
        raise ValueError(f"tracking.wandb.mode={mode!r}: must be auto, online, offline or disabled")
    if mode == "online" and not api_key_configured():
        log.warning("W&B: mode online but no API key is configured; logging offline instead")
        mode = "offline"
    return mode


def offline_notice(target: Path | str, reason: str = "no API key") -> str:
    """The one line that tells a user where offline runs are and how to upload them."""
    return f"W&B is offline ({reason}): runs are saved under {target}; upload them with: cotsweep sync {target}"


def _notify_offline(target: Path, reason: str = "no API key") -> None:
    key = str(target)
    if key not in _notified:
        _notified.add(key)
        print(offline_notice(target, reason), file=sys.stderr, flush=True)


# ---------------------------------------------------------------- run identity
def _plain(value: Any) -> Any:
    return getattr(value, "value", value)  # enums (Setting) to their string


def run_name(cfg: DictConfig) -> str:
    """Readable run name task-setting-depth-length-seed, e.g. ``s5-cot-d1-n16-s0``."""
    return (
        f"{cfg.task.name}-{_plain(cfg.setting)}-d{cfg.model.depth}-n{cfg.task.length}-s{cfg.seed}"
    )


def run_tags(cfg: DictConfig) -> list[str]:
    """Tags from the grid axes (W&B filters on them), then the configured tags."""
    axes = [
        str(cfg.task.name),
        str(_plain(cfg.setting)),
        f"depth={cfg.model.depth}",
        f"n={cfg.task.length}",
        f"seed={cfg.seed}",
    ]
    extra = [str(t) for t in (OmegaConf.select(cfg, "tracking.wandb.tags") or [])]
    return list(dict.fromkeys(axes + extra))


def _sweep_name(cfg: DictConfig) -> str:
    return str(OmegaConf.select(cfg, "sweep.name") or "") or "train"


def _trial_config(cfg: DictConfig, trial_id: str) -> dict:
    data = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    data.pop("hydra", None)
    data["trial_id"] = trial_id
    return data


# ---------------------------------------------------------------- the trial's run
@dataclass
class _Row:
    step: int
    metrics: dict = field(default_factory=dict)


def _loggable(metrics: dict) -> dict:
    """Scalars only: W&B charts numbers; lists (per-step chain accuracy) stay in metrics.jsonl."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, bool))}


class Tracker:
    """Mirrors one trial to one W&B run (id = trial id), off the training thread.

    The trial loop calls :meth:`start`, :meth:`log` and :meth:`summary`; its
    caller calls :meth:`finish`. Each is cheap and never raises.
    """

    def __init__(self, cfg: DictConfig, trial_dir: Path, trial_id: str, mode: str):
        self.trial_dir = Path(trial_dir)
        self.trial_id = trial_id
        self.mode = mode
        w = cfg.tracking.wandb
        self._init_kwargs = dict(
            id=trial_id,
            project=w.project,
            entity=w.entity or None,
            group=_sweep_name(cfg),
            name=run_name(cfg),
            job_type=f"{cfg.task.name}-{_plain(cfg.setting)}",
            tags=run_tags(cfg),
            config=_trial_config(cfg, trial_id),
            dir=str(self.trial_dir),
        )
        self._ops: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._off = False  # set on the first error (from either thread): later calls do nothing
        self.error: str | None = None
        self.run_dir: Path | None = None  # the run folder this attempt writes, once started
        self.skipped_steps: list[int] = []  # replayed steps already in W&B, not logged again
        self._skip_upto = -1
        self._completed = (
            False  # a summary arrived: the trial finished, the run is "finished" not "failed"
        )

    # -- called by the trial (training thread): queue only
    def start(self, resume_step: int | None = None) -> None:
        if self._thread is not None or self._off:
            return
        self._thread = threading.Thread(
            target=self._work, args=(resume_step,), name=f"wandb-{self.trial_id}", daemon=True
        )
        self._thread.start()

    def log(self, metrics: dict, step: int) -> None:
        if not self._off:
            self._ops.put(("log", int(step), dict(metrics)))

    def summary(self, result: dict) -> None:
        if self._off:
            return
        self.start(None)  # a trial that never trained (a simulation) still gets its run
        self._ops.put(("summary", None, dict(result)))

    def finish(self) -> None:
        """Flush and close the run; waits for the W&B thread (uploads, when online)."""
        if self._thread is None:
            return
        self._ops.put(("finish", None, None))
        self._thread.join()
        self._thread = None

    # -- the W&B thread
    def _fail(self, what: str, err: BaseException) -> None:
        if not self._off:
            self._off = True
            self.error = f"{what}: {type(err).__name__}: {err}"
            log.error(
                "W&B mirror of trial %s turned off (%s); the trial goes on with its files",
                self.trial_id,
                self.error,
            )

    def _work(self, resume_step: int | None) -> None:
        run = None
        try:
            run = self._open(resume_step)
        except Exception as e:
            self._fail("wandb.init", e)
        pending: _Row | None = None
        last_sent = -1
        while True:
            op, step, data = self._ops.get()
            if op == "finish":
                break
            if self._off or run is None:
                continue
            try:
                if op == "log":
                    if step <= self._skip_upto:
                        if not self.skipped_steps or self.skipped_steps[-1] != step:
                            self.skipped_steps.append(step)
                        continue
                    if pending is not None and step != pending.step:
                        last_sent = self._send(run, pending, last_sent)
                        pending = None
                    pending = pending or _Row(step)
                    pending.metrics.update(_loggable(data))
                elif op == "summary":
                    pending = self._final_chart(data, pending, last_sent)
                    if pending is not None:
                        last_sent = self._send(run, pending, last_sent)
                        pending = None
                    run.summary.update(data)
                    self._completed = True
            except Exception as e:
                self._fail(f"wandb {op}", e)
        try:
            if not self._off and run is not None and pending is not None:
                self._send(run, pending, last_sent)
        except Exception as e:
            self._fail("wandb log", e)
        if run is not None:
            try:
                # an interrupted or failed attempt shows as failed until a later one finishes it
                _finish_run(run, exit_code=0 if self._completed and not self._off else 1)
            except Exception as e:
                self._fail("wandb finish", e)

    def _open(self, resume_step: int | None) -> Any:
        wandb_dir = self.trial_dir / WANDB_DIR
        # Before init creates this attempt's folder: what earlier attempts already mirrored.
        self._skip_upto = last_logged_step(wandb_dir, self.trial_id)
        wandb_dir.mkdir(parents=True, exist_ok=True)
        run, self.mode = _init_run(self.mode, self.trial_dir, **self._init_kwargs)
        # online, the server knows the last step even where the local logs were lost
        self._skip_upto = max(self._skip_upto, int(getattr(run, "starting_step", 0) or 0) - 1)
        self.run_dir = Path(run.dir).parent if getattr(run, "dir", None) else None
        if resume_step is not None:
            run.summary["resumed_from_step"] = resume_step
        return run

    def _send(self, run: Any, row: _Row, last_sent: int) -> int:
        if row.step <= last_sent or not row.metrics:
            return last_sent  # never rewind a run's steps
        run.log(row.metrics, step=row.step, commit=True)
        return row.step

    def _final_chart(self, result: dict, pending: _Row | None, last_sent: int) -> _Row | None:
        """Per-step chain accuracy as a native line chart, in the row of the final step."""
        per_step = result.get("chain_acc_per_step")
        step = result.get("steps")
        if not per_step or step is None:
            return pending
        if pending is None:
            if step <= max(last_sent, self._skip_upto):
                return None  # that row is already in W&B; the list stays in the summary
            pending = _Row(int(step))
        elif pending.step != step:
            return pending
        import wandb

        table = wandb.Table(
            columns=["chain_step", "chain_acc"], data=[[i + 1, v] for i, v in enumerate(per_step)]
        )
        pending.metrics["eval/chain_acc_per_step"] = wandb.plot.line(
            table, "chain_step", "chain_acc", title="chain accuracy per chain step"
        )
        return pending


def _init_run(mode: str, notice_dir: Path, **kwargs: Any) -> tuple[Any, str]:
    """``wandb.init`` resuming the run id; online, a failure falls back to offline.

    An online init that fails (no network, a refused key) costs the init
    timeout once; the run then goes on offline and `cotsweep sync` uploads it
    later. wandb 0.31 keeps a failed run's id busy in wandb-core ("run ID ... is
    in use"), so the fallback restarts wandb-core, which is only safe when no
    other run of this process is live; otherwise the error stands.
    """
    import wandb

    global _live_runs
    try:
        run = wandb.init(
            mode=mode, resume="allow", reinit="create_new", settings=_run_settings(), **kwargs
        )
    except Exception as e:
        with _live_lock:
            if mode != "online" or _live_runs:
                raise
            log.warning(
                "W&B online init of run %s failed (%s: %s); logging offline instead",
                kwargs.get("id"),
                type(e).__name__,
                e,
            )
            wandb.teardown()
            run = wandb.init(
                mode="offline",
                resume="allow",
                reinit="create_new",
                settings=_run_settings(),
                **kwargs,
            )
            mode = "offline"
        _notify_offline(notice_dir, "the W&B server could not be reached")
    with _live_lock:
        _live_runs += 1
    return run, mode


def _finish_run(run: Any, exit_code: int = 0) -> None:
    """Finish a run and wait until its transaction log is on disk."""
    global _live_runs
    try:
        run.finish(exit_code=exit_code)
        _wait_written(run)
    finally:
        with _live_lock:
            _live_runs -= 1


def _run_settings() -> Any:
    """Settings that keep W&B off the trial's path: no console capture, no system probes."""
    import wandb

    kw: dict[str, Any] = dict(
        console="off",  # the trial's own output (rich progress) stays untouched
        silent=True,  # one line of ours replaces wandb's banner
        disable_git=True,
        save_code=False,
        x_save_requirements=False,
        # System metrics start a sampler beside every trial and probe cloud metadata
        # servers over the network; trials report their own throughput instead.
        x_disable_stats=True,
    )
    # wandb reads its environment once per process; these two are read at each run so that
    # they agree with the mode this module resolved from the environment just now.
    kw["init_timeout"] = float(os.environ.get("WANDB_INIT_TIMEOUT") or DEFAULT_INIT_TIMEOUT_S)
    if os.environ.get("WANDB_BASE_URL"):
        kw["base_url"] = os.environ["WANDB_BASE_URL"]
    return wandb.Settings(**kw)


def open_tracker(cfg: DictConfig, trial_dir: Path | str, trial_id: str) -> Tracker | None:
    """The W&B mirror of one trial, or None when W&B is disabled. Never raises."""
    try:
        mode = resolve_mode(OmegaConf.select(cfg, "tracking.wandb.mode"))
    except Exception as e:
        log.error("W&B mirror off: %s", e)
        return None
    if mode == "disabled":
        return None
    trial_dir = Path(trial_dir)
    if mode == "offline":
        sweep_dir = OmegaConf.select(cfg, "sweep.dir") or ""
        _notify_offline(Path(sweep_dir) if sweep_dir else trial_dir)
    try:
        return Tracker(cfg, trial_dir, trial_id, mode)
    except Exception as e:
        log.error("W&B mirror of trial %s off: %s: %s", trial_id, type(e).__name__, e)
        return None


# ---------------------------------------------------------------- transaction logs
# A .wandb file is a LevelDB-style log: a 7-byte header (":W&B", magic 0xBEE1,
# version), then 32 KiB blocks of chunks (crc32 of type+data, length, type
# FULL/FIRST/MIDDLE/LAST); each record is a wandb_internal_pb2.Record.
_BLOCK, _CHUNK_HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def transaction_records(path: Path) -> Iterator[Any]:
    """The records of one run's .wandb file, stopping quietly at a torn or corrupt tail."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B transaction log")
    pos, parts = _CHUNK_HEADER, b""
    while pos + _CHUNK_HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _CHUNK_HEADER:  # block trailer
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + _CHUNK_HEADER])
        chunk = data[pos + _CHUNK_HEADER : pos + _CHUNK_HEADER + length]
        if len(chunk) < length or zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
            return
        pos += _CHUNK_HEADER + length
        if kind == _FULL:
            parts = chunk
        elif kind in (_FIRST, _MIDDLE):
            parts = chunk if kind == _FIRST else parts + chunk
            continue
        elif kind == _LAST:
            parts += chunk
        else:
            return
        record = pb.Record()
        record.ParseFromString(parts)
        parts = b""
        yield record


def _put(into: dict, item: Any) -> None:
    """Set one config/history/summary item; nested keys (a table's fields) become nested dicts."""
    value = json.loads(item.value_json)
    if item.key:
        into[item.key] = value
        return
    *parents, last = item.nested_key
    for k in parents:
        into = into.setdefault(k, {})
    into[last] = value


def _drop(into: dict, item: Any) -> None:
    *parents, last = [item.key] if item.key else list(item.nested_key)
    for k in parents:
        into = into.get(k, {})
    into.pop(last, None)


@dataclass
class RunLog:
    """What one W&B run folder holds, read back from its transaction log."""

    path: Path
    run_id: str
    start_time: float
    config: dict
    history: list[dict]  # one dict per row, with "_step"
    summary: dict
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)


def read_run_log(path: Path) -> RunLog:
    """Parse a run folder (or its .wandb file): config, history rows and summary."""
    path = Path(path)
    file = path if path.suffix == ".wandb" else next(path.glob("run-*.wandb"))
    out = RunLog(path=file.parent, run_id="", start_time=0.0, config={}, history=[], summary={})
    for rec in transaction_records(file):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out.run_id, out.name, out.group, out.job_type = (
                r.run_id,
                r.display_name,
                r.run_group,
                r.job_type,
            )
            out.tags = list(r.tags)
            out.start_time = r.start_time.seconds + r.start_time.nanos / 1e9
            for item in r.config.update:
                _put(out.config, item)
        elif kind == "config":
            for item in rec.config.update:
                _put(out.config, item)
        elif kind == "history":
            row: dict = {}
            for item in rec.history.item:
                _put(row, item)
            row.setdefault("_step", rec.history.step.num)
            out.history.append(row)
        elif kind == "summary":
            for item in rec.summary.update:
                _put(out.summary, item)
            for item in rec.summary.remove:
                _drop(out.summary, item)
    for k, v in list(out.config.items()):  # wandb stores each top-level key as {"value": ...}
        if isinstance(v, dict) and set(v) == {"value"}:
            out.config[k] = v["value"]
    return out


def run_folders(wandb_dir: Path, run_id: str | None = None) -> list[Path]:
    """Run folders under a wandb/ directory (all, or one id's), oldest first, links skipped."""
    wandb_dir = Path(wandb_dir)
    pattern = f"*/run-{run_id}.wandb" if run_id else "*/run-*.wandb"
    found = []
    for f in wandb_dir.glob(pattern):
        if f.parent.is_symlink():  # latest-run
            continue
        try:
            start = next(
                (
                    r.run.start_time.seconds + r.run.start_time.nanos / 1e9
                    for r in transaction_records(f)
                    if r.HasField("run")
                ),
                0.0,
            )
        except (OSError, ValueError):
            start = 0.0
        found.append((start, f.stat().st_mtime, f.parent))
    return [p for _, _, p in sorted(found)]


def _wait_written(run: Any, timeout: float = FLUSH_TIMEOUT_S) -> bool:
    """Wait until wandb-core has written the run's exit record to its transaction log.

    wandb 0.31's ``run.finish()`` can return before wandb-core has written the
    run's records (seen: a 7-byte file right after finish, complete a moment
    later). A retry of the trial in the same process reads that log to skip
    the steps W&B already has, so it must be complete first.
    """
    path = Path(getattr(run.settings, "sync_file", "") or "")
    if not path.name:
        return False
    deadline = time.monotonic() + timeout
    while True:
        try:
            if any(rec.HasField("exit") for rec in transaction_records(path)):
                return True
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            log.warning("W&B: %s is still incomplete after %.0f s", path, timeout)
            return False
        time.sleep(0.05)


def last_logged_step(wandb_dir: Path, run_id: str) -> int:
    """The highest history step any folder of this run holds (-1 when none)."""
    last = -1
    for folder in run_folders(wandb_dir, run_id):
        try:
            for rec in transaction_records(folder / f"run-{run_id}.wandb"):
                if rec.HasField("history"):
                    last = max(last, rec.history.step.num)
        except (OSError, ValueError):
            continue
    return last


# ---------------------------------------------------------------- sync
def offline_runs(sweep_dir: Path | str) -> dict[str, list[Path]]:
    """Offline run folders anywhere under a sweep (trials and summary), by run id, oldest first."""
    by_id: dict[str, list[Path]] = defaultdict(list)
    wandb_dirs = {
        p.parent
        for p in Path(sweep_dir).rglob("offline-run-*")
        if p.is_dir() and p.parent.name == WANDB_DIR
    }
    for wandb_dir in sorted(wandb_dirs):
        for folder in run_folders(wandb_dir):
            if folder.name.startswith("offline-run-"):
                rid = next(folder.glob("run-*.wandb")).stem.removeprefix("run-")
                by_id[rid].append(folder)
    return dict(by_id)


def _is_synced(folder: Path) -> bool:
    return all(f.with_suffix(".wandb.synced").exists() for f in folder.glob("run-*.wandb"))


def sync_sweep(sweep_dir: Path | str, *, dry_run: bool = False) -> int:
    """Upload every offline run of a sweep; returns how many runs are now fully uploaded.

    All folders of one run go in the same ``wandb sync`` call, which replays
    them one after another in order of start time (how wandb 0.31 continues a
    resumed run). Folders already uploaded are skipped. ``dry_run`` lists what
    would be uploaded without credentials or network, and returns that count.
    """
    runs = {
        rid: [f for f in folders if not _is_synced(f)]
        for rid, folders in offline_runs(sweep_dir).items()
    }
    runs = {rid: folders for rid, folders in runs.items() if folders}
    if not runs:
        return 0
    if not dry_run and not api_key_configured():
        raise SyncError(
            f"no W&B API key: set WANDB_API_KEY or run `wandb login`, then `cotsweep sync {sweep_dir}` again "
            f"({len(runs)} offline run(s) wait under {sweep_dir})"
        )
    batches: list[list[Path]] = [[]]
    for folders in runs.values():
        if batches[-1] and len(batches[-1]) + len(folders) > SYNC_BATCH:
            batches.append([])
        batches[-1].extend(folders)
    for batch in batches:
        cmd = [
            sys.executable,
            "-m",
            "wandb",
            "sync",
            *(["--dry-run"] if dry_run else []),
            *map(str, batch),
        ]
        # a real upload shows wandb's own progress on the terminal; a dry run stays quiet
        done = subprocess.run(cmd, capture_output=dry_run, text=True)
        if done.returncode != 0:
            raise SyncError(
                f"wandb sync failed with exit status {done.returncode}"
                + (f": {(done.stderr or done.stdout).strip()[-2000:]}" if dry_run else "")
            )
    if dry_run:
        return len(runs)
    return sum(all(_is_synced(f) for f in folders) for folders in runs.values())


# ---------------------------------------------------------------- the sweep's summary run
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
        run, mode = _init_run(
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
        _finish_run(finishing)
        if mode == "offline":
            _notify_offline(sweep_dir)
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
                _finish_run(run, exit_code=1)
            except Exception:
                pass
        return None
