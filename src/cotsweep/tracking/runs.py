"""Starting and finishing a W&B run, for the trial mirror and the sweep's summary run alike.

``wandb.init`` resumes the run id and falls back to offline when an online init
fails; finishing waits until wandb-core has written the run's transaction log,
so that a retry in the same process reads it complete.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from cotsweep.tracking.mode import notify_offline
from cotsweep.tracking.runlog import transaction_records

log = logging.getLogger(__package__)  # one logger for the whole W&B mirror: cotsweep.tracking

DEFAULT_INIT_TIMEOUT_S = 30.0  # wandb's own default is 90 s; WANDB_INIT_TIMEOUT still wins
FLUSH_TIMEOUT_S = 10.0  # how long finish waits for wandb-core to write the run's transaction log

_live_runs = 0  # runs of this process between init and finish (wandb-core is shared by them)
_live_lock = threading.Lock()


def init_run(mode: str, notice_dir: Path, **kwargs: Any) -> tuple[Any, str]:
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
        notify_offline(notice_dir, "the W&B server could not be reached")
    with _live_lock:
        _live_runs += 1
    return run, mode


def finish_run(run: Any, exit_code: int = 0) -> None:
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
