"""What the launcher does when a Hydra multirun hands it a batch of jobs.

Each job is one trial of cotsweep's sweep engine:

1. every job is composed first (one ``load_sweep_config`` per set of group
   choices, then the job's value overrides, see :class:`_Composer`) and given
   its id, the trial id of its config without the ``hydra`` node
   (:func:`cotsweep.ids.trial_id_of`); a bad override raises here, before
   the ledger is written;
2. the jobs are recorded in the ledger of the sweep directory
   (``hydra.sweep.dir``/ledger.sqlite) under the sweep's driver lock; ids
   already recorded are left untouched;
3. jobs whose trial is ``done`` are not run again: their JobReturn carries the
   recorded return value (``DIR/trials/<id>/return.json``, or for a trial that
   ``cotsweep launch`` finished, its result.json): data, never a pickle, since
   anyone who can write the sweep directory could make a pickle run code here;
4. the others run as Ray tasks that call Hydra's ``run_job`` with the task
   function, so each job gets Hydra's usual output directory, ``.hydra/`` files
   and log. Results are taken with ``ray.wait`` as they finish and written to
   the ledger at once; a job that raised is run again until it has failed
   ``max_attempts`` times (counted in the ledger, across launches), then recorded
   ``failed``, and its JobReturn is Hydra's own FAILED one that
   carries the exception. One failing job never stops the others.

A cotsweep trial config (one with ``run``, ``sweep``, ``resources`` and
``model``) is also placed the way ``cotsweep launch`` places it: its files go to
``DIR/trials/<id>/`` (``run.out_dir``, ``sweep.dir``, ``sweep.name``), so that
``cotsweep status DIR`` and ``cotsweep resume DIR`` work on a sweep started the
Hydra way, and adding a value to an axis never makes a job number point at
another trial's files. None of these keys are part of the id.

This module imports Ray; Hydra's plugin scanner skips modules whose names start
with ``_``, so only a launch pays for it.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
from hydra import version
from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.singleton import Singleton
from hydra.core.utils import (
    JobReturn,
    JobRuntime,
    JobStatus,
    configure_log,
    filter_overrides,
    run_job,
    setup_globals,
)
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict, read_write

from cotsweep import files, logs
from cotsweep.ids import trial_id_of
from cotsweep.ledger import STOP_REQUEST, Ledger, LedgerLocked, TrialRow
from cotsweep.secret_guard import SecretInConfig, refuse_secrets
from cotsweep.sweep import cluster
from cotsweep.sweep.stream import Finished, RayStream, Window

if TYPE_CHECKING:
    from hydra_plugins.cotsweep_launcher.cotsweep_launcher import CotsweepLauncher

log = logging.getLogger(__name__)

RETURN_FILE = "return.json"
TRACEBACK_TAIL = 4000

# what a job of an application that is not a cotsweep trial gets
DEFAULT_CPUS, DEFAULT_GPUS, DEFAULT_ATTEMPTS, DEFAULT_RETRIES = 1.0, 0.0, 2, 3


class LauncherError(RuntimeError):
    """A batch the launcher refuses before anything is recorded or run."""


@dataclass
class Job:
    num: int  # Hydra's job number
    overrides: list[str]
    config: DictConfig  # the composed job config, hydra node included
    task: dict  # the config without the hydra node, resolved: for the ledger, id and resources
    id: str
    trial: bool  # a cotsweep trial config, placed at DIR/trials/<id>


# ---------------------------------------------------------------- composition
@contextmanager
def _hydra_config(cfg: DictConfig) -> Iterator[None]:
    """Make ``cfg`` the current Hydra config, so ``${hydra:...}`` resolves, then restore."""
    before = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)
    try:
        yield
    finally:
        HydraConfig.instance().cfg = before


def _task_config(cfg: DictConfig) -> DictConfig:
    task = copy.deepcopy(cfg)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


def _task_data(cfg: DictConfig) -> dict:
    """The job's config without the hydra node, resolved, as plain data (no copy of the nodes)."""
    return {
        k: OmegaConf.to_container(v, resolve=True, enum_to_str=True)
        if isinstance(v, DictConfig | ListConfig)
        else v.name  # as enum_to_str writes an enum
        if isinstance(v, Enum)
        else v
        for k, v in cfg.items()
        if k != "hydra"
    }


