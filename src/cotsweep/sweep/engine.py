"""The driver: record a sweep in its ledger, run what is not done on Ray, stream results.

One Ray task per trial (or a placement group of rank actors for a data-parallel
trial), resources from the trial's config. Results are streamed with
``ray.wait`` and written to the ledger in batches; one failing trial never
stops the others. Ctrl-C, SIGTERM, SIGHUP, SIGUSR1 (Slurm's warning before it
pre-empts a job) and ``cotsweep stop DIR`` (a stop request file in the sweep
directory, from any host) ask running trials to checkpoint and return to
pending; a second one stops at once. Whatever way the driver leaves, the trials
it marked running go back to pending. Nothing recorded is lost either way: the
ledger is only ever updated in transactions, and trials keep their checkpoints.

Liveness: the driver beats its lease in the ledger every few seconds, and reads
each running trial's heartbeat. A trial whose heartbeat has not moved for
``resources.stall_after_s`` (a hung collective, a stopped process, a dead disk)
is stalled: cancelled, killed, and retried like a failure. Failed attempts are
counted in the ledger (``failures``), so the retry budget
(``resources.max_attempts``) holds across resumes.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from cotsweep import files
from cotsweep.config import ConfigView
from cotsweep.errors import LedgerError
from cotsweep.ledger import (
    LEDGER,
    STOP_REQUEST,
    Ledger,
    LedgerLocked,
    TrialRow,
    process_start_time,
)
from cotsweep.ledger import exists as ledger_exists
from cotsweep.selection import Selection, selected_ids
from cotsweep.sweep import cluster, feasible
from cotsweep.sweep.feasible import Footprint, gpus_for
from cotsweep.sweep.grid import Trial, load_grid, sweep_name
from cotsweep.sweep.stream import Finished, RayStream, Window


@dataclass
class Outcome:
    """What a launch or resume did, for the summary and the exit code."""

    dir: Path
    counts: dict[str, int]
    ran: int = 0
    new: int = 0
    interrupted: bool = False
    stopped_by: str | None = None  # SIGINT, SIGTERM, SIGHUP, SIGUSR1, or "stop request"
    failures: list[dict] = field(default_factory=list)
    exhausted: int = 0  # failed trials not rerun: they used their attempts

    @property
    def ok(self) -> bool:
        return not self.interrupted and self.counts.get("done", 0) == sum(self.counts.values())


class SweepBusy(RuntimeError):
    pass


def default_dir(name_or_path: str) -> Path:
    return Path("runs") / sweep_name(name_or_path)


class SweepDirError(ValueError):
    """The sweep directory cannot be written; nothing was."""


@dataclass
class Prepared:
    """A sweep recorded in its ledger: the ids of its grid, and how many were new."""

    dir: Path
    ids: set[str]
    new: int
    ledger: Ledger


def prepare(
    name_or_path: str,
    overrides: list[str],
    sweep_dir: Path | None = None,
    *,
    max_trials: int | None = None,
    on_expand: Callable[[int, int], None] | None = None,
    check: Callable[[Trial], None] | None = None,
) -> Prepared:
    """Expand and validate the grid into the ledger, under the sweep's lock.

    The grid streams into the ledger as it is composed, in one transaction: a
    refused point, an infeasible trial (``check``) or a Ctrl-C part way rolls all
    of it back, and a sweep directory this call created is removed again, so a
    refusal leaves nothing behind.
    """
    grid = load_grid(name_or_path, overrides, max_trials)  # GridError: nothing written
    sweep_dir = Path(sweep_dir or default_dir(name_or_path)).resolve()
    problem = files.unwritable_dir(sweep_dir)
    if problem:
        raise SweepDirError(problem)
    ids: set[str] = set()

    def trials() -> Iterator[tuple[str, list[str], dict, str]]:
        for t in grid.trials(sweep_dir, progress=on_expand):
            if check is not None:
                check(t)
            ids.add(t.id)
            yield t.id, t.overrides, t.axes, t.yaml

    source = Path(name_or_path)
    meta = {
        "name": grid.name,
        "source": str(source.resolve()) if source.exists() else name_or_path,
        "last_overrides": json.dumps(overrides),
        "driver_job": cluster.job_submission_id() or "",
    }
    stream = trials()
    ledger = None
    with _terminate_as_interrupt():
        try:
            # every axis value, and the first trial with its resources, before anything is
            # written: most refusals leave the disk as it was
            first = next(stream)
            created = files.missing_dirs(sweep_dir)
            had_ledger = ledger_exists(sweep_dir)
            ledger = Ledger(sweep_dir, create=True)
            try:
                ledger.acquire()  # LedgerLocked: nothing written
            except LedgerLocked as e:
                raise SweepBusy(str(e)) from e
            new = ledger.add_trials(itertools.chain([first], stream), meta=meta)
        except BaseException as e:
            if ledger is not None:
                with suppress(LedgerError):
                    ledger.release()
                ledger.close()
                if not had_ledger:
                    _remove_new_sweep(sweep_dir, created)
            if isinstance(e, KeyboardInterrupt):
                raise ExpansionInterrupted(
                    f"interrupted while expanding the grid ({len(ids):,} of {grid.size:,} points "
                    f"composed): nothing was recorded in {sweep_dir}"
                ) from e
            raise
    return Prepared(sweep_dir, ids, new, ledger)


class ExpansionInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) while the grid was expanded: rolled back, nothing recorded."""


