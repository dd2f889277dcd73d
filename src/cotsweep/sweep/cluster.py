"""Every call into Ray's start-up and placement APIs, behind functions of ours.

Ray's APIs for these have churned between releases; the rest of cotsweep calls
only this module.

Embedded Ray is reachable from this machine only: every process it starts
(GCS, raylet, workers, the driver's core worker, the agents, the monitor and
the API server) listens on 127.0.0.1 and nowhere else. Ray 2.60 binds its
servers to loopback only when the node's IP is 127.0.0.1 itself, and on Linux
it rewrites an asked-for 127.0.0.1 to the machine's network address, binding
all interfaces instead; its Windows/macOS switch (``ENABLE_RAY_CLUSTER``, off
there to avoid firewall prompts) keeps 127.0.0.1, so it is turned off while
the embedded Ray starts. Metrics export and the dashboard run only when asked,
and the cluster gets a token of its own (a new random one per embedded Ray, in
a 0600 file of a private directory) instead of the shared ~/.ray/auth_token.
docs/SECURITY.md lists what listens where.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"

# Set where unset by importing cotsweep (see cotsweep/__init__.py) and passed to every
# worker, so that all of Ray's processes agree.
RAY_ENV_KEYS = ("RAY_USAGE_STATS_ENABLED", "RAY_AUTH_MODE")

# The embedded Ray's own token: its file, and the environment it replaced (restored at shutdown).
_token_dir: Path | None = None
_saved_env: dict[str, str | None] = {}


def ray_env() -> dict[str, str]:
    """The environment every Ray process of ours shares."""
    return {k: os.environ[k] for k in RAY_ENV_KEYS if k in os.environ}


def connect(
    address: str | None = None,
    *,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    dashboard: bool = False,
) -> bool:
    """Join the cluster at ``address`` (or RAY_ADDRESS), or start Ray embedded on loopback.

    Returns True when this call started Ray (and so should shut it down).
    """
    import ray

    env = ray_env()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    env_vars = {**env, **_passthrough_env()}
    # Inside a Ray job, the job's runtime env is merged with ours, and Ray refuses
    # a variable set in both (even to the same value): leave those to the job.
    for k in _job_config().get("runtime_env", {}).get("env_vars", {}) or {}:
        env_vars.pop(k, None)
    worker_env = {"env_vars": env_vars}
    if address:
        host = address.removeprefix("ray://").rsplit(":", 1)[0]
        # a Ray on this machine's loopback (an embedded one, the loopback test cluster): this
        # driver's node is that loopback address too, else Ray resolves it to the network
        # address, finds no raylet there and waits for one forever
        on_loopback = host.startswith("127.") or host == "localhost"
        node_ip = {"_node_ip_address": LOOPBACK if host == "localhost" else host}
        with loopback_node() if on_loopback else nullcontext():
            ray.init(
                address=address,
                runtime_env=worker_env,
                log_to_driver=False,
                logging_level="WARNING",
                **(node_ip if on_loopback else {}),
            )
        return True
    # Embedded workers inherit the driver's environment; a runtime_env here would only
    # stop Ray from using its prestarted workers (first tasks 1.6 s instead of 0.3 s).
    # address="local": always a new instance. With None, Ray would join any Ray it finds
    # running on this machine (/tmp/ray/ray_current_cluster), someone else's included.
    _use_env(_embedded_env())
    try:
        with loopback_node(), stop_signals_blocked_in_children():
            ray.init(
                address="local",
                _node_ip_address=LOOPBACK,
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                include_dashboard=dashboard,
                dashboard_host=LOOPBACK,
                # the agent's Prometheus endpoint (no token) and the workers' metrics: only
                # for the dashboard, which charts them
                _system_config={"enable_metrics_collection": dashboard},
                log_to_driver=False,
                logging_level="WARNING",
            )
    except BaseException:
        _restore_env()
        raise
    _no_graceful_kill()
    return True


def _no_graceful_kill() -> None:
    """Ray stops its processes with SIGTERM and a second's wait for each before SIGKILL;
    ours cannot hear SIGTERM (blocked since their start), so the waits only add ~4 s to
    every shutdown. Skip them (Ray's private node object: if it moves, the waits return)."""
    import ray

    node = getattr(ray._private.worker, "_global_node", None)
    kill = getattr(node, "kill_all_processes", None)
    if kill is None:
        return

    def kill_at_once(*args: Any, **kwargs: Any) -> Any:
        return kill(*args, **{**kwargs, "allow_graceful": False})

    node.kill_all_processes = kill_at_once


# what stops a job (Slurm, systemd, Docker, Kubernetes), a closed terminal, and Slurm's
# warning before pre-emption: the driver handles them; Ray's own processes must outlive them
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGUSR1") if hasattr(signal, name)
)


