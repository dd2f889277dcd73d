"""One trial: validate, build, train, evaluate, checkpoint, report.

The training step is a short loop. It never waits on the host: the loss is
accumulated on the device and read only at log steps, and divergence is tracked
on the device too (the first step with a non-finite loss), so a GPU step runs
back to back. Checkpoints hold everything needed to continue — model,
optimiser, scheduler, step, generator and RNG states — so a trial started again
on its directory continues where it stopped, and on CPU reproduces the losses of
an uninterrupted run exactly.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from cotsweep import files
from cotsweep.config import PosEncoding, Setting
from cotsweep.determinism import prepare_torch
from cotsweep.errors import ConfigError
from cotsweep.ids import trial_id
from cotsweep.model import GPT, GPTConfig
from cotsweep.secret_guard import refuse_secrets
from cotsweep.tasks import Batch, Task, make_task

log = logging.getLogger(__name__)


class Diverged(RuntimeError):
    """The loss became NaN or infinite; retrying would diverge again."""

    def __init__(self, step: int):
        self.step = step
        super().__init__(f"diverged at step {step}: the loss is not finite")


class TrialInterrupted(RuntimeError):
    """Stopped on request after checkpointing; the trial can continue later."""

    def __init__(self, step: int):
        self.step = step
        super().__init__(f"interrupted at step {step} (checkpointed)")


class TrialTimedOut(RuntimeError):
    """An attempt reached ``resources.time_limit_s``; it checkpointed first."""

    def __init__(self, step: int, limit_s: float):
        self.step = step
        super().__init__(
            f"time limit of {limit_s:g} s reached at step {step} (checkpointed; "
            "a resume continues from there)"
        )


# ---------------------------------------------------------------- validation
def validate(cfg: DictConfig, secrets: bool = True) -> Task:
    """Refuse a config that cannot run, or would write a secret, naming the key; returns the built task.

    ``secrets=False``: the caller has checked every value of ``cfg`` for secrets
    already (grid expansion checks each base and each override value once).
    """
    if secrets:
        refuse_secrets(cfg)
    task = make_task(cfg.task, cfg.setting)
    task.validate()
    if not task.trains:
        return task
    m, t = cfg.model, cfg.train
    checks = [
        ("model.depth", m.depth, m.depth >= 1, "must be >= 1"),
        ("model.width", m.width, m.width >= 1, "must be >= 1"),
        (
            "model.heads",
            m.heads,
            m.heads >= 1 and m.width % m.heads == 0,
            f"must be >= 1 and divide model.width={m.width}",
        ),
        ("model.mlp_ratio", m.mlp_ratio, m.mlp_ratio >= 1, "must be >= 1"),
        ("model.dropout", m.dropout, 0.0 <= m.dropout < 1.0, "must be in [0, 1)"),
        ("train.steps", t.steps, t.steps >= 0, "must be >= 0"),
        ("train.batch_size", t.batch_size, t.batch_size >= 1, "must be >= 1"),
        ("train.lr", t.lr, t.lr > 0, "must be > 0"),
        ("train.eps", t.eps, t.eps > 0, "must be > 0"),
        ("train.eval_every", t.eval_every, t.eval_every >= 1, "must be >= 1"),
        ("train.eval_size", t.eval_size, t.eval_size >= 1, "must be >= 1"),
        (
            "train.precision",
            t.precision,
            t.precision in ("auto", "bf16", "fp32"),
            "must be auto, bf16 or fp32",
        ),
        ("resources.workers", cfg.resources.workers, cfg.resources.workers >= 1, "must be >= 1"),
        (
            "resources.stall_after_s",
            cfg.resources.stall_after_s,
            cfg.resources.stall_after_s > 0,
            "must be > 0 (seconds)",
        ),
        (
            "resources.time_limit_s",
            cfg.resources.time_limit_s,
            cfg.resources.time_limit_s is None or cfg.resources.time_limit_s > 0,
            "must be > 0 (seconds) or null",
        ),
        ("run.log_every", cfg.run.log_every, cfg.run.log_every >= 1, "must be >= 1"),
        (
            "run.checkpoint_every",
            cfg.run.checkpoint_every,
            cfg.run.checkpoint_every >= 1,
            "must be >= 1",
        ),
    ]
    for key, value, ok, why in checks:
        if not ok:
            raise ConfigError(key, value, why)
    if PosEncoding(m.pos_encoding) == PosEncoding.rope and (m.width // m.heads) % 2:
        raise ConfigError(
            "model.pos_encoding", "rope", f"needs an even head size, got {m.width // m.heads}"
        )
    need = task.model_spec().seq_len
    if m.max_len and m.max_len < need:
        raise ConfigError(
            "model.max_len",
            m.max_len,
            f"the {cfg.task.name} sequences of setting {Setting(cfg.setting).value} need {need} positions",
        )
    w = cfg.resources.workers
    if t.batch_size % w:
        raise ConfigError(
            "train.batch_size", t.batch_size, f"must divide evenly among resources.workers={w}"
        )
    return task


def build_model(cfg: DictConfig, task: Task) -> GPT:
    spec, m = task.model_spec(), cfg.model
    return GPT(
        GPTConfig(
            seq_len=max(m.max_len, spec.seq_len),
            depth=m.depth,
            width=m.width,
            heads=m.heads,
            mlp_ratio=m.mlp_ratio,
            pos_encoding=PosEncoding(m.pos_encoding),
            dropout=m.dropout,
            vocab_size=spec.vocab_size,
            in_dim=spec.in_dim,
            out_dim=spec.out_dim,
            tie_readout=m.tie_readout,
            readout_bias=m.readout_bias,
        )
    )


def build_optimizer(
    model: torch.nn.Module, t: DictConfig, device: torch.device
) -> torch.optim.AdamW:
    """AdamW as every trial uses it (fused kernels on CUDA).

    Not fused on CPU: torch's fused CPU kernel changes a trial's losses (by 2e-7 within
    50 steps, benchmarks/adamw_cpu.py), and CPU trials must reproduce exactly; foreach is
    bit-identical there but no faster on these small models."""
    return torch.optim.AdamW(
        model.parameters(),
        lr=t.lr,
        betas=(t.beta1, t.beta2),
        eps=t.eps,
        weight_decay=t.weight_decay,
        fused=device.type == "cuda",
    )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_at(step: int, t: DictConfig) -> float:
    """Linear warmup, then cosine decay to lr * min_lr_ratio (a multiplier of lr)."""
    if step < t.warmup_steps:
        return (step + 1) / t.warmup_steps
    span = max(1, t.steps - t.warmup_steps)
    progress = min(1.0, (step - t.warmup_steps) / span)
    return t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def stream_seed(seed: int, stream: str) -> int:
    """Independent seeds for the train and eval streams of one trial seed."""
    return (seed * 1_000_003 + {"train": 17, "eval": 29, "init": 41}[stream]) % (2**63)


# ---------------------------------------------------------------- stopping
class StopSignal:
    """Asks a running trial to checkpoint and stop: a flag, or a stop file (checked at most once a second)."""

    def __init__(self, stop_file: Path | None = None):
        self.stop_file = Path(stop_file) if stop_file else None
        self._flag = False
        self._checked = 0.0

    def set(self) -> None:
        self._flag = True

    def __call__(self) -> bool:
        if self._flag:
            return True
        now = time.monotonic()
        if self.stop_file is not None and now - self._checked > 1.0:
            self._checked = now
            self._flag = self.stop_file.exists()
        return self._flag


@dataclass
class DistContext:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


# ---------------------------------------------------------------- the trial
def run_trial(
    cfg: DictConfig,
    out_dir: Path | str | None = None,
    *,
    should_stop: Callable[[], bool] | None = None,
    dist_ctx: DistContext | None = None,
    tracker: Any = None,
    progress: Callable[[int, int, dict], None] | None = None,
) -> dict:
    """Train and evaluate one trial into ``out_dir``; return its result.

    Raises ConfigError before touching ``out_dir`` if the config cannot run,
    Diverged on a non-finite loss (checkpoints before it stay), and
    TrialInterrupted after checkpointing when ``should_stop`` turns true.
    """
    task = validate(cfg)
    tid = trial_id(cfg)
    out = Path(out_dir or cfg.run.out_dir)
    dctx = dist_ctx or DistContext()
    existing = out / files.CONFIG
    if existing.exists() and trial_id(OmegaConf.load(existing)) != tid:
        raise ConfigError(
            "run.out_dir", str(out), "holds a different trial; choose another directory"
        )
    done = files.read_json(out / files.RESULT)
    if done is not None:
        return done
    if dctx.is_main:
        files.atomic_write(existing, OmegaConf.to_yaml(cfg, resolve=True))
    if not task.trains:
        return _run_simulation(cfg, tid, task, out, dctx, tracker)
    return _train(cfg, tid, task, out, dctx, should_stop or (lambda: False), tracker, progress)


def _run_simulation(cfg, tid: str, task, out: Path, dctx: DistContext, tracker) -> dict:
    t0 = time.time()
    result = task.simulate(seed=cfg.seed)
    result.update(wall_time_s=time.time() - t0, stop_reason="completed", device="cpu")
    result = _with_axes(cfg, tid, result)
    if dctx.is_main:
        files.write_json(out / files.RESULT, result)
        if tracker is not None:
            tracker.start(None)
            tracker.summary(result)
    return result


def _with_axes(cfg: DictConfig, tid: str, result: dict) -> dict:
    return {
        "trial_id": tid,
        "task": cfg.task.name,
        "setting": Setting(cfg.setting).value,
        "depth": cfg.model.depth,
        "length": cfg.task.length,
        "seed": cfg.seed,
        **result,
    }


# ---------------------------------------------------------------- what a trial trains
@dataclass
class Training:
    """The model (and its data-parallel wrapper), optimiser, schedule and data stream of a trial."""

    model: GPT
    net: torch.nn.Module  # what the step calls: the model, or its DistributedDataParallel
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    gen: torch.Generator  # the training stream; evaluation draws from its own
    device: torch.device
    bf16: bool

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)


def build_training(cfg: DictConfig, task: Task, dctx: DistContext) -> Training:
    t = cfg.train
    device = resolve_device(cfg.run.device)
    if device.type == "cuda" and dctx.world > 1:
        device = torch.device("cuda", torch.cuda.current_device())
    # initial weights (and dropout) from the trial seed
    torch.manual_seed(stream_seed(cfg.seed, "init"))
    model = build_model(cfg, task).to(device)
    net: torch.nn.Module = model
    if dctx.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    opt = build_optimizer(model, t, device)
    return Training(
        model=model,
        net=net,
        opt=opt,
        sched=torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, t)),
        gen=torch.Generator(device=device).manual_seed(stream_seed(cfg.seed, "train")),
        device=device,
        bf16=t.precision == "bf16" or (t.precision == "auto" and device.type == "cuda"),
    )


# ---------------------------------------------------------------- checkpoints
def fresh_state() -> dict:
    """What a checkpoint holds beside the tensors: the step, counters, the early-stop streak,
    the last evaluation, and (between log steps) the loss window."""
    return {"step": 0, "tokens": 0, "wall": 0.0, "streak": 0, "eval": {}}


class CheckpointUnreadable(RuntimeError):
    """A checkpoint file that cannot be read back (torn, truncated, or not ours)."""


def load_checkpoint(
    out: Path,
    tr: Training,
    note: Callable[[str, str], None] = lambda event, detail: None,
    owner: bool = True,
) -> dict | None:
    """Restore model, optimiser, schedule, data stream and RNGs from the newest readable
    generation (ckpt/last.pt, else ckpt/prev.pt); returns the saved state, or None to start
    from step 0.

    A generation that cannot be read is renamed aside (``*.unreadable-<time>``: kept for
    a post-mortem, never loaded again, never the "previous" of a later save) and
    ``note``-d, so the trial goes on from the older one instead of failing at every
    attempt. Files are read with ``weights_only=True``: tensors and plain values only,
    so a crafted file in a shared sweep directory cannot run code. Only the ``owner``
    (rank 0) renames files; the other ranks of a data-parallel trial just read.
    """
    if owner:
        for stray in (out / files.CKPT).parent.glob(".*.tmp"):  # a save a crash cut short
            stray.unlink(missing_ok=True)
    for name in (files.CKPT, files.CKPT_PREV):
        path = out / name
        if not path.exists():
            continue
        try:
            return _restore(path, tr)
        except Exception as e:
            why = str(e).strip().splitlines()[0] if str(e).strip() else ""
            aside = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
            if owner:
                os.replace(path, aside)
                files.fsync_dir(path.parent)
            note(
                "checkpoint_unreadable",
                f"{path}: {type(e).__name__}: {why} (kept as {aside.name}; "
                + ("continuing from ckpt/prev.pt)" if name == files.CKPT else "starting again)"),
            )
    return None


def _restore(path: Path, tr: Training) -> dict:
    # read on the CPU: a file's bytes never need device memory, and a load cannot fail
    # for want of it (which is not a sign of a broken file)
    ck = torch.load(path, map_location="cpu", weights_only=True)
    missing = {"model", "opt", "sched", "gen", "rng_cpu", "state"} - set(
        ck if isinstance(ck, dict) else ()
    )
    if missing:
        raise CheckpointUnreadable(f"not a trial checkpoint: no {sorted(missing)}")
    tr.model.load_state_dict(ck["model"])
    tr.opt.load_state_dict(ck["opt"])
    tr.sched.load_state_dict(ck["sched"])
    tr.gen.set_state(ck["gen"].cpu())
    torch.set_rng_state(ck["rng_cpu"].cpu())
    if tr.device.type == "cuda" and ck.get("rng_cuda") is not None:
        torch.cuda.set_rng_state(ck["rng_cuda"].cpu())
    return ck["state"]


def save_checkpoint(out: Path, tr: Training, state: dict) -> None:
    """Everything needed to continue exactly, as a new generation: the current one becomes
    ckpt/prev.pt (written whole, fsynced, renamed; the directory fsynced)."""
    blob = {
        "model": tr.model.state_dict(),
        "opt": tr.opt.state_dict(),
        "sched": tr.sched.state_dict(),
        "gen": tr.gen.get_state(),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state() if tr.device.type == "cuda" else None,
        "state": state,
    }
    files.atomic_write_with(
        out / files.CKPT, lambda f: torch.save(blob, f), keep_previous=out / files.CKPT_PREV
    )


# ---------------------------------------------------------------- the step
def train_step(
    tr: Training, task: Task, t: DictConfig, step: int, shard: slice
) -> tuple[Batch, torch.Tensor, torch.Tensor]:
    """One optimiser step on this rank's shard of the global batch.

    Returns the global batch, the loss and the gradient norm, left on the device.
    """
    batch = task.train_batch(t.batch_size, tr.gen, tr.device, step)
    x, y = batch.x[shard], batch.y[shard]
    mask = batch.mask[shard] if batch.mask is not None else None
    with tr.autocast():
        logits = tr.net(x)
    loss = task.loss(logits, type(batch)(x=x, y=y, mask=mask))
    tr.opt.zero_grad(set_to_none=True)
    loss.backward()
    # the gradient norm is computed anyway (clipping): a finite loss with overflowing
    # gradients is divergence too, caught before it reaches a checkpoint
    gnorm = torch.nn.utils.clip_grad_norm_(
        tr.model.parameters(), t.grad_clip if t.grad_clip > 0 else float("inf")
    )
    tr.opt.step()
    tr.sched.step()
    return batch, loss.detach(), gnorm


class LossWindow:
    """The training loss summed on the device between log steps, and the first non-finite step.

    Nothing here reads a value back to the host except :meth:`check_finite` and
    :meth:`mean`, called at log and checkpoint steps only.
    """

    def __init__(self, device: torch.device, saved: tuple[torch.Tensor, int] | None = None):
        self.sum = torch.zeros((), device=device)
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.n = 0
        if saved is not None:  # checkpointed between two log steps: continue that window
            self.sum += saved[0].to(device)
            self.n = saved[1]

    def add(self, step: int, loss: torch.Tensor, gnorm: torch.Tensor) -> None:
        finite = torch.isfinite(loss) & torch.isfinite(gnorm)
        self.first_bad = torch.where((self.first_bad < 0) & ~finite, step, self.first_bad)
        self.sum += loss
        self.n += 1

    def check_finite(self) -> None:
        bad = int(self.first_bad.item())
        if bad >= 0:
            raise Diverged(bad)

    def all_reduce(self, dctx: DistContext) -> None:
        """The global batch's loss, as one worker would log it (every rank calls this)."""
        if dctx.world > 1:
            dist.all_reduce(self.sum)
            self.sum /= dctx.world

    def mean(self) -> float:
        return self.sum.item() / self.n

    def reset(self) -> None:
        self.sum.zero_()
        self.n = 0

    def saved(self) -> tuple[torch.Tensor, int]:
        return self.sum.clone(), self.n


