"""The background mirror of one trial: one W&B run (id = trial id), fed off the training thread.

Every W&B call runs on one background thread that owns the run; the training
loop only puts rows on a queue, so a slow ``wandb.init`` (online, a bad
network) or a W&B crash never holds up a step. The first W&B error is logged
once and the tracker turns itself off; the trial goes on with its files.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cotsweep.secret_guard import refuse_secrets
from cotsweep.tracking.mode import notify_offline, resolve_mode
from cotsweep.tracking.runlog import WANDB_DIR, last_logged_step
from cotsweep.tracking.runs import finish_run, init_run

log = logging.getLogger(__package__)  # one logger for the whole W&B mirror: cotsweep.tracking


# ---------------------------------------------------------------- run identity
def _plain(value: Any) -> Any:
    return getattr(value, "value", value)  # enums (Setting) to their string


def run_name(cfg: DictConfig) -> str:
    """Readable run name task-setting-depth-length-seed, e.g. ``s5-cot-d1-n16-s0``."""
    return (
        f"{cfg.task.name}-{_plain(cfg.setting)}-d{cfg.model.depth}-n{cfg.task.length}-s{cfg.seed}"
    )


def run_tags(cfg: DictConfig) -> list[str]:
    """Tags from the grid axes (W&B filters on them), then the configured tags."""
    axes = [
        str(cfg.task.name),
        str(_plain(cfg.setting)),
        f"depth={cfg.model.depth}",
        f"n={cfg.task.length}",
        f"seed={cfg.seed}",
    ]
    extra = [str(t) for t in (OmegaConf.select(cfg, "tracking.wandb.tags") or [])]
    return list(dict.fromkeys(axes + extra))


def _sweep_name(cfg: DictConfig) -> str:
    return str(OmegaConf.select(cfg, "sweep.name") or "") or "train"


def _trial_config(cfg: DictConfig, trial_id: str) -> dict:
    refuse_secrets(cfg)  # the run's files are uploaded by `cotsweep sync`
    data = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    data.pop("hydra", None)
    data["trial_id"] = trial_id
    return data


# ---------------------------------------------------------------- the trial's run
@dataclass
class _Row:
    step: int
    metrics: dict = field(default_factory=dict)


def _loggable(metrics: dict) -> dict:
    """Scalars only: W&B charts numbers; lists (per-step chain accuracy) stay in metrics.jsonl."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, bool))}