def _select(task: dict, path: str) -> Any:
    """The value at a dotted path of the job's data, or None."""
    node: Any = task
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _is_trial(task: dict) -> bool:
    return all(
        _select(task, k) is not None
        for k in ("run.out_dir", "sweep.dir", "resources.cpus", "model")
    )


class _Composer:
    """Every job's config, with one sweep-config load per set of group choices.

    Hydra's launchers compose each job from scratch (``load_sweep_config``, a
    whole composition: ~0.1 s, and ~0.5 s on a loaded machine). Jobs of a sweep
    differ mostly in plain values, so a job whose overrides choose the same
    config groups as an earlier one starts from a copy of that one's base and
    gets its value overrides applied with Hydra's own override code, the last
    step of Hydra's own composition; its ``hydra.overrides.task`` and
    ``override_dirname`` are set as Hydra sets them.
    """

    def __init__(self, launcher: CotsweepLauncher):
        assert launcher.hydra_context is not None and launcher.config is not None
        self.loader = launcher.hydra_context.config_loader
        self.master = launcher.config
        self.groups = set(self.master.hydra.runtime.choices.keys())
        self.parser = OverridesParser.create()
        self.bases: dict[tuple[str, ...], DictConfig] = {}

    def _plain_value(self, o: Any) -> bool:
        """A change of a value (not a group choice, an addition or deletion, or a hydra key)."""
        return (
            not o.is_hydra_override()
            and not (o.is_add() or o.is_force_add() or o.is_delete())
            and o.package is None
            and o.key_or_group not in self.groups
        )

    def __call__(self, overrides: Sequence[str]) -> DictConfig:
        parsed = self.parser.parse_overrides(list(overrides))
        values = [o for o in parsed if self._plain_value(o)]
        key = tuple(o.input_line for o in parsed if not self._plain_value(o))
        if key not in self.bases:
            self.bases[key] = self.loader.load_sweep_config(self.master, list(key))
        cfg = copy.deepcopy(self.bases[key])  # the job's own config, shipped to its worker
        if values:
            ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
            app = [o for o in parsed if not o.is_hydra_override()]
            dirname = cfg.hydra.job.config.override_dirname
            with open_dict(cfg.hydra):
                cfg.hydra.overrides.task = [o.input_line for o in app]
                cfg.hydra.job.override_dirname = get_overrides_dirname(
                    overrides=app,
                    kv_sep=dirname.kv_sep,
                    item_sep=dirname.item_sep,
                    exclude_keys=dirname.exclude_keys,
                )
        return cfg


def _compose(composer: _Composer, overrides: Sequence[str], num: int, sweep_dir: Path) -> Job:
    cfg = composer(overrides)
    with open_dict(cfg):
        cfg.hydra.job.num = num
    with _hydra_config(cfg):
        task = _task_data(cfg)
        try:  # the ledger below holds every job's config, resolved
            refuse_secrets(cfg, leave_out=("hydra",))
        except SecretInConfig as e:  # the job's overrides may show the secret: not repeated
            raise LauncherError(str(e)) from e
    tid = trial_id_of(task)
    trial = _is_trial(task)
    # HydraConfig.set_config marked the hydra node read-only
    with read_write(cfg.hydra), open_dict(cfg):
        # the job's id names its trial, in Hydra's outputs (hydra.job.id) as in the ledger;
        # hydra.sweep.subdir=${hydra.job.id} gives content-addressed job directories
        cfg.hydra.job.id = tid
        if trial:
            if int(task["resources"].get("workers", 1)) > 1:
                raise LauncherError(
                    f"job {' '.join(overrides)}: resources.workers > 1 (a data-parallel trial) runs with "
                    "`cotsweep launch`; the Hydra launcher runs one process per job"
                )
            place = {
                ("sweep", "dir"): str(sweep_dir),
                ("sweep", "name"): str(cfg.hydra.job.name),
                ("run", "out_dir"): str(sweep_dir / "trials" / tid),
                ("run", "progress"): False,
            }
            for (group, key), value in place.items():  # the job's config and its data alike
                cfg[group][key] = task[group][key] = value
    return Job(num=num, overrides=list(overrides), config=cfg, task=task, id=tid, trial=trial)


