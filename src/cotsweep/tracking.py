"""W&B mirror of a trial (placeholder until the tracking module lands: no tracking yet)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def open_tracker(cfg: Any, trial_dir: Path, trial_id: str) -> Any | None:
    return None
