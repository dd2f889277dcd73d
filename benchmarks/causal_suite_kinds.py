"""Accuracy of finished causal trials on both kinds of suite, and on the published files if given.

A causal trial is evaluated on one kind of suite (``task.suite_kind``). This
script takes every finished causal trial of a sweep directory, loads its final
checkpoint (``weights_only``: tensors and plain containers only) and scores the
same model on official-style suites, on independent suites and, with
``--published DIR``, on the published evaluation files themselves, with the
trial's own evaluation seed. The trial's own kind is scored again too, and
checked against its result.json, so a mismatch in how the model is rebuilt
shows. No training happens here.

    cotsweep launch causal_axioms_cpu --dir runs/causal_cpu
    python benchmarks/causal_suite_kinds.py runs/causal_cpu [--published PATH/eval_transitivity]
    [--json OUT.json]

Prints one markdown table per trial (suite × kind) and the mean over the chain
suites of 7-15 nodes per kind.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf, open_dict

from cotsweep import files
from cotsweep.tasks import make_task
from cotsweep.trial import build_model, resolve_device, stream_seed, validate

KINDS = ("official", "independent")


def evaluate_trial(tdir: Path, published: Path | None, device: torch.device) -> dict | None:
    cfg = OmegaConf.load(tdir / files.CONFIG)
    result = files.read_json(tdir / files.RESULT)
    if cfg.task.name != "causal" or result is None:
        return None
    task = validate(cfg)
    model = build_model(cfg, task).to(device)
    ckpt = torch.load(tdir / files.CKPT, map_location=device, weights_only=True)
    model.load_state_dict(ckpt["model"])
    model.eval()
    bf16 = cfg.train.precision == "bf16" or (
        cfg.train.precision == "auto" and device.type == "cuda"
    )
    own = "published" if cfg.task.get("eval_files") else cfg.task.get("suite_kind", "independent")
    scores: dict[str, dict[str, float]] = {}
    for kind in (*KINDS, *(("published",) if published else ())):
        kcfg = cfg.task.copy()
        with open_dict(kcfg):
            kcfg.suite_kind = kind if kind != "published" else "official"
            kcfg.eval_files = str(published) if kind == "published" else None
        ktask = make_task(kcfg, cfg.setting)
        ktask.validate()
        if ktask.model_spec().seq_len > model.c.seq_len:
            print(
                f"{tdir.name}: {kind} suites are longer than the model's context", file=sys.stderr
            )
            continue
        gen = torch.Generator(device=device).manual_seed(stream_seed(cfg.seed, "eval"))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            scores[kind] = ktask.evaluate(model, cfg.train.eval_size, gen, device)
    recorded = result["eval"]
    if own in scores:
        again = {k: v for k, v in scores[own].items() if k in recorded}
        diff = max(abs(v - recorded[k]) for k, v in again.items())
        if diff > 1e-9:
            print(f"{tdir.name}: re-evaluation differs from result.json by {diff}", file=sys.stderr)
    return {
        "trial": tdir.name,
        "pos_encoding": str(cfg.model.pos_encoding),
        "mix": cfg.task.mix,
        "seed": cfg.seed,
        "steps": result["steps"],
        "own_kind": own,
        "scores": scores,
    }


def chain_mean(ev: dict[str, float]) -> float:
    vals = [v for k, v in ev.items() if _length(k) is not None and 7 <= _length(k) <= 15]
    return statistics.fmean(vals) if vals else math.nan


def _length(key: str) -> int | None:
    name = key.removeprefix("acc/")
    family, _, n = name.partition("_")
    return int(n) if family in ("seq", "flip") and n.isdigit() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--published", type=Path, help="folder of the published .pkl files")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()
    device = resolve_device(args.device)
    rows = []
    for tdir in sorted((args.sweep_dir / "trials").iterdir()):
        if (tdir / files.CONFIG).exists() and (row := evaluate_trial(tdir, args.published, device)):
            rows.append(row)
    for row in rows:
        kinds = list(row["scores"])
        print(
            f"\n### {row['mix']} {row['pos_encoding']} seed {row['seed']} "
            f"({row['steps']} steps; trained and recorded with {row['own_kind']} suites)\n"
        )
        print("| suite | " + " | ".join(kinds) + " |")
        print("|---|" + "---|" * len(kinds))
        keys = sorted({k for ev in row["scores"].values() for k in ev}, key=_order)
        for k in keys:
            cells = [
                f"{row['scores'][kind][k]:.3f}" if k in row["scores"][kind] else ""
                for kind in kinds
            ]
            print(
                f"| {k.removeprefix('acc/') if k != 'acc' else 'training distribution'} | "
                + " | ".join(cells)
                + " |"
            )
        means = [f"{chain_mean(row['scores'][kind]):.3f}" for kind in kinds]
        print("| mean, chains of 7-15 nodes | " + " | ".join(means) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def _order(key: str) -> tuple:
    n = _length(key)
    return (0 if key == "acc" else 1 if key == "acc/val" else 2, key.split("_")[0], n or 0, key)


if __name__ == "__main__":
    main()
