"""The one registry of tasks: a name -> (config schema, task class)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cotsweep.config import Setting
from cotsweep.errors import ConfigError


@dataclass(frozen=True)
class TaskEntry:
    schema: type
    cls: type


TASKS: dict[str, TaskEntry] = {}


def register(name: str, schema: type):
    def wrap(cls):
        cls.name = name
        TASKS[name] = TaskEntry(schema=schema, cls=cls)
        return cls

    return wrap


def make_task(cfg: Any, setting: Setting | str = Setting.base):
    """The task named by ``cfg.name``, built from its config and the setting."""
    entry = TASKS.get(cfg.name)
    if entry is None:
        raise ConfigError(
            "task", cfg.name, f"unknown task; known tasks: {', '.join(sorted(TASKS))}"
        )
    return entry.cls(cfg, setting)
