"""`cotsweep ...`: the user's verbs.

    cotsweep launch NAME|PATH [overrides...]   run a named sweep (or extend it)
    cotsweep status DIR [--json]               counts per state, failures, ETA
    cotsweep resume DIR                        rerun failed and unfinished trials
    cotsweep report DIR                        plots and tables into DIR/report/
    cotsweep sync DIR                          push offline W&B runs
    cotsweep train [overrides...]              one trial in the foreground
    cotsweep tasks sample TASK ...             examples of a task as JSON lines

Exit codes: 0 success, 1 a trial failed, 2 bad input (nothing was started or
written), 3 a trial diverged, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console

console = Console(stderr=True)

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERRUPTED = 1, 2, 3, 130


class BadInput(Exception):
    """Input refused before anything ran; the message is for the user."""


def describe_error(e: BaseException) -> str:
    """Hydra's message and the OmegaConf cause under it, which names the key and value."""
    parts, seen = [], set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        msg = str(e).strip()
        if msg and msg not in parts:
            parts.append(msg)
        e = e.__cause__ or e.__context__
    return "\n  ".join(parts)


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

    from cotsweep.sweep.ids import trial_id
    from cotsweep.tracking import open_tracker
    from cotsweep.trial import Diverged, StopSignal, TrialInterrupted, run_trial, validate
    from cotsweep.tasks import ConfigError

    cfg = compose_or_fail(args.overrides)
    tid = trial_id(cfg)
    explicit_dir = any(o.split("=", 1)[0].lstrip("+") == "run.out_dir" for o in args.overrides)
    out = Path(cfg.run.out_dir) if explicit_dir else Path(cfg.run.out_dir) / tid
    try:
        validate(cfg)
    except ConfigError as e:
        raise BadInput(str(e)) from e
    console.print(f"trial [bold]{tid}[/]: {cfg.task.name} {cfg.setting.value} depth={cfg.model.depth} n={cfg.task.length} -> {out}")

    stop = StopSignal()
    import signal

    signal.signal(signal.SIGINT, lambda *_: stop.set())  # checkpoint at the next step, then stop
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
    figures = {k: result.get(k) for k in ("acc", "chain_acc", "steps", "wall_time_s", "stop_reason")}
    console.print(f"done: {json.dumps(figures)}")
    print(out)
    return 0


# ---------------------------------------------------------------- tasks sample
def cmd_tasks_sample(args: argparse.Namespace) -> int:
    import torch

    from cotsweep.tasks import TASKS, ConfigError, make_task

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
    gen = torch.Generator().manual_seed(args.seed)
    for row in task.sample(args.count, gen):
        print(json.dumps(row))
    return 0


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cotsweep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="one trial in the foreground")
    t.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. task=s5 setting=cot model.depth=1")
    t.set_defaults(fn=cmd_train)

    tasks = sub.add_parser("tasks", help="inspect tasks")
    tsub = tasks.add_subparsers(dest="tasks_cmd", required=True)
    s = tsub.add_parser("sample", help="print examples of a task as JSON lines")
    s.add_argument("task")
    s.add_argument("--setting", default=None, help="base | cot | hint")
    s.add_argument("--length", type=int, default=None, help="input length n")
    s.add_argument("--count", type=int, default=5)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="another task key, e.g. --set prime_bound=31")
    s.set_defaults(fn=cmd_tasks_sample)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except BadInput as e:
        console.print(f"[red]error:[/] {e}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
