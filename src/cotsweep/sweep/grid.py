"""Expand a sweep into its trials, with Hydra's own parser and sweeper semantics.

A sweep file is a Hydra experiment config whose grid sits under
``hydra.sweeper.params``. The grid is expanded the way Hydra's BasicSweeper
does it (the file's params first, then the command line's overrides, a later
value of the same key replacing an earlier one; lists, ``range()``,
``choice()`` and ``glob()`` all work), and every point is composed into a full
trial config before anything is recorded, so a bad key or value is refused
before any trial starts.

Composing hundreds of points with ``hydra.compose`` costs ~70 ms each. Points
differ mostly in plain values, not in config-group choices, so each distinct
set of group choices is composed once and the point's value overrides are
applied to a copy with Hydra's own override application — the same code
``compose`` runs last.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from cotsweep.compose import UnknownSweep, compose_trial, sweep_search_path
from cotsweep.config import conf_dir
from cotsweep.errors import ConfigError, describe_error
from cotsweep.ids import trial_id
from cotsweep.secret_guard import SecretInConfig


class GridError(ValueError):
    """The sweep cannot be expanded or one of its points cannot run."""


@dataclass
class Trial:
    id: str
    overrides: list[str]  # the grid point, as Hydra overrides
    axes: dict  # key -> value of each override of the point
    cfg: DictConfig


def sweep_name(name_or_path: str) -> str:
    return Path(name_or_path).stem


def grid_points(name_or_path: str, overrides: list[str]) -> list[list[str]]:
    """Every point of the grid as a list of overrides (BasicSweeper's expansion)."""
    with sweep_search_path(name_or_path) as (search, select):
        base = _compose([search, select], return_hydra_config=True)
    params = base.hydra.sweeper.get("params") or {}
    lines = [f"{k}={v}" for k, v in params.items()] + list(overrides)
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
        for o in parsed:
            if o.get_key_element().startswith("hydra"):
                raise GridError(f"{o.input_line}: hydra.* keys cannot be set per trial")
        batches = BasicSweeper.split_arguments(parsed, None)
    except HydraException as e:
        raise GridError(describe_error(e)) from e
    points = batches[0] if batches else []
    if not points:
        raise GridError(
            f"the grid of sweep {name_or_path!r} is empty (an axis has no values): {lines}"
        )
    return points


def expand(name_or_path: str, overrides: list[str], sweep_dir: Path) -> list[Trial]:
    """Compose every trial of the sweep (deduplicated by id), validating each one."""
    from cotsweep.trial import validate

    name = sweep_name(name_or_path)
    points = grid_points(name_or_path, overrides)
    parser = OverridesParser.create()
    groups = {p.name for p in conf_dir().iterdir() if p.is_dir()}
    bases: dict[tuple[str, ...], DictConfig] = {}
    trials: dict[str, Trial] = {}
    with sweep_search_path(name_or_path) as (search, select):
        for point in points:
            parsed = parser.parse_overrides(point)
            group_ov = tuple(o.input_line for o in parsed if o.key_or_group in groups)
            value_ov = [o for o in parsed if o.key_or_group not in groups]
            if group_ov not in bases:
                bases[group_ov] = _compose([search, select, *group_ov])
            cfg = copy.deepcopy(bases[group_ov])
            try:
                ConfigLoaderImpl._apply_overrides_to_config(value_ov, cfg)
            except (HydraException, OmegaConfBaseException) as e:
                raise GridError(describe_error(e)) from e
            try:
                validate(cfg)
            except SecretInConfig as e:  # the point itself may show the secret
                raise GridError(str(e)) from e
            except ConfigError as e:
                raise GridError(f"trial {' '.join(point)}: {e}") from e
            tid = trial_id(cfg)
            with open_dict(cfg):
                cfg.sweep.name = name
                cfg.sweep.dir = str(sweep_dir)
                cfg.run.out_dir = str(Path(sweep_dir) / "trials" / tid)
                cfg.run.progress = False
            axes = {o.get_key_element(): o.value() for o in parsed}
            trials.setdefault(tid, Trial(tid, list(point), _plain(axes), cfg))
    return list(trials.values())


def _compose(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    try:
        return compose_trial(overrides, return_hydra_config=return_hydra_config)
    except UnknownSweep:
        raise
    except (HydraException, OmegaConfBaseException) as e:
        raise GridError(describe_error(e)) from e


def _plain(axes: dict) -> dict:
    return {
        k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
        for k, v in axes.items()
    }


def config_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
