"""The launcher's config, stored as ``hydra/launcher=cotsweep``.

Importing this module must stay cheap: Hydra imports every public module under
``hydra_plugins`` at start-up, for every application, sweeping or not.

Fields left at ``None`` are taken per job from a cotsweep trial config's own
``resources`` (cpus, gpus with its ``auto`` fraction, max_attempts,
max_retries), so that a trial asks Ray for the same resources whether it is run
by ``cotsweep launch`` or by Hydra; jobs of other applications get 1 CPU, no
GPU, 2 attempts and 3 Ray retries.
"""

# No `from __future__ import annotations` here: Hydra's plugin scanner runs this module before
# it is in sys.modules, where @dataclass looks string annotations up.
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class CotsweepLauncherConf:
    _target_: str = "hydra_plugins.cotsweep_launcher.cotsweep_launcher.CotsweepLauncher"
    # Ray cluster to join ("auto", "ray://host:10001", ...); None = RAY_ADDRESS, else
    # Ray started embedded in the Hydra process, bound to loopback only
    address: str | None = None
    # jobs in flight at once; None = twice the cluster's CPUs (a short queue keeps Ray busy)
    max_concurrent: int | None = None
    # CPUs Ray reserves per job; None = the trial's resources.cpus, else 1
    num_cpus: float | None = None
    # GPUs Ray reserves per job (a fraction shares a GPU); None = the trial's resources.gpus, else 0
    num_gpus: float | None = None
    # runs of a job that raised before it is recorded failed; None = the trial's
    # resources.max_attempts, else 2
    max_attempts: int | None = None
    # Ray's own retries of a job whose worker or node was lost; None = the trial's
    # resources.max_retries, else 3
    max_retries: int | None = None
    # CPUs of an embedded Ray; None = every core of this machine
    ray_num_cpus: float | None = None


ConfigStore.instance().store(
    group="hydra/launcher", name="cotsweep", node=CotsweepLauncherConf, provider="cotsweep_launcher"
)
