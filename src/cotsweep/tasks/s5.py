"""s5: composition of permutations of {0,1,2,3,4}.

Input: sigma_1..sigma_n, uniform permutations, one token each (120 symbols).
Chain: s_1 = sigma_1, s_i = sigma_i o s_{i-1}, i.e. s_i(j) = sigma_i(s_{i-1}(j)).
Answer: s_n.

Permutations are written in one-line notation, the tuple (p(0), .., p(4)); the
token of a permutation is its rank in lexicographic order, and its string is the
five digits, e.g. ``10234``. Tokens: the 120 permutations and ``=``. Input items
are read at positions 0..n-1.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from cotsweep.config import TaskConfig
from cotsweep.tasks.base import SerialProblems, SerialTask, randint
from cotsweep.tasks.registry import register

PERMS = list(itertools.permutations(range(5)))  # lexicographic: rank -> one-line tuple


@dataclass
class S5Config(TaskConfig):
    name: str = "s5"


@register("s5", S5Config)
class S5(SerialTask):
    def __init__(self, cfg, setting="base"):
        self.itos = ["".join(map(str, p)) for p in PERMS] + ["="]
        super().__init__(cfg, setting)
        self._tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(120, 5) rank -> permutation, and (5**5,) base-5 code -> rank, on ``device``."""
        if device not in self._tables:
            perms = torch.tensor(PERMS, dtype=torch.long, device=device)
            code = torch.full((5**5,), -1, dtype=torch.long, device=device)
            code[self.encode(perms)] = torch.arange(120, device=device)
            self._tables[device] = (perms, code)
        return self._tables[device]

    @staticmethod
    def encode(p: torch.Tensor) -> torch.Tensor:
        """(..., 5) permutations -> (...,) base-5 codes.

        Horner's rule with Python constants: a tensor of weights made here would be a
        host-to-device copy, and so a host synchronisation, at every training step on a GPU.
        """
        code = p[..., 0]
        for j in range(1, 5):
            code = code * 5 + p[..., j]
        return code

    def input_len(self) -> int:
        return self.cfg.length

    def chance(self) -> float:
        return 1 / 120

    def problems(self, batch_size, gen, device) -> SerialProblems:
        n = self.cfg.length
        perms, code = self.tables(device)
        ranks = randint(0, 120, (batch_size, n), gen, device)
        sigma = perms[ranks]  # (B, n, 5)
        s = sigma[:, 0]
        states = [s]
        for i in range(1, n):  # serial by nature; vectorised over the batch
            s = sigma[:, i].gather(1, s)  # s_i(j) = sigma_i(s_{i-1}(j))
            states.append(s)
        chain = code[self.encode(torch.stack(states, 1))]  # (B, n) ranks
        return SerialProblems(
            inputs=ranks, item_pos=torch.arange(n, device=device), chain=chain, answer=chain[:, -1]
        )

    def describe(self, p, i):
        return {
            "perms": [list(PERMS[r]) for r in p.inputs[i].tolist()],
            "chain": [list(PERMS[r]) for r in p.chain[i].tolist()],
            "answer": list(PERMS[int(p.answer[i])]),
        }