def plan(
    name_or_path: str,
    overrides: list[str],
    sweep_dir: Path | None = None,
    *,
    max_trials: int | None = None,
    on_expand: Callable[[int, int], None] | None = None,
    check: Callable[[Trial], Footprint | None] | None = None,
) -> dict:
    """What ``launch`` would do, writing nothing: points, new and recorded trials, the cost."""
    grid = load_grid(name_or_path, overrides, max_trials)
    sweep_dir = Path(sweep_dir or default_dir(name_or_path)).resolve()
    known: dict[str, str] = {}
    if ledger_exists(sweep_dir):
        ro = Ledger(sweep_dir, read_only=True)
        try:
            known = dict(ro.select(["id", "state"]))
        finally:
            ro.close()
    states = dict.fromkeys(("new", "pending", "running", "done", "failed"), 0)
    steps = flops = trials = 0
    shown: list[tuple[list[str], str]] = []
    with _terminate_as_interrupt():
        for t in grid.trials(sweep_dir, progress=on_expand):
            trials += 1
            state = known.get(t.id, "new")
            states[state] += 1
            fp = check(t) if check is not None else None
            if state != "done":
                steps += int(t.config["train"]["steps"]) if t.task.trains else 0
                flops += fp.flops if fp is not None else 0.0
            if len(shown) < PLAN_POINTS_SHOWN:
                shown.append((t.overrides, state))
    return {
        "sweep": grid.name,
        "dir": str(sweep_dir),
        "points": grid.size,
        "trials": trials,
        "axes": {a[0].split("=", 1)[0]: [v.split("=", 1)[1] for v in a] for a in grid.axes},
        "states": states,
        "to_run": trials - states["done"],
        "steps": steps,
        "flops": flops,
        "shown": shown,
    }


PLAN_POINTS_SHOWN = 20


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM while the grid expands stops it as Ctrl-C does (rolled back), not mid-write."""
    if not _main_thread():
        yield
        return

    def on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _remove_new_sweep(sweep_dir: Path, created: list[Path]) -> None:
    """Undo what a refused launch created: the new ledger and the directories made for it."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        (sweep_dir / f"{LEDGER}{suffix}").unlink(missing_ok=True)
    for d in created:  # deepest first; only if nothing else was put there
        try:
            d.rmdir()
        except OSError:
            break


def open_for_resume(sweep_dir: Path) -> Ledger:
    ledger = Ledger(sweep_dir)
    try:
        ledger.acquire()
    except LedgerLocked as e:
        ledger.close()
        raise SweepBusy(str(e)) from e
    ledger.set_meta(driver_job=cluster.job_submission_id() or "")
    return ledger


# ---------------------------------------------------------------- resources
def trial_shape(cfg: Any, cluster_gpus: float) -> dict[str, float]:
    """What one trial holds of the cluster while it runs, as Ray resources."""
    r = cfg.resources
    return {"CPU": float(r.cpus) * r.workers, "GPU": gpus_for(cfg, cluster_gpus) * r.workers}


# ---------------------------------------------------------------- the driver loop
# what stops a driver the way a first Ctrl-C does; SIGUSR1 is Slurm's pre-emption warning
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)
# after a ledger failure: how long the driver waits for running trials to checkpoint
WIND_DOWN_S = 120.0
# error kinds that spend one of a trial's attempts and are retried while attempts are left
RETRIED = ("error", "lost", "stalled")


