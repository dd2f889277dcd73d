"""What a Ray worker runs for one trial: one process, or a data-parallel group.

A trial's outcome comes back as a value, never as an exception, so that Ray's
own retries (``max_retries``) are spent only on lost workers and nodes; the
driver decides about everything else from the outcome's ``status``:

* ``done``: result.json is written;
* ``error``: the trial raised; retried up to ``resources.max_attempts``;
* ``diverged``: the loss went non-finite; not retried (it would diverge again);
* ``interrupted``: the driver asked it to stop (or the worker got SIGTERM/SIGUSR1); it
  checkpointed and returns to pending (one that had not started yet returns at once,
  with no attempt recorded);
* ``timeout``: the attempt reached ``resources.time_limit_s``; it checkpointed.

Every execution of an unfinished trial appends to the trial's journal
(attempts.jsonl) first, so the attempt count includes executions that Ray
retried after their worker died; a trial whose result.json exists is done and
costs no attempt. The outcome is journaled too, so that a ledger rebuilt from
the trial files knows it. An outcome carries to the ledger the events (a checkpoint
set aside, ...) journaled since the last outcome returned, so those of an attempt
that died before returning (a killed worker or driver) reach it with the next.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from cotsweep import files, logs
from cotsweep.ids import trial_id

TRACEBACK_TAIL = 4000


def outcome(status: str, trial_dir: Path | None, **fields: Any) -> dict:
    try:
        attempts = files.count_attempts(trial_dir) if trial_dir else 0
        events = (
            [(r["event"], r.get("detail")) for r in files.attempt_events(trial_dir)]
            if trial_dir
            else []
        )
    except OSError:  # an unreadable journal: the outcome itself still reaches the ledger
        attempts, events = 0, []
    return {
        "status": status,
        "attempts": attempts,
        "host": socket.gethostname(),
        "events": events,
        **fields,
    }


def failure(e: BaseException, trial_dir: Path | None) -> dict[str, str]:
    """An exception as the ledger records it: its type and message on one line, naming the
    trial's directory, and the tail of its traceback."""
    where = f" [trial dir {trial_dir}]" if trial_dir is not None else ""
    text = " ".join(str(e).split())
    return {
        "error": f"{type(e).__name__}: {text}{where}",
        "traceback": traceback.format_exc()[-TRACEBACK_TAIL:],
    }


def execute(
    cfg_yaml: str,
    stop_file: str | None,
    dist: tuple[int, int, str] | None = None,
    listen_fd: int | None = None,
) -> dict:
    """Run one trial (or one rank of it) in this process; returns its outcome, never raises.

    ``dist`` is (rank, world size, rendezvous address); rank 0 serves the
    rendezvous on ``listen_fd``, a socket already listening there.
    """
    trial_dir: Path | None = None
    try:
        cfg = OmegaConf.create(files.load_yaml(cfg_yaml))
        trial_dir = Path(cfg.run.out_dir)
        rank = dist[0] if dist else 0
        done = files.read_json(trial_dir / files.RESULT)
        if done is not None:  # finished by an earlier attempt: no attempt is counted
            if rank == 0:
                _mirror_finished(cfg, trial_dir, done)
            return outcome("done", trial_dir, result=done)
        if dist is None and stop_file and Path(stop_file).exists():
            # Stopped while it waited in Ray's queue (on a cluster every trial of the sweep
            # waits there): it never started, so it costs no attempt, and it returns before
            # importing torch, so a stop drains the queue in moments.
            return outcome("interrupted", trial_dir)
        attempt = files.record_attempt(trial_dir) if rank == 0 else None
        # rank 0's output is the trial's: logs/attempt-K.log, for `cotsweep logs`
        with logs.capture(trial_dir, attempt):
            out = _run(cfg, trial_dir, stop_file, dist, listen_fd)
            if attempt is not None:
                print(f"== attempt {attempt}: {_summary(out)}", flush=True)
    except Exception as e:  # before the trial ran (a full disk, a bad directory): recorded too
        out = outcome("error", trial_dir, **failure(e, trial_dir))
    if trial_dir is not None and (dist is None or dist[0] == 0):
        # done too: the notes this outcome carries to the ledger are not carried again
        _journal_end(trial_dir, out)
    return out


def _journal_end(trial_dir: Path, out: dict) -> None:
    """The outcome in the trial's own journal, for a ledger rebuilt from the trial files."""
    try:
        files.journal(
            trial_dir,
            {
                "event": "end",
                **{k: out.get(k) for k in ("status", "error", "step", "traceback")},
            },
        )
    except OSError:  # a full disk: the ledger still gets the outcome from the return value
        pass


def _mirror_finished(cfg: Any, trial_dir: Path, result: dict) -> None:
    """A finished trial whose W&B run may lack its last rows (a kill after result.json)."""
    from cotsweep.tracking import open_tracker

    tracker = open_tracker(cfg, trial_dir, trial_id(cfg))
    if tracker is not None:
        tracker.complete(files.read_jsonl(trial_dir / files.METRICS), result)
        tracker.finish()


