"""`cotsweep ...`: the user's verbs.

    cotsweep launch NAME|PATH [overrides...]   run a named sweep (or extend it)
    cotsweep status DIR [--json] [--watch]     counts, failures, ETA, the driver; a live table
    cotsweep resume DIR                        rerun failed and unfinished trials
    cotsweep stop DIR                          from any shell: running trials checkpoint, then pending
    cotsweep rebuild DIR                       a new ledger from the trial files (damaged or deleted)
    cotsweep report DIR                        plots and tables into DIR/report/
    cotsweep logs DIR TRIAL [--attempt K]      a trial's own output and traceback
    cotsweep export DIR --format csv|parquet|jsonl   every trial as a table
    cotsweep compare DIR_A DIR_B               two sweeps' shared points side by side
    (status, resume, report, export take filters: task=cvp setting=base --state failed)
    cotsweep sync DIR                          push offline W&B runs
    cotsweep train [overrides...]              one trial in the foreground
    cotsweep train -m [overrides...]           Hydra multirun through the same engine (ledger, ids, Ray)
    cotsweep tasks sample TASK ...             examples of a task as JSON lines

Exit codes: 0 success, 1 a trial failed, 2 bad input (nothing was started or
written) or a ledger that cannot be read or written (the message names the file
and the command that recovers), 3 a trial diverged, 75 stopped by SIGTERM,
SIGHUP, SIGUSR1 or `cotsweep stop` (running trials checkpointed and are pending:
`cotsweep resume DIR` continues; a batch script may requeue itself on 75),
130 interrupted (Ctrl-C).

Every refusal is one line on stderr: what is wrong, with which key or file, and
what to do; no traceback unless --debug (anywhere on the command line).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from cotsweep.errors import ConfigError, LedgerError, describe_error, one_line
from cotsweep.ledger import STATES

console = Console(stderr=True)

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERRUPTED = 1, 2, 3, 130
EXIT_STOPPED = 75  # EX_TEMPFAIL: stopped on request, every trial resumable
# failures listed by a sweep's summary and by `status` (which takes 0.1 s more per 50 on a
# terminal); `status --json` lists all of them
STATUS_FAILURES_SHOWN = 20
RESUMABLE = ("pending", "failed")  # the states `resume --state` takes


class BadInput(Exception):
    """Input refused before anything ran; the message is for the user."""


class _Parser(argparse.ArgumentParser):
    """argparse whose refusals are ours: one line, exit 2, no usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadInput(f"{message}; see: {self.prog} --help")


def _bad_input_types() -> tuple[type[BaseException], ...]:
    """Errors that mean the input cannot run: refused in one line with exit 2.

    Imported here, not at the top: the light verbs never load Hydra or the engine.
    """
    found: list[type[BaseException]] = [ConfigError]
    for module, names in (
        ("cotsweep.compose", ("UnknownSweep",)),
        ("cotsweep.sweep.grid", ("GridError",)),
        ("cotsweep.sweep.engine", ("SweepBusy", "SweepDirError")),
        ("cotsweep.sweep.feasible", ("Infeasible",)),
        ("hydra.errors", ("HydraException",)),
        ("omegaconf.errors", ("OmegaConfBaseException",)),
    ):
        mod = sys.modules.get(module)  # only what the verb loaded can have been raised
        if mod is not None:
            found += [getattr(mod, n) for n in names]
    return tuple(found)


