"""``cotsweep train -m`` through our Hydra launcher beside Hydra's basic launcher, same jobs.

Issue 14 measured the cotsweep launcher 1.48x slower than Hydra's basic
launcher on 50 zero-step trials (35.9 s against 24.3 s): it composed every job
from scratch and deep-copied each job's config twice. Done means no slower than
the basic launcher. This runs the real command line, in a fresh interpreter
each time, with the launchers alternating:

    cotsweep train -m seed=range(0,50) <a zero-step tiny trial> hydra/launcher=cotsweep|basic

(the cotsweep launcher starts its own embedded Ray on 2 CPUs and stops it;
the basic launcher runs the jobs one after the other in the Hydra process),
plus ``cotsweep launch`` of the same 50 trials for reference. Wall and CPU
(the process and its children) per run; medians and per-repetition ratios.
``--tree`` names the checkout measured (a snapshot, say ``git archive HEAD``,
so that work on this one does not change it mid-run); ``--baseline TREE`` adds
another checkout's cotsweep launcher in the same repetitions.

    .venv/bin/python benchmarks/hydra_launcher.py --jobs 50 --reps 3 --baseline /tmp/before
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
HOOK = HERE / "sweep_split_hook"  # its finder imports cotsweep (src, conf, sweeps) from a tree

TRIAL = [
    "model=tiny",
    "tracking=none",
    "run.device=cpu",
    "task.length=4",
    "train.steps=0",
    "train.eval_size=16",
]


def command(variant: str, jobs: int, out: Path) -> list[str]:
    grid = [f"seed=range(0,{jobs})", *TRIAL]
    cli = "import sys; from cotsweep.cli import main; sys.exit(main(sys.argv[1:]))"
    if variant == "launch":
        sweep = out.parent / "bench.yaml"
        sweep.write_text(
            "# @package _global_\nhydra:\n  sweeper:\n    params:\n"
            + f"      seed: range(0,{jobs})\n"
        )
        return [sys.executable, "-c", cli, "launch", str(sweep), *TRIAL, "--dir", str(out)] + [
            "--no-progress",
            "--no-report",
        ]
    launcher = "basic" if variant == "basic" else "cotsweep"
    return [
        sys.executable,
        "-c",
        cli,
        "train",
        "-m",
        *grid,
        f"hydra/launcher={launcher}",
        f"hydra.sweep.dir={out}",
    ]


def run_once(variant: str, tree: Path, jobs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="cotsweep-hydra-") as tmp:
        out = Path(tmp) / "sweep"
        env = {
            **os.environ,
            "PYTHONPATH": f"{HOOK}:{tree / 'src'}",  # the launcher plugin from the tree too
            "COTSWEEP_SPLIT_TREE": str(tree),
            "WANDB_MODE": "offline",
        }
        env.pop("COTSWEEP_SPLIT_OUT", None)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(
            command(variant, jobs, out), env=env, cwd=tmp, capture_output=True, text=True
        )
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"{variant} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        results = list(out.glob("trials/*/result.json")) + list(out.glob("*/result.json"))
        if len(results) != jobs:
            raise SystemExit(f"{variant}: {len(results)} results for {jobs} jobs")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=50)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--tree", type=Path, default=TREE, help="the checkout to measure")
    p.add_argument("--baseline", type=Path, default=None, help="another checkout")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    tree = a.tree.resolve()
    variants = [("basic", tree), ("cotsweep", tree), ("launch", tree)]
    if a.baseline:
        variants.insert(1, ("cotsweep-baseline", a.baseline.resolve()))
    runs: dict[str, list[dict]] = {v: [] for v, _ in variants}
    print(f"hydra_launcher: {a.jobs} zero-step jobs, load {os.getloadavg()[0]:.1f}", flush=True)
    for rep in range(a.reps):
        for name, tree in variants if rep % 2 == 0 else variants[::-1]:
            r = run_once(name.split("-")[0], tree, a.jobs)
            r["load"] = os.getloadavg()[0]
            runs[name].append(r)
            print(
                f"  rep {rep} {name}: {r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU, load {r['load']:.1f}",
                flush=True,
            )
    print(f"\n{'':20s}{'wall s':>10s}{'CPU s':>10s}{'wall / basic':>14s}{'CPU / basic':>13s}")
    for name, _ in variants:
        w = statistics.median(r["wall"] for r in runs[name])
        c = statistics.median(r["cpu"] for r in runs[name])
        rw = statistics.median(
            x["wall"] / b["wall"] for x, b in zip(runs[name], runs["basic"], strict=True)
        )
        rc = statistics.median(
            x["cpu"] / b["cpu"] for x, b in zip(runs[name], runs["basic"], strict=True)
        )
        print(f"{name:20s}{w:10.1f}{c:10.1f}{rw:13.2f}x{rc:12.2f}x")
    if a.json:
        a.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
