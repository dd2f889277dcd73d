"""W&B runs in one process: does each trial start its own wandb-core, or share one?

A Ray worker runs trial after trial in one process. This opens and finishes
``--runs`` offline runs one after the other in this process, as the trial
mirror does (``cotsweep.tracking.runs.init_run`` / ``finish_run``), and prints
each one's init and finish time and the wandb-core processes alive beside it.

    .venv/bin/python benchmarks/wandb_service.py --runs 3
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def wandb_core_children() -> list[int]:
    me, out = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == me and b"wandb-core" in cmd:
            out.append(int(entry))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    from cotsweep.tracking.runs import finish_run, init_run

    with tempfile.TemporaryDirectory(prefix="cotsweep-wandb-") as tmp:
        d = Path(tmp)
        for i in range(a.runs):
            t0 = time.perf_counter()
            run, _ = init_run("offline", d, id=f"run{i}", project="bench", dir=str(d / f"r{i}"))
            t1 = time.perf_counter()
            run.log({"x": 1.0}, step=1)
            finish_run(run)
            t2 = time.perf_counter()
            print(
                f"run {i}: init {t1 - t0:.2f} s, finish {t2 - t1:.2f} s, "
                f"wandb-core processes of this one: {wandb_core_children()}",
                flush=True,
            )


if __name__ == "__main__":
    main()
