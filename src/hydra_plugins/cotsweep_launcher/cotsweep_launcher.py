"""The Launcher Hydra instantiates for ``hydra/launcher=cotsweep``.

Kept thin, as Hydra's own launchers are: Hydra imports this module while it
scans for plugins at every start-up, so Ray, torch and the ledger are imported
only by :mod:`._core`, when a multirun actually launches jobs.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

# imported for its side effect: the config must be in the ConfigStore before Hydra
# resolves hydra/launcher=cotsweep, whichever of the plugin's modules is scanned first
from hydra_plugins.cotsweep_launcher import config as _config  # noqa: F401


class CotsweepLauncher(Launcher):
    """Runs each job of a Hydra multirun as a trial of cotsweep's sweep engine.

    A job's id is its trial id, its state lives in the ledger of the sweep
    directory, done jobs are not run again, and the rest run as Ray tasks whose
    results stream back as they finish, with retries. See :mod:`._core`.
    """

    def __init__(
        self,
        address: str | None = None,
        max_concurrent: int | None = None,
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        max_attempts: int | None = None,
        max_retries: int | None = None,
        ray_num_cpus: float | None = None,
    ) -> None:
        self.address = address
        self.max_concurrent = max_concurrent
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.max_attempts = max_attempts
        self.max_retries = max_retries
        self.ray_num_cpus = ray_num_cpus
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        # cotsweep first: it sets Ray's environment (no usage stats, token auth), which Ray
        # reads once, when it is imported; done here, not at module level, so that merely
        # scanning plugins leaves other applications' Ray settings alone
        import cotsweep  # noqa: F401
        from hydra_plugins.cotsweep_launcher import _core

        return _core.launch(self, job_overrides, initial_job_idx)
