"""isq: iterated squaring modulo a prime.

What the paper specifies (Li et al., ICLR 2024): the input is a prime p, a
residue r, then n ``^2`` symbols; the answer is r^(2^n) mod p; the chain is the
successive squares r_1 = r^2 mod p, r_i = r_{i-1}^2 mod p.

What it leaves open, and what we chose (*ours*, each a config value):

* **n per example** (``task.squarings``). With one n for the whole trial the
  answer is a fixed function of two tokens (p, r): a table of a few hundred
  entries that a one-layer model memorises answer-only (1.000 at depth 1 by
  step 500 with primes below 50), so "fails without CoT" could never show.
  ``uniform`` (default) draws n per example uniformly in 1..``task.length``;
  ``fixed`` gives every example n = ``task.length`` (the paper's literal form,
  kept for comparison).
* **Where the squarings are.** Every example has ``task.length`` slots, so that
  a batch has one shape: n of them, at positions drawn uniformly, hold ``^2``,
  the others ``^1`` (raise to the first power: no change). Scattered rather than
  first-n-then-padding, so that no few tokens tell n: with ``^2`` packed at the
  front, p, r and three slots (a binary search for the boundary) would fix the
  answer at length 8; scattered, the model must read every slot and count.
* **The prime** (``task.prime_bound``): p uniform among the primes below the
  bound, r uniform in 0..p-1, each value one token. One token per value keeps a
  CoT step a lookup (p, r_{i-1}) -> r_i that a one-layer model can learn, as the
  paper reports; values written in several digits would make one step a
  multi-digit modular product, which no shallow model does in one token. The
  default bound (128: 31 primes, 1720 pairs (p, r)) makes the answer-only table
  (p, r, n) ``task.length`` times larger than one CoT step's table, and
  ``cotsweep tasks sample isq --length 8 --count 2000`` shows more than 1500
  distinct inputs. With small p the answer is still a finite table: a model
  with enough layers, or enough steps to memorise it, can solve isq answer-only
  at small n. What separates the settings at CPU budgets is that table's size.

The chain holds the value after each slot: s_i = s_{i-1}^2 mod p at a ``^2``
slot, s_i = s_{i-1} at a ``^1`` slot; the answer is s_length = r^(2^n) mod p.

Tokens: the numbers ``0``..``bound-1`` (p, r, the chain and the answer all use
them, each value one token), ``^2``, ``^1`` and ``=``. Input items (the slots)
are read at positions 2..length+1. Example (p=7, r=3, n=2, length 3, cot)::

    tokens  7 3 ^2 ^1 ^2 = 2 2 4    labels  . . . . . 2 2 4 4

Chance. Without squaring anything, a model that reads p and counts the ``^2``
still guesses the most frequent value of r^(2^n) mod p for them (after enough
squarings most residues reach 1). That guess, averaged over the problems, is
this task's chance level: higher than the mean 1/p, and the one a "fails
without CoT" finding must be judged against.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from cotsweep.config import TaskConfig
from cotsweep.tasks.base import ConfigError, SerialProblems, SerialTask, primes_below, randint
from cotsweep.tasks.registry import register

SQUARINGS = ("uniform", "fixed")


@dataclass
class IsqConfig(TaskConfig):
    name: str = "isq"
    prime_bound: int = 128
    # uniform: n drawn per example in 1..length; fixed: n = length for every example
    squarings: str = "uniform"


@register("isq", IsqConfig)
class Isq(SerialTask):
    def __init__(self, cfg, setting="base"):
        self.itos = [str(i) for i in range(max(cfg.prime_bound, 3))] + ["^2", "^1", "="]
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
        if self.cfg.squarings not in SQUARINGS:
            raise ConfigError("task.squarings", self.cfg.squarings, "must be uniform or fixed")

    def input_len(self) -> int:
        return self.cfg.length + 2

    def squaring_counts(self) -> range:
        n = self.cfg.length
        return range(1, n + 1) if self.cfg.squarings == "uniform" else range(n, n + 1)

    def chance(self) -> float:
        """Mean over (p, n) of the most frequent answer's share: the best guess without squaring r."""
        counts = self.squaring_counts()
        total = 0.0
        for p in self.primes:
            values = list(range(p))
            for n in range(1, counts[-1] + 1):
                values = [v * v % p for v in values]
                if n in counts:
                    total += max(Counter(values).values()) / p
        return total / (len(self.primes) * len(counts))

    def problems(self, batch_size, gen, device) -> SerialProblems:
        length = self.cfg.length
        if device not in self._primes:
            self._primes[device] = torch.tensor(self.primes, dtype=torch.long, device=device)
        primes = self._primes[device]
        p = primes[randint(0, len(self.primes), (batch_size,), gen, device)]
        u = torch.rand(batch_size, generator=gen, device=gen.device).to(device)
        r = (u * p).long().clamp_max(p - 1)  # uniform in 0..p-1
        counts = self.squaring_counts()
        n = randint(counts[0], counts[-1] + 1, (batch_size,), gen, device)  # (B,)
        # n slots at uniformly drawn places square: the ranks of uniform keys are a random order
        keys = torch.rand(batch_size, length, generator=gen, device=gen.device).to(device)
        squares = keys.argsort(1).argsort(1) < n[:, None]  # (B, length)
        v, chain = r, []
        for i in range(length):
            v = torch.where(squares[:, i], v * v % p, v)
            chain.append(v)
        chain = torch.stack(chain, 1)  # (B, length)
        slots = torch.where(squares, self.stoi["^2"], self.stoi["^1"])
        inputs = torch.cat([p[:, None], r[:, None], slots], 1)
        return SerialProblems(
            inputs=inputs,
            item_pos=torch.arange(2, length + 2, device=device),
            chain=chain,
            answer=chain[:, -1],
        )

    def describe(self, p, i):
        squares = (p.inputs[i, 2:] == self.stoi["^2"]).tolist()
        chain = p.chain[i].tolist()
        return {
            "p": int(p.inputs[i, 0]),
            "r": int(p.inputs[i, 1]),
            "n": sum(squares),
            # the successive squares r_1..r_n: the chain's values where a slot squares
            "chain": [v for v, sq in zip(chain, squares, strict=True) if sq],
            "answer": int(p.answer[i]),
        }
