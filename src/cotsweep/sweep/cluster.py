"""Every call into Ray's start-up and placement APIs, behind functions of ours.

Ray's APIs for these have churned between releases; the rest of cotsweep calls
only this module. Embedded Ray binds to loopback only (127.0.0.2: Ray rewrites
127.0.0.1 to the machine's network address), with no dashboard unless asked,
and no usage stats: an embedded Ray open to the network is a known way in.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

LOOPBACK = "127.0.0.2"

# Set where unset by importing cotsweep (see cotsweep/__init__.py) and passed to every
# worker, so that all of Ray's processes agree.
RAY_ENV_KEYS = ("RAY_USAGE_STATS_ENABLED", "RAY_AUTH_MODE")


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
    job = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}") or "{}")
    for k in job.get("runtime_env", {}).get("env_vars", {}) or {}:
        env_vars.pop(k, None)
    worker_env = {"env_vars": env_vars}
    if address:
        ray.init(
            address=address, runtime_env=worker_env, log_to_driver=False, logging_level="WARNING"
        )
        return True
    # Embedded workers inherit the driver's environment; a runtime_env here would only
    # stop Ray from using its prestarted workers (first tasks 1.6 s instead of 0.3 s).
    # address="local": always a new instance. With None, Ray would join any Ray it finds
    # running on this machine (/tmp/ray/ray_current_cluster), someone else's included.
    ray.init(
        address="local",
        _node_ip_address=LOOPBACK,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        include_dashboard=dashboard,
        dashboard_host=LOOPBACK,
        log_to_driver=False,
        logging_level="WARNING",
    )
    return True


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


def cluster_resources() -> dict[str, float]:
    import ray

    return dict(ray.cluster_resources())


def node_ip() -> str:
    import ray

    return ray.util.get_node_ip_address()


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def placement_group(bundles: list[dict[str, float]], strategy: str = "PACK") -> Any:
    from ray.util.placement_group import placement_group as pg

    return pg(bundles, strategy=strategy)


def in_group(pg: Any, index: int) -> Any:
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=index)


def remove_group(pg: Any) -> None:
    from ray.util.placement_group import remove_placement_group

    remove_placement_group(pg)
