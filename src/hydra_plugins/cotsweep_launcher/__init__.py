"""cotsweep's Hydra launcher: ``hydra/launcher=cotsweep`` runs multirun jobs through the sweep engine.

Hydra discovers it by scanning the ``hydra_plugins`` namespace package, which is
why ``hydra_plugins`` itself has no ``__init__.py``.
"""

__version__ = "0.1.0"
