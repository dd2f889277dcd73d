"""The driver: record a sweep in its ledger, run what is not done on Ray, stream results.

One Ray task per trial (or a placement group of rank actors for a data-parallel
trial), resources from the trial's config. Results are streamed with
``ray.wait`` and written to the ledger in batches; one failing trial never
stops the others. Ctrl-C asks running trials to checkpoint and return to
pending; a second Ctrl-C stops at once. Nothing recorded is lost either way:
the ledger is only ever updated in transactions, and trials keep their
checkpoints.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from cotsweep import files
from cotsweep.ledger import Ledger, LedgerLocked, TrialRow
from cotsweep.sweep import cluster
from cotsweep.sweep.grid import Trial, config_yaml, expand, sweep_name
from cotsweep.sweep.stream import Finished, RayStream


@dataclass
class Outcome:
    """What a launch or resume did, for the summary and the exit code."""

    dir: Path
    counts: dict[str, int]
    ran: int = 0
    new: int = 0
    interrupted: bool = False
    failures: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.interrupted and self.counts.get("done", 0) == sum(self.counts.values())


class SweepBusy(RuntimeError):
    pass


def default_dir(name_or_path: str) -> Path:
    return Path("runs") / sweep_name(name_or_path)


def prepare(
    name_or_path: str, overrides: list[str], sweep_dir: Path | None = None
) -> tuple[Path, list[Trial], Ledger]:
    """Expand and validate the grid, then take the sweep's lock and record new trials.

    Everything that can be refused is refused before the ledger is written.
    """
    sweep_dir = Path(sweep_dir or default_dir(name_or_path)).resolve()
    trials = expand(name_or_path, overrides, sweep_dir)  # GridError: nothing written
    ledger = Ledger(sweep_dir, create=True)
    try:
        ledger.acquire()  # LedgerLocked: nothing written
    except LedgerLocked as e:
        ledger.close()
        raise SweepBusy(str(e)) from e
    new = ledger.add_trials((t.id, t.overrides, t.axes, config_yaml(t.cfg)) for t in trials)
    source = Path(name_or_path)
    ledger.set_meta(
        name=sweep_name(name_or_path),
        source=str(source.resolve()) if source.exists() else name_or_path,
        last_overrides=json.dumps(overrides),
        driver_job=cluster.job_submission_id() or "",
    )
    ledger.new_trials = new  # type: ignore[attr-defined]
    return sweep_dir, trials, ledger


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
def gpus_for(cfg: Any, cluster_gpus: float) -> float:
    """GPUs per worker of a trial: the configured number, or a fraction sized from the model."""
    from cotsweep.tasks import TASKS

    g = cfg.resources.gpus
    if g != "auto":
        return float(g)
    entry = TASKS.get(cfg.task.name)
    if (
        cluster_gpus <= 0
        or str(cfg.run.device) == "cpu"
        or (entry is not None and not entry.cls.trains)
    ):
        return 0.0
    m = cfg.model
    params = 12 * m.depth * m.width**2  # the transformer blocks dominate
    # small models share a GPU: a quarter below 10M parameters, half below 100M
    return 0.25 if params < 10e6 else 0.5 if params < 100e6 else 1.0


# ---------------------------------------------------------------- the driver loop
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
        self._interrupts = 0

    def run(self, rows: list[TrialRow]) -> Outcome:
        import ray

        if not rows:  # nothing to do: no need to start Ray
            return Outcome(dir=self.ledger.dir, counts=self.ledger.counts())
        _offline_notice(rows, self.ledger.dir)
        started_ray = cluster.connect(
            self.address, num_cpus=self.num_cpus, dashboard=self.dashboard
        )
        remote_one = ray.remote(_execute_one)
        remote_group = ray.remote(_execute_group)
        resources = cluster.cluster_resources()
        cluster_gpus = resources.get("GPU", 0.0)
        capacity = max(1, int(resources.get("CPU", 1)))
        # Embedded: a short queue per core keeps Ray busy without flooding it. On a
        # cluster every trial waits in Ray's queue: the autoscaler sizes the cluster
        # from the demand it sees.
        limit = self.max_concurrent or (
            len(rows) if (self.address or os.environ.get("RAY_ADDRESS")) else 2 * capacity
        )
        self._failures: list[dict] = []
        self._ran = 0
        old_handler = signal.signal(signal.SIGINT, self._on_sigint) if _main_thread() else None
        self._bar = bar = _Bar(self.ledger, len(rows), enabled=self.progress)
        stream: RayStream[TrialRow] = RayStream(
            self.ledger,
            key=lambda r: r.id,
            submit=lambda r: self._submit(
                row_view(r), r.config, remote_one, remote_group, cluster_gpus
            ),
            finish=self._finish,
            limit=limit,
            heartbeat=self._heartbeats,
            stopping=lambda: self._interrupts,
            on_round=lambda running: bar.refresh(running=running),
        )
        try:
            stream.run(rows)
            if stream.inflight:  # a second Ctrl-C
                stream.cancel("second Ctrl-C")
        finally:
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
            bar.close()
            self.stop_file.unlink(missing_ok=True)
            if started_ray:
                cluster.shutdown()
        return Outcome(
            dir=self.ledger.dir,
            counts=self.ledger.counts(),
            ran=self._ran,
            interrupted=self._interrupts > 0,
            failures=self._failures,
        )

    def _finish(self, row: TrialRow, ref: Any, tries: int, started: float) -> Finished:
        """A trial's outcome as ledger columns, and whether it runs again."""
        out = _get(ref)
        status = out["status"]
        self._ran += status in ("done", "error", "diverged", "lost")
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
            retry = (
                status in ("error", "lost") and tries < _max_attempts(row) and not self._interrupts
            )
            col.update(
                state="pending" if retry else "failed",
                ended=time.time(),
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
        self._bar.advance(status, col["state"])
        if self.on_event:
            self.on_event(status, {"id": row.id, **out})
        return Finished(col, status, retry, notes=[tuple(n) for n in out.get("events", ())])

    def _submit(
        self, cfg: Any, cfg_yaml: str, remote_one: Any, remote_group: Any, cluster_gpus: float
    ) -> Any:
        r = cfg.resources
        gpus = gpus_for(cfg, cluster_gpus)
        stop = str(self.stop_file)
        if r.workers > 1:
            return remote_group.options(num_cpus=0, max_retries=r.max_retries).remote(
                cfg_yaml, stop, r.workers, r.cpus, gpus
            )
        return remote_one.options(num_cpus=r.cpus, num_gpus=gpus, max_retries=r.max_retries).remote(
            cfg_yaml, stop
        )

    def _heartbeats(self, rows: Any) -> None:
        changes = []
        for row in rows:
            beat = files.read_json(Path(row_view(row).run.out_dir) / files.HEARTBEAT)
            if beat:
                changes.append(
                    (
                        row.id,
                        {"heartbeat": beat["time"], "step": beat["step"], "host": beat["host"]},
                    )
                )
        self.ledger.update(changes)

    def _on_sigint(self, *_: Any) -> None:
        self._interrupts += 1
        if self._interrupts == 1:
            self.stop_file.touch()  # trials checkpoint at their next step and return
            print(
                "\nstopping: running trials checkpoint and return to pending (Ctrl-C again to stop at once)",
                flush=True,
            )


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


def _get(ref: Any) -> dict:
    """The outcome of a finished task; a lost worker or node becomes a 'lost' outcome."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayError as e:
        return {
            "status": "lost",
            "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
            "traceback": str(e)[-4000:],
        }


def _max_attempts(row: TrialRow) -> int:
    return int(row_view(row).resources.max_attempts)


_VIEW_KEYS = ("resources", "run", "model", "task", "tracking")


def row_view(row: TrialRow) -> Any:
    """The keys the driver reads of a trial's config, parsed once per row.

    Parsing the whole YAML into OmegaConf at each submission cost ~10 ms a trial,
    half the driver's time in a sweep of short trials. The view is cached on the
    row object itself: the same trial id in another sweep has another config.
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
def launch(
    name_or_path: str, overrides: list[str], sweep_dir: Path | None = None, **driver_kw: Any
) -> Outcome:
    sweep_dir, trials, ledger = prepare(name_or_path, overrides, sweep_dir)
    try:
        ledger.requeue_running()
        ids = {t.id for t in trials}
        rows = [
            r
            for r in ledger.trials(("pending", "failed"))
            if r.id in ids and r.error_kind != "diverged"
        ]
        out = Driver(ledger, **driver_kw).run(rows)
        out.new = ledger.new_trials  # type: ignore[attr-defined]
        return out
    finally:
        ledger.release()
        ledger.close()


def resume(
    sweep_dir: Path, *, failed_only: bool = False, reset_attempts: bool = False, **driver_kw: Any
) -> Outcome:
    ledger = open_for_resume(Path(sweep_dir))
    try:
        ledger.requeue_running()
        rows = ledger.trials(("failed",) if failed_only else ("pending", "failed"))
        if reset_attempts:
            files.reset_attempts(Path(OmegaConf.create(r.config).run.out_dir) for r in rows)
            ledger.update(
                [(r.id, {"attempts": 0}) for r in rows],
                [(r.id, "attempts_reset", None) for r in rows],
            )
        else:
            rows = [r for r in rows if r.error_kind != "diverged"]  # it would diverge again
        return Driver(ledger, **driver_kw).run(rows)
    finally:
        ledger.release()
        ledger.close()
