"""cvp: the circuit value problem.

Input: n gates, each four tokens: operation, first input, second input, own
index. Operations TRUE, FALSE (constants), NOT (reads its first input), AND, OR.
Inputs are indices of earlier gates. Chain: the values of gates 1..n in order.
Answer: the value of gate n.

Tokens: ``TRUE FALSE NOT AND OR``, gate indices ``g1``..``gN`` (N = the length),
``-`` for an input a gate does not use, the values ``0`` and ``1``, and ``=``.
Item i (gate i) is read at its own-index token, position 4i+3 (0-based i).
Example (n=3)::

    TRUE - - g1  NOT g1 - g2  OR g2 g1 g3  =     values 1 0 1

How circuits are drawn (*ours*; each a config value). Gate 1 is a constant,
TRUE or FALSE with equal odds. Every later gate is NOT with probability
``not_prob``, else AND or OR. Its first input is the previous gate with
probability ``chain_prob`` (else uniform over earlier gates), which makes long
serial paths; an AND/OR gate's second input is uniform over earlier gates, so
the answer depends on gates far back too. With probability ``pass_prob`` the
AND/OR is the one for which the second input's value is not controlling
(AND when it is 1, OR when it is 0), so the gate passes its first input on;
otherwise the gate is set by its second input. ``pass_prob = 0.5`` is a plain
uniform choice of AND/OR. Swapping TRUE/FALSE and AND/OR maps a circuit to its
complement with the same probability, so the answer is exactly balanced.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cotsweep.config import TaskConfig
from cotsweep.tasks.base import ConfigError, SerialProblems, SerialTask, randint
from cotsweep.tasks.registry import register

OPS = ["TRUE", "FALSE", "NOT", "AND", "OR"]
TRUE, FALSE, NOT, AND, OR = range(5)


@dataclass
class CvpConfig(TaskConfig):
    name: str = "cvp"
    chain_prob: float = 1.0
    pass_prob: float = 0.75
    not_prob: float = 0.3333


@register("cvp", CvpConfig)
class Cvp(SerialTask):
    def __init__(self, cfg, setting="base"):
        n = cfg.length
        self.itos = OPS + [f"g{i}" for i in range(1, max(n, 1) + 1)] + ["-", "0", "1", "="]
        super().__init__(cfg, setting)
        self.g0 = len(OPS)  # token of g1
        self.unused, self.v0 = self.stoi["-"], self.stoi["0"]

    def validate(self) -> None:
        super().validate()
        for key in ("chain_prob", "pass_prob", "not_prob"):
            v = getattr(self.cfg, key)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"task.{key}", v, "must be a probability in [0, 1]")

    def input_len(self) -> int:
        return 4 * self.cfg.length

    def chance(self) -> float:
        return 0.5

    def circuits(self, batch_size, gen, device):
        """(op, a, b, value) each (B, n); inputs are 0-based gate numbers, -1 unused."""
        n, c = self.cfg.length, self.cfg
        B = batch_size

        def coin(p):
            return torch.rand(B, generator=gen, device=gen.device).to(device) < p

        ops = torch.empty(B, n, dtype=torch.long, device=device)
        a = torch.full((B, n), -1, dtype=torch.long, device=device)
        b = torch.full((B, n), -1, dtype=torch.long, device=device)
        val = torch.empty(B, n, dtype=torch.long, device=device)
        first = coin(0.5)
        ops[:, 0] = torch.where(first, TRUE, FALSE)
        val[:, 0] = first.long()
        rows = torch.arange(B, device=device)
        for i in range(1, n):  # gate i+1 (0-based i): serial by nature, vectorised over B
            ai = torch.where(coin(c.chain_prob), i - 1, randint(0, i, (B,), gen, device))
            bi = randint(0, i, (B,), gen, device)
            vb = val[rows, bi]
            passes = coin(c.pass_prob)
            # non-controlling op for vb: AND if vb == 1 else OR; the controlling one otherwise
            andor = torch.where((vb == 1) == passes, AND, OR)
            is_not = coin(c.not_prob)
            ops[:, i] = torch.where(is_not, NOT, andor)
            a[:, i] = ai
            b[:, i] = torch.where(is_not, -1, bi)
            va = val[rows, ai]
            val[:, i] = torch.where(is_not, 1 - va, torch.where(ops[:, i] == AND, va & vb, va | vb))
        return ops, a, b, val

    def problems(self, batch_size, gen, device) -> SerialProblems:
        n = self.cfg.length
        ops, a, b, val = self.circuits(batch_size, gen, device)
        idx = lambda g: torch.where(g >= 0, self.g0 + g, self.unused)  # noqa: E731
        own = self.g0 + torch.arange(n, device=device).expand(batch_size, n)
        inputs = torch.stack([ops, idx(a), idx(b), own], 2).flatten(1)  # (B, 4n)
        chain = self.v0 + val
        return SerialProblems(
            inputs=inputs,
            item_pos=torch.arange(n, device=device) * 4 + 3,
            chain=chain,
            answer=chain[:, -1],
        )

    def describe(self, p, i):
        toks = p.inputs[i].view(-1, 4).tolist()
        gates = []
        for g, (op, ta, tb, _) in enumerate(toks):
            ins = [t - self.g0 + 1 if t != self.unused else 0 for t in (ta, tb)]
            gates.append({"id": g + 1, "op": OPS[op], "in": ins})
        chain = [t - self.v0 for t in p.chain[i].tolist()]
        return {"gates": gates, "chain": chain, "answer": chain[-1]}