class Tracker:
    """Mirrors one trial to one W&B run (id = trial id), off the training thread.

    The trial loop calls :meth:`start`, :meth:`log` and :meth:`summary`; its
    caller calls :meth:`finish`. Each is cheap and never raises.
    """

    def __init__(self, cfg: DictConfig, trial_dir: Path, trial_id: str, mode: str):
        self.trial_dir = Path(trial_dir)
        self.trial_id = trial_id
        self.mode = mode
        w = cfg.tracking.wandb
        self._init_kwargs = dict(
            id=trial_id,
            project=w.project,
            entity=w.entity or None,
            group=_sweep_name(cfg),
            name=run_name(cfg),
            job_type=f"{cfg.task.name}-{_plain(cfg.setting)}",
            tags=run_tags(cfg),
            config=_trial_config(cfg, trial_id),
            dir=str(self.trial_dir),
        )
        self._ops: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._off = False  # set on the first error (from either thread): later calls do nothing
        self.error: str | None = None
        self.run_dir: Path | None = None  # the run folder this attempt writes, once started
        self.skipped_steps: list[int] = []  # replayed steps already in W&B, not logged again
        self.backfilled_steps: list[int] = []  # kept steps W&B had lost, sent again from the file
        self._skip_upto = -1
        self._completed = (
            False  # a summary arrived: the trial finished, the run is "finished" not "failed"
        )

    # -- called by the trial (training thread): queue only
    def start(self, resume_step: int | None = None, history: list[dict] | None = None) -> None:
        """Open the run; ``history``: the trial's metrics.jsonl rows up to ``resume_step``,
        of which W&B gets every step it does not hold yet before anything newer."""
        if self._thread is not None or self._off:
            return
        self._thread = threading.Thread(
            target=self._work,
            args=(resume_step, list(history or ())),
            name=f"wandb-{self.trial_id}",
            daemon=True,
        )
        self._thread.start()

    def complete(self, history: list[dict], result: dict) -> None:
        """A finished trial met again: send what W&B lacks of it (a worker killed after
        result.json was written, before W&B had its last rows), or nothing at all."""
        steps = [int(r["step"]) for r in history if "step" in r]
        if steps and last_logged_step(self.trial_dir / WANDB_DIR, self.trial_id) >= max(steps):
            return
        self.start(max(steps, default=0), history)
        self.summary(result)

    def log(self, metrics: dict, step: int) -> None:
        if not self._off:
            self._ops.put(("log", int(step), dict(metrics)))

    def summary(self, result: dict) -> None:
        if self._off:
            return
        self.start(None)  # a trial that never trained (a simulation) still gets its run
        self._ops.put(("summary", None, dict(result)))

    def finish(self) -> None:
        """Flush and close the run; waits for the W&B thread (uploads, when online)."""
        if self._thread is None:
            return
        self._ops.put(("finish", None, None))
        self._thread.join()
        self._thread = None

    # -- the W&B thread
    def _fail(self, what: str, err: BaseException) -> None:
        if not self._off:
            self._off = True
            self.error = f"{what}: {type(err).__name__}: {err}"
            log.error(
                "W&B mirror of trial %s turned off (%s); the trial goes on with its files",
                self.trial_id,
                self.error,
            )

    def _work(self, resume_step: int | None, history: list[dict]) -> None:
        run = None
        pending: _Row | None = None
        last_sent = -1
        try:
            run = self._open(resume_step)
            last_sent = self._backfill(run, history)
        except Exception as e:
            self._fail("wandb.init", e)
        while True:
            op, step, data = self._ops.get()
            if op == "finish":
                break
            if self._off or run is None:
                continue
            try:
                if op == "log":
                    if step <= self._skip_upto:
                        if not self.skipped_steps or self.skipped_steps[-1] != step:
                            self.skipped_steps.append(step)
                        continue
                    if pending is not None and step != pending.step:
                        last_sent = self._send(run, pending, last_sent)
                        pending = None
                    pending = pending or _Row(step)
                    pending.metrics.update(_loggable(data))
                elif op == "summary":
                    pending = self._final_chart(data, pending, last_sent)
                    if pending is not None:
                        last_sent = self._send(run, pending, last_sent)
                        pending = None
                    run.summary.update(data)
                    self._completed = True
            except Exception as e:
                self._fail(f"wandb {op}", e)
        try:
            if not self._off and run is not None and pending is not None:
                self._send(run, pending, last_sent)
        except Exception as e:
            self._fail("wandb log", e)
        if run is not None:
            try:
                # an interrupted or failed attempt shows as failed until a later one finishes it
                finish_run(run, exit_code=0 if self._completed and not self._off else 1)
            except Exception as e:
                self._fail("wandb finish", e)

    def _open(self, resume_step: int | None) -> Any:
        wandb_dir = self.trial_dir / WANDB_DIR
        # Before init creates this attempt's folder: what earlier attempts already mirrored.
        self._skip_upto = last_logged_step(wandb_dir, self.trial_id)
        wandb_dir.mkdir(parents=True, exist_ok=True)
        run, self.mode = init_run(self.mode, self.trial_dir, **self._init_kwargs)
        # online, the server knows the last step even where the local logs were lost
        self._skip_upto = max(self._skip_upto, int(getattr(run, "starting_step", 0) or 0) - 1)
        self.run_dir = Path(run.dir).parent if getattr(run, "dir", None) else None
        if resume_step is not None:
            run.summary["resumed_from_step"] = resume_step
        return run

    def _backfill(self, run: Any, history: list[dict]) -> int:
        """Send the rows of ``history`` above the last step W&B holds, one whole row per step.

        A crash can cost W&B the tail of what it was sent (its process had not written
        it yet) while metrics.jsonl, written first, kept it: without this the steps
        between W&B's last one and the checkpoint would never reach W&B.
        """
        rows: dict[int, dict] = {}
        for r in history:
            step = int(r.get("step", -1))
            if step > self._skip_upto:
                rows.setdefault(step, {}).update(_loggable(r))
        last_sent = -1
        for step in sorted(rows):
            rows[step].pop("step", None)
            last_sent = self._send(run, _Row(step, rows[step]), last_sent)
        self.backfilled_steps = sorted(s for s in rows if rows[s])
        return last_sent

    def _send(self, run: Any, row: _Row, last_sent: int) -> int:
        if row.step <= last_sent or not row.metrics:
            return last_sent  # never rewind a run's steps
        run.log(row.metrics, step=row.step, commit=True)
        return row.step

    def _final_chart(self, result: dict, pending: _Row | None, last_sent: int) -> _Row | None:
        """Per-step chain accuracy as a native line chart, in the row of the final step."""
        per_step = result.get("chain_acc_per_step")
        step = result.get("steps")
        if not per_step or step is None:
            return pending
        if pending is None:
            if step <= max(last_sent, self._skip_upto):
                return None  # that row is already in W&B; the list stays in the summary
            pending = _Row(int(step))
        elif pending.step != step:
            return pending
        import wandb

        table = wandb.Table(
            columns=["chain_step", "chain_acc"], data=[[i + 1, v] for i, v in enumerate(per_step)]
        )
        pending.metrics["eval/chain_acc_per_step"] = wandb.plot.line(
            table, "chain_step", "chain_acc", title="chain accuracy per chain step"
        )
        return pending


def open_tracker(cfg: DictConfig, trial_dir: Path | str, trial_id: str) -> Tracker | None:
    """The W&B mirror of one trial, or None when W&B is disabled. Never raises."""
    try:
        mode = resolve_mode(OmegaConf.select(cfg, "tracking.wandb.mode"))
    except Exception as e:
        log.error("W&B mirror off: %s", e)
        return None
    if mode == "disabled":
        return None
    trial_dir = Path(trial_dir)
    if mode == "offline":
        sweep_dir = OmegaConf.select(cfg, "sweep.dir") or ""
        notify_offline(Path(sweep_dir) if sweep_dir else trial_dir)
    try:
        return Tracker(cfg, trial_dir, trial_id, mode)
    except Exception as e:
        log.error("W&B mirror of trial %s off: %s: %s", trial_id, type(e).__name__, e)
        return None
