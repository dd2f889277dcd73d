"""Embedded Ray exposed nowhere, with a token of its own; secrets never written; files honour the umask.

Everything real: the embedded Ray of :func:`cotsweep.sweep.cluster.connect`
with its sockets and environments read from /proc, a real sweep (a
data-parallel trial included, for torch.distributed's sockets), real W&B
offline files, and `cotsweep launch` run as a user runs it.
"""

from __future__ import annotations

import http.client
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from proc_support import ListenerSampler, command, environment, listeners, process_tree
from sweep_support import sweep_file
from wandb_env import all_bytes_under, wandb_sandbox_fixture  # noqa: F401  (registers the fixture)

import cotsweep  # noqa: F401  (sets Ray's environment before ray is imported)
from cotsweep import hydra_app
from cotsweep.cli import main as cli
from cotsweep.sweep import cluster
from cotsweep.sweep.engine import launch

REPO = Path(__file__).resolve().parents[1]


def _ray_processes(root: int) -> dict[int, str]:
    """pid -> command line of the Ray processes under ``root`` (the driver itself included)."""
    out = {}
    for pid in process_tree(root):
        cmd = command(pid)
        if pid == root or "/ray/" in cmd or cmd.startswith("ray::"):
            out[pid] = cmd
    return out


# ---------------------------------------------------------------- loopback only
def test_every_socket_of_the_embedded_ray_listens_on_loopback_only(tmp_path, ray_local):
    """Listening sockets of the driver's whole tree while a sweep runs, a data-parallel trial too."""
    sw = sweep_file(tmp_path, "sockets", {"task": "modadd", "seed": "0,1"}, steps=30, ckpt=30)
    with ListenerSampler(os.getpid()) as sampler:
        # a plain trial, then one as two rank actors (the worker count is not in the trial id)
        one = launch(str(sw), ["seed=0"], tmp_path / "sweep", progress=False)
        two = launch(str(sw), ["seed=1", "resources.workers=2"], tmp_path / "sweep", progress=False)
    assert one.ok and two.ok and one.ran == two.ran == 1, (one, two)
    exposed = sorted(
        f"{s.command[:60]} {s.proto} {s.address}:{s.port}" for s in sampler.seen if not s.loopback
    )
    assert not exposed, exposed
    # not vacuous: the servers of every kind of Ray process were seen listening
    by_process = {}
    for s in sampler.seen:
        by_process.setdefault((s.pid, s.command), []).append(s)
    commands = " | ".join(c for _, c in by_process)
    for name in (
        "gcs_server",
        "raylet",
        "DashboardAgent",
        "RuntimeEnvAgent",
        "RankWorker",
    ):
        assert name in commands, (name, commands)
    # a task worker: its title is ray::_execute_one while the short trial runs, ray::IDLE
    # before and after, and the sampler may catch it in either state (the same sockets)
    assert "ray::_execute_one" in commands or "ray::IDLE" in commands, commands
    assert any(pid == os.getpid() for pid, _ in by_process)  # the driver's core worker
    # rank 0 serves the rank group's rendezvous besides its core worker's server
    assert any("RankWorker" in c and len(v) >= 2 for (_, c), v in by_process.items()), by_process


def test_only_two_metrics_endpoints_of_the_embedded_ray_answer_without_the_token(ray_local):
    """Ray's HTTP servers ask for the token, its gRPC servers speak no HTTP/1. The exceptions are
    the autoscaler monitor's and the API server's Prometheus endpoints, which Ray 2.60 starts
    with no switch in ray.init (docs/SECURITY.md): loopback only, counters only."""
    answered, asked_for_token = {}, set()
    for s in listeners(os.getpid()):
        if _ray_processes(s.pid).get(s.pid) is None:
            continue  # another kind of process of the test run (none of Ray's)
        for path in ("/", "/metrics", "/api/version", "/api/jobs/"):
            # straight to the socket: no proxy from the environment, no process-wide opener
            conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
            try:
                conn.request("GET", path)
                status = conn.getresponse().status
            except (OSError, http.client.HTTPException):
                continue  # not HTTP/1 at all (gRPC)
            finally:
                conn.close()
            if status < 400:
                answered[f"{s.command} :{s.port}{path}"] = status
            elif status == 401:
                asked_for_token.add(s.command)
    unexpected = [
        where
        for where in answered
        if "autoscaler/_private/monitor.py" not in where and "dashboard/dashboard.py" not in where
    ]
    assert not unexpected, answered
    assert any("RuntimeEnvAgent" in c for c in asked_for_token), asked_for_token  # probed for real


