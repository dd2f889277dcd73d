"""Chain-of-thought evaluation: greedy decoding with the KV cache against recomputing the prefix.

A trial's CoT evaluation decodes the chain and the answer token by token. Before
the KV cache every new token ran the model over the whole prefix again (O(T^2)
positions per example); with it, the prefix is read once and each new token
alone (O(T)). This times ``task.evaluate`` itself, as a trial calls it, both
ways on the same model and the same evaluation stream, alternating, and checks
that both decode the same tokens.

Shapes: the smoke sweep's cot trials (tiny model, n = 4, 512 examples) and the
main study's (s5 at n = 16 and 32, width 256, depths 1 and 4, 1024 examples).

    .venv/bin/python benchmarks/cot_eval.py --device cpu --reps 5
    python benchmarks/cot_eval.py --device cuda --reps 20          # GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from cotsweep.compose import compose_trial
from cotsweep.model import GPT
from cotsweep.trial import build_model, resolve_device, validate

SHAPES = {
    "smoke modadd d1": ["task=modadd", "model=tiny", "model.depth=1", "train.eval_size=512"],
    "smoke modadd d2": ["task=modadd", "model=tiny", "model.depth=2", "train.eval_size=512"],
    "smoke cvp d1": ["task=cvp", "model=tiny", "model.depth=1", "train.eval_size=512"],
    "smoke cvp d2": ["task=cvp", "model=tiny", "model.depth=2", "train.eval_size=512"],
    "s5 n16 w256 d1": ["task=s5", "task.length=16", "model.width=256", "model.depth=1"],
    "s5 n16 w256 d4": ["task=s5", "task.length=16", "model.width=256", "model.depth=4"],
    "s5 n32 w256 d4": ["task=s5", "task.length=32", "model.width=256", "model.depth=4"],
}


def uncached(model: GPT, prefix: torch.Tensor, steps: int) -> torch.Tensor:
    """Decoding as it was: the whole prefix through the model for every new token."""
    x = prefix
    for _ in range(steps):
        x = torch.cat([x, model(x)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return x[:, prefix.shape[1] :]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    device = resolve_device(a.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    cached = GPT.greedy
    rows = []
    print(f"{'shape':18s} {'uncached ms':>12s} {'cached ms':>10s} {'speed-up':>9s}  same tokens")
    for name in a.shapes.split(","):
        cfg = compose_trial([*SHAPES[name], "setting=cot", f"run.device={device}", "tracking=none"])
        task = validate(cfg)
        torch.manual_seed(0)
        model = build_model(cfg, task).to(device).eval()
        bf16 = device.type == "cuda"
        times: dict[str, list[float]] = {"uncached": [], "cached": []}
        decoded = {}
        for rep in range(a.reps + 1):  # the first round warms up, untimed
            order = ("uncached", "cached") if rep % 2 else ("cached", "uncached")
            for way in order:
                gen = torch.Generator(device=device).manual_seed(1)
                out = {}

                def record(m, prefix, steps, way=way, out=out):  # decode one way, keep the tokens
                    out["tokens"] = (cached if way == "cached" else uncached)(m, prefix, steps)
                    return out["tokens"]

                GPT.greedy = record
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                    task.evaluate(model, cfg.train.eval_size, gen, device)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if rep:
                    times[way].append(time.perf_counter() - t0)
                decoded[way] = out["tokens"]
        GPT.greedy = cached
        u, c = statistics.median(times["uncached"]), statistics.median(times["cached"])
        same = bool(torch.equal(decoded["cached"], decoded["uncached"]))
        rows.append({"shape": name, "uncached_s": u, "cached_s": c, "speedup": u / c, "same": same})
        print(f"{name:18s} {u * 1e3:12.1f} {c * 1e3:10.1f} {u / c:8.2f}x  {same}", flush=True)
    if a.json:
        a.json.write_text(json.dumps({"device": str(device), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
