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

One module per concern: :mod:`~cotsweep.tracking.mode` (credentials and mode),
:mod:`~cotsweep.tracking.runlog` (reading W&B's transaction logs),
:mod:`~cotsweep.tracking.runs` (starting and finishing a run),
:mod:`~cotsweep.tracking.mirror` (a trial's run, off the training thread),
:mod:`~cotsweep.tracking.sync` (``cotsweep sync``) and
:mod:`~cotsweep.tracking.summary` (the sweep's summary run).
"""

from cotsweep.tracking.mirror import Tracker, open_tracker, run_name, run_tags
from cotsweep.tracking.mode import api_key_configured, offline_notice, resolve_mode
from cotsweep.tracking.runlog import (
    WANDB_DIR,
    RunLog,
    last_logged_step,
    read_run_log,
    run_folders,
    transaction_records,
)
from cotsweep.tracking.summary import SUMMARY_RUN_FILE, accuracy_by_depth, log_sweep_summary
from cotsweep.tracking.sync import SyncError, offline_runs, sync_sweep

__all__ = [
    "SUMMARY_RUN_FILE",
    "WANDB_DIR",
    "RunLog",
    "SyncError",
    "Tracker",
    "accuracy_by_depth",
    "api_key_configured",
    "last_logged_step",
    "log_sweep_summary",
    "offline_notice",
    "offline_runs",
    "open_tracker",
    "read_run_log",
    "resolve_mode",
    "run_folders",
    "run_name",
    "run_tags",
    "sync_sweep",
    "transaction_records",
]
