"""Hydra composition of trial configs, and of sweeps.

Every trial config comes from Hydra: the packaged ``conf/`` is the primary
config directory; a sweep file is a Hydra experiment config (``# @package
_global_``) selected as ``+sweeps=NAME`` from a search path that holds it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from cotsweep.config import (
    ModelConfig,
    ResourcesConfig,
    RunConfig,
    TrackingConfig,
    TrainConfig,
    TrialConfig,
    conf_dir,
    sweeps_dir,
)
from cotsweep.tasks import TASKS

_registered = False


def register_configs() -> None:
    """Every config group's schema in Hydra's ConfigStore; each task brings its own.

    The schemas are stored outside the groups (``/task_cvp_schema``, not
    ``task/cvp_schema``) and each group's YAML pulls its own in with
    ``- /task_cvp_schema@_here_``: a schema inside a group would be one of its
    options, listed by ``--help`` and accepted as ``task=cvp_schema``.
    """
    cs = ConfigStore.instance()
    cs.store(name="trial_schema", node=TrialConfig)
    for name, entry in TASKS.items():
        cs.store(name=f"task_{name}_schema", node=entry.schema)
    cs.store(name="model_schema", node=ModelConfig)
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="run_schema", node=RunConfig)
    cs.store(name="resources_schema", node=ResourcesConfig)
    cs.store(name="tracking_schema", node=TrackingConfig)


def _register() -> None:
    global _registered
    if not _registered:
        register_configs()
        _registered = True


@contextmanager
def hydra_context() -> Iterator[None]:
    """Initialise Hydra on the packaged config dir (reusing a live initialisation)."""
    _register()
    if GlobalHydra.instance().is_initialized():
        yield
        return
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3", job_name="cotsweep"):
        yield


def compose_trial(overrides: Sequence[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """One trial config from command-line style overrides (``task=s5 model.depth=2``)."""
    with hydra_context():
        return compose(
            config_name="config", overrides=list(overrides), return_hydra_config=return_hydra_config
        )


def available_sweeps() -> list[str]:
    return sorted(p.stem for p in sweeps_dir().glob("*.yaml"))


class UnknownSweep(ValueError):
    pass


@contextmanager
def sweep_search_path(name_or_path: str) -> Iterator[tuple[str, str]]:
    """Yield (searchpath override, sweep selection override) for a sweep name or file.

    A file outside the packaged sweeps is copied into a temporary ``sweeps/`` folder
    so that it can be selected the same way (``+sweeps=STEM``).
    """
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UnknownSweep(f"no sweep file at {path}")
        with tempfile.TemporaryDirectory(prefix="cotsweep-sweep-") as tmp:
            (Path(tmp) / "sweeps").mkdir()
            shutil.copy(path, Path(tmp) / "sweeps" / f"{path.stem}.yaml")
            yield f"hydra.searchpath=[file://{tmp}]", f"+sweeps={path.stem}"
        return
    if name_or_path not in available_sweeps():
        raise UnknownSweep(
            f"unknown sweep {name_or_path!r}; available sweeps: {', '.join(available_sweeps())}"
        )
    yield f"hydra.searchpath=[file://{sweeps_dir().parent}]", f"+sweeps={name_or_path}"
