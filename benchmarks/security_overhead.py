"""What the loopback-only embedded Ray and the secret check cost, side by side with what they replaced.

Two probes, each alternating its two variants over the repetitions (the machine
is shared and its load drifts; only side-by-side figures mean anything):

* ``ray``: the embedded Ray's start, two first tasks, and stop.
  ``before``: ``ray.init`` as ``cluster.connect`` called it until this change
  (node IP 127.0.0.2, so every server on all interfaces; metrics export on; the
  token in ~/.ray/auth_token). ``after``: ``cluster.connect()`` and
  ``cluster.shutdown()`` (node IP 127.0.0.1 kept by ``loopback_node``, metrics
  export off, a fresh 0600 token file).
* ``expand``: composing and validating a grid of N points
  (``cotsweep.sweep.grid.expand``), with the secret check (``after``) and with
  ``refuse_secrets`` replaced by a no-op (``before``).

Run (docs/BENCHMARKS.md has the figures)::

    .venv/bin/python benchmarks/security_overhead.py --reps 3 --points 500
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cotsweep  # noqa: F401  (sets Ray's environment before ray is imported)

HERE = Path(__file__).resolve().parent


def _pid() -> int:
    return os.getpid()


def ray_start(variant: str) -> tuple[float, float, float]:
    import ray

    from cotsweep.sweep import cluster

    t0 = time.perf_counter()
    if variant == "before":
        ray.init(
            address="local",
            _node_ip_address="127.0.0.2",
            include_dashboard=False,
            dashboard_host="127.0.0.2",
            log_to_driver=False,
            logging_level="WARNING",
        )
    else:
        cluster.connect()
    t1 = time.perf_counter()
    ray.get([ray.remote(_pid).options(num_cpus=1).remote() for _ in range(2)])
    t2 = time.perf_counter()
    cluster.shutdown()
    return t1 - t0, t2 - t1, time.perf_counter() - t2


def expand_time(variant: str, points: int, tmp: Path) -> float:
    import cotsweep.trial as trial
    from cotsweep.sweep.grid import expand

    real = trial.refuse_secrets
    if variant == "before":
        trial.refuse_secrets = lambda cfg: None
    try:
        t0 = time.perf_counter()
        n = len(expand(str(HERE / "engine_overhead.yaml"), [f"seed=range(0,{points})"], tmp))
        took = time.perf_counter() - t0
    finally:
        trial.refuse_secrets = real
    assert n == points
    return took


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--points", type=int, default=500)
    ap.add_argument("--probes", default="ray,expand")
    args = ap.parse_args(argv)
    probes = args.probes.split(",")
    print(f"python {sys.version.split()[0]}, load average {os.getloadavg()}", flush=True)
    if "ray" in probes:
        rows: dict[str, list[tuple[float, float, float]]] = {"before": [], "after": []}
        for rep in range(args.reps):
            for v in ("before", "after") if rep % 2 == 0 else ("after", "before"):
                rows[v].append(ray_start(v))
                i, f, s = rows[v][-1]
                print(
                    f"ray rep {rep} {v:<6} init {i:5.2f}s  first tasks {f:5.2f}s  stop {s:5.2f}s",
                    flush=True,
                )
        for v, r in rows.items():
            med = [statistics.median(x) for x in zip(*r, strict=True)]
            print(
                f"ray {v:<6} medians: init {med[0]:.2f}s  first tasks {med[1]:.2f}s  stop {med[2]:.2f}s"
            )
        ratio = statistics.median(
            a[0] / b[0] for a, b in zip(rows["after"], rows["before"], strict=True)
        )
        print(f"ray init after/before, median of per-repetition ratios: {ratio:.2f}")
    if "expand" in probes:
        times: dict[str, list[float]] = {"before": [], "after": []}
        with tempfile.TemporaryDirectory() as tmp:
            expand_time("after", 20, Path(tmp))  # warm Hydra and the imports
            for rep in range(args.reps):
                for v in ("before", "after") if rep % 2 == 0 else ("after", "before"):
                    times[v].append(expand_time(v, args.points, Path(tmp)))
                    print(
                        f"expand rep {rep} {v:<6} {times[v][-1]:.2f}s for {args.points} points",
                        flush=True,
                    )
        for v, t in times.items():
            print(
                f"expand {v:<6} median {statistics.median(t):.2f}s ({statistics.median(t) / args.points * 1e3:.2f} ms/point)"
            )
        ratio = statistics.median(
            a / b for a, b in zip(times["after"], times["before"], strict=True)
        )
        print(f"expand after/before, median of per-repetition ratios: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
