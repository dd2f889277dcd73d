"""cotsweep: a distributed experiment-sweep orchestrator for chain-of-thought studies."""

import os as _os

# Every process that imports cotsweep (driver, Ray workers, test helpers) must agree on
# these before Ray is imported anywhere: Ray reads its auth mode once, at import.
for _k, _v in (("RAY_USAGE_STATS_ENABLED", "0"), ("RAY_AUTH_MODE", "token")):
    _os.environ.setdefault(_k, _v)

__version__ = "0.1.0"
