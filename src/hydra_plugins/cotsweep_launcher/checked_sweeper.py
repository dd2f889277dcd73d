"""``hydra/sweeper=cotsweep_grid``: Hydra's basic sweeper, minus a second composition of every job.

Hydra's BasicSweeper composes every job of a batch once to validate it
(``validate_batch_is_legal``) before handing the batch to the launcher, which
composes each job again. ``cotsweep train -m`` has already composed and checked
every point of the grid as a sweep's (``hydra_app._check_overrides``: the same
overrides, with the bad key or value named in one line) before Hydra starts, and
the cotsweep launcher composes each job itself; the third composition cost as
much as running 50 zero-step jobs on two cores (benchmarks/hydra_launcher.py,
docs/BENCHMARKS.md §7). ``cotsweep train -m`` picks this sweeper when the command
line names none; everything else is BasicSweeper's.
"""

# No `from __future__ import annotations` here: Hydra's plugin scanner runs this module before
# it is in sys.modules, where @dataclass looks string annotations up (as in config.py).
from dataclasses import dataclass

from hydra._internal.core_plugins import basic_sweeper  # the module: only our class is scanned
from hydra.core.config_store import ConfigStore


@dataclass
class CheckedGridSweeperConf(basic_sweeper.BasicSweeperConf):
    _target_: str = "hydra_plugins.cotsweep_launcher.checked_sweeper.CheckedGridSweeper"


ConfigStore.instance().store(
    group="hydra/sweeper",
    name="cotsweep_grid",
    node=CheckedGridSweeperConf,
    provider="cotsweep_launcher",
)


class CheckedGridSweeper(basic_sweeper.BasicSweeper):
    """BasicSweeper for a grid that cotsweep has composed and checked already."""

    def validate_batch_is_legal(self, batch: object) -> None:  # type: ignore[override]
        return None
