"""Chaos: one sweep run undisturbed, and again with every fault an operator meets, compared.

The disturbed run is the same sweep (``chaos.yaml``: modadd and s5, answer-only
and chain of thought, three seeds; tiny model on CPU; W&B offline) driven by
``cotsweep launch`` / ``cotsweep resume`` in their own process groups, as a
terminal or a batch system runs them, while this script injects, in order:

1. ``kill-before-ckpt``  SIGKILL of a worker before its trial's first checkpoint;
2. ``kill-after-ckpt``   SIGKILL of a worker after a checkpoint (W&B loses the tail
                         its process had not written: the resume must send it);
3. ``corrupt-ckpt``      the newest checkpoint of a running trial cut in half, then
                         its worker SIGKILLed (the retry must fall back to prev.pt);
4. ``stall``             SIGSTOP of a worker (the driver must cancel and retry it
                         after ``resources.stall_after_s`` with no one watching);
5. ``driver-sigkill``    SIGKILL of the driver's whole process group, then ``resume``;
6. ``sigterm``           SIGTERM to the driver's process group (how Slurm stops a job):
                         exit 75, then ``resume``;
7. ``sigint``            SIGINT to the driver's process group (a terminal's Ctrl-C):
                         exit 130, then ``resume`` to the end.

Then, trial by trial against the undisturbed run: ``result.json`` and every
metric of ``metrics.jsonl`` (timings aside: throughput and wall time differ by
nature) must be equal; no finished trial may run again (its result.json is
watched from the moment it appears: a rerun would write a new one); W&B's
history, over all of a run's folders, must hold each step of metrics.jsonl
exactly once. It prints: trials, faults injected (and seen taking effect),
done, metric mismatches, finished trials rerun, W&B steps missing and
duplicated. Exit status 0 only when all of those are as promised.

Run (docs/RELIABILITY.md has the figures)::

    .venv/bin/python benchmarks/chaos.py --json benchmarks/results/chaos.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SWEEP = HERE / "chaos.yaml"
# what differs between two runs of the same trial by nature: how fast it ran
TIMING_KEYS = {"perf/tokens_per_s", "wall_time_s", "tokens_per_s"}


# ---------------------------------------------------------------- driving the CLI
class Driver:
    """`cotsweep launch|resume` in its own process group, as a terminal runs it."""

    def __init__(self, args: list[str], log: Path):
        self.log = open(log, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cotsweep.cli", *args, "--no-progress", "--no-report"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=ENV,
        )

    def signal_group(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float = 900) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.log.close()

    def alive(self) -> bool:
        return self.proc.poll() is None


def launch(d: Path, log: Path) -> Driver:
    return Driver(["launch", str(SWEEP), "--dir", str(d), "tracking=wandb"], log)


def resume(d: Path, log: Path) -> Driver:
    return Driver(["resume", str(d)], log)


# ---------------------------------------------------------------- watching a sweep
def beats(d: Path, since: float = 0.0) -> dict[Path, dict]:
    """Fresh heartbeats of running trials (written in the last few seconds, and after
    ``since``: a killed driver's workers may have beaten a moment ago), by trial dir."""
    out = {}
    for p in d.glob("trials/*/heartbeat.json"):
        try:
            b = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        fresh = time.time() - b.get("time", 0) < 4 and b.get("started", 0) > since
        if fresh and not (p.parent / "result.json").exists():
            out[p.parent] = b
    return out


def wait_for(
    what: str, cond: Callable[[], object], watch: Callable[[], None], timeout: float = 600
):
    deadline = time.time() + timeout
    while time.time() < deadline:
        watch()
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise TimeoutError(f"gave up waiting for: {what}")


class Finished:
    """Every result.json as it first appeared (inode, mtime): a rerun would write a new one."""

    def __init__(self, d: Path):
        self.d, self.seen = d, {}

    def __call__(self) -> None:
        for p in self.d.glob("trials/*/result.json"):
            if p not in self.seen:
                st = p.stat()
                self.seen[p] = (st.st_ino, st.st_mtime_ns)

    def rerun(self) -> list[str]:
        return [
            p.parent.name
            for p, (ino, mtime) in self.seen.items()
            if (p.stat().st_ino, p.stat().st_mtime_ns) != (ino, mtime)
        ]


def events(d: Path, name: str) -> list[tuple]:
    db = sqlite3.connect(f"file:{d / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        return list(db.execute("SELECT * FROM events WHERE event=?", (name,)))
    finally:
        db.close()


# ---------------------------------------------------------------- the disturbed run
def disturbed(d: Path, logs: Path, ckpt_every: int) -> tuple[list[dict], Finished, list[int]]:
    finished = Finished(d)
    faults: list[dict] = []
    codes: list[int] = []

    def fault(name: str, trial: Path | None, **seen: object) -> None:
        faults.append({"fault": name, "trial": trial.name if trial else None, **seen})
        print(f"  injected {name}" + (f" on {trial.name}" if trial else ""), flush=True)

    started = [0.0]  # when the current driver was started

    def running(lo: int, hi: int = 10**9, exclude: set = frozenset()) -> Callable[[], object]:
        def pick():
            for t, b in beats(d, started[0]).items():
                if lo <= b["step"] < hi and t.name not in exclude and b["host"] == HOST:
                    return t, b
            return None

        return pick

    drv = launch(d, logs / "1-launch.log")
    touched: set[str] = set()
    # 1. a worker killed before its trial's first checkpoint
    t, b = wait_for("a trial before its first checkpoint", running(1, ckpt_every // 2), finished)
    os.kill(b["pid"], signal.SIGKILL)
    touched.add(t.name)
    fault("kill-before-ckpt", t, step=b["step"])
    # 2. a worker killed after a checkpoint
    t, b = wait_for("a trial past a checkpoint", running(ckpt_every + 5, exclude=touched), finished)
    os.kill(b["pid"], signal.SIGKILL)
    touched.add(t.name)
    fault("kill-after-ckpt", t, step=b["step"])
    # 3. the newest checkpoint torn, then the worker killed: the retry falls back to prev.pt
    t, b = wait_for(
        "a trial with two checkpoints", running(2 * ckpt_every + 5, exclude=touched), finished
    )
    os.kill(b["pid"], signal.SIGSTOP)  # hold it still while its checkpoint is cut
    last = t / "ckpt" / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    os.kill(b["pid"], signal.SIGKILL)
    touched.add(t.name)
    fault("corrupt-ckpt", t, step=b["step"])
    # 4. a stalled worker: nobody does anything; the driver must notice
    t, b = wait_for("a trial past a checkpoint", running(ckpt_every + 5, exclude=touched), finished)
    os.kill(b["pid"], signal.SIGSTOP)
    touched.add(t.name)
    fault("stall", t, step=b["step"])
    stalled = t

    def stall_handled():
        try:
            return any(e[1] == stalled.name for e in events(d, "stalled"))
        except sqlite3.Error:
            return False

    wait_for("the driver to cancel the stalled trial", stall_handled, finished)
    # 5. the driver SIGKILLed with its process group
    started[0] = time.time()
    wait_for("trials training again", running(1), finished)
    drv.signal_group(signal.SIGKILL)
    codes.append(drv.wait())
    fault("driver-sigkill", None)
    time.sleep(1.0)
    # 6. SIGTERM to the process group, as Slurm does
    started[0] = time.time()
    drv = resume(d, logs / "2-resume.log")
    wait_for("trials training after the resume", running(1), finished)
    drv.signal_group(signal.SIGTERM)
    codes.append(drv.wait())
    fault("sigterm", None, exit=codes[-1])
    # 7. a terminal's Ctrl-C
    started[0] = time.time()
    drv = resume(d, logs / "3-resume.log")
    wait_for("trials training after the resume", running(1), finished)
    drv.signal_group(signal.SIGINT)
    codes.append(drv.wait())
    fault("sigint", None, exit=codes[-1])
    # and to the end
    drv = resume(d, logs / "4-resume.log")
    while drv.alive():
        finished()
        time.sleep(0.2)
    codes.append(drv.wait())
    finished()
    return faults, finished, codes


# ---------------------------------------------------------------- comparing
def metric_rows(trial: Path) -> dict[int, dict]:
    rows: dict[int, dict] = {}
    for line in (trial / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        rows.setdefault(r["step"], {}).update({k: v for k, v in r.items() if k not in TIMING_KEYS})
    return rows


def wandb_steps(trial: Path) -> list[int]:
    from cotsweep import tracking

    return [
        row["_step"]
        for f in tracking.run_folders(trial / "wandb", trial.name)
        for row in tracking.read_run_log(f).history
    ]


def compare(ref: Path, dis: Path) -> dict:
    mismatches, missing, duplicated, done = [], 0, 0, 0
    trials = sorted(p.name for p in ref.glob("trials/*"))
    for tid in trials:
        a, b = ref / "trials" / tid, dis / "trials" / tid
        ra = json.loads((a / "result.json").read_text())
        try:
            rb = json.loads((b / "result.json").read_text())
            done += 1
        except FileNotFoundError:
            mismatches.append(f"{tid}: not done")
            continue
        for k in sorted(set(ra) | set(rb)):
            if k not in TIMING_KEYS and ra.get(k) != rb.get(k):
                mismatches.append(f"{tid}: result {k}: {ra.get(k)!r} != {rb.get(k)!r}")
        ma, mb = metric_rows(a), metric_rows(b)
        if ma != mb:
            diff = [s for s in sorted(set(ma) | set(mb)) if ma.get(s) != mb.get(s)]
            mismatches.append(f"{tid}: metrics differ at steps {diff[:5]}")
        logged = [s for s, r in mb.items() if any(k != "step" for k in r)]
        steps = wandb_steps(b)
        missing += len(set(logged) - set(steps))
        duplicated += len(steps) - len(set(steps))
    return {
        "trials": len(trials),
        "done": done,
        "metric_mismatches": len(mismatches),
        "mismatch_examples": mismatches[:10],
        "wandb_steps_missing": missing,
        "wandb_steps_duplicated": duplicated,
    }


# ---------------------------------------------------------------- main
HOST = socket.gethostname()
ENV = {
    **os.environ,
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "PYTHONPATH": str(ROOT / "src"),
}


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default=None, help="where the two sweeps go (default: a temp dir)")
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args()
    import yaml

    ckpt_every = int(yaml.safe_load(SWEEP.read_text())["run"]["checkpoint_every"])
    base = Path(args.dir or tempfile.mkdtemp(prefix="cotsweep-chaos-"))
    base.mkdir(parents=True, exist_ok=True)
    ref, dis = base / "undisturbed", base / "disturbed"
    print(
        f"chaos benchmark in {base} ({platform.node()}, {os.cpu_count()} CPUs, commit {commit()})"
    )
    t0 = time.time()
    code = launch(ref, base / "0-undisturbed.log").wait()
    t_ref = time.time() - t0
    print(f"undisturbed: exit {code} in {t_ref:.0f} s", flush=True)
    if code != 0:
        print((base / "0-undisturbed.log").read_text()[-3000:])
        return 1
    t0 = time.time()
    faults, finished, codes = disturbed(dis, base, ckpt_every)
    t_dis = time.time() - t0
    figures = compare(ref, dis)
    stalled = next(f["trial"] for f in faults if f["fault"] == "stall")
    stalls = [e[1] for e in events(dis, "stalled")]
    seen = {
        "checkpoint_unreadable events": len(events(dis, "checkpoint_unreadable")),
        "the stalled trial retried": stalls.count(stalled),
        "false stalls": len(stalls) - stalls.count(stalled),
        "driver exit codes": codes,
    }
    figures.update(
        faults_injected=len(faults),
        faults=faults,
        finished_rerun=len(finished.rerun()),
        seen=seen,
        wall_s={"undisturbed": round(t_ref), "disturbed": round(t_dis)},
        machine=f"{platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}",
        commit=commit(),
    )
    print(f"trials                  {figures['trials']}")
    print(
        f"faults injected         {figures['faults_injected']}: {', '.join(f['fault'] for f in faults)}"
    )
    print(f"  seen taking effect    {seen}")
    print(f"done                    {figures['done']}")
    print(f"metric mismatches       {figures['metric_mismatches']}")
    for m in figures["mismatch_examples"]:
        print(f"    {m}")
    print(f"finished trials rerun   {figures['finished_rerun']}")
    print(f"W&B steps missing       {figures['wandb_steps_missing']}")
    print(f"W&B steps duplicated    {figures['wandb_steps_duplicated']}")
    print(f"wall time               undisturbed {t_ref:.0f} s, disturbed {t_dis:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    ok = (
        figures["done"] == figures["trials"]
        and figures["metric_mismatches"] == 0
        and figures["finished_rerun"] == 0
        and figures["wandb_steps_missing"] == 0
        and figures["wandb_steps_duplicated"] == 0
        and seen["checkpoint_unreadable events"] >= 1
        and seen["the stalled trial retried"] == 1
        and seen["false stalls"] == 0
        and codes[1:3] == [75, 130]
        and codes[-1] == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
