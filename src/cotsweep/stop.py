"""`cotsweep stop DIR`: from any shell, stop a sweep the way a first Ctrl-C in its driver does.

Running trials checkpoint and return to pending; the driver exits with
``EXIT_STOPPED``; `cotsweep resume DIR` continues them. On the driver's own host
the driver named in the ledger's lease is sent SIGTERM; from any other host a
stop request file (``DIR/stop.request``) is written, which the driver polls
about once a second (the sweep directory is shared storage on a cluster).
Stopping again before the driver has left stops it at once, as a second Ctrl-C.

Like `status`, this stands on the bottom layer alone: no torch, Hydra or Ray.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from cotsweep import files
from cotsweep.ledger import STOP_REQUEST, Ledger, driver_alive


@dataclass
class StopOutcome:
    message: str
    stopped: bool  # the driver is gone now (False: it was asked, or there was none)
    asked: bool  # a driver was asked to stop


def stop(sweep_dir: Path | str, wait_s: float = 0.0, poll_s: float = 0.2) -> StopOutcome:
    """Ask the sweep's live driver to stop; wait up to ``wait_s`` for it to leave."""
    sweep_dir = Path(sweep_dir)
    driver = _lease(sweep_dir)
    if driver is None:
        return StopOutcome(f"no driver is running sweep {sweep_dir}: nothing to stop", False, False)
    who = f"host {driver['host']} PID {driver['pid']}"
    if not driver_alive(driver):
        return StopOutcome(
            f"the driver of {sweep_dir} ({who}) is gone already; its trials continue with: "
            f"cotsweep resume {sweep_dir}",
            False,
            False,
        )
    if driver["host"] == socket.gethostname():
        os.kill(driver["pid"], signal.SIGTERM)
        how = "sent SIGTERM"
    else:
        request = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
        files.atomic_write(sweep_dir / STOP_REQUEST, json.dumps(request) + "\n")
        how = f"wrote {sweep_dir / STOP_REQUEST}, which it polls"
    asked = f"asked the driver of {sweep_dir} ({who}) to stop: {how}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        now = _lease(sweep_dir)
        if now is None or now["pid"] != driver["pid"] or not driver_alive(now):
            return StopOutcome(
                f"{asked}; it stopped. Continue with: cotsweep resume {sweep_dir}", True, True
            )
        time.sleep(poll_s)
    tail = " (it has not left yet; stop again to stop at once)" if wait_s > 0 else ""
    return StopOutcome(
        f"{asked}; running trials checkpoint and return to pending{tail}. "
        f"Continue later with: cotsweep resume {sweep_dir}",
        False,
        True,
    )


def _lease(sweep_dir: Path) -> dict | None:
    ledger = Ledger(sweep_dir, read_only=True)
    try:
        return ledger.driver()
    finally:
        ledger.close()