# ---------------------------------------------------------------- metrics and evaluation
class MetricsOut:
    """Where rank 0's metrics go: metrics.jsonl (cut back to the checkpoint on resume) and W&B."""

    def __init__(self, out: Path, resume_step: int | None, tracker: Any):
        self.log = files.MetricsLog(out / files.METRICS, resume_step)
        self.tracker = tracker
        if tracker is not None:  # W&B gets the kept rows it lacks (a crash lost its tail)
            tracker.start(resume_step, history=self.log.kept)

    def emit(self, step: int, metrics: dict) -> None:
        self.log.write(step, metrics)
        if self.tracker is not None:
            self.tracker.log(metrics, step)

    def close(self) -> None:
        self.log.close()


def evaluate(tr: Training, task: Task, cfg: DictConfig) -> dict:
    """The task's evaluation on the trial's fixed evaluation stream, as ``eval/*`` metrics."""
    tr.model.eval()
    with tr.autocast():
        egen = torch.Generator(device=tr.device).manual_seed(stream_seed(cfg.seed, "eval"))
        ev = task.evaluate(tr.model, cfg.train.eval_size, egen, tr.device)
    tr.model.train()
    return {f"eval/{k}": v for k, v in ev.items()}


def write_heartbeat(out: Path, step: int, attempt_started: float) -> None:
    """The live attempt's step and time; the driver calls a trial whose heartbeat stops stalled.

    Not fsynced: it only matters while the attempt lives, and it is rewritten every few
    seconds (an fsync of the file and its directory each time is most of its cost)."""
    files.write_json(
        out / files.HEARTBEAT,
        {
            "step": step,
            "time": time.time(),
            "started": attempt_started,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        },
        durable=False,
    )


