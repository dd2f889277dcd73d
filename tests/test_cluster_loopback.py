"""docs/CLUSTER.md's "By hand" path, run as an operator runs it, on loopback nodes.

Two "machines" on this one: a head on 127.0.0.2 and a worker node on
127.0.0.3, each with its own home directory (so its own ~/.ray/auth_token)
and its own shell environment, started with the real `ray start`, token
authentication on. The sweep goes in with the real `ray job submit` and the
runtime env from workers/, `cotsweep status` reads it from outside the job, the
worker node is lost mid-sweep (every process of it killed at once, as when a
machine dies), `ray job stop` interrupts the sweep and a resubmitted
`cotsweep resume` finishes it without rerunning a finished trial.

The commands are the docs' own, word for word: the blocks below are what
docs/CLUSTER.md shows (``test_docs_show_what_the_loopback_cluster_runs``
checks it), with the docs' placeholders filled in for loopback and, on
``ray start`` only, flags that keep this test's Ray apart from other Rays on a
shared machine (its own --temp-dir, free ports, one CPU per node). Two steps
are done differently, because both "machines" are one: the token is copied
with a file copy instead of scp, and the nodes are stopped by killing the
process trees this test started instead of `ray stop`, which would stop every
Ray of the user on the machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from loopback_support import ROOT, Machine, free_port
from sweep_support import ledger_rows

from cotsweep import files

CLUSTER_DOC = ROOT / "docs" / "CLUSTER.md"

# ---------------------------------------------------------------- the docs' commands
# Each block is a fenced bash block of docs/CLUSTER.md, "Without cluster.yaml".
HEAD_START = """\
export RAY_AUTH_MODE=token
ray get-auth-token --generate > /dev/null
chmod 600 ~/.ray/auth_token
ray start --head --node-ip-address=HEAD_IP --port=6379 --disable-usage-stats"""

COPY_TOKEN = """\
mkdir -p ~/.ray && scp HEAD_IP:.ray/auth_token ~/.ray/auth_token && chmod 600 ~/.ray/auth_token"""

WORKER_START = """\
export RAY_AUTH_MODE=token
ray start --address=HEAD_IP:6379 --node-ip-address=WORKER_IP --disable-usage-stats"""

NODES = "ray status --address=HEAD_IP:6379"

SUBMIT = """\
ray job submit --address http://127.0.0.1:8265 --runtime-env workers/runtime_env.yaml --working-dir . \\
    -- cotsweep launch smoke --dir SHARED_PATH/runs/smoke --address auto"""

STATUS = "cotsweep status SHARED_PATH/runs/smoke"

STOP = "ray job stop --address http://127.0.0.1:8265 SUBMISSION_ID"

RESUME = """\
ray job submit --address http://127.0.0.1:8265 --runtime-env workers/runtime_env.yaml --working-dir . \\
    -- cotsweep resume SHARED_PATH/runs/smoke"""

TEARDOWN = "ray stop"

DOC_BLOCKS = (HEAD_START, COPY_TOKEN, WORKER_START, NODES, SUBMIT, STATUS, STOP, RESUME, TEARDOWN)

HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
SMOKE_TRIALS, SMOKE_STEPS, SMOKE_CKPT_EVERY = 12, 800, 200


def doc_bash_blocks() -> list[str]:
    """Every ```bash block of docs/CLUSTER.md, without its fences and trailing blank lines."""
    return [
        b.rstrip() for b in re.findall(r"^```bash\n(.*?)^```", CLUSTER_DOC.read_text(), re.M | re.S)
    ]


def test_docs_show_what_the_loopback_cluster_runs() -> None:
    """Each command block the slow test runs stands in the docs as it is, in the same order."""
    blocks = doc_bash_blocks()
    at = [blocks.index(b) if b in blocks else -1 for b in DOC_BLOCKS]
    missing = [b for b, i in zip(DOC_BLOCKS, at, strict=True) if i < 0]
    assert missing == [], "not in docs/CLUSTER.md as a ```bash block:\n\n" + "\n\n".join(missing)
    assert at == sorted(at), "docs/CLUSTER.md shows these blocks in another order"


# ---------------------------------------------------------------- what it found, checked fast
def in_a_ray_job(monkeypatch: pytest.MonkeyPatch, submission_id: str) -> None:
    """The environment Ray's job supervisor gives the entrypoint of `ray job submit`."""
    config = {"runtime_env": {}, "metadata": {"job_submission_id": submission_id}}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(config))


