"""Where a sweep's wall time goes: fixed costs, per-trial set-up, training, evaluation, files, W&B.

Issue 14: the smoke sweep took 2-3.5x what its training computes. This script
runs the real command line, ``cotsweep launch SWEEP --dir D --no-progress``
(W&B offline, the report at the end, exactly what README's first command
does), in a fresh interpreter, and splits its wall time:

* fixed costs, in the driver: interpreter and imports, composition and ledger,
  Ray start, Ray stop, the report and its W&B summary run, exit;
* per trial, in the workers, summed over the trials: the worker's imports
  (first trial of each worker process), config parse, set-up (validate, model,
  optimiser), training steps, the loop's own bookkeeping, evaluation,
  checkpoints, other files (config, result, heartbeat, metrics cut-back,
  attempts), W&B (open and finish of the trial's run) and the rest;
* the core-seconds no trial ran between the first submission and the last
  result (a core idle while the sweep's tail runs, scheduling gaps);
* CPU seconds by process just before Ray stops (Ray workers, Ray's daemons,
  wandb-core) and the driver's.

Against it stands the sweep's *bare compute*: each trial's training steps as
forward, backward and AdamW alone on one batch, one torch thread, timed here
(20 steps after 3 of warm-up, median per step, times the trial's steps),
summed over the trials and divided by the cores. The script prints
end-to-end / (bare / cores) and (end-to-end - Ray start) / (bare / cores);
issue 14 asks for the second to be at most 1.5 on the smoke sweep.

The phases are timed by ``sweep_split_hook/sitecustomize.py``, which the
launch finds first on PYTHONPATH: it wraps the named functions of whichever
checkout is launched, in the driver and in every Ray worker, and writes one
line per trial. ``--baseline TREE`` launches another checkout (say
``git archive HEAD~1 | tar -x -C /tmp/before``) in the same repetitions,
alternating the order, so both see the same machine; the figures to quote are
the medians and the per-repetition ratios (the machine is shared, its load
drifts within minutes).

Scenarios (``--scenario``, repeatable):

* ``smoke``: ``launch smoke``, 12 trials of 800 steps (README's first command);
* ``zero100``: ``launch smoke train.steps=0 setting=cot model.depth=1,2,3,4,5
  seed=range(0,10)``: 100 trials that build, evaluate 512 chain-of-thought
  examples once, mirror to W&B and write their files — per-trial cost alone.

    .venv/bin/python benchmarks/sweep_split.py --scenario smoke --scenario zero100 --reps 3 \\
        --baseline /tmp/before --json benchmarks/results/sweep_split-XXXX.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TREE = HERE.parent
HOOK = HERE / "sweep_split_hook"

SCENARIOS: dict[str, list[str]] = {
    "smoke": ["smoke"],
    "zero100": [
        "smoke",
        "train.steps=0",
        "setting=cot",
        "model.depth=1,2,3,4,5",
        "seed=range(0,10)",
    ],
    # a check of this script itself: 2 short trials
    "mini": ["smoke", "train.steps=40", "run.checkpoint_every=20", "task=modadd", "setting=cot"],
}

# per-trial phases as the hook names them, then what is derived from them
WORKER_PHASES = (
    "imports",
    "parse",
    "attempt",
    "setup",
    "steps",
    "loop",
    "eval",
    "checkpoint",
    "files",
    "tracking",
    "other",
)
DRIVER_PHASES = (
    "start+imports",
    "compose+ledger",
    "ray start",
    "sweep loop",
    "ray stop",
    "report",
    "report W&B run",
    "exit",
)


# ---------------------------------------------------------------- one launch
def launch_once(tree: Path, scenario: str, workdir: Path) -> dict[str, Any]:
    """``cotsweep launch`` of ``tree`` in a fresh interpreter, with the hook's timers."""
    sweep_dir, timings = workdir / "sweep", workdir / "timings"
    timings.mkdir(parents=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(HOOK),
        "COTSWEEP_SPLIT_OUT": str(timings),
        "COTSWEEP_SPLIT_TREE": str(tree),
        "WANDB_MODE": "offline",  # never the network, whatever this machine's W&B settings
        "WANDB_SILENT": "true",
    }
    code = "import sys; from cotsweep.cli import main; sys.exit(main(sys.argv[1:]))"
    sweep, *overrides = SCENARIOS[scenario]
    cmd = [sys.executable, "-c", code, "launch", sweep, *overrides]
    cmd += ["--dir", str(sweep_dir), "--no-progress"]
    t0 = time.time()
    done = subprocess.run(cmd, env=env, cwd=workdir, capture_output=True, text=True)
    e2e = time.time() - t0
    if done.returncode != 0:
        raise SystemExit(
            f"launch of {tree} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return split(t0, e2e, timings, sweep_dir)


def split(t0: float, e2e: float, timings: Path, sweep_dir: Path) -> dict[str, Any]:
    d = json.loads((timings / "driver.json").read_text())
    trials = [
        json.loads(line)
        for f in sorted(timings.glob("worker-*.jsonl"))
        for line in f.read_text().splitlines()
    ]
    ray_start, ray_stop = d.get("d_ray_start", 0.0), d.get("d_ray_stop", 0.0)
    report, report_wandb = d.get("d_report", 0.0), d.get("d_report_wandb", 0.0)
    compose = d.get("d_compose", 0.0)
    loop = d.get("d_run", 0.0) - ray_start - ray_stop
    driver = {
        "compose+ledger": compose,
        "ray start": ray_start,
        "sweep loop": loop,
        "ray stop": ray_stop,
        "report": report - report_wandb,
        "report W&B run": report_wandb,
        "exit": t0 + e2e - d["exit"],
    }
    driver["start+imports"] = e2e - sum(driver.values())

    per_trial = phases(trials, "")
    per_trial_cpu = phases(trials, "cpu_")
    busy = sum(t["total"] for t in trials)
    first = min((t["start"] for t in trials), default=t0)
    last = max((t["end"] for t in trials), default=t0)
    results = {}
    for r in (sweep_dir / "trials").glob("*/result.json"):
        res = json.loads(r.read_text())
        axes = (res["task"], res["setting"], res["depth"], res["length"], res["seed"])
        results["/".join(map(str, axes))] = res.get("acc")
    return {
        "e2e": e2e,
        "driver": driver,
        "per_trial": per_trial,
        "per_trial_cpu": per_trial_cpu,
        "trials": len(trials),
        "cold_workers": sum(1 for t in trials if t.get("cold")),
        "trial_wall_sum": busy,
        "trial_cpu_sum": sum(t.get("cpu", 0.0) for t in trials),
        "span": last - first,
        "driver_cpu": d.get("cpu"),
        "children_cpu": d.get("children_cpu", {}),
        "acc": results,
    }


def phases(trials: list[dict], prefix: str) -> dict[str, float]:
    """Each worker phase summed over the trials: wall (prefix "") or thread CPU ("cpu_")."""
    out = dict.fromkeys(WORKER_PHASES, 0.0)
    for t in trials:

        def g(k: str, t: dict = t) -> float:
            return t.get(prefix + k, 0.0)

        inner = g("setup") + g("steps") + g("eval") + g("checkpoint") + g("files")
        out["loop"] += g("run_trial") - inner
        outer = g("imports") + g("parse") + g("attempt") + g("run_trial") + g("tracking")
        out["other"] += g("total") - outer
        for k in WORKER_PHASES:
            if k not in ("loop", "other"):
                out[k] += g(k)
    return out


# ---------------------------------------------------------------- bare compute
def bare_compute(scenario: str, warmup: int = 3, steps: int = 20) -> dict[str, Any]:
    """Forward, backward and AdamW of every trial of the scenario, one thread, in CPU-seconds."""
    import torch

    from cotsweep.sweep.grid import expand
    from cotsweep.trial import build_model, validate

    torch.set_num_threads(1)
    sweep, *overrides = SCENARIOS[scenario]
    with tempfile.TemporaryDirectory(prefix="cotsweep-bare-") as tmp:
        trials = expand(sweep, overrides, Path(tmp))
    total, total_cpu, per = 0.0, 0.0, {}
    for trial in trials:
        cfg, t = trial.cfg, trial.cfg.train
        if t.steps == 0:
            continue
        task = validate(cfg)
        torch.manual_seed(0)
        model = build_model(cfg, task)
        # the reference optimiser, the same in every commit: torch's default AdamW
        opt = torch.optim.AdamW(
            model.parameters(), lr=t.lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay
        )
        gen = torch.Generator().manual_seed(0)
        batch = task.train_batch(t.batch_size, gen, torch.device("cpu"), 1)
        times, cpu = [], []
        for i in range(warmup + steps):
            s, c = time.perf_counter(), time.thread_time()
            loss = task.loss(model(batch.x), batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i >= warmup:
                times.append(time.perf_counter() - s)
                cpu.append(time.thread_time() - c)
        per[" ".join(trial.overrides)] = statistics.median(times) * t.steps
        total += per[" ".join(trial.overrides)]
        total_cpu += statistics.median(cpu) * t.steps
    return {"total": total, "cpu": total_cpu, "per_trial": per}


# ---------------------------------------------------------------- the report
def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def total_cpu(r: dict) -> float:
    """CPU seconds of the driver (report included) and of every process Ray and W&B started."""
    return (r["driver_cpu"] or 0.0) + sum(r["children_cpu"].values())


def show(
    scenario: str, runs: dict[str, list[dict]], bare: list[float], bare_cpu: list[float], cores: int
) -> dict:
    names = list(runs)
    print(f"\n=== {scenario}: medians of {len(runs[names[0]])} launches each", flush=True)
    bare_c = med(bare) / cores if bare else 0.0

    def row(label: str, get) -> None:
        vals = [med([get(r) for r in runs[n]]) for n in names]
        line = f"{label:34s}" + "".join(f"{v:12.2f}" for v in vals)
        if len(vals) == 2 and vals[0] > 0:
            line += f"{vals[1] / vals[0]:10.2f}x"
        print(line)

    print(
        f"{'':34s}"
        + "".join(f"{n:>12s}" for n in names)
        + ("     ratio" if len(names) == 2 else "")
    )
    row("end to end (s)", lambda r: r["e2e"])
    for k in DRIVER_PHASES:
        row(f"  {k}", lambda r, k=k: r["driver"][k])
    print("per trial, summed over the trials (s): wall | the trial thread's CPU")
    for k in WORKER_PHASES:
        row(f"  {k}", lambda r, k=k: r["per_trial"][k])
        row(f"  {k} (CPU)", lambda r, k=k: r["per_trial_cpu"][k])
    row("  = trials' task wall, summed", lambda r: r["trial_wall_sum"])
    row("  trials' worker CPU, summed", lambda r: r["trial_cpu_sum"])
    row(
        "core-s idle in the sweep loop", lambda r: max(0.0, cores * r["span"] - r["trial_wall_sum"])
    )
    row("driver CPU (s)", lambda r: r["driver_cpu"] or 0.0)
    for kind in ("ray workers", "ray daemons", "wandb-core"):
        row(f"CPU {kind} (s)", lambda r, kind=kind: r["children_cpu"].get(kind, 0.0))
    out: dict[str, Any] = {"bare_s": bare, "bare_cpu_s": bare_cpu, "cores": cores}
    row("CPU, every process (s)", total_cpu)
    if bare_cpu and med(bare_cpu) > 0:
        # what a loaded machine leaves comparable: CPU seconds, not waits for a core
        print(f"bare compute, CPU-s (one thread): {med(bare_cpu):.1f}")
        for n in names:
            ratio = med([total_cpu(r) for r in runs[n]]) / med(bare_cpu)
            out.setdefault(n, {})["cpu_over_bare_cpu"] = ratio
            print(f"  {n}: CPU of every process / bare CPU = {ratio:.2f}")
    if bare_c > 0:
        print(f"bare compute / cores (s): {bare_c:.2f} (bare {med(bare):.1f} s, {cores} cores)")
        for n in names:
            e2e = med([r["e2e"] for r in runs[n]])
            no_start = med([r["e2e"] - r["driver"]["ray start"] for r in runs[n]])
            out.setdefault(n, {}).update(
                e2e_over_bare=e2e / bare_c, e2e_minus_ray_start_over_bare=no_start / bare_c
            )
            print(
                f"  {n}: end to end / (bare / cores) = {e2e / bare_c:.2f}; "
                f"(end to end - Ray start) / (bare / cores) = {no_start / bare_c:.2f}"
            )
    if len(names) == 2:
        a, b = runs[names[0]], runs[names[1]]
        ratios = [y["e2e"] / x["e2e"] for x, y in zip(a, b, strict=True)]
        out["paired_e2e_ratios"] = ratios
        print(
            f"end to end, {names[1]} / {names[0]} per repetition: "
            + ", ".join(f"{x:.2f}" for x in ratios)
            + f" (median {med(ratios):.2f})"
        )
        diffs = [
            abs(x["acc"][k] - y["acc"][k])
            for x, y in zip(a, b, strict=True)
            for k in x["acc"].keys() & y["acc"].keys()
            if x["acc"][k] is not None and y["acc"][k] is not None
        ]
        out["max_acc_diff"] = max(diffs, default=None)
        print(
            f"largest difference of a trial's eval accuracy between the two: {out['max_acc_diff']}"
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", action="append", choices=list(SCENARIOS))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--tree", type=Path, default=TREE, help="the checkout to measure")
    p.add_argument("--baseline", type=Path, default=None, help="another checkout to pair with")
    p.add_argument("--no-bare", action="store_true", help="skip the bare-compute timing")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--keep", type=Path, default=None, help="keep the sweep dirs here")
    a = p.parse_args()
    scenarios = a.scenario or ["smoke"]
    trees = {"current": a.tree.resolve()} | (
        {"baseline": a.baseline.resolve()} if a.baseline else {}
    )
    names = ["baseline", "current"] if a.baseline else ["current"]
    cores = os.cpu_count() or 1
    print(
        f"sweep_split: {platform.processor() or platform.machine()}, {cores} cores, "
        f"load {os.getloadavg()[0]:.1f}; trees: " + ", ".join(f"{n}={trees[n]}" for n in names),
        flush=True,
    )
    record: dict[str, Any] = {"machine": platform.platform(), "cores": cores, "trees": {}}
    record["trees"] = {n: str(trees[n]) for n in names}
    base = Path(tempfile.mkdtemp(prefix="cotsweep-split-"))
    try:
        for scenario in scenarios:
            runs: dict[str, list[dict]] = {n: [] for n in names}
            bare: list[float] = []
            bare_cpu: list[float] = []
            for rep in range(a.reps):
                if not a.no_bare:
                    b = bare_compute(scenario)
                    bare.append(b["total"])
                    bare_cpu.append(b["cpu"])
                order = names if rep % 2 == 0 else names[::-1]
                for n in order:
                    work = base / f"{scenario}-{n}-{rep}"
                    work.mkdir()
                    load = os.getloadavg()[0]
                    r = launch_once(trees[n], scenario, work)
                    r["load"] = load
                    runs[n].append(r)
                    print(
                        f"  {scenario} rep {rep} {n}: {r['e2e']:.1f} s end to end, "
                        f"{r['trials']} trials, load {load:.1f}",
                        flush=True,
                    )
                    if a.keep is None:
                        shutil.rmtree(work, ignore_errors=True)
            summary = show(scenario, runs, bare, bare_cpu, cores)
            record[scenario] = {"runs": runs, "summary": summary}
    finally:
        if a.keep is not None:
            a.keep.mkdir(parents=True, exist_ok=True)
            for d in base.iterdir():
                shutil.move(str(d), a.keep / d.name)
        shutil.rmtree(base, ignore_errors=True)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
