"""The driver at 1,000 and 10,000 trials: its CPU per trial and its peak memory, with real Ray.

Issue 14: on a cluster the driver handed Ray every trial at once, so each
``ray.wait`` round scanned every trial in flight and each heartbeat pass read
every trial's heartbeat file (hours of driver CPU at 100,000 trials), and it
kept every row's parsed config for the whole sweep. Done means: the driver's
CPU per trial at 10,000 within 1.5x of that at 1,000.

Each measurement is one fresh interpreter running the engine's own functions
in-process: ``prepare`` (expansion, ledger) and then ``Driver.run`` on a sweep
of zero-step trials (``engine_overhead.yaml``: tiny model, a 16-example
evaluation, no W&B), on an embedded Ray of 2 CPUs; ``--work sleep:0.02``
replaces the trial by a remote function that sleeps 20 ms, so that results
trickle in as real trials' do (one or two per ``ray.wait`` round) while the
workers take no CPU: 10,000 trials take minutes even on a loaded machine, and
what is timed is the driver alone. With ``--cluster`` the
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


def sleeping_trial(seconds: float):
    """``--work sleep:S``: a trial that sleeps S seconds and reports done (pickled by value)."""

    def trial(cfg_yaml: str, stop_file: str, *args: object) -> dict:
        import time

        time.sleep(seconds)
        return {"status": "done", "attempts": 1, "host": "bench", "result": {"steps": 0}}

    return trial


def child(trials: int, cluster: bool, sweep_dir: Path, work: str) -> dict:
    """One measurement, in this (fresh) process."""
    import cotsweep  # noqa: F401  (Ray's environment first)
    from cotsweep.sweep import cluster as ray_cluster
    from cotsweep.sweep import engine
    from cotsweep.sweep.engine import Driver, prepare

    if work.startswith("sleep:"):  # the driver's own cost: results trickle in as real
        # trials' do, but the workers take no CPU from a loaded machine
        engine._execute_one = sleeping_trial(float(work.split(":")[1]))

    address = None
    ray_cluster.connect(num_cpus=2)  # started here, so launch's own start is not timed
    if cluster:
        import ray

        address = ray.get_runtime_context().gcs_address
    c0, w0 = time.process_time(), time.perf_counter()
    prepared = prepare(str(SWEEP), [f"seed=range(0,{trials})"], sweep_dir)
    # a Prepared since the lazy grid; a (dir, ids, ledger) tuple in older trees (--baseline)
    ledger = prepared.ledger if hasattr(prepared, "ledger") else prepared[2]
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


def measure(tree: Path, trials: int, cluster: bool, work: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="cotsweep-scale-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(HOOK), "COTSWEEP_SPLIT_TREE": str(tree)}
        env.pop("COTSWEEP_SPLIT_OUT", None)
        cmd = [sys.executable, __file__, "--child", str(trials), str(Path(tmp) / "sweep")]
        cmd += (["--cluster"] if cluster else []) + ["--work", work]
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
        default="trial",
        help="trial, or sleep:S (each trial's task sleeps S seconds: the driver alone)",
    )
    p.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(int(a.child[0]), a.cluster, Path(a.child[1]), a.work)))
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
                r = measure(trees[n], size, a.cluster, a.work)
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
