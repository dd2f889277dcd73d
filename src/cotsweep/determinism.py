"""One id, one result: the torch settings every trial runs under, however it is launched.

``cotsweep train``, a sweep's Ray worker and a Hydra multirun job all call
:func:`prepare_torch` at the start of a trial, so the same trial id trains with
the same thread count, the same numerics switches and the same data stream
(the trial's seeded generators, :func:`cotsweep.trial.stream_seed`). Left to
the machine, torch would use every core under ``cotsweep train`` and one thread
in a Ray worker (Ray sets ``OMP_NUM_THREADS`` per task), and a CPU matmul split
over another number of threads sums in another order: the same id gave other
losses from step 25 on and another final accuracy.

The thread count is ``resources.cpus`` (at least 1, fractions rounded down),
what the scheduler reserves for the trial. ``resources`` is not part of the
trial id, so a trial run again with another ``resources.cpus`` may differ in
the last digits on CPU; result.json records the threads, the torch version and
the device it ran with, so such a difference is visible rather than silent.

Set explicitly rather than trusting defaults, since a Ray worker process is
reused across trials and an imported library may have changed them:

* cuDNN autotuning off and its deterministic kernels on (the autotuner picks
  kernels by timing, which differs between runs);
* full-precision float32 matmuls (no TF32), so a GPU's fp32 numbers do not
  depend on a global switch someone else flipped.

Bitwise-identical GPU runs are not promised: fused attention and split-K
matmuls may reduce in a different order between runs.
"""

from __future__ import annotations

from typing import Any

import torch


def trial_threads(cfg: Any) -> int:
    """The torch thread count of a trial: its reserved CPUs, at least one."""
    return max(1, int(float(cfg.resources.cpus)))


def prepare_torch(cfg: Any) -> dict:
    """Set this process's torch up for trial ``cfg``; returns what result.json records of it."""
    threads = trial_threads(cfg)
    torch.set_num_threads(threads)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    return {"threads": threads, "torch": torch.__version__}