@pytest.mark.parametrize("verb", [["launch", "smoke"], ["launch", "smoke", "--dir", "runs/smoke"]])
def test_relative_sweep_dir_is_refused_inside_a_ray_job(
    verb: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """It would name a folder in the job's copy of the checkout, on the head alone."""
    from cotsweep.cli import main as cli

    monkeypatch.chdir(tmp_path)  # where a job's working_dir copy would be
    in_a_ray_job(monkeypatch, "raysubmit_test")
    assert cli([*verb, "--no-progress"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "inside a Ray job it must be an absolute path on storage every node mounts" in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_status_names_the_ray_job_that_drives_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sweep_support import sweep_file

    from cotsweep.status import status
    from cotsweep.sweep.engine import prepare

    sweep = sweep_file(tmp_path, "job", {"seed": "0,1"})
    in_a_ray_job(monkeypatch, "raysubmit_test")
    ledger = prepare(str(sweep), [], tmp_path / "sweep").ledger
    try:
        assert status(tmp_path / "sweep")["driver"]["ray_job"] == "raysubmit_test"
    finally:
        ledger.release()
        ledger.close()
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR")
    ledger = prepare(str(sweep), [], tmp_path / "sweep").ledger  # a driver outside a job
    try:
        assert status(tmp_path / "sweep")["driver"]["ray_job"] is None
    finally:
        ledger.release()
        ledger.close()


def test_another_process_joins_an_embedded_ray_by_its_loopback_address(ray_local: None) -> None:
    """`hydra.launcher.address=127.0.0.1:PORT` (a second driver on this machine's embedded
    Ray): the joining driver's node is the loopback address too. Before, Ray resolved it to
    the network address, found no raylet there and waited forever."""
    import ray

    address = ray.get_runtime_context().gcs_address
    assert address.startswith("127.")
    code = (
        "import ray; from cotsweep.sweep import cluster; "
        f"cluster.connect({address!r}); print(ray.get(ray.remote(lambda: 6 * 7).remote()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=90, check=False
    )
    assert done.returncode == 0 and done.stdout.split()[-1] == "42", done.stderr[-2000:]


def test_trial_stopped_while_queued_returns_without_an_attempt(tmp_path: Path) -> None:
    """On a cluster every trial waits in Ray's queue: a stop must not start each of them."""
    from conftest import tiny_cfg

    from cotsweep.sweep.grid import config_yaml
    from cotsweep.sweep.worker import execute

    trial = tmp_path / "trial"
    stop = tmp_path / ".stop"
    stop.touch()
    cfg = tiny_cfg([f"run.out_dir={trial}"])
    out = execute(config_yaml(cfg), str(stop))
    assert out["status"] == "interrupted" and out["attempts"] == 0, out
    assert not (trial / files.ATTEMPTS).exists()


# ---------------------------------------------------------------- the cluster
class LoopbackCluster:
    """The docs' commands with their placeholders filled in for this machine."""

    def __init__(self, root: Path) -> None:
        self.shared = root / "shared"  # SHARED_PATH: the one filesystem every node mounts
        self.shared.mkdir()
        self.head = Machine("head", HEAD_IP, root / "head-home")
        self.worker = Machine("worker", WORKER_IP, root / "worker-home")
        self.gcs_port = free_port(HEAD_IP)
        self.dashboard_port = free_port("127.0.0.1")

    def fill(self, block: str, **more: str) -> str:
        values = {
            "HEAD_IP": HEAD_IP,
            "WORKER_IP": WORKER_IP,
            "SHARED_PATH": str(self.shared),
            "6379": str(self.gcs_port),
            "8265": str(self.dashboard_port),
            **more,
        }
        return re.sub(
            r"\b(" + "|".join(map(re.escape, values)) + r")\b", lambda m: values[m[1]], block
        )

    def scoped(self, block: str, machine: Machine) -> str:
        """The block filled in, its `ray start` kept apart from other Rays on this machine."""
        port = self.dashboard_port if machine is self.head else None
        flags = " ".join(machine.ray_start_flags(port))
        return "\n".join(
            line + " " + flags if line.startswith("ray start") else line
            for line in self.fill(block).splitlines()
        )

    @property
    def sweep_dir(self) -> Path:
        return self.shared / "runs" / "smoke"

    def stop_everything(self) -> None:
        for machine in (self.worker, self.head):
            machine.stop()


@pytest.fixture
def loopback(tmp_path: Path) -> Iterator[LoopbackCluster]:
    lb = LoopbackCluster(tmp_path)
    try:
        yield lb
    finally:  # also when the test failed: nothing it started outlives it
        lb.stop_everything()


# ---------------------------------------------------------------- reading the sweep
def trial_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in (sweep_dir / "trials").glob("*") if p.is_dir())


def attempts(trial: Path) -> list[dict]:
    """The executions of a trial: the start records of its journal (attempts.jsonl)."""
    if not (trial / files.ATTEMPTS).exists():
        return []
    return [r for r in files.journal_records(trial) if r.get("event", "start") == "start"]


def executing_on(machine: Machine, sweep_dir: Path) -> set[str]:
    """Trials whose latest execution is a live process of ``machine`` and has not finished."""
    pids = machine.processes()
    return {
        t.name
        for t in trial_dirs(sweep_dir)
        if (a := attempts(t)) and a[-1]["pid"] in pids and not (t / "result.json").exists()
    }


def done_count(sweep_dir: Path) -> int:
    if not (sweep_dir / "ledger.sqlite").exists():
        return 0
    return sum(r["state"] == "done" for r in ledger_rows(sweep_dir).values())


def wait_for(
    what: str,
    check: Callable[[], object],
    timeout: float,
    log: Callable[[], str],
    every: float = 0.1,
):
    """``check()``'s first true value; fail with the job's output so far after ``timeout``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := check():
            return value
        time.sleep(every)
    pytest.fail(f"{what}: not within {timeout:.0f}s\n--- job output ---\n{log()[-6000:]}")


def active_nodes(status_output: str) -> int:
    """The number of nodes `ray status` lists under Active (0 while it answers "No cluster
    status", as it does in the first seconds after the head starts)."""
    if "Active:" not in status_output:
        return 0
    active = status_output.split("Active:", 1)[1].split("Pending:", 1)[0]
    return len(re.findall(r"^\s*\d+ node_", active, re.M))


class Tail:
    """The output of a backgrounded command, collected line by line as it comes."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.lines = proc, []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)


# ---------------------------------------------------------------- the path, end to end
@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_operator_path_survives_a_lost_node_and_a_stop(loopback: LoopbackCluster) -> None:
    lb, head, worker = loopback, loopback.head, loopback.worker
    sweep_dir = lb.sweep_dir
    t0 = time.time()

    def step(what: str) -> None:  # pytest shows these when the test fails
        print(f"{time.time() - t0:6.1f}s  {what}", flush=True)

    step("head")
    # 1. The head: a token, then Ray. The step's shell exported RAY_AUTH_MODE; so do ours after it.
    head.run(lb.scoped(HEAD_START, head))
    token = head.home / ".ray" / "auth_token"
    assert token.stat().st_mode & 0o077 == 0, "the token is readable by others"
    head.env["RAY_AUTH_MODE"] = "token"

    step("worker")
    # 2. The worker: the token copied over (scp, between real machines), then Ray.
    (worker.home / ".ray").mkdir()
    shutil.copy(token, worker.home / ".ray" / "auth_token")
    os.chmod(worker.home / ".ray" / "auth_token", 0o600)
    worker.run(lb.scoped(WORKER_START, worker))
    worker.env["RAY_AUTH_MODE"] = "token"
    wait_for(  # the autoscaler's view that `ray status` prints lags by seconds
        "both nodes active", lambda: active_nodes(head.run(lb.fill(NODES))) == 2, 60, str, every=1
    )

    step("submit")
    # 3. The sweep, as a Ray job; the submitting terminal tails the driver's log.
    submit = Tail(head.popen(lb.fill(SUBMIT)))
    job = wait_for(
        "the job was submitted",
        lambda: (m := re.search(r"Job '(\S+)' submitted successfully", submit.text())) and m[1],
        60,
        submit.text,
    )

    step("status")
    # 4. `cotsweep status` from outside the job, while trials run.
    wait_for(
        "trials running",
        lambda: any(attempts(t) for t in trial_dirs(sweep_dir)) if sweep_dir.exists() else False,
        180,
        submit.text,
    )
    status = head.run(lb.fill(STATUS))
    # rich wraps at 80 columns, long paths anywhere: compare without the whitespace
    bare = re.sub(r"\s+", "", status)
    assert f"smokeat{sweep_dir}:{SMOKE_TRIALS}trials" in bare, status
    assert re.search(r"driver:host\S+PID\d+,Rayjob" + re.escape(job), bare), status

    step("lose the worker")

    # 5. The worker node is lost while it trains a trial that has a checkpoint.
    def checkpointed_on_worker() -> set[str]:
        return {
            t
            for t in executing_on(worker, sweep_dir)
            if (sweep_dir / "trials" / t / "ckpt" / "last.pt").exists()
        }

    wait_for("a checkpointed trial on the worker node", checkpointed_on_worker, 180, submit.text)
    worker_pids = worker.freeze()
    lost = {
        t.name
        for t in trial_dirs(sweep_dir)
        if (a := attempts(t)) and a[-1]["pid"] in worker_pids and not (t / "result.json").exists()
    }
    worker.kill()
    assert lost, "no trial was running on the worker node when it died: the test proved nothing"

    step("wait for the loss to be seen")
    # Ray notices the loss and retries the lost trials on the head; the node is then
    # brought back with the same command, as docs/CLUSTER.md says for a lost node.
    wait_for(
        "the head to see the worker node gone",
        lambda: active_nodes(head.run(lb.fill(NODES))) == 1,
        120,
        submit.text,
        every=1,
    )
    step("the worker node back")
    worker.run(lb.scoped(WORKER_START, worker))

    step("stop")
    # 6. `ray job stop` halfway: running trials checkpoint and go back to pending.
    wait_for(
        "half the sweep done", lambda: done_count(sweep_dir) >= SMOKE_TRIALS // 2, 300, submit.text
    )
    stop = head.run(lb.fill(STOP, SUBMISSION_ID=job), timeout=120)
    assert f"Job '{job}' was stopped" in stop, stop
    submit.proc.wait(timeout=60)  # the tailing terminal sees the job end
    told = re.sub(r"\s+", "", submit.text())  # the driver's last words, folded by rich
    assert f"continuewith:cotsweepresume{sweep_dir}" in told, submit.text()
    rows = ledger_rows(sweep_dir)
    states = [r["state"] for r in rows.values()]
    assert "running" not in states and "failed" not in states, states
    done_at_stop = {
        tid: (sweep_dir / "trials" / tid / "result.json").stat().st_mtime_ns
        for tid, r in rows.items()
        if r["state"] == "done"
    }
    ran_at_stop = {tid: len(attempts(sweep_dir / "trials" / tid)) for tid in rows}
    # Two trials train at a time and half are done: some still waited in Ray's queue,
    # and being stopped there costs them no attempt.
    assert [t for t in rows if t not in done_at_stop and ran_at_stop[t] == 0], ran_at_stop
    for tid in done_at_stop:  # a lost node costs the attempts of the trials it ran, no other
        assert ran_at_stop[tid] == 1 + (tid in lost), (tid, ran_at_stop[tid], lost)
    for tid, ran in ran_at_stop.items():  # nor did any trial still running at the stop pay more
        assert ran <= 1 + (tid in lost), (tid, ran, lost)

    step(f"resume: {len(done_at_stop)} done at the stop, {len(lost)} lost with the node")
    # 7. The resubmitted resume finishes the sweep and reruns nothing that was done.
    resumed = head.run(lb.fill(RESUME), timeout=400)
    assert re.search(r"Job '\S+' succeeded", resumed), resumed
    left = SMOKE_TRIALS - len(done_at_stop)
    assert f"(ran{left}thistime)" in re.sub(r"\s+", "", resumed), resumed
    rows = ledger_rows(sweep_dir)
    step(  # the figures a report quotes: executions per trial, * for the lost node's
        "resumed; attempts "
        + " ".join(f"{r['attempts']}{'*' * (t in lost)}" for t, r in sorted(rows.items()))
    )
    assert [r["state"] for r in rows.values()] == ["done"] * SMOKE_TRIALS, rows
    for tid, row in rows.items():
        trial = sweep_dir / "trials" / tid
        ran = attempts(trial)
        assert row["attempts"] == len(ran), (tid, row["attempts"], ran)
        assert json.loads((trial / "result.json").read_text())["steps"] == SMOKE_STEPS, tid
        if tid in done_at_stop:  # untouched
            assert len(ran) == ran_at_stop[tid], (tid, ran)
            assert (trial / "result.json").stat().st_mtime_ns == done_at_stop[tid], tid
        else:  # one more execution, from its checkpoint where it had one
            assert len(ran) == ran_at_stop[tid] + 1, (tid, ran, ran_at_stop[tid])
    for tid in lost:  # the lost node's trials ran again after it died
        assert len(attempts(sweep_dir / "trials" / tid)) >= 2, tid
