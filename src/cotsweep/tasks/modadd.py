"""modadd (C7): the sum of n digits modulo 7.

Input: x_1..x_n, each uniform in 0..m-1 (m = ``task.modulus``, 7 in the paper).
Chain: the prefix sums s_i = (x_1 + ... + x_i) mod m. Answer: s_n.

Tokens: ``0``..``m-1`` (inputs, chain and answer share these symbols) and ``=``.
Input items are read at positions 0..n-1. Example (n=3, base)::

    tokens  3 5 6 =        labels  . . . 0        ((3+5+6) mod 7 = 0)
    cot     3 5 6 = 3 1 0  labels  . . . 3 1 0 0
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cotsweep.config import TaskConfig
from cotsweep.tasks.base import ConfigError, SerialProblems, SerialTask, randint
from cotsweep.tasks.registry import register


@dataclass
class ModAddConfig(TaskConfig):
    name: str = "modadd"
    modulus: int = 7


@register("modadd", ModAddConfig)
class ModAdd(SerialTask):
    def __init__(self, cfg, setting="base"):
        self.itos = [str(i) for i in range(cfg.modulus)] + ["="]
        super().__init__(cfg, setting)

    def validate(self) -> None:
        super().validate()
        if self.cfg.modulus < 2:
            raise ConfigError("task.modulus", self.cfg.modulus, "must be >= 2")

    def input_len(self) -> int:
        return self.cfg.length

    def chance(self) -> float:
        return 1 / self.cfg.modulus

    def problems(self, batch_size, gen, device) -> SerialProblems:
        n, m = self.cfg.length, self.cfg.modulus
        xs = randint(0, m, (batch_size, n), gen, device)
        chain = xs.cumsum(1) % m  # (B, n)
        return SerialProblems(
            inputs=xs, item_pos=torch.arange(n, device=device), chain=chain, answer=chain[:, -1]
        )

    def describe(self, p, i):
        return {
            "xs": p.inputs[i].tolist(),
            "chain": p.chain[i].tolist(),
            "answer": int(p.answer[i]),
        }
