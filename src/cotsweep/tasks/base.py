"""What every task provides, and the shared layout of the serial-reasoning tasks.

A task turns a seeded ``torch.Generator`` into whole batches, vectorised over
the batch and made directly on the trial's device. It also owns its loss and
its evaluation, so the training loop in :mod:`cotsweep.trial` is the same for
every study: a new study is a task file, a sweep file and a plot.

Serial tasks (modadd, s5, isq, cvp) share one layout per setting. A problem is
an input of ``L`` tokens in which the i-th input *item* is read at position
``item_pos[i]``, a chain ``s_1..s_n`` and an answer (= ``s_n``)::

    base:  reads  input  =                labels  .. .. .. ..  answer
    hint:  reads  input  =                labels  s_i at item_pos[i], answer at "="
    cot:   reads  input  =  s_1 .. s_n    labels  .. ..  s_1 s_2 .. s_n answer

``base`` and ``hint`` read the same sequence; only the supervision differs. The
answer is scored at "=" (the last input position) for both. In ``cot`` the
label at "=" is s_1, at s_i it is s_{i+1}, and at s_n it is the answer; at
evaluation the chain is generated greedily and only the final answer scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from cotsweep.config import Setting
from cotsweep.errors import ConfigError

IGNORE = -100  # label of a position with no loss


@dataclass
class Batch:
    """One batch as the model sees it.

    ``x``: (B, T) token ids, or (B, T, D) floats for tasks with a continuous read-in.
    ``y``: (B, T) labels (IGNORE where there is no loss), or float targets.
    ``mask``: (B, T) bool, where ``y`` counts (float targets only).
    """

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor | None = None

    @property
    def tokens(self) -> int:
        return self.x.shape[0] * self.x.shape[1]


@dataclass
class ModelSpec:
    """What a task needs from the model: token or vector read-in, output size, context."""

    seq_len: int
    vocab_size: int = 0  # > 0: token embedding read-in
    in_dim: int = 0  # > 0: linear read-in of vectors (function learning)
    out_dim: int = 0  # output size; defaults to vocab_size


class Task:
    """Base of every task. Subclasses set ``name`` and implement the methods below."""

    name: str = ""
    trains: bool = True  # False: a simulation with no model (skill emergence)

    def __init__(self, cfg: Any, setting: Setting = Setting.base):
        self.cfg = cfg
        self.setting = Setting(setting)

    # -- what the trial asks of every task ---------------------------------
    def model_spec(self) -> ModelSpec:
        raise NotImplementedError

    def train_batch(
        self, batch_size: int, gen: torch.Generator, device: torch.device, step: int = 0
    ) -> Batch:
        """Fresh examples for training step ``step`` (1-based; curricula read it)."""
        raise NotImplementedError

    def loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Mean cross-entropy over the labelled positions."""
        return F.cross_entropy(out.flatten(0, 1).float(), batch.y.flatten(), ignore_index=IGNORE)

    @torch.no_grad()
    def evaluate(
        self, model: torch.nn.Module, n: int, gen: torch.Generator, device: torch.device
    ) -> dict:
        raise NotImplementedError

    def chance(self) -> float:
        """Accuracy of guessing: what eval/acc is normalised against."""
        return 0.0

    def sample(self, count: int, gen: torch.Generator) -> list[dict]:
        """Examples as JSON-ready dicts with the task's semantic fields, tokens and labels."""
        raise NotImplementedError

    def simulate(self, seed: int) -> dict:
        """For tasks with ``trains = False``: the whole trial, returning its result figures."""
        raise NotImplementedError

    def validate(self) -> None:
        """Raise ConfigError naming the bad key; called before anything is written."""
        if self.cfg.length < 1:
            raise ConfigError("task.length", self.cfg.length, "must be >= 1")


# ---------------------------------------------------------------- serial tasks
@dataclass
class SerialProblems:
    """A batch of serial problems before the setting lays it out (all token ids)."""

    inputs: torch.Tensor  # (B, L)
    item_pos: torch.Tensor  # (n,) position in ``inputs`` where item i is read
    chain: torch.Tensor  # (B, n)
    answer: torch.Tensor  # (B,)


