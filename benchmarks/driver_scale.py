"""The driver at 1,000 and 10,000 trials: its CPU per trial and its peak memory, with real Ray.

Issue 14: on a cluster the driver handed Ray every trial at once, so each
``ray.wait`` round scanned every trial in flight and each heartbeat pass read
every trial's heartbeat file (hours of driver CPU at 100,000 trials), and it
kept every row's parsed config for the whole sweep. Done means: the driver's
CPU per trial at 10,000 within 1.5x of that at 1,000.

Each measurement is one fresh interpreter running the engine's own functions
in-process: ``prepare`` (expansion, ledger) and then ``Driver.run`` on a sweep
of zero-step trials (``engine_overhead.yaml``: tiny model, a 16-example
evaluation, no W&B), on an embedded Ray of 2 CPUs; ``--work noop`` replaces
the trial by a remote function that returns at once, so that 10,000 trials
take minutes on a loaded machine and what is timed is the driver alone. With ``--cluster`` the
driver is told Ray's address, as ``cotsweep launch --address`` on a cluster
is, so it takes its cluster path (the window and the autoscaler request; before
them, every trial in flight). Figures per trial:

* ``run CPU/trial``: the driver process's CPU during ``Driver.run`` (Ray's
  in-process core worker threads included) divided by the trials;
* ``prepare CPU/trial``: expansion and ledger, grid expansion's own cost
  (issue 14's input part, not the driver loop);
* ``peak RSS``: the process's peak resident memory at the end.

``--baseline TREE`` runs another checkout in the same repetitions (see
sweep_split.py for how; ``git archive COMMIT | tar -x -C TREE``).

    .venv/bin/python benchmarks/driver_scale.py --trials 1000,10000 --cluster --reps 1 \\
        --baseline /tmp/before --json benchmarks/results/driver_scale-XXXX.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TREE = HERE.parent
HOOK = HERE / "sweep_split_hook"  # its finder imports cotsweep from the tree asked for
SWEEP = HERE / "engine_overhead.yaml"


def noop_trial(cfg_yaml: str, stop_file: str, *args: object) -> dict:
    """``--work noop``: a trial that does nothing and reports done (pickled by value)."""
    return {"status": "done", "attempts": 1, "host": "bench", "result": {"steps": 0}}


def child(trials: int, cluster: bool, sweep_dir: Path, noop: bool) -> dict:
    """One measurement, in this (fresh) process."""
    import cotsweep  # noqa: F401  (Ray's environment first)
    from cotsweep.sweep import cluster as ray_cluster
    from cotsweep.sweep import engine
    from cotsweep.sweep.engine import Driver, prepare

    if noop:  # the driver's own cost, without 25 ms of worker per trial to wait for
        engine._execute_one = noop_trial

    address = None
    ray_cluster.connect(num_cpus=2)  # started here, so launch's own start is not timed
    if cluster:
        import ray

        address = ray.get_runtime_context().gcs_address
    c0, w0 = time.process_time(), time.perf_counter()
    _, _, ledger = prepare(str(SWEEP), [f"seed=range(0,{trials})"], sweep_dir)
    c1, w1 = time.process_time(), time.perf_counter()
    rss_prepared = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        rows = ledger.trials(("pending",))
        out = Driver(ledger, address=address, progress=False).run(rows)
    finally:
        ledger.release()
        ledger.close()
    c2, w2 = time.process_time(), time.perf_counter()
    return {
        "trials": trials,
        "done": out.counts["done"],
        "prepare_cpu": c1 - c0,
        "prepare_wall": w1 - w0,
        "run_cpu": c2 - c1,
        "run_wall": w2 - w1,
        "rss_prepared_mb": rss_prepared / 1024,
        "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure(tree: Path, trials: int, cluster: bool, noop: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="cotsweep-scale-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(HOOK), "COTSWEEP_SPLIT_TREE": str(tree)}
        env.pop("COTSWEEP_SPLIT_OUT", None)
        cmd = [sys.executable, __file__, "--child", str(trials), str(Path(tmp) / "sweep")]
        cmd += (["--cluster"] if cluster else []) + (["--work", "noop"] if noop else [])
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp)
        if done.returncode != 0:
            raise SystemExit(
                f"{tree} at {trials}: failed\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
            )
        return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", default="1000,10000")
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--cluster", action="store_true", help="the driver's cluster path")
    p.add_argument("--tree", type=Path, default=TREE, help="the checkout to measure")
    p.add_argument("--baseline", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument(
        "--work",
        choices=("trial", "noop"),
        default="trial",
        help="noop: the remote function returns at once (the driver alone, at 10,000 in minutes)",
    )
    p.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(int(a.child[0]), a.cluster, Path(a.child[1]), a.work == "noop")))
        return
    trees = {"current": a.tree.resolve()} | (
        {"baseline": a.baseline.resolve()} if a.baseline else {}
    )
    names = ["baseline", "current"] if a.baseline else ["current"]
    sizes = [int(n) for n in a.trials.split(",")]
    runs: dict[str, dict[int, list[dict]]] = {n: {s: [] for s in sizes} for n in names}
    print(
        f"driver_scale: {'cluster' if a.cluster else 'embedded'} path, load {os.getloadavg()[0]:.1f}"
    )
    for rep in range(a.reps):
        for size in sizes:
            for n in names if rep % 2 == 0 else names[::-1]:
                r = measure(trees[n], size, a.cluster, a.work == "noop")
                r["load"] = os.getloadavg()[0]
                runs[n][size].append(r)
                print(
                    f"  {n} {size}: run CPU {r['run_cpu']:.1f} s ({1e3 * r['run_cpu'] / size:.2f} ms/trial),"
                    f" prepare CPU {r['prepare_cpu']:.1f} s, peak RSS {r['rss_peak_mb']:.0f} MB,"
                    f" {r['done']} done, load {r['load']:.1f}",
                    flush=True,
                )
    print(
        f"\n{'':10s}{'trials':>8s}{'run CPU ms/trial':>18s}{'prepare ms/trial':>18s}{'peak RSS MB':>13s}"
    )
    for n in names:
        per = {}
        for size in sizes:
            rs = runs[n][size]
            per[size] = statistics.median(1e3 * r["run_cpu"] / size for r in rs)
            prep = statistics.median(1e3 * r["prepare_cpu"] / size for r in rs)
            rss = statistics.median(r["rss_peak_mb"] for r in rs)
            print(f"{n:10s}{size:8d}{per[size]:18.2f}{prep:18.2f}{rss:13.0f}")
        if len(sizes) > 1:
            print(
                f"{n:10s} run CPU per trial, {sizes[-1]} / {sizes[0]}: {per[sizes[-1]] / per[sizes[0]]:.2f}x"
            )
    if a.json:
        a.json.write_text(
            json.dumps({"cluster": a.cluster, "work": a.work, "runs": runs}, indent=1)
        )


if __name__ == "__main__":
    main()
