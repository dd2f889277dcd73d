"""Task generators, one file per task, all in one registry (:data:`TASKS`).

Every module of this package except ``base`` and ``registry`` is a task file
that registers itself on import; adding a task is adding a file.
"""

import importlib
import pkgutil

from cotsweep.tasks.base import IGNORE, Batch, ConfigError, ModelSpec, Task
from cotsweep.tasks.registry import TASKS, make_task

for _m in pkgutil.iter_modules(__path__):
    if _m.name not in ("base", "registry"):
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["IGNORE", "TASKS", "Batch", "ConfigError", "ModelSpec", "Task", "make_task"]