# ---------------------------------------------------------------- the training loop
def _train(
    cfg, tid: str, task: Task, out: Path, dctx: DistContext, should_stop, tracker, progress
) -> dict:
    """Build, continue from the checkpoint if there is one, then step until done, early stop or
    a stop request. Each step: train, then at its cadence log the loss window, evaluate,
    checkpoint, beat the heartbeat. Host reads happen only at log, eval and checkpoint steps."""
    t, run = cfg.train, cfg.run
    attempt_started, time_limit = time.time(), OmegaConf.select(cfg, "resources.time_limit_s")
    runtime = prepare_torch(cfg)  # threads and numerics: the same however the trial was launched
    tr = build_training(cfg, task, dctx)
    unreadable: list[str] = []
    note = _journal_note(out, dctx)
    saved = load_checkpoint(
        out, tr, lambda e, d: (unreadable.append(d), note(e, d)), owner=dctx.is_main
    )
    if saved is None and unreadable:  # no generation could be read: undo their partial loads
        tr = build_training(cfg, task, dctx)
    if dctx.is_main:  # this attempt is alive, before its first step (which may be slow)
        write_heartbeat(out, saved["step"] if saved is not None else 0, attempt_started)
    state = saved if saved is not None else fresh_state()
    resume_step = state["step"] if saved is not None else None
    metrics = MetricsOut(out, resume_step, tracker) if dctx.is_main else None
    window = LossWindow(tr.device, state.get("loss_window"))
    per_rank = t.batch_size // dctx.world
    shard = slice(dctx.rank * per_rank, (dctx.rank + 1) * per_rank)
    flops_tok = functools.lru_cache(maxsize=None)(tr.model.flops_per_token)  # by sequence length
    t_log, step_log = time.perf_counter(), state["step"]
    wall_start = time.perf_counter() - state["wall"]
    last_beat, stop_reason = 0.0, "completed"
    # often enough that the driver, which calls a trial silent for stall_after_s stalled,
    # never mistakes a live one
    beat_every = min(5.0, float(OmegaConf.select(cfg, "resources.stall_after_s") or 300) / 4)
    tr.model.train()

    step = state["step"]
    try:
        while step < t.steps:
            step += 1
            batch, loss, gnorm = train_step(tr, task, t, step, shard)
            window.add(step, loss, gnorm)
            state["tokens"] += batch.tokens
            state["flops"] = state.get("flops", 0) + flops_tok(batch.x.shape[1]) * batch.tokens
            state["step"] = step
            last = step == t.steps

            if step % run.log_every == 0 or last:  # the only host reads of the step
                window.check_finite()
                now = time.perf_counter()
                window.all_reduce(dctx)
                if metrics is not None:
                    tps = (step - step_log) * batch.tokens / max(now - t_log, 1e-9)
                    metrics.emit(
                        step,
                        {
                            "train/loss": window.mean(),
                            "train/lr": tr.sched.get_last_lr()[0],
                            "perf/tokens_per_s": tps,
                        },
                    )
                window.reset()
                t_log, step_log = now, step
            stop_now = False
            if step % t.eval_every == 0 or last:
                if metrics is not None:
                    state["eval"] = ev = evaluate(tr, task, cfg)
                    metrics.emit(step, ev)
                    held = t.early_stop_acc > 0 and ev["eval/acc"] >= t.early_stop_acc
                    state["streak"] = state["streak"] + 1 if held else 0
                    stop_now = held and state["streak"] >= t.early_stop_patience
                stop_now = _agree(stop_now, dctx, tr.device)
            interrupt = (
                _agree(should_stop(), dctx, tr.device)
                if (dctx.world == 1 or step % run.log_every == 0)
                else False
            )
            timed_out = (
                _agree(time.time() - attempt_started > time_limit, dctx, tr.device)
                if time_limit is not None and (dctx.world == 1 or step % run.log_every == 0)
                else False
            )
            if step % run.checkpoint_every == 0 or last or stop_now or interrupt or timed_out:
                window.check_finite()
                state["wall"] = time.perf_counter() - wall_start
                state["loss_window"] = window.saved()
                if dctx.is_main:
                    save_checkpoint(out, tr, state)
            if dctx.is_main and (time.monotonic() - last_beat > beat_every or last):
                last_beat = time.monotonic()
                write_heartbeat(out, step, attempt_started)
            if progress is not None and dctx.is_main:
                progress(step, t.steps, state["eval"])
            if stop_now:
                stop_reason = "early_stop"
                break
            if interrupt:
                raise TrialInterrupted(step)
            if timed_out and not last:
                raise TrialTimedOut(step, time_limit)
        if not state["eval"] and metrics is not None:  # zero steps: evaluate the initial model
            state["eval"] = evaluate(tr, task, cfg)
            metrics.emit(step, state["eval"])
    finally:
        if metrics is not None:
            metrics.close()
    wall = time.perf_counter() - wall_start
    result = _with_axes(cfg, tid, _result(task, tr, state, wall, dctx.world, stop_reason) | runtime)
    if dctx.is_main:
        files.write_json(out / files.RESULT, result)
        if tracker is not None:
            tracker.summary(result)
    return result


