"""Timers for benchmarks/sweep_split.py, in every process of one benchmarked launch.

``sweep_split.py`` puts this folder first on PYTHONPATH of the launch it times,
so Python runs this file at start-up in the driver and in every Ray worker
(they inherit the driver's environment). Nothing of cotsweep is edited: when a
cotsweep module is imported, the functions named in ``PHASES`` are wrapped with
timers right after the module has run, before anyone binds them. Each Ray task
(one trial) writes one JSON line of its phases to ``$COTSWEEP_SPLIT_OUT``; the
driver writes its own phases and the CPU time of the processes it started when
it exits.

``COTSWEEP_SPLIT_TREE`` names the checkout whose ``src/``, ``conf/`` and
``sweeps/`` are imported (so a commit before can be timed beside this one, in
the same run). A function that a commit does not have is simply not timed.
With ``COTSWEEP_SPLIT_TREE`` alone (no ``COTSWEEP_SPLIT_OUT``) nothing is
timed: the checkout is only chosen (benchmarks/driver_scale.py).
"""

from __future__ import annotations

import atexit
import functools
import importlib.abc
import importlib.machinery
import json
import os
import sys
import threading
import time
from pathlib import Path

OUT = os.environ.get("COTSWEEP_SPLIT_OUT")
TREE = os.environ.get("COTSWEEP_SPLIT_TREE")

# module -> {attribute path: phase}. Phases of one trial are disjoint: nothing listed
# here calls another listed function, except where noted (the outer one is kept
# separately and the inner one is subtracted in sweep_split.py).
PHASES: dict[str, dict[str, str]] = {
    "cotsweep.files": {
        "load_yaml": "parse",
        "atomic_write": "files",
        "record_attempt": "attempt",
    },
    "cotsweep.trial": {
        "validate": "setup",
        "build_training": "setup",
        "load_checkpoint": "setup",
        "train_step": "steps",
        "evaluate": "eval",
        "save_checkpoint": "checkpoint",
        "run_trial": "run_trial",  # outer: everything of the trial but the worker's own part
    },
    "cotsweep.tracking": {"open_tracker": "tracking"},
    "cotsweep.tracking.mirror": {"Tracker.finish": "tracking"},
    # driver side
    "cotsweep.sweep.engine": {"prepare": "d_compose", "Driver.run": "d_run"},
    "cotsweep.sweep.cluster": {"connect": "d_ray_start", "shutdown": "d_ray_stop"},
    "cotsweep.cli": {"write_report": "d_report", "mirror_report": "d_report_wandb"},
}

_local = threading.local()  # the phases of the trial this thread runs
_driver: dict[str, float] = {}
_worker_pid = os.getpid()


def _add(phase: str, dt: float, cpu: float) -> None:
    acc = getattr(_local, "acc", None)
    if acc is not None:
        acc[phase] = acc.get(phase, 0.0) + dt
        acc[f"cpu_{phase}"] = acc.get(f"cpu_{phase}", 0.0) + cpu
    elif phase.startswith("d_"):
        _driver[phase] = _driver.get(phase, 0.0) + dt