class Driver:
    def __init__(
        self,
        ledger: Ledger,
        *,
        address: str | None = None,
        max_concurrent: int | None = None,
        progress: bool = True,
        num_cpus: float | None = None,
        dashboard: bool = False,
        on_event: Callable[[str, dict], None] | None = None,
    ):
        self.ledger = ledger
        self.dashboard = dashboard
        self.address = address
        self.max_concurrent = max_concurrent
        self.progress = progress
        self.num_cpus = num_cpus
        self.on_event = on_event
        self.stop_file = ledger.dir / f".stop-{uuid.uuid4().hex[:8]}"
        self.stop_request = ledger.dir / STOP_REQUEST
        self._interrupts = 0
        self._stopped_by: str | None = None
        self._polled = 0.0
        self._failed: dict[str, int] = {}  # trial id -> failed attempts, as in the ledger
        self._beats: dict[str, _Beat] = {}  # trial id -> its last heartbeat, when it moved
        self._stream: RayStream[TrialRow] | None = None

    def run(self, rows: list[TrialRow]) -> Outcome:
        import ray

        self.stop_request.unlink(missing_ok=True)  # a request from before this driver is stale
        if not rows:  # nothing to do: no need to start Ray
            return Outcome(dir=self.ledger.dir, counts=self.ledger.counts())
        rows = largest_first(rows)
        _offline_notice(rows, self.ledger.dir)
        self._failed = {r.id: r.failures for r in rows}
        grace = row_view(rows[0]).resources.get("stall_after_s")
        if grace is not None:  # for `status`, which reads no trial configs
            self.ledger.set_meta(stall_after_s=str(grace))
        # a signal while Ray starts (tens of seconds on a busy machine) stops the driver too
        old_handlers = self._catch_stop_signals()
        started_ray = False
        self._bar = bar = _Bar(self.ledger, len(rows), enabled=self.progress)
        stream: RayStream[TrialRow] | None = None
        window: Window | None = None
        try:
            started_ray = cluster.connect(
                self.address, num_cpus=self.num_cpus, dashboard=self.dashboard
            )
            # again after ray.init: Ray's core installs a handler that aborts the process on
            # SIGTERM (the handlers to restore at the end stay those from before)
            self._catch_stop_signals()
            remote_one = ray.remote(_execute_one)
            remote_group = ray.remote(_execute_group)
            cluster_gpus = cluster.cluster_resources().get("GPU", 0.0)
            self._window = window = Window(
                trial_shape(row_view(rows[0]), cluster_gpus),
                on_cluster=bool(self.address or os.environ.get("RAY_ADDRESS")),
                remaining=len(rows),
                fixed=self.max_concurrent,
            )
            self._failures: list[dict] = []
            self._ran = 0
            stream = self._stream = RayStream(
                self.ledger,
                key=lambda r: r.id,
                submit=lambda r: self._submit(r, remote_one, remote_group, cluster_gpus),
                finish=self._finish,
                limit=window,
                heartbeat=self._heartbeats,
                stopping=self._stopping,
                on_round=lambda running: bar.refresh(running=running),
            )
            try:
                stream.run(rows)
                if stream.inflight:  # a second Ctrl-C (or signal)
                    stream.cancel(f"second {self._stopped_by}")
            except LedgerError:
                self._wind_down(stream)  # the ledger cannot take more: trials checkpoint first
                raise
        finally:
            if stream is not None and stream.inflight:  # any other way out: back to pending
                try:
                    stream.cancel("the driver stopped")
                except LedgerError:
                    pass  # the next driver puts them back (their rows say running)
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            if window is not None:
                window.close()
            bar.close()
            self.stop_file.unlink(missing_ok=True)
            if started_ray:
                cluster.shutdown()
        return Outcome(
            dir=self.ledger.dir,
            counts=self.ledger.counts(),
            ran=self._ran,
            interrupted=self._interrupts > 0,
            stopped_by=self._stopped_by,
            failures=self._failures,
        )

    def _finish(self, row: TrialRow, ref: Any, tries: int, started: float) -> Finished:
        """A trial's outcome as ledger columns, and whether it runs again."""
        assert self._stream is not None
        out = _get(ref)
        stalled = self._stream.cancelled.pop(row.id, None)
        if stalled is not None and out["status"] != "done":
            out = {**out, "status": "stalled", "error": stalled, "traceback": None}
        status = out["status"]
        self._beats.pop(row.id, None)
        self._ran += status in ("done", "error", "diverged", "lost", "stalled", "timeout")
        col: dict[str, Any] = {"attempts": out.get("attempts", 0), "host": out.get("host")}
        retry = False
        if status == "done":
            res = out["result"]
            col.update(
                state="done",
                ended=time.time(),
                error=None,
                error_kind=None,
                traceback=None,
                step=res.get("steps"),
                wall_s=res.get("wall_time_s"),
            )
        elif status == "interrupted" or (self._interrupts and status in ("error", "lost")):
            # stopped on request, or broken by the Ctrl-C itself: it runs again later. One
            # stopped before it started reports no step: the ledger keeps its last one.
            col.update(state="pending", error=out.get("error"))
            if out.get("step") is not None:
                col["step"] = out["step"]
        else:
            if status in ("lost", "stalled"):  # the worker could not journal this itself
                _journal_outcome(row, out)
            failed = self._failed[row.id] = self._failed.get(row.id, 0) + 1
            retry = status in RETRIED and failed < _max_attempts(row) and not self._interrupts
            col.update(
                state="pending" if retry else "failed",
                ended=time.time(),
                failures=failed,
                error=out.get("error"),
                error_kind=status,
                traceback=out.get("traceback"),
                step=out.get("step"),
            )
            if not retry:
                self._failures.append(
                    {
                        "id": row.id,
                        "error": out.get("error"),
                        "kind": status,
                        "overrides": row.overrides,
                    }
                )
        if not retry:  # finished for this run: the driver keeps no parsed config of it
            row.__dict__.pop("_view", None)
            self._window.remaining -= 1
        self._bar.advance(status, col["state"])
        if self.on_event:
            self.on_event(status, {"id": row.id, **out})
        return Finished(col, status, retry, notes=[tuple(n) for n in out.get("events", ())])

    def _submit(
        self, row: TrialRow, remote_one: Any, remote_group: Any, cluster_gpus: float
    ) -> Any:
        cfg = row_view(row)
        # the heartbeat already there is an earlier attempt's: only a new one says this
        # attempt has started (a trial may wait in Ray's queue for a long time first)
        before = files.read_json(Path(cfg.run.out_dir) / files.HEARTBEAT)
        self._beats[row.id] = _Beat(before, time.monotonic(), started=False)
        r = cfg.resources
        gpus = gpus_for(cfg, cluster_gpus)
        stop = str(self.stop_file)
        if r.workers > 1:
            return remote_group.options(num_cpus=0, max_retries=r.max_retries).remote(
                row.config, stop, r.workers, r.cpus, gpus
            )
        return remote_one.options(num_cpus=r.cpus, num_gpus=gpus, max_retries=r.max_retries).remote(
            row.config, stop
        )

    def _heartbeats(self, rows: Any) -> None:
        """Running trials' heartbeats into the ledger (which beats the driver's lease too);
        a started trial whose heartbeat has not moved for its ``stall_after_s`` is stalled:
        its task is cancelled (and, on this host, its process killed) and it is retried.

        Time is the driver's own clock (when it saw a heartbeat change), so clocks that
        disagree between hosts do not matter."""
        now = time.monotonic()
        changes, stalled = [], {}
        for row in rows:
            view = row_view(row)
            beat = files.read_json(Path(view.run.out_dir) / files.HEARTBEAT)
            seen = self._beats.get(row.id)
            if not beat or seen is None:
                continue
            if not seen.same(beat):
                self._beats[row.id] = _Beat(beat, now, started=True)
                changes.append(
                    (
                        row.id,
                        {"heartbeat": beat["time"], "step": beat["step"], "host": beat["host"]},
                    )
                )
                continue
            grace = float(view.resources.get("stall_after_s") or 0)
            if seen.started and grace > 0 and now - seen.since > grace and _gone(beat):
                # the attempt died (Ray runs the task again, and the next attempt beats
                # anew): it is lost, not stalled, however long its retry waits to start
                self._beats[row.id] = _Beat(beat, now, started=False)
                continue
            if seen.started and grace > 0 and now - seen.since > grace:
                stalled[row.id] = (
                    f"stalled: no heartbeat for {now - seen.since:.0f} s "
                    f"(resources.stall_after_s={grace:g}) at step {beat['step']} "
                    f"on {beat['host']} (PID {beat['pid']})"
                )
                self._beats.pop(row.id)
                _kill_soon(beat)
        self.ledger.update(changes)  # its outcome, "stalled", is recorded as it comes back
        if stalled and self._stream is not None:
            self._stream.cancel_items(stalled)

    def _catch_stop_signals(self) -> dict:
        if not _main_thread():
            return {}
        return {sig: signal.signal(sig, self._on_stop_signal) for sig in STOP_SIGNALS}

    def _on_stop_signal(self, signum: int, *_: Any) -> None:
        self._stop(signal.Signals(signum).name)

    def _stopping(self) -> int:
        """How far stopping has gone (0, 1: checkpoint and return, 2: at once); polls the sweep
        directory for `cotsweep stop`'s request, at most once a second."""
        now = time.monotonic()
        if now - self._polled > 1.0:
            self._polled = now
            if self.stop_request.exists():
                self.stop_request.unlink(missing_ok=True)
                self._stop("stop request")
        return self._interrupts

    def _stop(self, why: str) -> None:
        self._interrupts += 1
        if self._interrupts == 1:
            self._stopped_by = why
            self.stop_file.touch()  # trials checkpoint at their next step and return
            again = "Ctrl-C" if why == "SIGINT" else "again"
            print(
                f"\nstopping ({why}): running trials checkpoint and return to pending "
                f"({again} to stop at once)",
                flush=True,
            )

    def _wind_down(self, stream: RayStream[TrialRow]) -> None:
        """The ledger failed: ask running trials to checkpoint, give them a while, then stop
        them, writing nothing more to the ledger (their rows stay running; the next driver
        puts them back, and a trial that finished meanwhile is found done by its files)."""
        import ray

        self.stop_file.touch()
        refs = list(stream.inflight)
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=WIND_DOWN_S)
        stream.cancel("the ledger failed", record=False)


