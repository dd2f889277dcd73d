"""What one atomic write costs with and without its fsyncs, on the disk a sweep writes to.

``cotsweep.files.atomic_write`` writes a temporary file, fsyncs it, renames it
over the target and fsyncs the directory. The heartbeat, rewritten every 5 s
by every running trial, skips both fsyncs (``durable=False``). This times 200
small writes each way, alternating, in ``--dir`` (default: a temporary folder
under the current directory, so on the same file system as ``runs/``).

    .venv/bin/python benchmarks/fsync_cost.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from cotsweep import files


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, default=Path("."))
    p.add_argument("--writes", type=int, default=200)
    a = p.parse_args()
    beat = {"step": 100, "time": time.time(), "host": "node", "pid": 1, "started": 0.0}
    times: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(dir=a.dir, prefix=".cotsweep-fsync-") as tmp:
        path = Path(tmp) / "heartbeat.json"
        for i in range(a.writes):
            for durable in (True, False) if i % 2 else (False, True):
                t0 = time.perf_counter()
                files.write_json(path, beat, durable=durable)
                times[durable].append(time.perf_counter() - t0)
    d, n = statistics.median(times[True]), statistics.median(times[False])
    print(f"durable (file and directory fsynced): {d * 1e3:.2f} ms a write")
    print(f"not durable (renamed into place only): {n * 1e3:.2f} ms a write ({d / n:.1f}x less)")


if __name__ == "__main__":
    main()
