"""`cotsweep status` on a 10,000-trial ledger: wall time of the real command, and what it imports.

Issue 12 asks that ``status`` answer in well under half a second on a
10,000-trial ledger, without importing torch, Hydra or Ray. This script builds
such a ledger once (real trial configs composed by Hydra, a realistic mix of
done / failed / running / pending trials with walls, errors and tracebacks),
then runs the real command in a fresh subprocess, several times, and prints the
median:

* ``status``: ``cotsweep status DIR`` (the command line a user types);
* ``status --json``: the same, JSON out;
* ``import cli``: only ``from cotsweep.cli import main`` — what every verb imports;
* ``import status``: the CLI and the module ``status`` runs on (``cotsweep.status``;
  ``cotsweep.sweep.engine`` before issue 12) — the light path's import cost;
* ``python``: ``python -c pass`` — the interpreter's own floor on this machine;
* ``status filtered``: ``status DIR task=cvp setting=base`` (filters checked against the
  ledger, every figure narrowed to the trials they take);
* ``status --watch``: one refresh of the live table (the ledger has no live driver, so
  it draws once and returns): the ledger, plus each running trial's heartbeat and
  metrics tail. These two run on trees that have them (not on a baseline before them).

``--baseline-src DIR`` runs every variant a second time against another
checkout's ``src/`` (e.g. an export of main before the change), alternating
order with the current one in each repetition, so before/after figures come
from the same minutes of a shared, noisy machine. It also prints which of
torch, hydra, ray, omegaconf and wandb each ``status`` imported.

Run (docs/BENCHMARKS.md has the figures)::

    git archive 97a1b39 src | tar -x -C /tmp/cotsweep-before
    .venv/bin/python benchmarks/status_latency.py --trials 10000 --reps 7 \
        --baseline-src /tmp/cotsweep-before/src
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "hydra", "ray", "omegaconf", "wandb")
SRC = Path(__file__).resolve().parents[1] / "src"


def build_ledger(sweep_dir: Path, trials: int, seed: int = 0) -> None:
    """A ledger like a big sweep's: real composed configs, every state, errors with tracebacks."""
    from omegaconf import OmegaConf

    from cotsweep.compose import compose_trial

    try:
        from cotsweep.ledger import Ledger
    except ImportError:  # before issue 12 the ledger lived in the sweep package
        from cotsweep.sweep.ledger import Ledger

    rng = random.Random(seed)
    base = {task: compose_trial([f"task={task}"]) for task in ("modadd", "s5", "isq", "cvp")}
    settings, depths, lengths = ("base", "cot", "hint"), range(1, 7), (4, 8, 12, 16, 24, 32, 48)
    seeds = range(max(1, -(-trials // (len(base) * len(settings) * len(depths) * len(lengths)))))
    rows = []
    for task in base:
        for setting in settings:
            for depth in depths:
                for length in lengths:
                    for s in seeds:
                        if len(rows) == trials:
                            break
                        cfg = copy.deepcopy(base[task])
                        cfg.setting, cfg.model.depth, cfg.task.length, cfg.seed = (
                            setting,
                            depth,
                            length,
                            s,
                        )
                        cfg.run.out_dir = str(sweep_dir / "trials" / f"{len(rows):012x}")
                        axes = {
                            "task": task,
                            "setting": setting,
                            "model.depth": depth,
                            "task.length": length,
                            "seed": s,
                        }
                        rows.append(
                            (
                                f"{len(rows):012x}",
                                [f"{k}={v}" for k, v in axes.items()],
                                axes,
                                OmegaConf.to_yaml(cfg, resolve=True),
                            )
                        )
    ledger = Ledger(sweep_dir, create=True)
    ledger.add_trials(rows)
    ledger.set_meta(name="status_bench", source="benchmark", last_overrides="[]")
    now, changes = time.time(), []
    for i, (tid, *_rest) in enumerate(rows):
        u = rng.random()
        start = now - 3600 + i * 0.3
        if u < 0.6:
            wall = rng.uniform(20, 60)
            changes.append(
                (
                    tid,
                    {
                        "state": "done",
                        "attempts": 1,
                        "started": start,
                        "ended": start + wall + 2,
                        "wall_s": wall,
                        "step": 2000,
                        "host": "node-1",
                    },
                )
            )
        elif u < 0.65:
            changes.append(
                (
                    tid,
                    {
                        "state": "failed",
                        "attempts": 2,
                        "started": start,
                        "ended": start + 5,
                        "error": "RuntimeError: CUDA out of memory",
                        "error_kind": "error",
                        "traceback": "Traceback (most recent call last):\n"
                        + '  File "x.py", line 1, in f\n' * 60
                        + "RuntimeError: CUDA out of memory",
                        "host": "node-2",
                    },
                )
            )
        elif u < 0.651:
            changes.append((tid, {"state": "running", "started": now - 30, "host": "node-1"}))
    ledger.update(changes)
    ledger.close()


def command(variant: str, sweep_dir: Path, src: Path) -> list[str]:
    # Every variant puts its src/ first on sys.path, so the current checkout and a
    # baseline one pay exactly the same start-up.
    boot = f"import sys; sys.path.insert(0, {str(src)!r}); "
    if variant == "python":
        return [sys.executable, "-c", "pass"]
    if variant == "import cli":
        return [sys.executable, "-c", boot + "from cotsweep.cli import main"]
    if variant == "import status":
        # before issue 12 status lived in the sweep engine
        module = (
            "cotsweep.status"
            if (src / "cotsweep" / "status.py").exists()
            else "cotsweep.sweep.engine"
        )
        return [sys.executable, "-c", boot + f"from cotsweep.cli import main; import {module}"]
    extra = {
        "status --json": ["--json"],
        "status filtered": ["task=cvp", "setting=base"],
        "status --watch": ["--watch"],
    }
    args = ["status", str(sweep_dir), *extra.get(variant, [])]
    return [sys.executable, "-c", boot + "from cotsweep.cli import main; sys.exit(main())", *args]


def time_once(cmd: list[str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run of ``cmd``.

    On a shared machine under load the wall time grows with the queue for the
    cores; the CPU time barely does, and on an idle machine the two agree.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def heavy_imports(sweep_dir: Path, src: Path) -> list[str]:
    """Which heavy packages `cotsweep status` has imported by the time it returns."""
    code = (
        f"import sys; sys.path.insert(0, {str(src)!r}); from cotsweep.cli import main; "
        f"main(['status', {str(sweep_dir)!r}, '--json']); "
        f"print('\\n@@' + ' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.rsplit("@@", 1)[1].split()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=10_000)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--baseline-src", type=Path, default=None, help="another checkout's src/")
    p.add_argument(
        "--dir", type=Path, default=None, help="keep the ledger here (default: a tmp dir)"
    )
    p.add_argument("--json", type=Path, default=None, help="write the raw figures here")
    a = p.parse_args()

    trees = {"current": SRC} | ({"baseline": a.baseline_src.resolve()} if a.baseline_src else {})
    with tempfile.TemporaryDirectory(prefix="cotsweep-status-bench-") as tmp:
        sweep_dir = (a.dir or Path(tmp)) / "sweep"
        if not (sweep_dir / "ledger.sqlite").exists():
            t0 = time.perf_counter()
            build_ledger(sweep_dir, a.trials)
            print(f"built a {a.trials}-trial ledger in {time.perf_counter() - t0:.1f} s")
        size = (sweep_dir / "ledger.sqlite").stat().st_size / 2**20
        print(f"ledger: {sweep_dir / 'ledger.sqlite'} ({size:.1f} MiB), load {os.getloadavg()}")
        variants = ("python", "import cli", "import status", "status", "status --json")
        variants += ("status filtered", "status --watch")
        has = {
            t: [v for v in variants if "filtered" not in v and "watch" not in v]
            + (
                ["status filtered", "status --watch"]
                if (src / "cotsweep" / "watch.py").exists()
                else []
            )
            for t, src in trees.items()
        }
        walls: dict[str, dict[str, list[float]]] = {t: {v: [] for v in has[t]} for t in trees}
        cpus: dict[str, dict[str, list[float]]] = {t: {v: [] for v in has[t]} for t in trees}
        for t, src in trees.items():  # warm the page cache and .pyc files; not timed
            for v in has[t]:
                time_once(command(v, sweep_dir, src))
        for rep in range(a.reps):
            order = list(trees) if rep % 2 == 0 else list(reversed(trees))
            for name in order:
                for v in has[name]:
                    wall, cpu = time_once(command(v, sweep_dir, trees[name]))
                    walls[name][v].append(wall)
                    cpus[name][v].append(cpu)
        imported = {name: heavy_imports(sweep_dir, src) for name, src in trees.items()}

    for label, figures in (("wall", walls), ("CPU (user + system)", cpus)):
        print(f"\nmedian {label} over {a.reps} runs (s); min-max in brackets")
        head = f"{'variant':<16}" + "".join(f"{t:>24}" for t in trees)
        print(head + ("   ratio" if len(trees) > 1 else ""))
        for v in variants:
            cells = []
            for t in trees:
                w = figures[t].get(v)
                cells.append(
                    f"{statistics.median(w):.3f} [{min(w):.3f}-{max(w):.3f}]" if w else "-"
                )
            line = f"{v:<16}" + "".join(f"{c:>24}" for c in cells)
            if len(trees) > 1 and all(figures[t].get(v) for t in trees):
                ratio = statistics.median(figures["baseline"][v]) / statistics.median(
                    figures["current"][v]
                )
                line += f"   {ratio:.1f}x"
            print(line)
    for t, mods in imported.items():
        print(f"{t}: status imported {', '.join(mods) if mods else 'none of ' + ', '.join(HEAVY)}")
    if a.json:
        a.json.write_text(
            json.dumps(
                {
                    "trials": a.trials,
                    "reps": a.reps,
                    "load": os.getloadavg(),
                    "walls": walls,
                    "cpu": cpus,
                    "heavy_imports": imported,
                    "trees": {t: str(s) for t, s in trees.items()},
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