def _axes(overrides: list[str]) -> dict:
    """key -> value of each override, plain JSON, for `cotsweep status`'s per-axis breakdown."""
    out = {}
    for o in OverridesParser.create().parse_overrides(overrides):
        v = o.value()
        out[o.get_key_element()] = (
            v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
        )
    return out


# ---------------------------------------------------------------- per-job settings
def _setting(launcher: CotsweepLauncher, job: Job, name: str, trial_key: str, default: Any) -> Any:
    value = getattr(launcher, name)
    if value is not None:
        return value
    if job.trial:
        return _select(job.task, trial_key)
    return default


def _gpus(launcher: CotsweepLauncher, job: Job, cluster_gpus: float) -> float:
    if launcher.num_gpus is not None:
        return float(launcher.num_gpus)
    if job.trial:
        from cotsweep.sweep.feasible import gpus_for

        keys = ("resources", "task", "run", "model")
        return gpus_for(OmegaConf.create({k: job.task[k] for k in keys}), cluster_gpus)
    return DEFAULT_GPUS


# ---------------------------------------------------------------- recorded returns
def _save_return(sweep_dir: Path, job: Job, value: Any) -> None:
    """Keep a done job's return value as JSON, so a later multirun that skips the job can give it
    back. A value JSON cannot hold (an object, a tensor) is given back as None then. A job
    that is not a cotsweep trial gets its config written beside it, so that `cotsweep
    rebuild` knows it (a trial writes its own)."""
    tdir = sweep_dir / "trials" / job.id
    try:
        text = json.dumps({"value": value}, allow_nan=True)
    except (TypeError, ValueError) as e:
        log.warning(
            f"job {job.id}: its return value is not JSON data ({type(e).__name__}: {e}); "
            "a later run that skips this job returns None for it"
        )
        text = json.dumps({"value": None})
    if not job.trial and not (tdir / files.CONFIG).exists():
        files.atomic_write(tdir / files.CONFIG, OmegaConf.to_yaml(job.task))
    files.atomic_write(tdir / RETURN_FILE, text + "\n")


def _recorded_return(sweep_dir: Path, row: TrialRow, job: Job) -> Any:
    objective = _select(job.task, "run.objective") if job.trial else None
    if objective:
        # what the app returns now: the figure this job's run.objective names, from the
        # trial's own result (an earlier run of the trial may have returned another figure)
        result = files.read_json(sweep_dir / "trials" / row.id / files.RESULT)
        return files.result_figure(result or {}, str(objective))
    recorded = files.read_json(sweep_dir / "trials" / row.id / RETURN_FILE)
    if isinstance(recorded, dict) and "value" in recorded:
        return recorded["value"]
    out = OmegaConf.select(OmegaConf.create(row.config), "run.out_dir")
    if out:  # finished by `cotsweep launch`: its result.json is what the trial returned
        return files.read_json(Path(out) / files.RESULT)
    return None


def _job_return(job: Job, status: JobStatus, value: Any) -> JobReturn:
    """A JobReturn for a job this launch did not run, shaped as ``run_job`` shapes its own."""
    cfg = copy.deepcopy(job.config)
    with _hydra_config(cfg):
        out = os.path.join(
            str(OmegaConf.select(cfg, "hydra.sweep.dir")),
            str(OmegaConf.select(cfg, "hydra.sweep.subdir")),
        )
        with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = os.path.abspath(out)
        HydraConfig.instance().set_config(cfg)
        hydra_cfg = copy.deepcopy(HydraConfig.instance().cfg)
    chdir = hydra_cfg.hydra.job.chdir
    if chdir is None:
        chdir = not version.base_at_least("1.2")
    ret = JobReturn()
    ret.cfg = _task_config(job.config)  # what run_job gives the task function
    ret.hydra_cfg = hydra_cfg
    ret.overrides = list(job.overrides)
    ret.working_dir = os.path.abspath(out) if chdir else os.getcwd()
    ret.task_name = JobRuntime.instance().get("name")
    ret.status = status
    ret.return_value = value
    return ret


