"""Engine overhead: trials per second of cotsweep's sweep engine beside Ray Tune's, on embedded Ray.

Issue 3 asks that the engine itself cost little: a sweep of at least 500 trials
that train 0 steps should run at 20 trials/s or more on a 2-core machine, and
ahead of Ray Tune running the same trials through ``Tuner`` with a grid. So
this script runs, in one process and one sitting (the machine is shared and
its load drifts, so only side-by-side figures mean anything):

* ``cotsweep``: ``cotsweep.sweep.engine.launch`` on ``engine_overhead.yaml``
  (tiny model, 0 steps, a 16-example evaluation, no tracking), Ray started and
  stopped by the engine itself, progress bar and report off;
* ``tune-noop``: a Tune function trainable that only reports — Tune's own floor;
* ``tune-trial``: a Tune trainable doing what a 0-step cotsweep trial does in
  its worker (config from YAML, ``run_trial``: validate, build the tiny model,
  evaluate once, write config.yaml, metrics.jsonl and result.json).

Both run on embedded Ray bound to loopback, started by ``cotsweep.sweep.cluster``
(so with identical ``ray.init`` arguments and environment), one CPU per trial.
Tune runs with ``reuse_actors=True``, its fastest setting (its default, False,
starts a new actor process per trial and is an order of magnitude slower here;
``--tune-reuse-actors false`` measures it). The variants alternate order over
the repetitions; medians, ratios of medians and medians of the per-repetition
ratios are printed.

Three rates per run, all in trials per second:

* ``e2e``: trials / (call start .. return): composition, ledger, Ray start and
  stop, scheduling, result files — what a user waits for;
* ``no_ray_start``: the same without the ``ray.init`` time;
* ``steady``: (trials - 1) / (first result .. last result), seen by the driver.

``--profile DIR`` runs the cotsweep sweep once under cProfile (driver side) and
times the worker function in-process, printing where the time goes.
``--experiment NAME`` adds a variant of cotsweep with an engine change tried by
monkeypatching, in the driver or, through a Ray worker set-up hook, in the
workers (the engine files are not edited here); see EXPERIMENTS.
``--probe-ray-start`` times Ray's start, first tasks and stop with and without
a job runtime_env. Where a 0-step trial fails in the checkout (see
:func:`zero_step_trial_works`), a worker hook makes it finish, and the first
line of output says so.

Run (docs/BENCHMARKS.md has the figures)::

    nice -n 0 .venv/bin/python benchmarks/engine_overhead.py --trials 500 --reps 3 \
        --experiment wait-any+light-submit+fast-yaml
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cotsweep  # noqa: F401  (first: sets RAY_USAGE_STATS_ENABLED / RAY_AUTH_MODE before Ray is imported)

HERE = Path(__file__).resolve().parent
SWEEP = HERE / "engine_overhead.yaml"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.setdefault(
    "RAY_AIR_NEW_OUTPUT", "0"
)  # with verbose=0: no Tune tables in the benchmark's output


# ---------------------------------------------------------------- the zero-step workaround
def zero_step_trial_works() -> bool:
    """Whether a 0-step trial completes in this checkout (it did not in trial.py at 0add3c4).

    ``_train`` closed metrics.jsonl in its ``finally`` and then evaluated the
    initial model into it, so every 0-step trial raised "I/O operation on closed
    file" and was retried and failed — which would time the engine's failure path.
    """
    from cotsweep.compose import compose_trial
    from cotsweep.trial import run_trial

    cfg = compose_trial(
        ["model=tiny", "tracking=none", "run.device=cpu", "train.steps=0", "train.eval_size=4"]
    )
    with tempfile.TemporaryDirectory() as tmp:
        try:
            run_trial(cfg, Path(tmp) / "t")
        except ValueError as e:
            if "closed file" in str(e):
                return False
            raise
    return True


def worker_setup() -> None:
    """Ray worker set-up hook (pickled by value from __main__): the patches this run asked for.

    ``COTSWEEP_BENCH_REOPEN=1``: reopen a closed metrics log on write — the
    smallest change that lets a 0-step trial finish, so that the success path is
    timed; used only when :func:`zero_step_trial_works` says it is needed.
    ``COTSWEEP_BENCH_WORKER=fast-yaml``: the worker experiment of that name.
    """
    import os

    from cotsweep import files
    from cotsweep.sweep import worker

    if os.environ.get("COTSWEEP_BENCH_REOPEN") == "1" and not getattr(
        files.MetricsLog, "_reopens", False
    ):
        write = files.MetricsLog.write

        def write_reopening(self: Any, step: int, metrics: dict) -> None:
            if self._f.closed:
                self._f = open(self.path, "a")
            write(self, step, metrics)

        files.MetricsLog.write = write_reopening
        files.MetricsLog._reopens = True
    if "fast-yaml" in os.environ.get("COTSWEEP_BENCH_WORKER", "").split("+"):
        import yaml
        from omegaconf import OmegaConf

        class FastYamlOmegaConf:
            """OmegaConf, but a YAML string is parsed by libyaml first (the same data, ~15x faster)."""

            def __getattr__(self, name: str) -> Any:
                return getattr(OmegaConf, name)

            @staticmethod
            def create(obj: Any = None, *a: Any, **kw: Any) -> Any:
                if isinstance(obj, str):
                    obj = yaml.load(obj, Loader=yaml.CSafeLoader)
                return OmegaConf.create(obj, *a, **kw)

        worker.OmegaConf = FastYamlOmegaConf()


# environment variables the next ray.init gives every worker (read by worker_setup)
WORKER_ENV: dict[str, str] = {}


def install_worker_hook() -> None:
    """Make every ``ray.init`` of this process run :func:`worker_setup` in each worker, with WORKER_ENV."""
    import ray

    init = ray.init

    def init_with_hook(*args: Any, **kw: Any) -> Any:
        env = dict(kw.get("runtime_env") or {})
        env["worker_process_setup_hook"] = worker_setup
        env["env_vars"] = {**env.get("env_vars", {}), **WORKER_ENV}
        kw["runtime_env"] = env
        return init(*args, **kw)

    ray.init = init_with_hook


# ---------------------------------------------------------------- timing helpers
class Clock:
    """Timestamps of one run: start, Ray up, each result, end."""

    def __init__(self) -> None:
        self.start = self.end = 0.0
        self.ray_start_s = 0.0
        self.connect_at: float | None = None  # when Ray start-up was first asked for
        self.results: list[float] = []

    def rates(self, n: int) -> dict[str, float]:
        total = self.end - self.start
        steady_span = self.results[-1] - self.results[0] if len(self.results) > 1 else float("nan")
        return {
            "e2e": n / total,
            "no_ray_start": n / (total - self.ray_start_s),
            "steady": (len(self.results) - 1) / steady_span,
            "wall_s": total,
            "ray_start_s": self.ray_start_s,
            "first_result_s": self.results[0] - self.start if self.results else float("nan"),
            "before_ray_s": (self.connect_at or self.start) - self.start,
        }


def timed_connect(clock: Clock) -> Callable[..., bool]:
    """cluster.connect, timed (the engine calls it through the module, so this sees its Ray start)."""
    from cotsweep.sweep import cluster

    connect = cluster.connect

    def connect_timed(*args: Any, **kw: Any) -> bool:
        t = time.perf_counter()
        if clock.connect_at is None:
            clock.connect_at = t
        try:
            return connect(*args, **kw)
        finally:
            clock.ray_start_s += time.perf_counter() - t

    return connect_timed


# ---------------------------------------------------------------- cotsweep
def run_cotsweep(n: int, work: Path, experiment: str | None = None) -> dict[str, float]:
    from cotsweep.sweep import cluster, engine

    clock = Clock()
    undo = apply_experiment(experiment) if experiment else (lambda: None)
    connect, cluster.connect = cluster.connect, timed_connect(clock)
    try:
        clock.start = time.perf_counter()
        out = engine.launch(
            str(SWEEP),
            [f"seed=range(0,{n})"],
            work / "sweep",
            progress=False,
            on_event=lambda status, _: clock.results.append(time.perf_counter()),
        )
        clock.end = time.perf_counter()
    finally:
        cluster.connect = connect
        undo()
    if out.counts.get("done") != n:
        raise SystemExit(
            f"cotsweep: not every trial finished: {out.counts}; first failures: {out.failures[:2]}"
        )
    return clock.rates(n)


# ---------------------------------------------------------------- Ray Tune
def noop_trainable(config: dict) -> None:
    from ray import tune

    tune.report({"seed": config["seed"]})


def trial_trainable(config: dict, base_yaml: str) -> None:
    """What a cotsweep worker does for a 0-step trial, under Tune: config from YAML, run_trial."""
    from omegaconf import OmegaConf, open_dict
    from ray import tune

    from cotsweep.trial import run_trial

    cfg = OmegaConf.create(base_yaml)
    out = Path(tune.get_context().get_trial_dir()) / "trial"
    with open_dict(cfg):
        cfg.seed = config["seed"]
        cfg.run.out_dir = str(out)
    result = run_trial(cfg, out)
    tune.report({"acc": result["acc"]})


def base_trial_yaml() -> str:
    """One composed trial of the benchmark sweep, for the Tune trainable to vary by seed."""
    from cotsweep.sweep.grid import config_yaml, expand

    with tempfile.TemporaryDirectory() as tmp:
        (trial,) = expand(str(SWEEP), ["seed=0"], Path(tmp))
    return config_yaml(trial.cfg)


def run_tune(
    n: int, work: Path, trainable: str, reuse_actors: bool, base_yaml: str
) -> dict[str, float]:
    from ray import tune

    from cotsweep.sweep import cluster

    clock = Clock()

    class Done(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            clock.results.append(time.perf_counter())

    fn = (
        noop_trainable
        if trainable == "noop"
        else tune.with_parameters(trial_trainable, base_yaml=base_yaml)
    )
    clock.start = clock.connect_at = time.perf_counter()
    cluster.connect()  # the same embedded, loopback-only Ray as the engine's
    clock.ray_start_s = time.perf_counter() - clock.start
    try:
        tuner = tune.Tuner(
            tune.with_resources(fn, {"cpu": 1}),
            param_space={"seed": tune.grid_search(list(range(n)))},
            tune_config=tune.TuneConfig(reuse_actors=reuse_actors),
            run_config=tune.RunConfig(
                name="bench", storage_path=str(work / "tune"), verbose=0, callbacks=[Done()]
            ),
        )
        results = tuner.fit()
    finally:
        cluster.shutdown()
    clock.end = time.perf_counter()
    if results.num_errors or len(results) != n:
        raise SystemExit(f"tune: {results.num_errors} errors in {len(results)} trials")
    return clock.rates(n)


# ---------------------------------------------------------------- experiments (monkeypatched engine changes)
def _wait_any(wait: Callable[..., Any]) -> Callable[..., Any]:
    """ray.wait that returns as soon as one ref is ready (plus all others ready by then)."""

    def wait_any(
        refs: list, *, num_returns: int = 1, timeout: float | None = None, **kw: Any
    ) -> Any:
        ready, rest = wait(refs, num_returns=1, timeout=timeout, **kw)
        if ready and rest:
            more, rest = wait(rest, num_returns=len(rest), timeout=0, **kw)
            ready = ready + more
        return ready, rest

    return wait_any


class _Attrs(dict):
    """A parsed YAML mapping read by attribute, like the DictConfig the driver reads resources from."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e


