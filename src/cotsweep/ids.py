"""Content-addressed trial ids.

A trial's id is a short hash of its composed config without the keys that do
not change its result (:data:`cotsweep.config.NON_RESULT_KEYS`: where it runs,
with what resources, how it is tracked). Relaunching a sweep therefore finds
its finished trials; changing the W&B project or the GPU fraction reruns none.
"""

from __future__ import annotations

import hashlib
import json

from omegaconf import DictConfig, OmegaConf

from cotsweep.config import NON_RESULT_KEYS

ID_LENGTH = 12


def result_config(cfg: DictConfig | dict) -> dict:
    """The part of a trial config that determines its result, as plain data."""
    data = (
        cfg
        if isinstance(cfg, dict)
        else OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    )
    return {k: v for k, v in data.items() if k not in NON_RESULT_KEYS}


def trial_id(cfg: DictConfig) -> str:
    return trial_id_of(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))


def trial_id_of(data: dict) -> str:
    """The id of a trial config given as plain resolved data (enums as their names)."""
    blob = json.dumps(result_config(data), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:ID_LENGTH]