def compose_or_fail(overrides: list[str]):
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from cotsweep.compose import compose_trial

    try:
        return compose_trial(overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise BadInput(describe_error(e)) from e


# ---------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from cotsweep.ids import trial_id
    from cotsweep.tracking import open_tracker
    from cotsweep.trial import Diverged, StopSignal, TrialInterrupted, run_trial, validate

    cfg = compose_or_fail(args.overrides)
    tid = trial_id(cfg)
    explicit_dir = any(o.split("=", 1)[0].lstrip("+") == "run.out_dir" for o in args.overrides)
    out = Path(cfg.run.out_dir) if explicit_dir else Path(cfg.run.out_dir) / tid
    try:
        task = validate(cfg)
    except ConfigError as e:
        raise BadInput(str(e)) from e
    _train_feasible(cfg, task, out, args.overrides)
    console.print(
        f"trial [bold]{tid}[/]: {cfg.task.name} {cfg.setting.value} depth={cfg.model.depth} n={cfg.task.length} -> {out}"
    )

    stop = StopSignal()
    _watch_ctrl_c(stop)
    tracker = open_tracker(cfg, out, tid)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps {task.fields[acc]}"),
        TimeRemainingColumn(),
        console=console,
        disable=not cfg.run.progress,
    ) as bar:
        job = bar.add_task(tid, total=cfg.train.steps, acc="")

        def progress(step: int, total: int, ev: dict) -> None:
            acc = f"acc={ev['eval/acc']:.3f}" if "eval/acc" in ev else ""
            bar.update(job, completed=step, acc=acc)

        try:
            result = run_trial(cfg, out, should_stop=stop, tracker=tracker, progress=progress)
        except ConfigError as e:
            raise BadInput(str(e)) from e
        except Diverged as e:
            console.print(f"[red]trial {tid} {e}[/]; checkpoints before it are in {out / 'ckpt'}")
            return EXIT_DIVERGED
        except TrialInterrupted as e:
            console.print(f"[yellow]{e}[/]; run the same command again to continue")
            return EXIT_INTERRUPTED
        finally:
            if tracker is not None:
                tracker.finish()
    figures = {
        k: result.get(k) for k in ("acc", "chain_acc", "steps", "wall_time_s", "stop_reason")
    }
    console.print(f"done: {json.dumps(figures)}")
    print(out)
    return 0


def _watch_ctrl_c(stop) -> None:
    """Ctrl-C in ``cotsweep train``: the first asks the trial to checkpoint and stop at its
    next step; the second ends the process at once, even inside a long step (the last
    checkpoint stays, every file is written atomically).

    Python runs a signal handler only between bytecodes of the main thread, and a backward
    pass is one call into torch: two Ctrl-C pressed during a minute-long step used to arrive
    as one, after it. The C-level handler writes each signal to the wakeup fd at once, from
    any thread, and a thread reading that fd sees every Ctrl-C while torch computes.
    """
    import signal
    import socket
    import threading

    seen, told = socket.socketpair()
    told.setblocking(False)  # the C-level handler must never block
    signal.signal(signal.SIGINT, lambda *_: None)  # the thread below decides
    signal.set_wakeup_fd(told.fileno(), warn_on_full_buffer=False)

    def watch(_keep_open: socket.socket) -> None:  # the write end lives as long as the thread
        presses = 0
        while True:
            presses += sum(1 for b in seen.recv(64) if b == signal.SIGINT)
            if presses == 1 and not stop():
                stop.set()
                console.print("\nstopping at the next step (Ctrl-C again to stop at once)")
            elif presses >= 2:
                console.print("\ninterrupted mid-step; run the same command again to continue")
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(EXIT_INTERRUPTED)

    threading.Thread(target=watch, args=(told,), name="ctrl-c", daemon=True).start()


def _train_feasible(cfg, task, out: Path, overrides: list[str]) -> None:
    """A foreground trial against this machine: its device, its memory, its output directory."""
    from cotsweep import files
    from cotsweep.sweep.feasible import checker, local_capacity

    problem = files.unwritable_dir(out)
    if problem:
        raise BadInput(problem.replace("pass --dir", "set run.out_dir to"))
    cap = local_capacity(where="this machine")
    checker(cap, warn=_warn)(cfg, task, " ".join(overrides) or "(the defaults)")


# ---------------------------------------------------------------- tasks sample
def cmd_tasks_sample(args: argparse.Namespace) -> int:
    import torch

    from cotsweep.tasks import TASKS, make_task

    if args.task not in TASKS:
        raise BadInput(f"unknown task {args.task!r}; known tasks: {', '.join(sorted(TASKS))}")
    overrides = [f"task={args.task}"]
    if args.setting is not None:
        overrides.append(f"setting={args.setting}")
    if args.length is not None:
        overrides.append(f"task.length={args.length}")
    overrides += [f"task.{kv}" for kv in args.set]
    cfg = compose_or_fail(overrides)
    if args.count < 1:
        raise BadInput(f"--count={args.count}: must be >= 1")
    try:
        task = make_task(cfg.task, cfg.setting)
        task.validate()
    except ConfigError as e:
        raise BadInput(str(e)) from e
    if not task.trains:
        raise BadInput(
            f"task {args.task!r} is a simulation with no examples to sample (it trains no model); "
            f"sample one of: {', '.join(sorted(n for n, e in TASKS.items() if e.cls.trains))}"
        )
    gen = torch.Generator().manual_seed(args.seed)
    for row in task.sample(args.count, gen):
        print(json.dumps(row))
    return 0


