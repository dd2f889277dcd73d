"""Training-step speed: tokens/s and model-FLOPs utilisation of the real model on s5 with cot.

Issue 2 asks for two things of a trial's training step:

* its speed for depth 1, 4 and 16 at width 256 (tokens/s, and MFU against the
  device's bf16 dense peak on a GPU);
* that the *full* trial step — data generation, forward, backward, clipping,
  optimiser, scheduler, the on-device loss and divergence bookkeeping, the
  metrics at log steps — stays within 1.1x of the *bare* step (forward,
  backward, optimiser on one pre-generated batch) on the GPU: no data-loading
  stall, no per-step host synchronisation.

The bare step is timed here on one batch made by the task before timing. The
full step is not a copy of the loop: it is ``cotsweep.trial.run_trial`` itself,
run for ``(intervals + 1) * log_every`` steps with evaluation and checkpoints
only at the end, and its speed read from the ``perf/tokens_per_s`` it logs
every ``log_every`` steps (each log step synchronises, so every interval is
timed to completion); the first interval (allocations, kernel selection) is
dropped, as the bare step's warm-up is. The bare step is timed before and after
the full one and the median taken, since the CPU is shared.

Model FLOPs are ``GPT.flops_per_token`` (6N plus attention) times tokens/s.
The peak is ``--peak-tflops`` or, on a known GPU, its bf16 dense peak
(H100 SXM: 989 TFLOP/s); on CPU there is none unless given.

CPU (about a minute; one torch thread by default, see --threads):
    nice -n 0 .venv/bin/python benchmarks/train_step.py --device cpu
GPU:
    python benchmarks/train_step.py --device cuda --batch-size 64,256,1024
    python benchmarks/train_step.py --device cuda --trial   # plus one real trial to >= 99%
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from cotsweep import files
from cotsweep.compose import compose_trial
from cotsweep.trial import build_model, build_optimizer, resolve_device, run_trial, validate

# bf16 dense tensor-core peaks (no sparsity), TFLOP/s, by a substring of the device's name;
# the first match wins, so the more specific names come first.
BF16_PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("H200", 989.0),
    ("GH200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("A10G", 70.0),
)


def known_peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_TFLOPS if key in name), None)


def trial_config(
    depth: int,
    width: int,
    heads: int,
    length: int,
    batch: int,
    device: str,
    steps: int,
    log_every: int,
    eval_size: int,
    extra: list[str],
) -> Any:
    """The benchmark's trial, composed by Hydra like any other: s5, cot, the given shape."""
    return compose_trial(
        [
            "task=s5",
            "setting=cot",
            f"task.length={length}",
            f"model.depth={depth}",
            f"model.width={width}",
            f"model.heads={heads}",
            f"train.batch_size={batch}",
            f"train.steps={steps}",
            f"train.eval_every={max(steps, 1)}",
            f"train.eval_size={eval_size}",
            f"run.log_every={log_every}",
            f"run.checkpoint_every={max(steps, 1)}",
            f"run.device={device}",
            "run.progress=false",
            "tracking=none",
            *extra,
        ]
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_step(cfg: Any, warmup: int, steps: int) -> dict[str, float]:
    """Forward, backward and AdamW on one pre-generated batch, as the trial builds them."""
    task = validate(cfg)
    device = resolve_device(cfg.run.device)
    t = cfg.train
    torch.manual_seed(0)
    model = build_model(cfg, task).to(device)
    bf16 = t.precision == "bf16" or (t.precision == "auto" and device.type == "cuda")
    opt = build_optimizer(model, t, device)
    gen = torch.Generator(device=device).manual_seed(0)
    batch = task.train_batch(t.batch_size, gen, device, 1)

    def one() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(batch.x)
        loss = task.loss(logits, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        one()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    sync(device)
    dt = time.perf_counter() - t0

    # the data generation alone, for the record: what the full step adds before its forward
    sync(device)
    t1 = time.perf_counter()
    for s in range(steps):
        task.train_batch(t.batch_size, gen, device, s + 2)
    sync(device)
    data_dt = time.perf_counter() - t1
    return {
        "tokens_per_s": steps * batch.tokens / dt,
        "step_ms": dt / steps * 1e3,
        "data_ms": data_dt / steps * 1e3,
        "tokens_per_step": batch.tokens,
        "flops_per_token": model.flops_per_token(task.model_spec().seq_len),
        "params": model.num_params(),
    }


def full_step(cfg: Any) -> dict[str, float]:
    """run_trial itself; tokens/s from its own log-step figures, the first interval dropped."""
    with tempfile.TemporaryDirectory(prefix="cotsweep-trainstep-") as tmp:
        out = Path(tmp) / "trial"
        result = run_trial(cfg, out)
        rows = [r for r in files.read_jsonl(out / files.METRICS) if "perf/tokens_per_s" in r]
    tps = [r["perf/tokens_per_s"] for r in rows[1:]]
    if not tps:
        raise SystemExit("full step: need at least two log intervals (steps >= 2 * log_every)")
    # equal-length intervals: total tokens / total time is the harmonic mean of the interval rates
    agg = len(tps) / sum(1 / x for x in tps)
    return {
        "tokens_per_s": agg,
        "intervals": len(tps),
        "final_acc": result["acc"],
        "steps": result["steps"],
    }


def measure(depth: int, batch: int, args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    log_every = args.log_every
    full_steps = (args.intervals + 1) * log_every
    common = dict(
        depth=depth,
        width=args.width,
        heads=args.heads,
        length=args.length,
        batch=batch,
        device=str(device),
        log_every=log_every,
        eval_size=args.eval_size,
        extra=args.set,
    )
    bare_cfg = trial_config(steps=args.warmup + args.steps, **common)
    full_cfg = trial_config(steps=full_steps, **common)
    before = bare_step(bare_cfg, args.warmup, args.steps)
    full = full_step(full_cfg)
    after = bare_step(bare_cfg, args.warmup, args.steps)
    bare_tps = statistics.median([before["tokens_per_s"], after["tokens_per_s"]])
    fpt = before["flops_per_token"]
    peak = args.peak_tflops or known_peak(device)
    row = {
        "depth": depth,
        "width": args.width,
        "heads": args.heads,
        "batch": batch,
        "length": args.length,
        "seq_len": before["tokens_per_step"] // batch,
        "params": before["params"],
        "device": device_name(device),
        "bare_tokens_per_s": bare_tps,
        "bare_runs": [before["tokens_per_s"], after["tokens_per_s"]],
        "bare_step_ms": before["tokens_per_step"] / bare_tps * 1e3,
        "data_ms": before["data_ms"],
        "full_tokens_per_s": full["tokens_per_s"],
        "full_step_ms": before["tokens_per_step"] / full["tokens_per_s"] * 1e3,
        "full_over_bare": bare_tps / full["tokens_per_s"],
        "model_tflops_bare": fpt * bare_tps / 1e12,
        "model_tflops_full": fpt * full["tokens_per_s"] / 1e12,
        "peak_tflops": peak,
    }
    row["mfu_bare"] = row["model_tflops_bare"] / peak if peak else None
    row["mfu_full"] = row["model_tflops_full"] / peak if peak else None
    return row


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def real_trial(args: argparse.Namespace) -> dict[str, Any]:
    """One real trial of issue 2: s5, cot, depth 1, n = 16, until eval accuracy holds >= 99%."""
    cfg = compose_trial(
        [
            "task=s5",
            "setting=cot",
            "task.length=16",
            "model.depth=1",
            f"model.width={args.width}",
            f"model.heads={args.heads}",
            f"run.device={args.device}",
            "run.progress=false",
            "tracking=none",
            "train.early_stop_acc=0.99",
            *args.trial_set,
        ]
    )
    with tempfile.TemporaryDirectory(prefix="cotsweep-realtrial-") as tmp:
        t0 = time.perf_counter()
        result = run_trial(cfg, Path(tmp) / "trial")
        wall = time.perf_counter() - t0
    keys = (
        "acc",
        "chain_acc",
        "steps",
        "stop_reason",
        "wall_time_s",
        "tokens_seen",
        "tokens_per_s",
        "params",
        "device",
    )
    return {
        **{k: result.get(k) for k in keys},
        "wall_incl_setup_s": wall,
        "overrides": list(args.trial_set),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", help="cpu | cuda | auto")
    ap.add_argument("--depths", default="1,4,16")
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--length", type=int, default=16, help="s5 input length n")
    ap.add_argument(
        "--batch-size", default=None, help="comma-separated; default 16 on CPU, 256 on GPU"
    )
    ap.add_argument(
        "--warmup", type=int, default=None, help="bare steps before timing (default 2 CPU, 20 GPU)"
    )
    ap.add_argument(
        "--steps", type=int, default=None, help="timed bare steps (default 10 CPU, 200 GPU)"
    )
    ap.add_argument(
        "--log-every", type=int, default=None, help="full-step interval (default 5 CPU, 100 GPU)"
    )
    ap.add_argument(
        "--intervals",
        type=int,
        default=None,
        help="timed full-step intervals (default 2 CPU, 4 GPU)",
    )
    ap.add_argument(
        "--eval-size", type=int, default=16, help="the one evaluation at the end (not timed)"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared machine two threads that wait on each other "
        "ran 4-10x slower than one; 0 = torch's default)",
    )
    ap.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="peak for MFU (default: known bf16 peak of the GPU)",
    )
    ap.add_argument(
        "--set", action="append", default=[], help="extra Hydra override for the timed trials"
    )
    ap.add_argument(
        "--trial",
        action="store_true",
        help="also run one real trial (s5, cot, depth 1, n=16) to 99%%",
    )
    ap.add_argument(
        "--trial-set", action="append", default=[], help="extra Hydra override for --trial"
    )
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args(argv)

    device = resolve_device(args.device)
    args.device = device.type
    gpu = device.type == "cuda"
    args.batch_size = args.batch_size or ("256" if gpu else "16")
    args.warmup = args.warmup if args.warmup is not None else (20 if gpu else 2)
    args.steps = args.steps if args.steps is not None else (200 if gpu else 10)
    args.log_every = args.log_every if args.log_every is not None else (100 if gpu else 5)
    args.intervals = args.intervals if args.intervals is not None else (4 if gpu else 2)
    if args.threads and not gpu:
        torch.set_num_threads(args.threads)

    print(
        f"torch {torch.__version__}, python {platform.python_version()}, device {device_name(device)}, "
        f"s5 cot n={args.length}, width {args.width}, heads {args.heads}",
        flush=True,
    )
    rows = []
    header = (
        f"{'depth':>5}{'batch':>6}{'params':>10}{'bare tok/s':>12}{'full tok/s':>12}{'full/bare':>10}"
        f"{'bare ms':>9}{'data ms':>9}{'TFLOP/s':>9}{'MFU':>8}"
    )
    print(header)
    for batch in (int(b) for b in args.batch_size.split(",")):
        for depth in (int(d) for d in args.depths.split(",")):
            r = measure(depth, batch, args)
            rows.append(r)
            mfu = f"{r['mfu_full'] * 100:7.2f}%" if r["mfu_full"] is not None else f"{'n/a':>8}"
            print(
                f"{depth:>5}{batch:>6}{r['params']:>10}{r['bare_tokens_per_s']:>12.0f}{r['full_tokens_per_s']:>12.0f}"
                f"{r['full_over_bare']:>10.3f}{r['bare_step_ms']:>9.2f}{r['data_ms']:>9.2f}"
                f"{r['model_tflops_full']:>9.3f}{mfu}",
                flush=True,
            )
    print(
        "full/bare = bare tokens/s / full tokens/s (the full step's time over the bare step's); "
        "TFLOP/s and MFU are of the full step; target on GPU: full/bare <= 1.1"
    )
    out: dict[str, Any] = {"rows": rows}
    if args.trial:
        out["trial"] = real_trial(args)
        print("real trial:", json.dumps(out["trial"]))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