def _journal_outcome(row: TrialRow, out: dict) -> None:
    """An outcome the driver saw (a lost or stalled worker) in the trial's own journal, so
    that a ledger rebuilt from the trial files counts it too."""
    record = {k: out.get(k) for k in ("status", "error", "step")}
    with suppress(OSError):
        files.journal(Path(row_view(row).run.out_dir), {"event": "end", **record, "by": "driver"})


@dataclass
class _Beat:
    """The last heartbeat the driver saw of a trial, and when (its own clock) it moved."""

    beat: dict | None
    since: float
    started: bool  # a heartbeat of this attempt has been seen

    def same(self, beat: dict) -> bool:
        return self.beat is not None and (beat.get("time"), beat.get("pid")) == (
            self.beat.get("time"),
            self.beat.get("pid"),
        )


def _local_pid(beat: dict) -> int | None:
    """The PID that wrote a heartbeat, when it ran on this host (signals reach no further)."""
    import socket

    if beat.get("host") != socket.gethostname() or not beat.get("pid"):
        return None
    return int(beat["pid"])


def _pid_reused(pid: int, beat: dict) -> bool:
    """The heartbeat's PID now names a process born after that attempt started."""
    born = process_start_time(pid)
    return born is not None and born > float(beat.get("started") or 0) + 1.0