# ---------------------------------------------------------------- sweeps
def _driver_kw(args: argparse.Namespace) -> dict:
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise BadInput(
            f"--max-concurrent {args.max_concurrent}: must be at least 1 (leave it out for "
            "2 trials per CPU)"
        )
    return {
        "address": args.address,
        "max_concurrent": args.max_concurrent,
        "progress": not args.no_progress,
        "dashboard": args.dashboard,
    }


def _finish(out, args: argparse.Namespace) -> int:
    """Summary, report, exit code: 0 only if every trial is done."""
    c = out.counts
    console.print(
        f"sweep {out.dir}: {c['done']} done, {c['failed']} failed, {c['pending'] + c['running']} unfinished "
        f"of {sum(c.values())} (ran {out.ran} this time)"
    )
    for f in out.failures[:STATUS_FAILURES_SHOWN]:
        console.print(
            f"  [red]failed[/] {f['id']} ({f['kind']}) {escape(' '.join(f['overrides']))}: {escape(str(f['error']))}"
        )
    if out.exhausted:
        console.print(
            f"{out.exhausted} failed trials were not run again (they diverged or used their "
            f"resources.max_attempts); to run them again: cotsweep resume {out.dir} --reset-attempts"
        )
    if out.interrupted:
        how = "interrupted" if out.stopped_by in (None, "SIGINT") else f"stopped ({out.stopped_by})"
        console.print(
            f"{how}: running trials checkpointed and are pending; continue with: "
            f"cotsweep resume {out.dir}"
        )
        return EXIT_INTERRUPTED if out.stopped_by in (None, "SIGINT") else EXIT_STOPPED
    if not getattr(args, "no_report", False) and c["done"]:
        write_report(out.dir)
    return 0 if out.ok else EXIT_FAILED


def write_report(sweep_dir: Path, threshold: float = 0.95, selection=None) -> None:
    from cotsweep.report import build_report

    rep = build_report(Path(sweep_dir), solve_threshold=threshold, selection=selection)
    console.print(f"report: {rep.markdown}\n        {rep.html}  ({len(rep.images)} figures)")
    for w in rep.warnings:
        console.print(
            f"warning: {w}", style="yellow", markup=False, highlight=False, soft_wrap=True
        )
    if selection is None or selection.everything:  # the W&B summary run is the whole sweep's
        mirror_report(Path(sweep_dir), rep)


def mirror_report(sweep_dir: Path, rep) -> None:
    """The sweep's W&B summary run: every trial in a table, the report's plots, native charts."""
    from cotsweep.tracking import log_sweep_summary

    records = rep.records
    tracking = next((r.config.get("tracking") for r in records if r.config.get("tracking")), None)
    if tracking is None:
        return
    name = next(
        (
            r.config.get("sweep", {}).get("name")
            for r in records
            if r.config.get("sweep", {}).get("name")
        ),
        None,
    )
    rows = [
        {
            **(r.result or {}),
            **{k: v for k, v in r.axes.items() if k not in (r.result or {})},
            "trial_id": r.id,
            "state": r.state,
        }
        for r in records
    ]
    log_sweep_summary(sweep_dir, name or sweep_dir.name, rows, list(rep.images), tracking)


def refuse_relative_dir_in_a_job(sweep_dir: str | None) -> None:
    """Inside a Ray job the working directory is the job's temporary copy of the checkout.

    A relative sweep directory would land there, on the head only, and go with
    the copy; trials on other nodes would write to paths that exist only there.
    """
    from cotsweep.sweep.cluster import job_submission_id

    if (sweep_dir is None or not Path(sweep_dir).is_absolute()) and job_submission_id():
        given = sweep_dir or "runs/NAME (no --dir)"
        raise BadInput(
            f"sweep directory {given}: inside a Ray job it must be an absolute path on storage "
            "every node mounts (SHARED_PATH/runs/NAME), not one in the job's copy of the checkout"
        )


