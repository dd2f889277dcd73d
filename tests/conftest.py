"""Shared fixtures: real Hydra composition, shrunk to CPU-sized trials.

Tests compose the real config (never a hand-written dict) and then make it
small, the way lightning-hydra-template's conftest does, so a schema or a
default that stops composing fails the tests too.

The environment is set at import, before Ray or W&B are imported anywhere, so
that every process they start inherits it: no usage reporting, no network.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"

import torch  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from cotsweep.compose import compose_trial  # noqa: E402

# What makes a composed trial CPU-sized and quiet; a test's own overrides come after
# these, so any of them can be set back.
TINY_OVERRIDES: tuple[str, ...] = (
    "model=tiny",
    "tracking=none",
    "run.device=cpu",
    "run.progress=false",
    "train.eval_size=128",
)


def tiny_cfg(overrides: Sequence[str] = ()) -> DictConfig:
    """A trial config composed by Hydra with the tiny model on CPU, no tracking, a small eval.

    ``overrides`` are Hydra command-line overrides applied after the tiny ones
    (``["task=s5", "setting=cot", "train.steps=20"]``).
    """
    return compose_trial([*TINY_OVERRIDES, *overrides])


@pytest.fixture(name="tiny_cfg")
def tiny_cfg_fixture() -> Callable[[Sequence[str]], DictConfig]:
    """The :func:`tiny_cfg` helper as a fixture, for tests that prefer injection to import."""
    return tiny_cfg


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    """A fresh, not yet existing trial directory inside pytest's temporary directory."""
    return tmp_path / "trial"


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Run torch on one thread in every test (autouse), and restore the count after.

    The test machines are shared; one thread also makes timings comparable between runs.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One embedded Ray (2 CPUs, on loopback) for the whole run; the engine and launcher join it."""
    from cotsweep.sweep import cluster

    started = cluster.connect(num_cpus=2)
    yield
    if started:
        cluster.shutdown()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu``-marked tests cleanly where CUDA is not available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