def _timed(fn, phase: str):
    """Wall and this thread's CPU time of each call (the CPU share is what a loaded machine
    leaves comparable: wall time there is mostly waiting for a core)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            _add(phase, time.perf_counter() - t0, time.thread_time() - c0)

    return wrapper


def _timed_execute(fn):
    """One trial in a worker: its phases, its wall and CPU, the imports it paid for."""

    @functools.wraps(fn)
    def wrapper(cfg_yaml, *args, **kwargs):
        _local.acc = acc = {}
        t0, c0, w0 = time.perf_counter(), time.process_time(), time.time()
        tc0 = time.thread_time()
        cold = "cotsweep.trial" not in sys.modules
        if cold:  # what execute imports first, timed here once per worker process
            import cotsweep.tracking  # noqa: F401
            import cotsweep.trial  # noqa: F401

            acc["imports"] = time.perf_counter() - t0
            acc["cpu_imports"] = time.thread_time() - tc0
        try:
            out = fn(cfg_yaml, *args, **kwargs)
        finally:
            _local.acc = None
        acc["total"] = time.perf_counter() - t0
        acc["cpu_total"] = time.thread_time() - tc0  # this thread: the trial's critical path
        acc["cpu"] = time.process_time() - c0  # the whole worker, W&B's thread included
        line = {
            "pid": os.getpid(),
            "start": w0,
            "end": time.time(),
            "cold": cold,
            "status": out.get("status") if isinstance(out, dict) else None,
            **acc,
        }
        with open(Path(OUT) / f"worker-{os.getpid()}.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        return out

    return wrapper


def _patch(module) -> None:
    for path, phase in PHASES.get(module.__name__, {}).items():
        owner, _, name = path.rpartition(".")
        target = getattr(module, owner) if owner else module
        fn = getattr(target, name, None)
        if fn is not None:
            setattr(target, name, _timed(fn, phase))
    if module.__name__ == "cotsweep.sweep.worker" and hasattr(module, "execute"):
        module.execute = _timed_execute(module.execute)
    if module.__name__ == "cotsweep.sweep.engine" and hasattr(module, "Driver"):
        finish = getattr(module.Driver, "_finish", None)
        if finish is not None:

            def first_last(self, *a, **kw):
                now = time.time()
                _driver.setdefault("d_first_result", now)
                _driver["d_last_result"] = now
                return finish(self, *a, **kw)

            module.Driver._finish = first_last
    if module.__name__ == "cotsweep.sweep.cluster" and hasattr(module, "shutdown"):
        shutdown = module.shutdown

        def snapshot_then_shutdown(*a, **kw):
            _driver["children_cpu"] = _children_cpu()
            return shutdown(*a, **kw)

        module.shutdown = snapshot_then_shutdown


# ---------------------------------------------------------------- CPU by process
def _stat(pid: int) -> tuple[int, str, float] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    f = raw[raw.rindex(")") + 2 :].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(f[1]), name, (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / tick


def _kind(pid: int, name: str) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        cmd = ""
    if "wandb-core" in name or "wandb-core" in cmd or "wandb" in name:
        return "wandb-core"
    if "default_worker" in cmd or name.startswith("ray::"):
        return "ray workers"
    return "ray daemons"


def _children_cpu() -> dict[str, float]:
    """CPU seconds of every live descendant of this process, by kind."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            s = _stat(int(entry))
            if s is not None:
                stats[int(entry)] = s
    me, out = os.getpid(), {}
    for pid, (ppid, name, cpu) in stats.items():
        p, seen = ppid, 0
        while p not in (me, 0, 1) and p in stats and seen < 64:
            p, seen = stats[p][0], seen + 1
        if p == me:
            k = _kind(pid, name)
            out[k] = out.get(k, 0.0) + cpu
    return out


@atexit.register
def _write_driver() -> None:
    if OUT and os.getpid() == _worker_pid and _driver:
        _driver["cpu"] = time.process_time()
        _driver["exit"] = time.time()
        (Path(OUT) / "driver.json").write_text(json.dumps(_driver))


# ---------------------------------------------------------------- imports from TREE, wrapped
class _Loader(importlib.abc.Loader):
    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):  # resource readers (Hydra's pkg:// configs), is_package...
        return getattr(self.inner, name)

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        if OUT:
            _patch(module)


class _Finder(importlib.abc.MetaPathFinder):
    """cotsweep from TREE (src/, conf/, sweeps/), every module's loader wrapped by ``_patch``.

    (The Hydra launcher plugin, a namespace package, is left to the installed checkout.)"""

    def __init__(self, tree: Path):
        self.roots = {
            "cotsweep": tree / "src" / "cotsweep",
            "cotsweep.conf": tree / "conf",
            "cotsweep.sweeps": tree / "sweeps",
        }

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] != "cotsweep":
            return None
        if fullname in self.roots:
            root = self.roots[fullname]
            spec = importlib.machinery.PathFinder.find_spec(fullname, [str(root.parent)])
            if spec is None or Path(spec.origin or "").parent != root:
                init = root / "__init__.py"
                spec = importlib.util.spec_from_file_location(
                    fullname, init, submodule_search_locations=[str(root)]
                )
        else:
            parent = sys.modules.get(fullname.rpartition(".")[0])
            search = list(getattr(parent, "__path__", []) or [])
            spec = importlib.machinery.PathFinder.find_spec(fullname, search)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


if TREE:
    import importlib.util

    sys.meta_path.insert(0, _Finder(Path(TREE)))