def cmd_launch(args: argparse.Namespace) -> int:
    from cotsweep.sweep.engine import launch, plan, trial_checker

    refuse_relative_dir_in_a_job(args.dir)
    if args.max_trials is not None and args.max_trials < 1:
        raise BadInput(f"--max-trials {args.max_trials}: must be at least 1")
    kw = _driver_kw(args)
    sweep_dir = Path(args.dir) if args.dir else None
    with _ExpansionBar(enabled=not args.no_progress) as bar:
        grid = {"max_trials": args.max_trials, "on_expand": bar.update}
        if args.dry_run:
            check = trial_checker(None, args.address, warn=_warn)
            p = plan(args.sweep, args.overrides, sweep_dir, check=check, **grid)
            bar.close()
            _print_plan(p)
            return 0
        out = launch(
            args.sweep, args.overrides, sweep_dir, on_recorded=bar.close, warn=_warn, **grid, **kw
        )
    return _finish(out, args)


def _warn(message: str) -> None:
    console.print(f"[yellow]warning:[/] {escape(message)}")


def _print_plan(p: dict) -> None:
    """`launch --dry-run`: what would run, on stdout; nothing was written."""
    from cotsweep.sweep.feasible import human_flops

    s = p["states"]
    print(f"sweep {p['sweep']} -> {p['dir']} (dry run: nothing written)")
    for axis, values in p["axes"].items():
        print(f"  {axis} ({len(values)}): {', '.join(values)}")
    print(
        f"  {p['points']:,} points, {p['trials']:,} trials: {s['new']:,} new, {s['done']:,} done, "
        f"{s['pending'] + s['running']:,} unfinished, {s['failed']:,} failed"
    )
    print(
        f"  to run: {p['to_run']:,} trials, {p['steps']:,} training steps, "
        f"about {human_flops(p['flops'])} (estimated: 6 x parameters + attention, per token)"
    )
    for point, state in p["shown"]:
        print(f"  [{state}] {' '.join(point)}")
    if p["trials"] > len(p["shown"]):
        print(f"  ... and {p['trials'] - len(p['shown']):,} more")