class SerialTask(Task):
    """A task with input items, a chain s_1..s_n and an answer, in base/cot/hint."""

    # subclasses fill ``itos`` (token strings) with "=" among them
    itos: list[str]

    def __init__(self, cfg: Any, setting: Setting = Setting.base):
        super().__init__(cfg, setting)
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.eq = self.stoi["="]

    # subclasses implement these two
    def problems(
        self, batch_size: int, gen: torch.Generator, device: torch.device
    ) -> SerialProblems:
        raise NotImplementedError

    def describe(self, p: SerialProblems, i: int) -> dict:
        """The semantic fields of example i (xs/perms/gates..., chain, answer)."""
        raise NotImplementedError

    def input_len(self) -> int:
        raise NotImplementedError

    # -- layout --------------------------------------------------------------
    def model_spec(self) -> ModelSpec:
        n = self.cfg.length
        T = self.input_len() + 1 + (n if self.setting == Setting.cot else 0)
        return ModelSpec(seq_len=T, vocab_size=len(self.itos))

    def layout(self, p: SerialProblems) -> Batch:
        B, L = p.inputs.shape
        eq = torch.full((B, 1), self.eq, dtype=torch.long, device=p.inputs.device)
        if self.setting == Setting.cot:
            x = torch.cat([p.inputs, eq, p.chain], dim=1)  # (B, L+1+n)
            y = torch.full_like(x, IGNORE)
            y[:, L:-1] = p.chain
            y[:, -1] = p.answer
        else:
            x = torch.cat([p.inputs, eq], dim=1)  # (B, L+1)
            y = torch.full_like(x, IGNORE)
            if self.setting == Setting.hint:
                y[:, p.item_pos] = p.chain
            y[:, L] = p.answer
        return Batch(x=x, y=y)

    def train_batch(
        self, batch_size: int, gen: torch.Generator, device: torch.device, step: int = 0
    ) -> Batch:
        return self.layout(self.problems(batch_size, gen, device))

    # -- evaluation ------------------------------------------------------------
    @torch.no_grad()
    def evaluate(
        self, model: torch.nn.Module, n: int, gen: torch.Generator, device: torch.device
    ) -> dict:
        """Answer accuracy, and per-step chain accuracy where the setting has a chain.

        cot: the chain is generated greedily from the input alone and only the final
        token scored. hint: the chain step i is the prediction at item i. base: no chain.
        """
        p = self.problems(n, gen, device)
        L = p.inputs.shape[1]
        eq = torch.full((n, 1), self.eq, dtype=torch.long, device=device)
        x = torch.cat([p.inputs, eq], dim=1)
        if self.setting == Setting.cot:
            # the chain, then the answer, decoded greedily with a KV cache (GPT.greedy)
            gen_out = model.greedy(x, p.chain.shape[1] + 1)  # (n, steps)
            answer_pred, chain_pred = gen_out[:, -1], gen_out[:, :-1]
        else:
            pred = model(x).argmax(-1)  # (n, L+1)
            answer_pred = pred[:, L]
            chain_pred = pred[:, p.item_pos] if self.setting == Setting.hint else None
        out = {"acc": (answer_pred == p.answer).float().mean().item()}
        if chain_pred is not None:
            per_step = (chain_pred == p.chain).float().mean(0)
            out["chain_acc"] = per_step.mean().item()
            out["chain_acc_per_step"] = [round(v, 4) for v in per_step.tolist()]
        return out

    # -- human-readable samples -------------------------------------------------
    def sample(self, count: int, gen: torch.Generator) -> list[dict]:
        p = self.problems(count, gen, torch.device("cpu"))
        b = self.layout(p)
        rows = []
        for i in range(count):
            row = self.describe(p, i)
            row["tokens"] = [self.itos[t] for t in b.x[i].tolist()]
            row["labels"] = [None if t == IGNORE else self.itos[t] for t in b.y[i].tolist()]
            rows.append(row)
        return rows


def primes_below(bound: int) -> list[int]:
    sieve = [True] * max(bound, 2)
    sieve[0] = sieve[1] = False
    for i in range(2, int(math.isqrt(bound - 1)) + 1 if bound > 2 else 2):
        if sieve[i]:
            sieve[i * i :: i] = [False] * len(sieve[i * i :: i])
    return [i for i in range(bound) if sieve[i]]


def randint(
    low: int, high: int, size: tuple, gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    """torch.randint on the generator's device, moved to ``device``."""
    t = torch.randint(low, high, size, generator=gen, device=gen.device)
    return t.to(device, non_blocking=True)