def _attrs(x: Any) -> Any:
    return _Attrs({k: _attrs(v) for k, v in x.items()}) if isinstance(x, dict) else x


class _LightOmegaConf:
    """engine.OmegaConf for the driver: a row's YAML read with libyaml into plain attributes."""

    def __getattr__(self, name: str) -> Any:
        from omegaconf import OmegaConf

        return getattr(OmegaConf, name)

    @staticmethod
    def create(obj: Any = None, *a: Any, **kw: Any) -> Any:
        import yaml
        from omegaconf import OmegaConf

        if isinstance(obj, str):
            return _attrs(yaml.load(obj, Loader=yaml.CSafeLoader))
        return OmegaConf.create(obj, *a, **kw)


def _warm_worker() -> int:
    """What the first trial in a fresh Ray worker would import, done while the driver composes."""
    import cotsweep.sweep.worker  # noqa: F401
    import cotsweep.trial  # noqa: F401

    return os.getpid()


def apply_experiment(name: str) -> Callable[[], None]:
    """Patch the engine in this driver process (and WORKER_ENV for its workers); returns the undo."""
    import ray

    from cotsweep.sweep import cluster, engine

    undo: list[Callable[[], None]] = []
    for part in name.split("+"):
        if part == "wait-any":
            wait = ray.wait
            ray.wait = _wait_any(wait)
            undo.append(lambda wait=wait: setattr(ray, "wait", wait))
        elif part.startswith("queue"):  # queue<K>: K trials in flight per CPU instead of 2
            per_cpu = int(part.removeprefix("queue") or 8)
            init = engine.Driver.__init__

            def init_deep(
                self: Any, *a: Any, _init: Any = init, _k: int = per_cpu, **kw: Any
            ) -> None:
                _init(self, *a, **kw)
                if self.max_concurrent is None:  # embedded Ray gets every core of the machine
                    self.max_concurrent = _k * (os.cpu_count() or 1)

            engine.Driver.__init__ = init_deep
            undo.append(lambda init=init: setattr(engine.Driver, "__init__", init))
        elif part == "light-submit":
            oc = engine.OmegaConf
            engine.OmegaConf = _LightOmegaConf()
            undo.append(lambda oc=oc: setattr(engine, "OmegaConf", oc))
        elif part == "warm-early":
            launch = engine.launch

            def launch_warm(
                name_or_path: str,
                overrides: list[str],
                sweep_dir: Path | None = None,
                _launch: Any = launch,
                **kw: Any,
            ) -> Any:
                started = cluster.connect(kw.get("address"), num_cpus=kw.get("num_cpus"))
                warming = []
                try:
                    if started:
                        warm = ray.remote(_warm_worker)
                        cpus = int(ray.cluster_resources().get("CPU", 1))
                        warming = [warm.options(num_cpus=1).remote() for _ in range(cpus)]
                    return _launch(name_or_path, overrides, sweep_dir, **kw)
                finally:
                    del (
                        warming
                    )  # the refs were held for the sweep's length, so the tasks surely ran
                    if started:
                        cluster.shutdown()

            engine.launch = launch_warm
            undo.append(lambda launch=launch: setattr(engine, "launch", launch))
        elif part in WORKER_EXPERIMENTS:
            WORKER_ENV["COTSWEEP_BENCH_WORKER"] = name
            undo.append(lambda: WORKER_ENV.pop("COTSWEEP_BENCH_WORKER", None))
        else:
            raise SystemExit(f"unknown experiment part {part!r}; known: {', '.join(EXPERIMENTS)}")
    return lambda: [u() for u in reversed(undo)]