def _journal_note(out: Path, dctx: DistContext) -> Callable[[str, str], None]:
    """Where a trial's notes go: its journal (rank 0; the worker passes them to the ledger)
    and the log, for a trial run in the foreground."""

    def note(event: str, detail: str) -> None:
        log.warning("trial %s: %s: %s", out.name, event, detail)
        if dctx.is_main:
            files.record_event(out, event, detail)

    return note


def _result(
    task: Task, tr: Training, state: dict, wall: float, world: int, stop_reason: str
) -> dict:
    ev = state["eval"]
    return {
        "acc": ev.get("eval/acc"),
        "chain_acc": ev.get("eval/chain_acc"),
        "chain_acc_per_step": ev.get("eval/chain_acc_per_step"),
        "eval": {k.removeprefix("eval/"): v for k, v in ev.items()},
        "chance": task.chance(),
        "steps": state["step"],
        "wall_time_s": wall,
        "tokens_seen": state["tokens"],
        "tokens_per_s": state["tokens"] / max(wall, 1e-9),
        "params": tr.model.num_params(),
        "flops": state.get("flops", 0),
        "device": str(tr.device)
        if tr.device.type == "cpu"
        else torch.cuda.get_device_name(tr.device),
        "world_size": world,
        "stop_reason": stop_reason,
    }


def _agree(flag: bool, dctx: DistContext, device: torch.device) -> bool:
    """True on every rank if it is true on any (one collective when data-parallel)."""
    if dctx.world == 1:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