def _summary(out: dict) -> str:
    """The outcome in the log's last line: acc and steps when done, else the error."""
    res = out.get("result") or {}
    if out["status"] == "done":
        return f"done, acc={res.get('acc')} after {res.get('steps')} steps"
    detail = out.get("error") or (f"at step {out['step']}" if out.get("step") is not None else "")
    return f"{out['status']} {detail}".strip()


def _run(
    cfg: Any,
    trial_dir: Path,
    stop_file: str | None,
    dist: tuple[int, int, str] | None,
    listen_fd: int | None,
) -> dict:
    import torch

    from cotsweep.tracking import open_tracker
    from cotsweep.trial import (
        DistContext,
        Diverged,
        StopSignal,
        TrialInterrupted,
        TrialTimedOut,
        run_trial,
    )

    rank, world = (dist[0], dist[1]) if dist else (0, 1)
    if dist is not None:
        backend = "nccl" if torch.cuda.is_available() and cfg.run.device != "cpu" else "gloo"
        torch.distributed.init_process_group(
            backend, store=_rendezvous(dist[2], rank, world, listen_fd), rank=rank, world_size=world
        )
    tracker = None
    stop = StopSignal(stop_file)
    restore = _stop_on_signals(stop)
    try:
        if rank == 0:
            tracker = open_tracker(cfg, trial_dir, trial_id(cfg))
        result = run_trial(
            cfg, trial_dir, should_stop=stop, dist_ctx=DistContext(rank, world), tracker=tracker
        )
        return outcome("done", trial_dir, result=result)
    except Diverged as e:
        return outcome("diverged", trial_dir, error=str(e), step=e.step)
    except TrialInterrupted as e:
        return outcome("interrupted", trial_dir, step=e.step)
    except TrialTimedOut as e:
        return outcome("timeout", trial_dir, error=f"TrialTimedOut: {e}", step=e.step)
    except KeyboardInterrupt:  # a terminal's Ctrl-C reaches the workers too: back to pending
        return outcome("interrupted", trial_dir)
    except Exception as e:  # any failure of the trial's own code is recorded, not raised
        traceback.print_exc()  # whole, into the attempt's log; the ledger keeps its tail
        return outcome("error", trial_dir, **failure(e, trial_dir))
    finally:
        restore()
        if tracker is not None:
            tracker.finish()
        if dist is not None and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _rendezvous(address: str, rank: int, world: int, listen_fd: int | None) -> Any:
    """torch.distributed's key-value store of a rank group, served by rank 0.

    torch binds a store it opens itself to every interface; served on a socket
    opened here (bound to the node's IP, loopback when embedded), it listens
    nowhere else.
    """
    import torch.distributed as dist

    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    host = host.strip("[]")
    if rank == 0:
        assert listen_fd is not None, "rank 0 serves the rendezvous on its listening socket"
        return dist.TCPStore(host, int(port), world, True, master_listen_fd=listen_fd)
    return dist.TCPStore(host, int(port), world, False)


def _stop_on_signals(stop: Any) -> Callable[[], None]:
    """While a trial trains here, SIGTERM (how Slurm, systemd, Docker and Kubernetes stop
    every process of a job) and SIGUSR1 (Slurm's warning before it) make it checkpoint and
    return as interrupted, rather than die mid-step. Returns what restores the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = {}
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        try:
            old[sig] = signal.signal(sig, lambda *_: stop.set())
        except (ValueError, OSError):
            pass

    def restore() -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    return restore


class RankWorker:
    """One rank of a data-parallel trial (a Ray actor in the trial's placement group)."""

    def __init__(self) -> None:
        self._listener: socket.socket | None = None

    def address(self) -> str:
        """Open the rank group's rendezvous socket (rank 0's actor), on the node's IP only."""
        from cotsweep.sweep.cluster import node_ip

        ip = node_ip()
        self._listener = socket.socket(
            socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM
        )
        self._listener.bind((ip, 0))
        self._listener.listen()
        port = self._listener.getsockname()[1]
        return f"tcp://[{ip}]:{port}" if ":" in ip else f"tcp://{ip}:{port}"

    def run(
        self, cfg_yaml: str, stop_file: str | None, rank: int, world: int, init_method: str
    ) -> dict:
        fd = self._listener.detach() if self._listener is not None else None  # the store owns it
        self._listener = None
        return execute(cfg_yaml, stop_file, (rank, world, init_method), fd)

    def pid(self) -> int:
        return os.getpid()


def execute_group(
    cfg_yaml: str, stop_file: str | None, workers: int, cpus: float, gpus: float
) -> dict:
    """Run a data-parallel trial as ``workers`` Ray actors in one placement group; rank 0 reports."""
    import ray

    from cotsweep.sweep import cluster

    bundle = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    pg = cluster.placement_group([bundle] * workers)
    actor_cls = ray.remote(RankWorker)
    actors = []
    try:
        ray.get(pg.ready())
        actors = [
            actor_cls.options(
                num_cpus=cpus, num_gpus=gpus, scheduling_strategy=cluster.in_group(pg, i)
            ).remote()
            for i in range(workers)
        ]
        init = ray.get(actors[0].address.remote())
        outcomes = ray.get(
            [a.run.remote(cfg_yaml, stop_file, r, workers, init) for r, a in enumerate(actors)]
        )
        return outcomes[0]
    finally:
        for a in actors:
            ray.kill(a)
        cluster.remove_group(pg)