@contextmanager
def stop_signals_blocked_in_children() -> Iterator[None]:
    """While the embedded Ray starts: block the stop signals, so that its GCS, raylet and
    workers (which inherit the mask) ignore them, as Ray itself does for SIGINT.

    A SIGTERM sent to the driver's whole process group (Slurm's scancel, a container
    stop) would otherwise kill Ray under the driver, which could then neither hear from
    its trials nor stop them cleanly; the driver, unblocked again at once, stops them
    the cooperative way (a signal that arrived meanwhile is delivered then).
    """
    if not hasattr(signal, "pthread_sigmask") or not STOP_SIGNALS:
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextmanager
def loopback_node() -> Iterator[None]:
    """While Ray starts a node here: keep the node IP 127.0.0.1, so its servers bind loopback only.

    Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once, at import, into
    ``ray_constants.ENABLE_RAY_CLUSTER``; with it off, Ray resolves a local
    node's IP to 127.0.0.1 rather than to the network address. Only during the
    start: a later join of a real cluster from this process must resolve normally.
    """
    import ray._private.ray_constants as ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


def _embedded_env() -> dict[str, str | None]:
    """The environment of an embedded Ray: its own token, torch.distributed on loopback.

    The raylet and every worker inherit it at start, so all of them load the same
    token and their rank groups listen on loopback; the driver keeps it until
    :func:`shutdown`.
    """
    global _token_dir
    _token_dir = Path(tempfile.mkdtemp(prefix="cotsweep-ray-"))  # 0700
    atexit.register(_remove_token_dir, _token_dir)
    token = _token_dir / "auth_token"
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    lo = loopback_interface()
    return {
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_AUTH_TOKEN": None,  # it would win over the file (Ray's order: variable, file, home)
        # gloo's and NCCL's sockets of a data-parallel trial: loopback (their default is
        # the address the host name resolves to)
        "GLOO_SOCKET_IFNAME": lo,
        "NCCL_SOCKET_IFNAME": lo,
    }


def loopback_interface() -> str | None:
    """The loopback interface's name (``lo`` on Linux, ``lo0`` on macOS)."""
    return next((n for _, n in socket.if_nameindex() if n.startswith("lo")), None)


def token_path() -> Path | None:
    """The embedded Ray's token file, while one runs from this process."""
    return _token_dir / "auth_token" if _token_dir is not None else None


def _use_env(env: dict[str, str | None]) -> None:
    for k, v in env.items():
        _saved_env.setdefault(k, os.environ.get(k))
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _reset_token_cache()


def _restore_env() -> None:
    global _token_dir
    for k, v in _saved_env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _saved_env.clear()
    _reset_token_cache()
    if _token_dir is not None:
        _remove_token_dir(_token_dir)
        _token_dir = None


def _reset_token_cache() -> None:
    """Ray caches the token of a process at first use; the next Ray of this process has another."""
    from ray._raylet import AuthenticationTokenLoader

    AuthenticationTokenLoader.instance().reset_cache()


def _remove_token_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _job_config() -> dict[str, Any]:
    """The job config Ray hands the driver of a `ray job submit` entrypoint; {} outside a job."""
    return json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}") or "{}")


def job_submission_id() -> str | None:
    """The id `ray job stop` takes, when this process is the entrypoint of a Ray job."""
    return _job_config().get("metadata", {}).get("job_submission_id")


def _passthrough_env() -> dict[str, str]:
    """W&B settings the workers need; never the API key itself (wandb reads its own netrc)."""
    keep = (
        "WANDB_MODE",
        "WANDB_DIR",
        "WANDB_SILENT",
        "WANDB_CONSOLE",
        "CUDA_VISIBLE_DEVICES_POLICY",
    )
    return {k: os.environ[k] for k in keep if k in os.environ}


def shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
    if _saved_env:
        _restore_env()


def cluster_resources() -> dict[str, float]:
    import ray

    return dict(ray.cluster_resources())


def request_trials(shape: dict[str, float], count: int) -> None:
    """Ask the autoscaler for room for ``count`` trials of ``shape`` at once (0: withdraw the
    request). A hint only: a cluster without an autoscaler ignores it."""
    from ray.autoscaler.sdk import request_resources

    try:
        request_resources(bundles=[dict(shape)] * count if shape else [])
    except Exception as e:  # a hint that cannot be given must not stop a sweep
        import logging

        logging.getLogger(__name__).warning("autoscaler request not made: %s", e)


def node_ip() -> str:
    import ray

    return ray.util.get_node_ip_address()


def placement_group(bundles: list[dict[str, float]], strategy: str = "PACK") -> Any:
    from ray.util.placement_group import placement_group as pg

    return pg(bundles, strategy=strategy)


def in_group(pg: Any, index: int) -> Any:
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=index)


def remove_group(pg: Any) -> None:
    from ray.util.placement_group import remove_placement_group

    remove_placement_group(pg)