WORKER_EXPERIMENTS = {
    "fast-yaml": "worker.execute parses the trial's YAML with libyaml (yaml.CSafeLoader), then OmegaConf.create(dict)",
}
EXPERIMENTS = {
    "wait-any": "ray.wait in the driver loop returns at the first finished trial, not when all in flight are (or 0.5 s)",
    "queue<K>": "K trials in flight per CPU (the engine keeps 2)",
    "light-submit": "the driver reads a row's resources with libyaml instead of OmegaConf.create(row.config)",
    "warm-early": "Ray started before composition, and its workers import torch/cotsweep while the driver composes",
    **WORKER_EXPERIMENTS,
}


# ---------------------------------------------------------------- Ray start-up probe
def _worker_probe() -> tuple[int, str | None, str | None]:
    return os.getpid(), os.environ.get("RAY_AUTH_MODE"), os.environ.get("RAY_USAGE_STATS_ENABLED")


def probe_ray_start(reps: int) -> None:
    """Ray start, first tasks and stop, with and without a job runtime_env (alternating).

    ``cluster.connect`` passes ``runtime_env={"env_vars": ...}`` also when it
    starts Ray itself; then the workers Ray prestarted at ``ray.init`` do not
    match the job's runtime env and the first tasks wait for new worker
    processes. Embedded, the variables reach the workers anyway (the raylet and
    its workers inherit the driver's environment): the probe prints what a
    worker sees.
    """
    import ray

    from cotsweep.sweep import cluster

    rows: dict[str, list[tuple[float, float, float]]] = {"runtime_env": [], "none": []}
    for rep in range(reps):
        for mode in ("runtime_env", "none") if rep % 2 == 0 else ("none", "runtime_env"):
            kw: dict[str, Any] = dict(
                _node_ip_address=cluster.LOOPBACK,
                include_dashboard=False,
                log_to_driver=False,
                logging_level="WARNING",
            )
            if mode == "runtime_env":
                kw["runtime_env"] = {"env_vars": cluster.ray_env()}
            t0 = time.perf_counter()
            # as cluster.connect starts it: listening on loopback only
            with cluster.loopback_node():
                ray.init(**kw)
            t1 = time.perf_counter()
            seen = ray.get(
                [ray.remote(_worker_probe).options(num_cpus=1).remote() for _ in range(2)]
            )
            t2 = time.perf_counter()
            ray.shutdown()
            t3 = time.perf_counter()
            rows[mode].append((t1 - t0, t2 - t1, t3 - t2))
            print(
                f"rep {rep} {mode:<12} init {t1 - t0:4.2f}s  first tasks {t2 - t1:4.2f}s  shutdown {t3 - t2:4.2f}s  "
                f"worker sees RAY_AUTH_MODE={seen[0][1]} RAY_USAGE_STATS_ENABLED={seen[0][2]}",
                flush=True,
            )
    for mode, r in rows.items():
        med = [statistics.median(x[i] for x in r) for i in range(3)]
        print(
            f"median {mode:<12} init {med[0]:4.2f}s  first tasks {med[1]:4.2f}s  shutdown {med[2]:4.2f}s"
        )


