"""AdamW on CPU: torch's default (a per-parameter loop), foreach, and fused — same losses? faster?

Issue 14 asks for fused AdamW wherever the device supports it, on CPU too if
the losses stay identical: a trial id must give one result however it ran, and
CPU trials reproduce exactly (docs/ARCHITECTURE.md, checkpoints). This trains
each shape 50 steps from the same seed with each implementation and compares
every step's loss and the final parameters bit for bit with the default, then
times the real trial step (``cotsweep.trial.train_step``) with each, in
alternating blocks (the machine is shared), one torch thread.

    .venv/bin/python benchmarks/adamw_cpu.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cotsweep.compose import compose_trial
from cotsweep.trial import DistContext, Training, build_training, lr_at, train_step, validate

SHAPES = {
    "smoke modadd cot d1": ["task=modadd", "setting=cot", "model=tiny", "task.length=4"],
    "smoke cvp base d2": [
        "task=cvp",
        "setting=base",
        "model=tiny",
        "model.depth=2",
        "task.length=4",
    ],
    "s5 n16 w256 d1": [
        "task=s5",
        "setting=cot",
        "task.length=16",
        "model.width=256",
        "model.depth=1",
    ],
}
MODES = ("default", "foreach", "fused")


def training(mode: str, shape: list[str]) -> tuple:
    cfg = compose_trial([*shape, "tracking=none", "run.device=cpu"])
    task = validate(cfg)
    tr: Training = build_training(cfg, task, DistContext())
    t = cfg.train
    kw = {"fused": True} if mode == "fused" else {"foreach": True} if mode == "foreach" else {}
    kw.update(lr=t.lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay)
    tr.opt = torch.optim.AdamW(tr.model.parameters(), **kw)
    tr.sched = torch.optim.lr_scheduler.LambdaLR(tr.opt, lambda s: lr_at(s, t))
    return cfg, task, tr


def losses(mode: str, shape: list[str], steps: int = 50) -> tuple[list[float], list[torch.Tensor]]:
    cfg, task, tr = training(mode, shape)
    out = [train_step(tr, task, cfg.train, s, slice(None))[1].item() for s in range(1, steps + 1)]
    return out, [p.detach().clone() for p in tr.model.parameters()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=12)
    a = p.parse_args()
    torch.set_num_threads(1)
    for name, shape in SHAPES.items():
        ref, ref_params = losses("default", shape)
        line = [f"{name}:"]
        for mode in MODES[1:]:
            got, params = losses(mode, shape)
            same = got == ref and all(
                torch.equal(x, y) for x, y in zip(params, ref_params, strict=True)
            )
            diff = max(abs(x - y) for x, y in zip(got, ref, strict=True))
            line.append(f"{mode} identical={same} (largest loss difference {diff:.1e})")
        print("  ".join(line), flush=True)
        runs = {m: training(m, shape) for m in MODES}
        step = dict.fromkeys(MODES, 0)
        times: dict[str, list[float]] = {m: [] for m in MODES}
        n = 10 if "model=tiny" in shape else 2
        for blk in range(a.blocks + 1):  # block 0 warms up
            for m in MODES if blk % 2 else MODES[::-1]:
                cfg, task, tr = runs[m]
                t0 = time.perf_counter()
                for _ in range(n):
                    step[m] += 1
                    train_step(tr, task, cfg.train, step[m], slice(None))
                if blk:
                    times[m].append((time.perf_counter() - t0) / n)
        med = {m: statistics.median(times[m]) for m in MODES}
        print(
            "    step ms: "
            + ", ".join(f"{m} {med[m] * 1e3:.2f}" for m in MODES)
            + f"; default/foreach {med['default'] / med['foreach']:.2f}x"
            + f", default/fused {med['default'] / med['fused']:.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
