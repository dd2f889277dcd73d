"""Typed schemas for every config group, as plain dataclasses.

:func:`cotsweep.compose.register_configs` stores them in Hydra's ConfigStore
(with each task's own schema from the task registry), so that a typo in an override (``model.dept=2``) or a value of the wrong type
(``model.depth=two``) fails at composition, with Hydra's own message naming the
key. Checks that a type cannot express (depth >= 1, heads divide width, the
sequence fits the context) live in :func:`cotsweep.trial.validate`, which runs
before any trial starts.

The top-level keys are split by what they do to a trial's result:

* ``task``, ``setting``, ``model``, ``train``, ``seed``: change the result, so
  they make up the trial id;
* ``run``, ``resources``, ``tracking``: where and how it runs and is watched;
  they never change the result and are left out of the id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import MISSING


class Setting(str, Enum):
    base = "base"  # answer only
    cot = "cot"  # chain emitted after the input, then the answer
    hint = "hint"  # chain as labels at the input positions, never read


class PosEncoding(str, Enum):
    learned = "learned"
    sinusoidal = "sinusoidal"
    rope = "rope"
    none = "none"  # NoPE: the causal mask alone carries order


# ---------------------------------------------------------------- tasks
@dataclass
class TaskConfig:
    name: str = MISSING
    length: int = 8  # n: number of input items


# ---------------------------------------------------------------- model
@dataclass
class ModelConfig:
    depth: int = 2
    width: int = 128
    heads: int = 4
    mlp_ratio: int = 4
    pos_encoding: PosEncoding = PosEncoding.learned
    dropout: float = 0.0
    # context length; 0 = exactly what the task needs
    max_len: int = 0
    # token tasks: the read-out shares the read-in embedding's weights (false: its own, as GPT-2
    # heads added on top of a backbone are); readout_bias adds a bias to the read-out
    tie_readout: bool = True
    readout_bias: bool = False


# ---------------------------------------------------------------- training
@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-8  # AdamW's epsilon (torch's default; transformers' AdamW: 1e-6)
    grad_clip: float = 1.0
    eval_every: int = 250
    eval_size: int = 1024
    # stop once eval accuracy has held >= early_stop_acc for early_stop_patience evals;
    # early_stop_acc <= 0 disables it
    early_stop_acc: float = 0.0
    early_stop_patience: int = 2
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32


# ---------------------------------------------------------------- run / resources / tracking
@dataclass
class RunConfig:
    """Where and how a trial runs; never part of the trial id."""

    out_dir: str = "runs/train"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    log_every: int = 50
    checkpoint_every: int = 500
    progress: bool = True
    # the result figure (acc, chain_acc, eval.acc, ...) the Hydra app returns instead of the
    # whole result, for a sweeper that optimises one number (hydra/sweeper=optuna)
    objective: str | None = None


@dataclass
class ResourcesConfig:
    # GPUs per trial: "auto" sizes a fraction from the model, or a number (0.25, 1, 4)
    gpus: Any = "auto"
    cpus: float = 1.0
    # data-parallel workers (torch.distributed); the global batch is split between them
    workers: int = 1
    # Ray retries of a trial whose worker or node was lost
    max_retries: int = 3
    # failed attempts of a trial (it raised, its worker was lost, it stalled) before it is
    # marked failed; counted in the ledger, so a resume does not start the count again
    max_attempts: int = 2
    # a running trial whose heartbeat is older than this is stalled: cancelled and retried
    stall_after_s: float = 300.0
    # each attempt checkpoints and stops (failed, kind timeout) after this long; null: no limit
    time_limit_s: float | None = None


@dataclass
class WandbConfig:
    # auto: online when an API key is configured, otherwise offline
    mode: str = "auto"  # auto | online | offline | disabled
    project: str = "cotsweep"
    entity: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class TrackingConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class SweepInfo:
    """Filled in by the sweep engine; never part of the trial id."""

    name: str = ""
    dir: str = ""


@dataclass
class TrialConfig:
    task: Any = MISSING
    model: ModelConfig = MISSING
    train: TrainConfig = MISSING
    setting: Setting = Setting.base
    seed: int = 0
    run: RunConfig = MISSING
    resources: ResourcesConfig = MISSING
    tracking: Any = MISSING
    sweep: SweepInfo = field(default_factory=SweepInfo)


# keys that never change a trial's result: left out of its id
NON_RESULT_KEYS = ("run", "resources", "tracking", "sweep", "hydra")


def conf_dir() -> Path:
    """The packaged primary config directory (``conf/`` at the repository top)."""
    import cotsweep.conf

    return Path(cotsweep.conf.__file__).parent


def sweeps_dir() -> Path:
    import cotsweep.sweeps

    return Path(cotsweep.sweeps.__file__).parent


class ConfigView(dict):
    """Attribute access over a plain config dict (``cfg.model.depth``), as on a DictConfig.

    Grid expansion validates thousands of points as plain data: reading an
    OmegaConf tree costs ~1 ms a point, this view microseconds.
    """

    def __getattr__(self, key: str) -> Any:
        try:
            value = self[key]
        except KeyError:
            raise AttributeError(key) from None
        return ConfigView(value) if isinstance(value, dict) else value
