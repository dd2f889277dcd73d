"""Grid expansion: CPU per trial, and the driver's peak memory while a big grid is recorded.

Issue 12 measured ~7-10 ms of CPU per trial to expand a sweep (a deep copy of an
OmegaConf tree and Hydra's override code per point, then OmegaConf's YAML), and
issue 11 a 100,000-point grid taking 9 min 22 s and 1.8 GB with no output. Two
measurements, each in a fresh interpreter:

* ``cpu``: the smoke sweep with a seed axis of S values (12 x S trials) composed,
  validated and written as YAML, as ``launch`` does before any trial runs: CPU
  seconds per trial (``time.process_time``, imports and the first composition
  excluded);
* ``peak``: a one-axis sweep of N seeds recorded into a new ledger by
  ``engine.prepare`` (the grid streamed into SQLite, or before this change
  expanded whole and then inserted): CPU, wall and the process's peak RSS.

``--baseline REV`` exports that commit's ``src``, ``conf`` and ``sweeps`` and
runs the same measurements against it, alternating with the current tree in
every repetition (the machine is shared: before and after come from the same
minutes). Medians and their ratio are printed and saved as JSON under
benchmarks/results/.

Run (docs/BENCHMARKS.md has the figures)::

    .venv/bin/python benchmarks/grid_expansion.py --baseline main --seeds 100 --reps 3 \\
        --peak-points 100000 --baseline-peak-points 10000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ONE_AXIS = """\
# @package _global_
defaults:
  - override /model: tiny
  - override /tracking: none
train:
  steps: 10
run:
  device: cpu
hydra:
  sweeper:
    params:
      seed: range(0,{n})
"""


# ---------------------------------------------------------------- what a child measures
def child_cpu(seeds: int) -> dict:
    from cotsweep.sweep import grid

    def yaml_of(t) -> str:
        return t.yaml if hasattr(t, "yaml") and isinstance(t.yaml, str) else grid.config_yaml(t.cfg)

    with tempfile.TemporaryDirectory() as tmp:
        for t in grid.expand("smoke", ["seed=0"], Path(tmp)):  # imports, Hydra's first compose
            yaml_of(t)
        start = time.process_time()
        trials = grid.expand("smoke", [f"seed=range(1,{1 + seeds})"], Path(tmp))
        for t in trials:
            yaml_of(t)
        cpu = time.process_time() - start
    return {"trials": len(trials), "cpu_s": cpu, "ms_per_trial": 1000 * cpu / len(trials)}


def child_peak(points: int) -> dict:
    from cotsweep.sweep import engine

    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "one_axis.yaml"
        sweep.write_text(ONE_AXIS.format(n=points))
        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            out = engine.prepare(str(sweep), [], Path(tmp) / "sweep", max_trials=points)
            ledger = out.ledger
        except TypeError:  # before this change: no max_trials, and a tuple back
            _, _, ledger = engine.prepare(str(sweep), [], Path(tmp) / "sweep")
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        recorded = ledger.counts()["pending"]
        ledger.release()
        ledger.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "points": points,
        "recorded": recorded,
        "cpu_s": cpu,
        "wall_s": wall,
        "ms_per_trial": 1000 * cpu / points,
        "peak_rss_mb": peak / 1024,
        "rss_before_mb": base_rss / 1024,
    }


# ---------------------------------------------------------------- the parent
def export(rev: str, into: Path) -> Path:
    """``rev``'s src, conf and sweeps, arranged as the installed package finds them."""
    blob = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "src", "conf", "sweeps"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    for name in ("conf", "sweeps"):
        (into / "src" / "cotsweep" / name).symlink_to(into / name)
    return into / "src"


def run_child(src: Path, mode: str, n: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "RAY_USAGE_STATS_ENABLED": "0"}
    r = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--n", str(n)],
        env=env,
        capture_output=True,
        text=True,
        cwd=src.parent,
        timeout=7200,
    )
    if r.returncode != 0:
        raise SystemExit(f"{mode} child under {src} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default=None, help="a git revision to compare with")
    ap.add_argument("--seeds", type=int, default=100, help="seed axis of the cpu measurement")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--peak-points", type=int, default=100_000)
    ap.add_argument("--baseline-peak-points", type=int, default=10_000)
    ap.add_argument("--child", choices=("cpu", "peak"), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "cpu":
        print(json.dumps(child_cpu(args.n)))
        return
    if args.child == "peak":
        print(json.dumps(child_peak(args.n)))
        return

    trees = {"current": ROOT / "src"}
    with tempfile.TemporaryDirectory(prefix="grid-bench-") as tmp:
        if args.baseline:
            trees["baseline"] = export(args.baseline, Path(tmp))
        cpu: dict[str, list[dict]] = {k: [] for k in trees}
        for rep in range(args.reps):
            order = list(trees) if rep % 2 == 0 else list(reversed(trees))
            for k in order:
                cpu[k].append(run_child(trees[k], "cpu", args.seeds))
                print(
                    f"cpu  {k:8s} rep {rep}: {cpu[k][-1]['ms_per_trial']:.3f} ms/trial", flush=True
                )
        peak = {"current": run_child(trees["current"], "peak", args.peak_points)}
        print(f"peak current : {json.dumps(peak['current'])}", flush=True)
        if args.baseline and args.baseline_peak_points:
            peak["baseline"] = run_child(trees["baseline"], "peak", args.baseline_peak_points)
            print(f"peak baseline: {json.dumps(peak['baseline'])}", flush=True)

    med = {k: statistics.median(r["ms_per_trial"] for r in v) for k, v in cpu.items()}
    summary = {
        "machine": f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        "seeds": args.seeds,
        "trials": cpu["current"][0]["trials"],
        "ms_per_trial_median": med,
        "cpu_runs": cpu,
        "peak": peak,
    }
    if "baseline" in med:
        summary["speedup"] = med["baseline"] / med["current"]
        print(
            f"median ms/trial: baseline {med['baseline']:.3f}, current {med['current']:.3f}: "
            f"{summary['speedup']:.1f}x faster"
        )
    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    out = ROOT / "benchmarks" / "results" / f"grid_expansion-{rev}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