# ---------------------------------------------------------------- the worker side
def _run_job_on_worker(
    config: DictConfig,
    task_function: TaskFunction,
    hydra_context: HydraContext,
    singleton_state: dict,
    driver_cwd: str,
    trial_dir: str,
    attempt: int,
) -> tuple[JobReturn, str | None, str]:
    """Run one job in a Ray worker, with the driver's Hydra state; returns (JobReturn, traceback, host).

    The job's stdout and stderr (and its full traceback) go to its trial's
    ``logs/attempt-K.log``, as a trial's do under ``cotsweep launch``.
    """
    with logs.capture(Path(trial_dir), attempt):
        ret, tb, host = _run_job(config, task_function, hydra_context, singleton_state, driver_cwd)
        if tb is not None:
            print(tb, file=sys.stderr, flush=True)
        print(f"== attempt {attempt}: {ret.status.name.lower()}", flush=True)
    return ret, tb, host


def _run_job(
    config: DictConfig,
    task_function: TaskFunction,
    hydra_context: HydraContext,
    singleton_state: dict,
    driver_cwd: str,
) -> tuple[JobReturn, str | None, str]:
    setup_globals()
    state = {**singleton_state, "instances": dict(singleton_state["instances"])}
    plugins = Singleton._instances.get(Plugins)
    if (
        plugins is not None
    ):  # a reused worker keeps its scanned plugins instead of rescanning per job
        state["instances"][Plugins] = plugins
    Singleton.set_state(state)
    here = os.getcwd()
    if os.path.isdir(driver_cwd):  # relative sweep dirs and paths mean what they meant to the user
        os.chdir(driver_cwd)
    try:
        ret = run_job(
            hydra_context=hydra_context,
            task_function=task_function,
            config=config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
    finally:
        os.chdir(here)
    tb = None
    if ret.status == JobStatus.FAILED:
        exc = ret._return_value  # the public getter re-raises it; the traceback exists only here
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            ray.cloudpickle.dumps(exc)
        except Exception:  # an exception Ray cannot ship back would look like a lost worker
            ret.return_value = RuntimeError(f"{type(exc).__name__}: {exc}")
    return ret, tb, socket.gethostname()  # the whole traceback: its tail goes to the ledger


# ---------------------------------------------------------------- the driver side
def _interrupt_on_stop_signals() -> dict:
    """SIGTERM, SIGHUP and SIGUSR1 (Slurm's pre-emption warning) interrupt the launch as
    Ctrl-C does, instead of killing Hydra's process with jobs marked running."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def interrupt(signum: int, *_: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    return {
        sig: signal.signal(sig, interrupt)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)
    }


def _error_kind(exc: BaseException) -> str:
    trial = sys.modules.get("cotsweep.trial")  # imported already if a trial raised it
    if trial is not None and isinstance(exc, trial.Diverged):
        return "diverged"
    return "error"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def launch(
    launcher: CotsweepLauncher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> list[JobReturn]:
    setup_globals()
    assert (
        launcher.config is not None
        and launcher.task_function is not None
        and launcher.hydra_context is not None
    )
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir)).resolve()
    _warn_unseeded_sampler(launcher.config)
    composer = _Composer(launcher)
    jobs = [
        _compose(composer, ov, initial_job_idx + i, sweep_dir) for i, ov in enumerate(job_overrides)
    ]

    sweep_dir.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(sweep_dir, create=True)
    try:
        try:
            ledger.acquire()
        except LedgerLocked as e:
            raise LauncherError(str(e)) from e
        try:
            ledger.requeue_running()  # we hold the lock: anything 'running' was left by a dead driver
            ledger.add_trials(
                (j.id, j.overrides, _axes(j.overrides), OmegaConf.to_yaml(j.task)) for j in jobs
            )
            if ledger.get_meta("name") is None:
                ledger.set_meta(name=str(launcher.config.hydra.job.name), source="hydra")
            return _Batch(launcher, ledger, sweep_dir, jobs).run()
        finally:
            ledger.release()
    finally:
        ledger.close()


def _warn_unseeded_sampler(config: DictConfig) -> None:
    """A sweeper that samples (Optuna's) asks new points on every run unless seeded: then a
    relaunch continues nothing and runs a new search beside the old one."""
    sampler = OmegaConf.select(config, "hydra.sweeper.sampler")
    if isinstance(sampler, DictConfig) and "seed" in sampler and sampler.seed is None:
        log.warning(
            "the sweeper's sampler has no seed: running this multirun again asks other points "
            "instead of continuing; set hydra.sweeper.sampler.seed to resume a search"
        )


class _Batch:
    """One launch: which jobs to skip, and the ray.wait loop over the rest."""

    def __init__(
        self, launcher: CotsweepLauncher, ledger: Ledger, sweep_dir: Path, jobs: list[Job]
    ):
        self.launcher = launcher
        self.ledger = ledger
        self.sweep_dir = sweep_dir
        self.jobs = jobs
        self.results: list[JobReturn | None] = [None] * len(jobs)
        self.rows: dict[str, TrialRow] = {}

    def run(self) -> list[JobReturn]:
        rows = self.rows = {r.id: r for r in self.ledger.trials()}
        to_run: list[int] = []
        first: dict[str, int] = {}  # id -> position of the job that runs it
        for pos, job in enumerate(self.jobs):
            row = rows[job.id]
            note = ""
            if job.id in first:
                note = f"same trial as job #{self.jobs[first[job.id]].num}"
            elif row.state == "done":
                self.results[pos] = _job_return(
                    job, JobStatus.COMPLETED, _recorded_return(self.sweep_dir, row, job)
                )
                note = "done already"
            elif row.state == "failed" and row.error_kind == "diverged":
                # it would diverge again; `cotsweep resume DIR --reset-attempts` reruns it on purpose
                err = RuntimeError(f"trial {job.id} diverged in an earlier run: {row.error}")
                self.results[pos] = _job_return(job, JobStatus.FAILED, err)
                note = "diverged earlier, not rerun"
            elif row.state == "failed" and row.failures >= self._max_attempts(job):
                err = RuntimeError(
                    f"trial {job.id} failed {row.failures} times, its max_attempts: {row.error} "
                    f"(to run it again: cotsweep resume {self.sweep_dir} --reset-attempts)"
                )
                self.results[pos] = _job_return(job, JobStatus.FAILED, err)
                note = "out of attempts, not rerun"
            else:
                first[job.id] = pos
                to_run.append(pos)
            log.info(
                f"\t#{job.num} : {' '.join(filter_overrides(job.overrides))}  [{job.id}{', ' + note if note else ''}]"
            )
        log.info(
            f"cotsweep launcher: {len(self.jobs)} jobs, {len(to_run)} to run, "
            f"{len(self.jobs) - len(to_run)} skipped; sweep dir {self.sweep_dir}"
        )
        if to_run:
            self._run_on_ray(to_run)
        for pos, job in enumerate(self.jobs):
            if self.results[pos] is None:  # a duplicate: the outcome of the job that ran its trial
                ran = self.results[first[job.id]]
                assert ran is not None
                self.results[pos] = _job_return(job, ran.status, ran._return_value)
        return [r for r in self.results if r is not None]

    def _run_on_ray(self, to_run: list[int]) -> None:
        launcher = self.launcher
        # Ray stays up after the launch: a batched sweeper calls launch() again, and Ray's
        # own exit handler stops an embedded Ray with the Hydra process.
        cluster.connect(launcher.address, num_cpus=launcher.ray_num_cpus)
        cluster_gpus = cluster.cluster_resources().get("GPU", 0.0)
        first = self.jobs[to_run[0]]
        cpus = float(_setting(launcher, first, "num_cpus", "resources.cpus", DEFAULT_CPUS))
        window = Window(
            {"CPU": cpus, "GPU": _gpus(launcher, first, cluster_gpus)},
            on_cluster=bool(launcher.address or os.environ.get("RAY_ADDRESS")),
            remaining=len(to_run),
            fixed=launcher.max_concurrent,
        )
        remote = ray.remote(_run_job_on_worker)
        # shared by every job: put once, not shipped with each task
        task_ref = ray.put(launcher.task_function)
        context_ref = ray.put(launcher.hydra_context)
        state_ref = ray.put(Singleton.get_state())
        cwd = os.getcwd()

        attempts = {pos: self.rows[self.jobs[pos].id].attempts for pos in to_run}
        self.failed = {pos: self.rows[self.jobs[pos].id].failures for pos in to_run}

        def submit(pos: int) -> Any:
            job = self.jobs[pos]
            return remote.options(
                num_cpus=float(_setting(launcher, job, "num_cpus", "resources.cpus", DEFAULT_CPUS)),
                num_gpus=_gpus(launcher, job, cluster_gpus),
                max_retries=int(
                    _setting(launcher, job, "max_retries", "resources.max_retries", DEFAULT_RETRIES)
                ),
            ).remote(
                job.config,
                task_ref,
                context_ref,
                state_ref,
                cwd,
                str(self.sweep_dir / "trials" / job.id),
                attempts[pos] + 1,
            )

        def finish(pos: int, ref: Any, tries: int, started: float) -> Finished:
            attempts[pos] += 1
            col, event, retry = self._finished(ref, pos, tries, started)
            col["attempts"] = attempts[pos]
            window.remaining -= not retry
            return Finished(col, event, retry)

        stop_request = self.sweep_dir / STOP_REQUEST
        stop_request.unlink(missing_ok=True)  # from before this launch: stale

        def stopping() -> int:
            if stop_request.exists():  # `cotsweep stop DIR`, from any host
                stop_request.unlink(missing_ok=True)
                raise KeyboardInterrupt("cotsweep stop")
            return 0

        stream: RayStream[int] = RayStream(
            self.ledger,
            key=lambda pos: self.jobs[pos].id,
            submit=submit,
            finish=finish,
            limit=window,
            heartbeat=self._heartbeats,
            stopping=stopping,
        )
        old = _interrupt_on_stop_signals()
        try:
            stream.run(to_run)
        except BaseException:
            # Ctrl-C, SIGTERM/SIGHUP/SIGUSR1, `cotsweep stop` (or any error of the driver):
            # what runs is stopped and goes back to pending; trials keep their
            # checkpoints, so a relaunch continues them
            stream.cancel("launcher interrupted")
            raise
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            window.close()

    def _heartbeats(self, positions: Any) -> None:
        """The driver's heartbeat, and each running trial's step and heartbeat, for `cotsweep status`."""
        changes = []
        for pos in positions:
            job = self.jobs[pos]
            beat = (
                files.read_json(Path(job.task["run"]["out_dir"]) / files.HEARTBEAT)
                if job.trial
                else None
            )
            if beat:
                changes.append(
                    (
                        job.id,
                        {"heartbeat": beat["time"], "step": beat["step"], "host": beat["host"]},
                    )
                )
        self.ledger.update(changes)  # beats the driver's lock too

    def _max_attempts(self, job: Job) -> int:
        return int(
            _setting(self.launcher, job, "max_attempts", "resources.max_attempts", DEFAULT_ATTEMPTS)
        )

    def _finished(self, ref: Any, pos: int, tries: int, started: float) -> tuple[dict, str, bool]:
        """Ledger columns, event and retry decision for a finished task; fills the JobReturn when final."""
        job = self.jobs[pos]
        now = time.time()
        try:
            ret, tb, host = ray.get(ref)
            tb = tb[-TRACEBACK_TAIL:] if tb else tb
        except (
            ray.exceptions.RayError
        ) as e:  # the worker or its node was lost, past Ray's own retries
            ret, tb, host, kind = None, str(e)[-TRACEBACK_TAIL:], None, "lost"
            exc: BaseException | None = e
        else:
            exc = ret._return_value if ret.status == JobStatus.FAILED else None
            kind = "done" if exc is None else _error_kind(exc)
        if exc is None:
            assert ret is not None
            self.results[pos] = ret
            _save_return(self.sweep_dir, job, ret.return_value)
            value = ret.return_value
            steps = value.get("steps") if isinstance(value, dict) else None
            col = {
                "state": "done",
                "ended": now,
                "wall_s": now - started,
                "host": host,
                "step": steps,
                "error": None,
                "error_kind": None,
                "traceback": None,
            }
            return col, "done", False
        max_attempts = self._max_attempts(job)
        failed = self.failed[pos] = self.failed[pos] + 1
        retry = kind in ("error", "lost") and failed < max_attempts
        col = {
            "failures": failed,
            "state": "pending" if retry else "failed",
            "ended": now,
            "host": host,
            "error": _one_line(exc),
            "error_kind": kind,
            "traceback": tb,
        }
        if not retry:
            self.results[pos] = ret if ret is not None else _job_return(job, JobStatus.FAILED, exc)
            log.error(
                f"job #{job.num} ({job.id}) failed after {tries} attempt(s): {_one_line(exc)}"
            )
        else:
            log.warning(
                f"job #{job.num} ({job.id}) raised {_one_line(exc)}; failed {failed} of "
                f"{max_attempts} attempts"
            )
        return col, kind, retry