# ---------------------------------------------------------------- the token
_GCS_PROBE = textwrap.dedent(
    """
    import json, os, sys
    from ray._raylet import AuthenticationTokenLoader, GcsClient
    out = {}
    for name, env in json.loads(sys.argv[2]).items():
        os.environ.pop("RAY_AUTH_TOKEN", None)
        os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
        os.environ.update(env)
        AuthenticationTokenLoader.instance().reset_cache()
        try:
            GcsClient(address=sys.argv[1]).internal_kv_keys(b"", namespace=None, timeout=10)
            out[name] = "accepted"
        except Exception as e:
            out[name] = f"{type(e).__name__}: {e}"
    print(json.dumps(out))
    """
)


def test_embedded_ray_has_a_token_of_its_own_that_every_process_uses(ray_local):
    import ray

    token = cluster.token_path()
    assert token is not None and token != Path.home() / ".ray" / "auth_token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert stat.S_IMODE(token.parent.stat().st_mode) == 0o700
    secret = token.read_text().strip()
    assert len(secret) >= 32

    # every Ray process was started with it. /proc shows the environment a process started
    # with, except where a process retitled itself ("ray::IDLE", "ray::DashboardAgent"):
    # the new title may overwrite it. Those are asked directly (workers) or could not talk
    # to the GCS at all with another token (the agents, which the raylet needs to live).
    assert os.environ["RAY_AUTH_TOKEN_PATH"] == str(token)  # the driver: its own changes
    procs = _ray_processes(os.getpid())
    procs.pop(os.getpid())
    started = {pid: cmd for pid, cmd in procs.items() if not cmd.startswith("ray::")}
    names = " ".join(started.values())
    for name in ("gcs_server", "raylet", "monitor.py", "log_monitor.py", "dashboard.py"):
        assert name in names, (name, names)
    for pid, cmd in started.items():
        env = environment(pid)
        if env:  # a process that has exited meanwhile has none
            assert env.get("RAY_AUTH_TOKEN_PATH") == str(token), cmd
            assert env.get("RAY_AUTH_MODE") == "token" and "RAY_AUTH_TOKEN" not in env, cmd

    @ray.remote
    def workers_token() -> str:
        return Path(os.environ["RAY_AUTH_TOKEN_PATH"]).read_text().strip()

    assert ray.get(workers_token.remote()) == secret

    # and the GCS takes that token only: not another one, not the user's shared one
    gcs = ray.get_runtime_context().gcs_address
    trials = {
        "other": {"RAY_AUTH_TOKEN": "f" * 64},
        "shared": {},  # what any other Ray of this user would use: ~/.ray/auth_token
        "ours": {"RAY_AUTH_TOKEN_PATH": str(token)},
    }
    r = subprocess.run(
        [sys.executable, "-c", _GCS_PROBE, gcs, json.dumps(trials)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert seen["ours"] == "accepted", seen
    assert "Unauthenticated" in seen["other"] or "InvalidAuthToken" in seen["other"], seen
    assert seen["shared"] != "accepted", seen


# ---------------------------------------------------------------- secrets
def wandb_sweep(tmp: Path, name: str, entity: str) -> Path:
    """A one-trial sweep mirrored to W&B offline, its entity as given."""
    extra = f"tracking:\n  wandb:\n    mode: offline\n    entity: {entity}\n"
    params = {"task": "modadd", "seed": "0"}
    return sweep_file(
        tmp, name, params, steps=20, ckpt=10, eval_every=10, tracking="wandb", extra=extra
    )


def test_a_real_sweep_writes_no_secret_and_honours_the_umask(
    tmp_path, capsys, monkeypatch, wandb_sandbox
):
    """A fake W&B key and a token in the environment. Read through oc.env by a sweep file or an
    override, or pasted in: refused, nothing written. Then a real sweep with W&B offline, run as a
    user runs it (its own embedded Ray, workers inheriting the secrets and the umask), writes
    neither secret into any file, and its files get the mode the umask gives."""
    key, token = "0badc0ffee" * 4, "tok-" + "s3cr3t" * 6
    monkeypatch.setenv("WANDB_API_KEY", key)
    monkeypatch.setenv("COTSWEEP_TEST_SERVICE_TOKEN", token)
    d = tmp_path / "sweep"
    bad = wandb_sweep(tmp_path, "bad", "${oc.env:WANDB_API_KEY}")
    good = wandb_sweep(tmp_path, "good", "null")
    for args, phrase in [
        ([str(bad)], "tracking.wandb.entity='${oc.env:WANDB_API_KEY}'"),
        ([str(good), "tracking.wandb.tags=[${oc.env:COTSWEEP_TEST_SERVICE_TOKEN}]"], "tags[0]"),
        ([str(good), f"tracking.wandb.tags=[x,{token}]"], "not shown"),  # pasted in
    ]:
        assert cli(["launch", *args, "--dir", str(d), "--no-progress"]) == 2
        said = capsys.readouterr()
        assert phrase in said.err.replace("\n", " "), said.err
        assert key not in said.err + said.out and token not in said.err + said.out
        assert not d.exists()  # nothing written

    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cotsweep.cli",
            "launch",
            str(good),
            "--dir",
            str(d),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        umask=0o027,  # a group-readable sweep (0644 under 022: the test below)
    )
    assert r.returncode == 0, r.stderr[-3000:]
    files = dict(all_bytes_under(d))
    names = {p.name for p in files} | {p.suffix for p in files}
    assert {"ledger.sqlite", "config.yaml", "result.json", "metrics.jsonl", ".wandb"} <= names
    assert {"debug.log", "debug-internal.log"} <= names and "report.md" in names, names
    leaks = [str(p) for p, data in files.items() if key.encode() in data or token.encode() in data]
    assert not leaks, leaks

    assert_modes(d, 0o027)


def assert_modes(d: Path, umask: int) -> None:
    """cotsweep's own files under ``d`` (W&B's are W&B's) and their folders have the umask's modes."""
    want_file, want_dir = 0o666 & ~umask, 0o777 & ~umask
    ours = [
        p
        for p in d.rglob("*")
        if p.is_file()
        and "wandb" not in p.relative_to(d).parts
        and not p.name.startswith("ledger.sqlite-")  # SQLite's WAL files: SQLite's modes
    ]
    names = {p.name for p in ours}
    assert {"config.yaml", "result.json", "heartbeat.json", "last.pt", "ledger.sqlite"} <= names
    assert "report.md" in names and any(p.suffix == ".png" for p in ours), names
    mode = {p: stat.S_IMODE(p.stat().st_mode) for p in ours}
    mode.update({p.parent: stat.S_IMODE(p.parent.stat().st_mode) for p in ours if p.parent != d})
    wrong = {
        str(p): oct(m) for p, m in mode.items() if m != (want_dir if p.is_dir() else want_file)
    }
    assert not wrong, (oct(want_file), oct(want_dir), wrong)


def test_trial_and_report_files_are_0644_under_umask_022(tmp_path):
    """The default umask, in this process: a sweep's trial run by the code a Ray worker runs."""
    from cotsweep.sweep import worker
    from cotsweep.sweep.engine import prepare

    sw = sweep_file(tmp_path, "modes", {"task": "modadd", "seed": "0"}, steps=20, ckpt=10)
    d = tmp_path / "sweep"
    before = os.umask(0o022)
    try:
        ledger = prepare(str(sw), [], d).ledger
        (trial,) = ledger.trials()
        ledger.release()
        ledger.close()
        assert worker.execute(trial.config, None)["status"] == "done"
        assert cli(["report", str(d)]) == 0
    finally:
        os.umask(before)
    assert_modes(d, 0o022)


@pytest.mark.usefixtures("hydra_restore_singletons")
@pytest.mark.parametrize("launcher", ["cotsweep", "basic"])
def test_hydra_multirun_reading_a_secret_writes_it_nowhere(tmp_path, monkeypatch, launcher):
    """`cotsweep train -m`: the cotsweep launcher refuses the job before its ledger is written;
    under Hydra's basic launcher the job itself fails before its trial writes anything."""
    token = "tok-" + "s3cr3t" * 6
    monkeypatch.setenv("COTSWEEP_TEST_SERVICE_TOKEN", token)
    d = tmp_path / "multirun"
    code = hydra_app.cli(
        [
            "-m",
            "model=tiny",
            "run.device=cpu",
            "train.steps=4",
            "tracking.wandb.mode=offline",
            "tracking.wandb.entity=${oc.env:COTSWEEP_TEST_SERVICE_TOKEN}",
            f"hydra/launcher={launcher}",
            f"hydra.sweep.dir={d}",
        ]
    )
    assert code != 0
    written = {str(p.relative_to(d)): data for p, data in all_bytes_under(d)}
    assert "multirun.yaml" in written and "ledger.sqlite" not in written, sorted(written)
    if launcher == "basic":  # the job ran, and stopped before its trial wrote config or result
        assert {"0/attempts.jsonl", "0/.hydra/config.yaml"} <= set(written), sorted(written)
        assert not {"0/config.yaml", "0/result.json"} & set(written), sorted(written)
    assert not [p for p, data in written.items() if token.encode() in data]


def test_a_secret_never_reaches_wandb_even_past_validation(tmp_path, wandb_sandbox, monkeypatch):
    """The W&B mirror refuses a secret by itself: a run that skipped validation mirrors nothing."""
    from conftest import tiny_cfg

    from cotsweep import tracking

    monkeypatch.setenv("COTSWEEP_TEST_SERVICE_TOKEN", "tok-" + "s3cr3t" * 6)
    cfg = tiny_cfg(
        [
            "tracking=wandb",
            "tracking.wandb.mode=offline",
            "tracking.wandb.entity=${oc.env:COTSWEEP_TEST_SERVICE_TOKEN}",
        ]
    )
    assert tracking.open_tracker(cfg, tmp_path / "t", "x") is None
    assert not (tmp_path / "t").exists()


# ---------------------------------------------------------------- with the dashboard
_DASHBOARD_DRIVER = textwrap.dedent(
    """
    import json, os, sys, time
    sys.path.insert(0, sys.argv[1])
    import cotsweep
    from cotsweep.sweep import cluster
    from proc_support import listeners
    import ray
    before = os.environ.get("RAY_AUTH_TOKEN_PATH")
    cluster.connect(num_cpus=1, dashboard=True)
    token = cluster.token_path()
    ray.get(ray.remote(lambda: 1).remote())
    time.sleep(5)  # the dashboard's modules and the agent's metrics export start after ray.init
    seen = [[s.command, s.proto, s.address, s.port, s.loopback] for s in listeners(os.getpid())]
    url = ray.get_runtime_context().get_node_id() and ray._private.worker.get_dashboard_url()
    cluster.shutdown()
    print(json.dumps({"seen": seen, "url": url, "token_left": token.exists(),
                      "env_after": os.environ.get("RAY_AUTH_TOKEN_PATH"), "env_before": before}))
    """
)


@pytest.mark.slow
def test_with_the_dashboard_asked_for_everything_still_listens_on_loopback_only():
    r = subprocess.run(
        [sys.executable, "-c", _DASHBOARD_DRIVER, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    exposed = [s for s in out["seen"] if not s[4]]
    assert not exposed, exposed
    assert out["url"].startswith("127.0.0.1:"), out["url"]
    port = int(out["url"].rsplit(":", 1)[1])
    assert any(s[3] == port for s in out["seen"]), out["seen"]  # the dashboard's own server
    # shutdown removes the embedded Ray's token and gives the environment back
    assert not out["token_left"] and out["env_after"] == out["env_before"]