# ---------------------------------------------------------------- profiling
def profile(n: int, out_dir: Path, work: Path) -> None:
    """Driver under cProfile for one cotsweep sweep, then the worker function timed in-process."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # as in a Ray worker of one CPU (Ray sets OMP_NUM_THREADS=1)
    prof = cProfile.Profile()
    prof.enable()
    rates = run_cotsweep(n, work / "profile")
    prof.disable()
    prof.dump_stats(out_dir / "driver.pstats")
    print(f"driver profile ({n} trials, {rates['wall_s']:.1f}s, e2e {rates['e2e']:.1f}/s):")
    _print_stats(prof)

    from cotsweep.sweep.grid import config_yaml, expand
    from cotsweep.sweep.worker import execute

    m = min(n, 100)
    trials = expand(str(SWEEP), [f"seed=range(1000,{1000 + m})"], work / "inproc")
    yamls = [config_yaml(t.cfg) for t in trials]
    execute(yamls[0], None)  # imports and first-call costs out of the way
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    for y in yamls[1:]:
        outcome = execute(y, None)
        assert outcome["status"] == "done", outcome
    prof.disable()
    per = (time.perf_counter() - t) / (m - 1)
    prof.dump_stats(out_dir / "worker.pstats")
    print(
        f"\nworker function in-process: {per * 1e3:.1f} ms per 0-step trial ({1 / per:.1f}/s on one core), profile:"
    )
    _print_stats(prof)


def _print_stats(prof: cProfile.Profile, limit: int = 30) -> None:
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(limit)
    print(s.getvalue())


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=500)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument(
        "--variants",
        default="cotsweep,tune-noop,tune-trial",
        help="comma-separated, of: cotsweep, tune-noop, tune-trial, cotsweep[EXPERIMENT]",
    )
    ap.add_argument(
        "--experiment",
        action="append",
        default=[],
        help="also run cotsweep with this monkeypatched change (parts joined by +): "
        + "; ".join(f"{k}: {v}" for k, v in EXPERIMENTS.items()),
    )
    ap.add_argument(
        "--tune-reuse-actors",
        default="true",
        choices=("true", "false"),
        help="true (default): Tune's fastest setting; false: Tune's own default, a new actor process "
        "per trial (about 10x slower here, so run it with fewer trials)",
    )
    ap.add_argument(
        "--profile", type=Path, help="profile the engine into this folder instead of comparing"
    )
    ap.add_argument(
        "--probe-ray-start",
        action="store_true",
        help="time Ray start, first tasks and stop with and without a job runtime_env, instead of comparing",
    )
    ap.add_argument("--json", type=Path, help="write every run's figures here")
    ap.add_argument("--keep", type=Path, help="keep the sweep directories under this folder")
    args = ap.parse_args(argv)

    if args.probe_ray_start:
        probe_ray_start(args.reps)
        return 0
    if not zero_step_trial_works():
        print(
            "note: a 0-step trial fails in this checkout (metrics.jsonl closed before the 0-step evaluation);"
            " installing a worker hook that reopens it, so the success path is timed",
            flush=True,
        )
        os.environ["COTSWEEP_BENCH_REOPEN"] = "1"
        WORKER_ENV["COTSWEEP_BENCH_REOPEN"] = "1"
        worker_setup()  # and in this process, for the in-process worker timing
    if WORKER_ENV or any(
        part in WORKER_EXPERIMENTS for e in args.experiment for part in e.split("+")
    ):
        install_worker_hook()

    root = Path(tempfile.mkdtemp(prefix="cotsweep-bench-")) if args.keep is None else args.keep
    root.mkdir(parents=True, exist_ok=True)
    try:
        if args.profile:
            profile(args.trials, args.profile, root)
            return 0
        variants = [v for v in args.variants.split(",") if v] + [
            f"cotsweep[{e}]" for e in args.experiment
        ]
        base_yaml = base_trial_yaml()
        runs: list[dict[str, Any]] = []
        for rep in range(args.reps):
            order = variants if rep % 2 == 0 else variants[::-1]
            for v in order:
                work = root / f"rep{rep}-{v.replace('[', '-').rstrip(']')}"
                if v == "cotsweep":
                    rates = run_cotsweep(args.trials, work)
                elif v.startswith("cotsweep["):
                    rates = run_cotsweep(args.trials, work, v[len("cotsweep[") : -1])
                elif v in ("tune-noop", "tune-trial"):
                    rates = run_tune(
                        args.trials,
                        work,
                        v.removeprefix("tune-"),
                        args.tune_reuse_actors == "true",
                        base_yaml,
                    )
                else:
                    raise SystemExit(f"unknown variant {v!r}")
                runs.append({"rep": rep, "variant": v, **rates})
                print(
                    f"rep {rep} {v:<24} e2e {rates['e2e']:6.1f}/s  no_ray_start {rates['no_ray_start']:6.1f}/s  "
                    f"steady {rates['steady']:6.1f}/s  wall {rates['wall_s']:6.1f}s  ray_start {rates['ray_start_s']:4.1f}s  "
                    f"before_ray {rates['before_ray_s']:4.1f}s  first_result {rates['first_result_s']:5.1f}s  "
                    f"load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
                if args.keep is None:
                    shutil.rmtree(work, ignore_errors=True)
        summarise(runs, variants, args)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "trials": args.trials,
                        "reps": args.reps,
                        "tune_reuse_actors": args.tune_reuse_actors,
                        "runs": runs,
                    },
                    indent=2,
                )
            )
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def summarise(runs: list[dict[str, Any]], variants: list[str], args: argparse.Namespace) -> None:
    keys = ("e2e", "no_ray_start", "steady")
    med = {
        v: {
            k: statistics.median(r[k] for r in runs if r["variant"] == v)
            for k in (*keys, "wall_s", "ray_start_s", "before_ray_s", "first_result_s")
        }
        for v in variants
    }
    print(
        f"\nmedians over {args.reps} reps, {args.trials} trials each (trials/s), tune reuse_actors={args.tune_reuse_actors}:"
    )
    print(
        f"{'variant':<26}{'e2e':>8}{'no_ray_start':>14}{'steady':>9}{'wall_s':>9}{'before_ray_s':>14}{'ray_start_s':>13}"
        f"{'first_result_s':>16}"
    )
    for v in variants:
        m = med[v]
        print(
            f"{v:<26}{m['e2e']:8.1f}{m['no_ray_start']:14.1f}{m['steady']:9.1f}{m['wall_s']:9.1f}{m['before_ray_s']:14.1f}"
            f"{m['ray_start_s']:13.1f}{m['first_result_s']:16.1f}"
        )
    # The load of a shared machine drifts within minutes: a ratio taken inside each repetition
    # (runs seconds apart, order alternating) is steadier than a ratio of medians.
    by_rep = {(r["rep"], r["variant"]): r for r in runs}
    pairs = [
        (a, b)
        for a in variants
        if a.startswith("cotsweep")
        for b in variants
        if b.startswith("tune")
    ]
    if "cotsweep" in variants:
        pairs += [(a, "cotsweep") for a in variants if a.startswith("cotsweep[")]
    for ours, other in pairs:
        ratios = "  ".join(f"{k} {med[ours][k] / med[other][k]:.2f}x" for k in keys)
        paired = "  ".join(
            f"{k} {statistics.median(by_rep[i, ours][k] / by_rep[i, other][k] for i in range(args.reps)):.2f}x"
            for k in keys
        )
        print(f"ratio {ours} / {other}: of medians: {ratios};  median of per-rep ratios: {paired}")


if __name__ == "__main__":
    sys.exit(main())