def _gone(beat: dict) -> bool:
    """The process that wrote a heartbeat has exited (known on this host only)."""
    pid = _local_pid(beat)
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a zombie (killed, not yet reaped by the raylet) is gone too
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return True
    except (OSError, IndexError):
        pass
    return _pid_reused(pid, beat)  # alive: but is it the same process, or a newer one?


def _kill_soon(beat: dict) -> None:
    """A stalled worker on this host: SIGKILL it (a stopped process ignores everything else)
    a moment after Ray is told to cancel its task, so that Ray does not retry it."""
    import threading

    pid = _local_pid(beat)
    if pid is None:
        return

    def kill() -> None:
        if _pid_reused(pid, beat):
            return  # gone already, its PID given to a newer process
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)

    threading.Timer(2.0, kill).start()


def largest_first(rows: list[TrialRow]) -> list[TrialRow]:
    """The trials in decreasing order of their training work; the grid's order among equals.

    A sweep ends when its last trial does. Started last, a long trial runs alone
    while the other slots idle; started first, the short ones fill in around it
    (longest-processing-time-first scheduling).
    """
    return sorted(rows, key=_work, reverse=True)  # stable, reversed or not


def _work(row: TrialRow) -> float:
    """Training work of a trial, roughly: steps x batch x depth x width^2 x task length."""
    d = files.load_yaml(row.config)  # not kept: a view per trial is made at its submission
    m, t, task = d.get("model") or {}, d.get("train") or {}, d.get("task") or {}
    try:
        return (
            float(t.get("steps") or 0)
            * (t.get("batch_size") or 1)
            * (m.get("depth") or 1)
            * (m.get("width") or 1) ** 2
            * max(1, task.get("length") or 1)
        )
    except TypeError:  # a task without these keys (a simulation): no training work
        return 0.0


