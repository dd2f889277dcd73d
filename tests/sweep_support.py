"""Shared pieces of the sweep-engine tests: tiny sweep files and ledger reads."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

TINY = """\
# @package _global_
defaults:
  - override /model: tiny
  - override /tracking: {tracking}
{extra}train:
  steps: {steps}
  eval_every: {eval_every}
  eval_size: 64
  warmup_steps: 5
  batch_size: 32
task:
  length: 3
run:
  log_every: 10
  checkpoint_every: {ckpt}
  device: cpu
resources:
  cpus: 1
  max_attempts: 2
hydra:
  sweeper:
    params:
{params}
"""


def sweep_file(
    tmp: Path,
    name: str,
    params: dict,
    steps: int = 40,
    ckpt: int = 20,
    eval_every: int = 20,
    tracking: str = "none",
    extra: str = "",
) -> Path:
    """A tiny sweep file; ``extra`` is YAML put at its top level (ending in a newline)."""
    lines = "\n".join(f"      {k}: {v}" for k, v in params.items())
    path = tmp / f"{name}.yaml"
    path.write_text(
        TINY.format(
            steps=steps,
            eval_every=eval_every,
            ckpt=ckpt,
            params=lines,
            tracking=tracking,
            extra=extra,
        )
    )
    return path


def ledger_rows(sweep_dir: Path) -> dict[str, dict]:
    """Every trial row of the ledger; none while a driver is still creating it."""
    db = sqlite3.connect(sweep_dir / "ledger.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return {r["id"]: dict(r) for r in db.execute("SELECT * FROM trials")}
    except sqlite3.OperationalError:  # the file exists, its tables not yet
        return {}
    finally:
        db.close()


def losses(trial_dir: Path) -> list[tuple[int, float]]:
    out = []
    for line in (trial_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "train/loss" in r:
            out.append((r["step"], r["train/loss"]))
    return out


def dedent(s: str) -> str:
    return textwrap.dedent(s)


def start_driver(
    sweep: Path, sweep_dir: Path, max_concurrent: int, capture: bool = False
) -> subprocess.Popen:
    """`cotsweep launch` in its own process and process group, as a user's terminal runs it."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    cmd = [
        sys.executable,
        "-m",
        "cotsweep.cli",
        "launch",
        str(sweep),
        "--dir",
        str(sweep_dir),
        "--no-progress",
        "--no-report",
        "--max-concurrent",
        str(max_concurrent),
    ]
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(
        cmd,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT if capture else subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