class _ExpansionBar:
    """A count of the grid's points as they are composed, on stderr, for grids that take a while."""

    SHOWN_ABOVE = 2000  # points; smaller grids compose in well under a second

    def __init__(self, enabled: bool):
        self.enabled, self.progress, self.task = enabled, None, None

    def __enter__(self) -> _ExpansionBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, done: int, total: int) -> None:
        if not self.enabled or total < self.SHOWN_ABOVE:
            return
        if self.progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.progress = Progress(
                TextColumn("[bold]expanding the grid"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("points (Ctrl-C stops; nothing is recorded until the end)"),
                console=console,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("grid", total=total)
        self.progress.update(self.task, completed=done)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def cmd_resume(args: argparse.Namespace) -> int:
    from cotsweep.selection import SelectionError
    from cotsweep.sweep.engine import resume

    refuse_relative_dir_in_a_job(args.dir)
    selection = selection_of(args)
    wrong = [s for s in selection.states if s not in RESUMABLE]
    if wrong:
        raise BadInput(f"--state {wrong[0]}: resume reruns {' and '.join(RESUMABLE)} trials")
    try:
        out = resume(
            Path(args.dir),
            failed_only=args.failed_only,
            reset_attempts=args.reset_attempts,
            selection=selection,
            **_driver_kw(args),
        )
    except SelectionError as e:
        raise BadInput(str(e)) from e
    except FileNotFoundError as e:
        raise BadInput(f"{e}; launch a sweep there first (cotsweep launch NAME --dir DIR)") from e
    return _finish(out, args)


def selection_of(args: argparse.Namespace):
    """The trials a verb acts on, from its AXIS=VALUE filters and --state."""
    from cotsweep.selection import SelectionError, parse

    try:
        return parse(getattr(args, "filters", []), getattr(args, "state", []))
    except SelectionError as e:
        raise BadInput(str(e)) from e


def cmd_status(args: argparse.Namespace) -> int:
    from cotsweep.selection import SelectionError
    from cotsweep.status import status

    selection = selection_of(args)
    if args.watch:
        return watch_status(args, selection)
    try:
        st = status(Path(args.dir), selection=selection)
    except SelectionError as e:
        raise BadInput(str(e)) from e
    except FileNotFoundError as e:
        raise BadInput(f"{e}; give the directory of a sweep (e.g. runs/smoke)") from e
    if args.json:
        print(json.dumps(st, indent=2, sort_keys=True))
        return 0
    c = st["counts"]
    out = Console()
    what = f" ({st['selection']})" if st["selection"] else ""
    out.print(
        f"[bold]{escape(str(st['sweep']))}[/] at {st['dir']}{escape(what)}: {st['total']} trials"
    )
    out.print("  " + "  ".join(f"{k} {v}" for k, v in c.items()))
    queued = c["running"] - st["training_now"]
    if c["running"] and queued > 0:  # the driver keeps a few trials per slot in Ray's hands
        out.print(f"  of the running: {st['training_now']} training, {queued} queued in Ray")
    if st["eta_s"] is not None:
        pace = f"{st['throughput_per_min']:.1f} trials/min"
        if st["concurrency"]:
            pace += f", {st['concurrency']:.1f} training at once"
        out.print(f"  ETA about {st['eta_s'] / 60:.1f} min ({pace})")
    if st["driver"] and st["driver_alive"]:
        d = st["driver"]
        job = f", Ray job {d['ray_job']}" if d.get("ray_job") else ""
        out.print(f"  driver: host {d['host']} PID {d['pid']}{job}")
    if st["advice"]:
        out.print(f"  [yellow]{escape(st['advice'])}[/]")
    for t in st["stalled"]:
        out.print(
            f"  [yellow]stalled?[/] {t['id']}: no heartbeat for {t['heartbeat_age_s']:.0f} s "
            f"(step {t['step']}, host {t['host']}); the driver cancels and retries it"
        )
    for axis, values in st["axes"].items():
        out.print(
            f"  [bold]{axis}[/]: "
            + ", ".join(f"{v} ({n['done']}/{sum(n.values())} done)" for v, n in values.items())
        )
    for f in st["failures"][:STATUS_FAILURES_SHOWN]:
        out.print(
            f"  [red]failed[/] {f['id']} ({f['kind']}, {f['attempts']} attempts) {escape(' '.join(f['overrides']))}: "
            f"{escape(str(f['error']))}"
        )
    if len(st["failures"]) > STATUS_FAILURES_SHOWN:
        more = len(st["failures"]) - STATUS_FAILURES_SHOWN
        out.print(
            f"  ... and {more} more failed trials (all of them: cotsweep status {args.dir} --json)"
        )
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from cotsweep.stop import stop

    try:
        out = stop(_sweep_dir(args.dir), wait_s=0.0 if args.no_wait else args.timeout)
    except FileNotFoundError as e:
        raise BadInput(str(e)) from e
    console.print(escape(out.message))
    return 0 if out.stopped or not out.asked or args.no_wait else EXIT_FAILED


def cmd_rebuild(args: argparse.Namespace) -> int:
    from cotsweep.rebuild import rebuild

    d = Path(args.dir)
    if not d.is_dir():
        raise BadInput(f"no sweep directory at {args.dir}")
    if not (d / "trials").is_dir() and not any(d.glob("ledger*.sqlite")):
        # a ledger written into a directory that never held a sweep would make it look like one
        raise BadInput(
            f"{args.dir} holds no sweep (no trials/, no ledger); give the directory that "
            "cotsweep launch or train -m wrote"
        )
    out = rebuild(d)
    console.print(escape(out.summary()))
    return 0


def watch_status(args: argparse.Namespace, selection) -> int:
    """Refresh until no live driver runs the sweep, or Ctrl-C; a JSON line per refresh with --json."""
    from cotsweep.selection import SelectionError
    from cotsweep.watch import render, watch

    out = Console()
    live = None
    if args.json:

        def show(snap: dict) -> None:
            print(json.dumps(snap, sort_keys=True), flush=True)

    elif out.is_terminal:
        from rich.live import Live

        live = Live(console=out, auto_refresh=False, transient=False)
        live.start()

        def show(snap: dict) -> None:
            live.update(render(snap), refresh=True)

    else:  # a log or a pipe: each refresh printed below the last

        def show(snap: dict) -> None:
            out.print(render(snap))
            out.print()

    try:
        watch(Path(args.dir), show, interval=args.interval, selection=selection)
    except (FileNotFoundError, SelectionError) as e:
        raise BadInput(str(e)) from e
    except KeyboardInterrupt:  # the usual way out of a watch, not an interrupted sweep
        pass
    finally:
        if live is not None:
            live.stop()
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from cotsweep.logs import NoLogs, read_log

    try:
        _, _, text = read_log(Path(args.dir), args.trial, args.attempt)
    except (FileNotFoundError, NoLogs) as e:
        raise BadInput(str(e)) from e
    sys.stdout.write(text)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from cotsweep.results import export
    from cotsweep.selection import SelectionError

    selection = selection_of(args)
    if args.format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError as e:
            raise BadInput("--format parquet needs pyarrow: pip install pyarrow") from e
    if args.out is not None:
        from cotsweep import files

        out = Path(args.out)
        problem = f"{out} is a directory" if out.is_dir() else files.unwritable_dir(out.parent)
        if problem:
            first = problem.split(";")[0]
            raise BadInput(f"--out {args.out}: {first}; give a file in a directory you can write")
    try:
        path = export(
            Path(args.dir), args.format, args.out, selection, "curves" if args.curves else "trials"
        )
    except (FileNotFoundError, SelectionError) as e:
        raise BadInput(str(e)) from e
    console.print(f"wrote {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from cotsweep.results import compare

    try:
        cmp = compare(Path(args.a), Path(args.b), tuple(args.metric or ["acc"]), args.tolerance)
    except FileNotFoundError as e:
        raise BadInput(str(e)) from e
    if args.json:
        print(json.dumps(cmp, indent=2, sort_keys=True, default=str))
        return 0
    from cotsweep.results import render_comparison

    Console().print(render_comparison(cmp))
    return 0


def _sweep_dir(path: str) -> Path:
    """A directory that holds a sweep (its ledger, or trial files), or BadInput saying what it is."""
    from cotsweep.ledger import LEDGER

    d = Path(path)
    if not d.is_dir():
        what = "is a file" if d.exists() else "does not exist"
        raise BadInput(f"{path} {what}; give the directory of a sweep (e.g. runs/smoke)")
    if not (d / LEDGER).is_file() and not any((d / "trials").glob("*/config.yaml")):
        raise BadInput(
            f"{path} holds no sweep (no {LEDGER}, no trials/*/config.yaml); give the directory "
            "that cotsweep launch or train -m wrote"
        )
    return d


def cmd_report(args: argparse.Namespace) -> int:
    from cotsweep.selection import SelectionError

    if not 0.0 < args.threshold <= 1.0:
        raise BadInput(
            f"--threshold {args.threshold:g}: an accuracy, between 0 and 1 (e.g. 0.95 for 95%)"
        )
    sweep_dir = _sweep_dir(args.dir)
    try:
        write_report(sweep_dir, args.threshold, selection_of(args))
    except SelectionError as e:
        raise BadInput(str(e)) from e
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from cotsweep.tracking import sync_sweep

    _sweep_dir(args.dir)
    try:
        n = sync_sweep(Path(args.dir))
    except RuntimeError as e:
        raise BadInput(str(e)) from e
    console.print(f"synced {n} offline W&B runs from {args.dir}")
    return 0


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="cotsweep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    def driver_args(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--address",
            default=None,
            help="join this Ray cluster (default: RAY_ADDRESS, else embedded Ray on loopback)",
        )
        q.add_argument(
            "--max-concurrent", type=int, default=None, help="at most this many trials in flight"
        )
        q.add_argument("--no-progress", action="store_true", help="no progress bar")
        q.add_argument(
            "--no-report", action="store_true", help="do not write the report at the end"
        )
        q.add_argument(
            "--dashboard",
            action="store_true",
            help="embedded Ray: start its dashboard, on loopback",
        )

    def filter_args(q: argparse.ArgumentParser, states: tuple[str, ...] = STATES) -> None:
        q.add_argument(
            "filters",
            nargs="*",
            metavar="AXIS=VALUE",
            help="only trials with these axis values (task=cvp setting=base; seed=0,1 is either)",
        )
        q.add_argument(
            "--state",
            action="append",
            default=[],
            metavar="STATE",
            help=f"only trials in this state ({', '.join(states)}); repeat or comma-separate for several",
        )

    la = sub.add_parser("launch", help="run a named sweep (or extend it)")
    la.add_argument("sweep", help="a sweep name (see sweeps/) or a path to a sweep file")
    la.add_argument("overrides", nargs="*", help="Hydra overrides; comma lists add grid axes")
    la.add_argument(
        "--dir",
        default=None,
        help="sweep directory (default runs/NAME); on a cluster, a path every node reaches",
    )
    la.add_argument(
        "--max-trials",
        type=int,
        default=None,
        help="refuse a grid of more points than this (default 10000)",
    )
    la.add_argument(
        "--dry-run",
        action="store_true",
        help="print the points, which are new or done, and the estimated cost; write nothing",
    )
    driver_args(la)
    la.set_defaults(fn=cmd_launch)

    re_ = sub.add_parser("resume", help="rerun failed and unfinished trials from their checkpoints")
    re_.add_argument("dir")
    filter_args(re_, RESUMABLE)
    re_.add_argument("--failed-only", action="store_true", help="only the failed trials")
    re_.add_argument(
        "--reset-attempts",
        action="store_true",
        help="forget earlier attempts (also reruns diverged trials)",
    )
    driver_args(re_)
    re_.set_defaults(fn=cmd_resume)

    st = sub.add_parser("status", help="counts per state, failures with their errors, ETA")
    st.add_argument("dir")
    filter_args(st)
    st.add_argument(
        "--json", action="store_true", help="stable JSON for scripts (--watch: a line per refresh)"
    )
    st.add_argument(
        "--watch",
        action="store_true",
        help="a live table of the running trials, refreshed until the sweep's driver ends (or Ctrl-C)",
    )
    st.add_argument(
        "--interval", type=float, default=2.0, help="seconds between refreshes of --watch"
    )
    st.set_defaults(fn=cmd_status)

    sp = sub.add_parser(
        "stop", help="from any shell: running trials checkpoint and return to pending"
    )
    sp.add_argument("dir")
    sp.add_argument("--no-wait", action="store_true", help="ask, and do not wait for the driver")
    sp.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for the driver to leave"
    )
    sp.set_defaults(fn=cmd_stop)

    rb = sub.add_parser(
        "rebuild", help="a new ledger from the trial files, when it is damaged or deleted"
    )
    rb.add_argument("dir")
    rb.set_defaults(fn=cmd_rebuild)

    rp = sub.add_parser("report", help="plots and tables into DIR/report/")
    rp.add_argument("dir")
    filter_args(rp)
    rp.add_argument(
        "--threshold",
        type=float,
        default=0.95,
        help="accuracy that counts as solved (heat maps, findings)",
    )
    rp.set_defaults(fn=cmd_report)

    lg = sub.add_parser("logs", help="a trial's own stdout, stderr and traceback, per attempt")
    lg.add_argument("dir")
    lg.add_argument("trial", help="the trial's id, or the start of it")
    lg.add_argument(
        "--attempt", type=int, default=None, metavar="K", help="attempt K (default: the latest)"
    )
    lg.set_defaults(fn=cmd_logs)

    ex = sub.add_parser("export", help="every trial (axes, state, final metrics, paths) as a table")
    ex.add_argument("dir")
    filter_args(ex)
    ex.add_argument("--format", choices=("csv", "parquet", "jsonl"), default="csv")
    ex.add_argument("--out", default=None, help="file to write (default DIR/export/trials.FORMAT)")
    ex.add_argument(
        "--curves",
        action="store_true",
        help="the trials' metrics.jsonl rows instead, long: id, axes, step, metric, value",
    )
    ex.set_defaults(fn=cmd_export)

    cp = sub.add_parser("compare", help="two sweeps' shared grid points side by side")
    cp.add_argument("a", metavar="DIR_A")
    cp.add_argument("b", metavar="DIR_B")
    cp.add_argument(
        "--metric", action="append", default=None, help="a result figure to compare (default acc)"
    )
    cp.add_argument(
        "--tolerance", type=float, default=0.0, help="differences up to this are not highlighted"
    )
    cp.add_argument("--json", action="store_true", help="stable JSON for scripts")
    cp.set_defaults(fn=cmd_compare)

    sy = sub.add_parser("sync", help="upload the sweep's offline W&B runs")
    sy.add_argument("dir")
    sy.set_defaults(fn=cmd_sync)

    t = sub.add_parser("train", help="one trial in the foreground")
    t.add_argument(
        "overrides", nargs="*", help="Hydra overrides, e.g. task=s5 setting=cot model.depth=1"
    )
    t.set_defaults(fn=cmd_train)

    tasks = sub.add_parser("tasks", help="inspect tasks")
    tsub = tasks.add_subparsers(dest="tasks_cmd", required=True, parser_class=_Parser)
    s = tsub.add_parser("sample", help="print examples of a task as JSON lines")
    s.add_argument("task")
    s.add_argument("--setting", default=None, help="base | cot | hint")
    s.add_argument("--length", type=int, default=None, help="input length n")
    s.add_argument("--count", type=int, default=5)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another task key, e.g. --set prime_bound=31",
    )
    s.set_defaults(fn=cmd_tasks_sample)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        if (
            argv[:1]
            and argv[0] in ("-sc", "--shell-completion")
            or (argv[:1] and argv[0].startswith("--shell-completion="))
        ):
            from cotsweep.hydra_app import shell_completion

            return shell_completion(argv)
        if argv[:1] == ["train"] and _hydra_route(argv[1:]):
            from cotsweep.hydra_app import train_with_hydra

            return train_with_hydra(argv[1:])
        parser = build_parser()
        # Hydra overrides may stand before or after the flags: collect the strays as overrides
        args, rest = parser.parse_known_args(argv)
        if rest:
            # overrides (launch, train) or filters (status, resume, report, export)
            strays = next((k for k in ("overrides", "filters") if hasattr(args, k)), None)
            if strays is None or any(r.startswith("-") for r in rest):
                parser.error(f"unrecognized arguments: {' '.join(rest)}")
            setattr(args, strays, list(getattr(args, strays)) + rest)
        return args.fn(args)
    except (BadInput, LedgerError) as e:
        return _refuse(str(e), debug)
    except KeyboardInterrupt as e:
        if debug:
            raise
        console.print(f"[yellow]{escape(str(e) or 'interrupted')}[/]", soft_wrap=True)
        return EXIT_INTERRUPTED
    except Exception as e:
        if isinstance(e, _bad_input_types()):
            msg = str(e) if isinstance(e, ConfigError) else describe_error(e)
            return _refuse(msg, debug)
        if debug:
            raise
        # not the input's fault, but still no traceback on a user's screen
        what = f"{type(e).__name__}: {one_line(str(e))}" if str(e) else type(e).__name__
        console.print(
            f"[red]error:[/] {escape(what)}; run again with --debug for the traceback",
            soft_wrap=True,
        )
        return EXIT_FAILED


def _refuse(message: str, debug: bool) -> int:
    if debug:
        import traceback

        traceback.print_exc()
    console.print(f"[red]error:[/] {escape(one_line(message))}", soft_wrap=True)
    return EXIT_BAD_INPUT


# Hydra's own flags: `cotsweep train` hands its command line to Hydra when one is there
HYDRA_FLAGS = (
    "-m",
    "--multirun",
    "--cfg",
    "-c",
    "--info",
    "-i",
    "--resolve",
    "--package",
    "-p",
    "--run",
    "-r",
    "--shell-completion",
    "-sc",
    "--hydra-help",
    "--help",
    "-h",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
)


def _hydra_route(args: list[str]) -> bool:
    return any(a.split("=", 1)[0] in HYDRA_FLAGS for a in args if a.startswith("-"))


if __name__ == "__main__":
    sys.exit(main())
