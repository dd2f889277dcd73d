"""`cotsweep sync DIR`: upload a sweep's offline W&B runs (trials and summary run)."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from cotsweep.tracking.mode import api_key_configured
from cotsweep.tracking.runlog import WANDB_DIR, run_folders

SYNC_BATCH = 200  # run folders per `wandb sync` call: keeps the command line short


class SyncError(RuntimeError):
    """Offline runs cannot be uploaded (no API key, or `wandb sync` failed)."""


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
