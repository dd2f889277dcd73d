"""isq: iterated squaring modulo a prime.

Input: a prime p (uniform among the primes below ``task.prime_bound``), a residue
r uniform in 0..p-1, then n ``^2`` symbols. Chain: r_1 = r^2 mod p,
r_i = r_{i-1}^2 mod p. Answer: r_n = r^(2^n) mod p.

Tokens: the numbers ``0``..``bound-1`` (p, r, the chain and the answer all use
them, each value one token), ``^2`` and ``=``. Input items (the ``^2`` symbols)
are read at positions 2..n+1. Example (p=7, r=3, n=2, cot)::

    tokens  7 3 ^2 ^2 = 2 4    labels  . . . . 2 4 4
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cotsweep.config import TaskConfig
from cotsweep.tasks.base import ConfigError, SerialProblems, SerialTask, primes_below, randint
from cotsweep.tasks.registry import register


@dataclass
class IsqConfig(TaskConfig):
    name: str = "isq"
    prime_bound: int = 50


@register("isq", IsqConfig)
class Isq(SerialTask):
    def __init__(self, cfg, setting="base"):
        self.itos = [str(i) for i in range(max(cfg.prime_bound, 3))] + ["^2", "="]
        super().__init__(cfg, setting)
        self.primes = primes_below(cfg.prime_bound)
        # one copy per device: made every step, it would be a host synchronisation on a GPU
        self._primes: dict[torch.device, torch.Tensor] = {}

    def validate(self) -> None:
        super().validate()
        if self.cfg.prime_bound < 3:
            raise ConfigError(
                "task.prime_bound", self.cfg.prime_bound, "must be >= 3 (no prime below it)"
            )

    def input_len(self) -> int:
        return self.cfg.length + 2

    def chance(self) -> float:
        return sum(1 / p for p in self.primes) / len(self.primes)

    def problems(self, batch_size, gen, device) -> SerialProblems:
        n = self.cfg.length
        if device not in self._primes:
            self._primes[device] = torch.tensor(self.primes, dtype=torch.long, device=device)
        primes = self._primes[device]
        p = primes[randint(0, len(self.primes), (batch_size,), gen, device)]
        u = torch.rand(batch_size, generator=gen, device=gen.device).to(device)
        r = (u * p).long().clamp_max(p - 1)  # uniform in 0..p-1
        v, chain = r, []
        for _ in range(n):
            v = v * v % p
            chain.append(v)
        chain = torch.stack(chain, 1)  # (B, n)
        sq = torch.full((batch_size, n), self.stoi["^2"], dtype=torch.long, device=device)
        inputs = torch.cat([p[:, None], r[:, None], sq], 1)
        return SerialProblems(
            inputs=inputs,
            item_pos=torch.arange(2, n + 2, device=device),
            chain=chain,
            answer=chain[:, -1],
        )

    def describe(self, p, i):
        return {
            "p": int(p.inputs[i, 0]),
            "r": int(p.inputs[i, 1]),
            "n": self.cfg.length,
            "chain": p.chain[i].tolist(),
            "answer": int(p.answer[i]),
        }
