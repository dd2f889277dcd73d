"""What a trial asks for, set against what Ray has, before anything is recorded.

A trial that asks for more CPUs or GPUs than any node has waits in Ray's queue
forever ("running" on the progress bar, and a Ctrl-C that has nothing to stop),
and a trial whose model or sequences do not fit in memory spends minutes in its
first step before it is killed. Both are refused here, with the numbers, while
the grid is expanded: embedded Ray's capacity is this machine's (what Ray would
detect); a cluster's is its largest live node and its total. A cluster may be
autoscaled, so there a request no live node meets is a warning, not a refusal.

The memory figure is an estimate, a floor rather than a ceiling: the fp32
weights, gradients and AdamW's two moments (16 bytes a parameter), the
activations every block keeps for the backward pass ((6 + 2 x mlp_ratio) x
width floats a token a layer: its input, q, k, v, attention output, the MLP's
hidden layer before and after GELU) and the logits with their gradient. Anything
it leaves out (attention scores where no fused kernel runs, the allocator's
slack) only makes the real peak larger, so a refusal is never wrong by its
estimate; the message says it is one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cotsweep.config import PosEncoding

GiB = 1024**3


class Infeasible(ValueError):
    """A trial can never be scheduled or never fit; the message names the key and the numbers."""


@dataclass(frozen=True)
class Capacity:
    """What one node (the largest) and the whole of Ray offer a trial."""

    where: str  # for messages: "this machine (embedded Ray)", "the cluster at ..."
    node_cpus: float
    node_gpus: float
    node_memory: float  # bytes of host memory
    total_cpus: float
    total_gpus: float
    gpu_memory: float | None = None  # bytes per GPU, where known (local CUDA)
    cluster: bool = False  # nodes may be added: a shortfall is a warning


def local_capacity(
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    where: str = "this machine (embedded Ray)",
) -> Capacity:
    """What an embedded Ray started on this machine would offer (Ray's own detection)."""
    cpus, gpus, memory = _detect()
    cpus = float(num_cpus) if num_cpus is not None else cpus
    gpus = float(num_gpus) if num_gpus is not None else gpus
    return Capacity(where, cpus, gpus, memory, cpus, gpus, _local_gpu_memory(gpus))


def ray_capacity(where: str, cluster: bool) -> Capacity:
    """The live nodes of the Ray this process is connected to."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    nodes = nodes or [dict(ray.cluster_resources())]

    def most(key: str) -> float:
        return max((float(n.get(key, 0.0)) for n in nodes), default=0.0)

    def total(key: str) -> float:
        return sum(float(n.get(key, 0.0)) for n in nodes)

    _, _, memory = _detect()
    # Ray's "memory" resource is what it schedules against (a share of the node's RAM)
    node_memory = most("memory") or memory
    gpus = most("GPU")
    return Capacity(
        where,
        most("CPU"),
        gpus,
        node_memory,
        total("CPU"),
        total("GPU"),
        None if cluster else _local_gpu_memory(gpus),
        cluster,
    )


def _detect() -> tuple[float, float, float]:
    """CPUs, GPUs and memory bytes as Ray counts them here (cgroup limits included)."""
    try:
        import ray._private.utils as ray_utils
        from ray._private import accelerators

        cpus = float(ray_utils.get_num_cpus())
        memory = float(ray_utils.get_system_memory())
        manager = accelerators.get_accelerator_manager_for_resource("GPU")
        gpus = float(manager.get_current_node_num_accelerators()) if manager else 0.0
    except (ImportError, AttributeError):  # Ray moved them: count as the OS does
        cpus = float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
        memory = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        gpus = 0.0
    return cpus, gpus, memory


def _local_gpu_memory(gpus: float) -> float | None:
    if gpus <= 0:
        return None
    try:
        import torch

        if torch.cuda.is_available():
            return float(torch.cuda.get_device_properties(0).total_memory)
    except Exception:  # no driver, or a broken one: the GPU check is left to Ray
        return None
    return None


# ---------------------------------------------------------------- a trial's size
@dataclass(frozen=True)
class Footprint:
    params: int
    seq_len: int
    memory: float  # bytes: a floor of the training step's peak
    flops: float  # the whole trial's training FLOPs (PaLM's 6N + attention, per token)


def footprint(cfg: Any, task: Any) -> Footprint:
    """The size of a trial from its config and its built task, without building the model.

    The parameter count follows model.GPT layer by layer (tests/test_feasible.py
    holds it to the real model's); FLOPs are GPT.flops_per_token's (6N without
    the position table, plus attention) for every training token.
    """
    if not task.trains:
        return Footprint(0, 0, 0.0, 0.0)
    spec, m, t = task.model_spec(), cfg.model, cfg.train
    T = int(spec.seq_len)
    context = max(int(m.max_len), T)
    w, d, r = int(m.width), int(m.depth), int(m.mlp_ratio)
    vocab, out = int(spec.vocab_size), int(spec.out_dim or spec.vocab_size)
    read_in = vocab * w if vocab else int(spec.in_dim) * w + w
    pos = context * w if PosEncoding(m.pos_encoding) == PosEncoding.learned else 0
    # per block: two LayerNorms, qkv and proj, the MLP's two layers, with their biases
    blocks = d * ((4 + 2 * r) * w * w + (9 + r) * w)
    read_out = 0 if (vocab and out == vocab) else w * out  # tied to the embedding, or its own
    params = read_in + pos + blocks + 2 * w + read_out
    B = max(1, int(t.batch_size) // max(1, int(cfg.resources.workers)))
    floats = B * T * (d * (6 + 2 * r) * w + 2 * out)
    memory = 16.0 * params + 4.0 * floats
    flops_token = 6 * (params - pos) + 12 * d * w * T
    flops = float(t.steps) * int(t.batch_size) * T * flops_token
    return Footprint(params, T, memory, flops)


# ---------------------------------------------------------------- the checks
def checker(
    capacity: Capacity, warn: Callable[[str], None]
) -> Callable[[Any, Any, str], Footprint]:
    """``check(cfg, task, point)``: refuse (Infeasible) or warn about one trial; returns its size.

    Trials of a grid share their resources and sizes: each distinct request is
    checked once.
    """
    seen: dict[tuple, Footprint] = {}
    warned: set[str] = set()

    def check(cfg: Any, task: Any, point: str) -> Footprint:
        r, m = cfg.resources, cfg.model
        key = (
            str(r.gpus),
            float(r.cpus),
            int(r.workers),
            str(cfg.run.device),
            task.name,
            getattr(task, "trains", True),
            int(m.depth),
            int(m.width),
            int(m.mlp_ratio),
            int(m.max_len),
            str(m.pos_encoding),
            int(cfg.train.batch_size),
            int(cfg.train.steps),
            task.model_spec().seq_len if task.trains else 0,
        )
        fp = seen.get(key)
        if fp is None:
            fp = footprint(cfg, task)
            for problem in _problems(cfg, task, fp, capacity):
                if capacity.cluster:
                    if problem not in warned:
                        warned.add(problem)
                        warn(f"{problem} (trials wait until the autoscaler adds such a node)")
                else:
                    raise Infeasible(f"trial {point}: {problem}")
            seen[key] = fp
        return fp

    return check


def gpus_for(cfg: Any, cluster_gpus: float) -> float:
    """GPUs per worker of a trial: the configured number, or a fraction sized from the model."""
    from cotsweep.tasks import TASKS

    g = cfg.resources.gpus
    if g != "auto":
        return float(g)
    entry = TASKS.get(cfg.task.name)
    if (
        cluster_gpus <= 0
        or str(cfg.run.device) == "cpu"
        or (entry is not None and not entry.cls.trains)
    ):
        return 0.0
    m = cfg.model
    params = 12 * m.depth * m.width**2  # the transformer blocks dominate
    # small models share a GPU: a quarter below 10M parameters, half below 100M
    return 0.25 if params < 10e6 else 0.5 if params < 100e6 else 1.0


def _problems(cfg: Any, task: Any, fp: Footprint, cap: Capacity) -> list[str]:
    r = cfg.resources
    workers = int(r.workers)
    cpus = float(r.cpus)
    device = str(cfg.run.device)
    gpus = gpus_for(cfg, cap.total_gpus)
    out = []
    asked = (
        ("cpus", cpus, "CPUs", cap.node_cpus, cap.total_cpus, "lower resources.cpus"),
        ("gpus", gpus, "GPU(s)", cap.node_gpus, cap.total_gpus, "set resources.gpus=0 (or auto)"),
    )
    for key, each, unit, node, total, fix in asked:
        if each > node:
            out.append(
                f"resources.{key}={r[key] if key == 'gpus' else f'{each:g}'}: a trial asks for "
                f"{each:g} {unit}, the largest node of {cap.where} has {node:g}; {fix}"
            )
        elif workers * each > total:
            out.append(
                f"resources.workers={workers}: {workers} workers x {each:g} {unit}, {cap.where} "
                f"has {total:g}; lower resources.workers or resources.{key}"
            )
    if device.startswith("cuda") and task.trains:
        if cap.total_gpus <= 0:
            out.append(f"run.device={device}: {cap.where} has no GPU; use run.device=auto or cpu")
        elif gpus <= 0:
            out.append(
                f"run.device={device} with resources.gpus={r.gpus}: Ray gives the trial no GPU; "
                "set resources.gpus (or leave it auto)"
            )
    if task.trains:
        on_gpu = gpus > 0 and not device == "cpu"
        limit = cap.gpu_memory if on_gpu else cap.node_memory
        if limit and fp.memory > limit:
            where = "per GPU" if on_gpu else "on the largest node"
            out.append(
                f"task.length={cfg.task.length}, model {m_desc(cfg)}: training needs at least "
                f"{fp.memory / GiB:,.1f} GiB (estimated: {fp.params:,} parameters, sequences of "
                f"{fp.seq_len:,} positions, batch {cfg.train.batch_size}), {cap.where} has "
                f"{limit / GiB:,.1f} GiB {where}; shorten task.length, or shrink the model or "
                "train.batch_size"
            )
    return out


def m_desc(cfg: Any) -> str:
    m = cfg.model
    return f"depth={m.depth} width={m.width}"


def human_flops(flops: float) -> str:
    for unit, scale in (("EFLOP", 1e18), ("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9)):
        if flops >= scale:
            return f"{flops / scale:,.2f} {unit}"
    return f"{flops:,.0f} FLOP"