def _offline_notice(rows: list[TrialRow], sweep_dir: Path) -> None:
    """Say once, in the driver, where offline W&B runs go (workers' own notices reach no one)."""
    from cotsweep.tracking import offline_notice, resolve_mode

    modes = {row_view(r).tracking.wandb.mode for r in rows[:1]}
    if any(resolve_mode(m) == "offline" for m in modes):
        print(offline_notice(sweep_dir), flush=True)


def _execute_one(cfg_yaml: str, stop_file: str) -> dict:
    from cotsweep.sweep.worker import execute

    return execute(cfg_yaml, stop_file)


def _execute_group(cfg_yaml: str, stop_file: str, workers: int, cpus: float, gpus: float) -> dict:
    from cotsweep.sweep.worker import execute_group

    return execute_group(cfg_yaml, stop_file, workers, cpus, gpus)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # Ray colours its tracebacks for terminals


def _get(ref: Any) -> dict:
    """The outcome of a finished task. A task that raised (outside the trial's own code:
    the worker returns the trial's errors as outcomes) is an error; a lost worker or node
    is 'lost'. Ray's terminal colour codes are taken out of what the ledger keeps."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None) or e
        text = _ANSI.sub("", str(cause)).strip()
        return {
            "status": "error",
            "error": f"{type(cause).__name__}: {text.splitlines()[0] if text else ''}",
            "traceback": _ANSI.sub("", str(e))[-4000:],
        }
    except ray.exceptions.RayError as e:
        text = _ANSI.sub("", str(e)).strip()
        return {
            "status": "lost",
            "error": f"{type(e).__name__}: {text.splitlines()[0] if text else ''}",
            "traceback": text[-4000:],
        }


def _max_attempts(row: TrialRow) -> int:
    return int(row_view(row).resources.max_attempts)


_VIEW_KEYS = ("resources", "run", "model", "task", "tracking")


def row_view(row: TrialRow) -> Any:
    """The keys the driver reads of a trial's config, parsed once per row.

    Parsing the whole YAML into OmegaConf at each submission cost ~10 ms a trial,
    half the driver's time in a sweep of short trials. The view is cached on the
    row object itself (the same trial id in another sweep has another config) while
    the trial is in flight, and dropped when it finishes: views of every row held for
    the whole sweep cost ~22 KB a trial (220 MB at 10,000).
    """
    view = getattr(row, "_view", None)
    if view is None:
        data = files.load_yaml(row.config)
        view = OmegaConf.create({k: data.get(k) for k in _VIEW_KEYS})
        object.__setattr__(row, "_view", view)
    return view


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class _Bar:
    """The sweep's live progress bar: done / running / failed and an ETA."""

    def __init__(self, ledger: Ledger, total: int, enabled: bool):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.enabled = enabled and total > 0
        self.done = self.failed = 0
        if not self.enabled:
            return
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("running {task.fields[running]}  failed {task.fields[failed]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(ledger.dir.name, total=total, running=0, failed=0)

    def advance(self, status: str, state: str) -> None:
        if state == "done":
            self.done += 1
        elif state == "failed":
            self.failed += 1
        if self.enabled and state in ("done", "failed"):
            self.progress.update(self.task, advance=1, failed=self.failed)

    def refresh(self, running: int) -> None:
        if self.enabled:
            self.progress.update(self.task, running=running)

    def close(self) -> None:
        if self.enabled:
            self.progress.stop()


# ---------------------------------------------------------------- verbs
def runnable(rows: list[TrialRow]) -> tuple[list[TrialRow], int]:
    """The trials a launch or resume runs, and how many failed ones it leaves: those that
    diverged (they would again) or used their ``resources.max_attempts``."""
    keep = [
        r
        for r in rows
        if r.state != "failed" or (r.error_kind != "diverged" and r.failures < _max_attempts(r))
    ]
    return keep, len(rows) - len(keep)


def launch(
    name_or_path: str,
    overrides: list[str],
    sweep_dir: Path | None = None,
    *,
    max_trials: int | None = None,
    on_expand: Callable[[int, int], None] | None = None,
    on_recorded: Callable[[], None] | None = None,
    warn: Callable[[str], None] = print,
    **driver_kw: Any,
) -> Outcome:
    started_ray = False
    address = driver_kw.get("address")
    if address or os.environ.get("RAY_ADDRESS"):  # a cluster: its nodes say what is feasible
        started_ray = cluster.connect(address)
    try:
        check = trial_checker(driver_kw.get("num_cpus"), address, warn)
        prep = prepare(
            name_or_path,
            overrides,
            sweep_dir,
            max_trials=max_trials,
            on_expand=on_expand,
            check=check,
        )
        ledger = prep.ledger
        if on_recorded is not None:
            on_recorded()
        with _holding(ledger):
            ledger.requeue_running()
            rows, exhausted = runnable(
                [r for r in ledger.trials(("pending", "failed")) if r.id in prep.ids]
            )
            out = Driver(ledger, **driver_kw).run(rows)
            out.new, out.exhausted = prep.new, exhausted
            return out
    finally:
        if started_ray:
            cluster.shutdown()


def trial_checker(
    num_cpus: float | None, address: str | None, warn: Callable[[str], None] = print
) -> Callable[[Trial], Footprint]:
    """Each trial's request against the Ray it will run on (see cotsweep.sweep.feasible)."""
    import ray

    if ray.is_initialized():
        where = f"the cluster at {address}" if address else "the running Ray"
        cap = feasible.ray_capacity(where, cluster=bool(address or os.environ.get("RAY_ADDRESS")))
    else:
        cap = feasible.local_capacity(num_cpus)
    check = feasible.checker(cap, warn)

    def check_trial(t: Trial) -> Footprint:
        return check(ConfigView(t.config), t.task, " ".join(t.overrides))

    return check_trial


def resume(
    sweep_dir: Path,
    *,
    failed_only: bool = False,
    reset_attempts: bool = False,
    selection: Selection | None = None,
    **driver_kw: Any,
) -> Outcome:
    """Rerun the failed and unfinished trials (``selection``: only those it takes; its states
    among pending and failed, since trials left running are pending again first)."""
    chosen = None
    if selection is not None and selection.axes:
        reader = Ledger(Path(sweep_dir), read_only=True)
        try:  # checked before the lock is taken: a bad filter writes nothing
            chosen = set(selected_ids(reader, Selection(selection.axes)))
        finally:
            reader.close()
    states = ("failed",) if failed_only else ("pending", "failed")
    if selection is not None and selection.states:
        states = selection.states
    ledger = open_for_resume(Path(sweep_dir))
    with _holding(ledger):
        ledger.requeue_running()
        rows = [r for r in ledger.trials(states) if chosen is None or r.id in chosen]
        exhausted = 0
        if reset_attempts:  # the journals keep the earlier attempts, as history
            files.reset_attempts(Path(row_view(r).run.out_dir) for r in rows)
            ledger.update(
                [(r.id, {"attempts": 0, "failures": 0}) for r in rows],
                [(r.id, "attempts_reset", None) for r in rows],
            )
            rows = [r for r in ledger.trials(states) if chosen is None or r.id in chosen]
        else:
            rows, exhausted = runnable(rows)
        out = Driver(ledger, **driver_kw).run(rows)
        out.exhausted = exhausted
        return out


@contextmanager
def _holding(ledger: Ledger) -> Iterator[None]:
    """Release the lease and close the ledger however the body ends; a ledger that fails
    on the way out does not hide the error that ended the body."""
    try:
        yield
    except BaseException:
        with suppress(LedgerError):
            ledger.release()
        ledger.close()
        raise
    ledger.release()
    ledger.close()
