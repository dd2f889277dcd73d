"""One trial end to end on CPU: it learns, it resumes exactly, it stops on divergence,
and it refuses bad input before touching anything.

Every trial here is composed by Hydra from the real config (``tiny_cfg``) and run by
the real training loop; only its size is shrunk.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import TINY_OVERRIDES, tiny_cfg

from cotsweep import files
from cotsweep.cli import EXIT_BAD_INPUT, EXIT_DIVERGED, main
from cotsweep.trial import Diverged, TrialInterrupted, run_trial

# one torch thread: the shared test machines thrash with more, and timings stay comparable
pytestmark = pytest.mark.usefixtures("one_thread")


def metrics(trial_dir: Path, key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in files.read_jsonl(trial_dir / files.METRICS) if key in r]


def stop_after(step: int) -> Callable[[], bool]:
    """A ``should_stop`` that turns true once ``step`` training steps have run.

    The trial asks once per step on a single worker, so counting calls counts steps.
    """
    calls = 0

    def should_stop() -> bool:
        nonlocal calls
        calls += 1
        return calls >= step

    return should_stop


# ---------------------------------------------------------------- learning
def test_tiny_model_learns_modadd_at_length_4(tmp: Path) -> None:
    cfg = tiny_cfg(
        [
            "task=modadd",
            "task.length=4",
            "setting=cot",
            "train.lr=3e-3",
            "train.steps=400",
            "train.eval_every=50",
            "train.eval_size=512",
            "train.early_stop_acc=0.99",
            "train.early_stop_patience=1",
        ]
    )
    t0 = time.process_time()
    result = run_trial(cfg, tmp)
    print(
        f"modadd n=4 cot: acc {result['acc']:.3f} after {result['steps']} steps, {time.process_time() - t0:.1f}s CPU"
    )
    assert result["acc"] >= 0.95, metrics(tmp, "eval/acc")
    assert result["stop_reason"] == "early_stop"
    # the files a finished trial leaves
    assert files.read_json(tmp / files.RESULT)["acc"] == result["acc"]
    assert (tmp / files.CONFIG).exists() and (tmp / files.CKPT).exists()
    assert result["chance"] == pytest.approx(1 / 7)
    assert (
        result["params"] > 0
        and result["flops"] > 0
        and result["tokens_seen"] == result["steps"] * 64 * 9
    )


S5_COT = [
    "task=s5",
    "task.length=2",
    "setting=cot",
    "model.depth=1",
    "train.lr=1e-2",
    "train.batch_size=256",
]


def test_s5_with_cot_at_depth_1_learns_above_chance(tmp: Path) -> None:
    """A short run (about 5 s of one core): clearly above chance, and the chain's first step learned.

    n = 2, so the answer needs one composition sigma_2 o sigma_1 read from a 120 x 120 table.
    What a short run learns first is the identity (answer right whenever sigma_1 or sigma_2
    is the identity, 2/120), a little more, and the copy of sigma_1 into s_1; the table
    itself takes off later (see the slow test below).
    """
    cfg = tiny_cfg([*S5_COT, "train.steps=400", "train.eval_every=400", "train.eval_size=8192"])
    t0 = time.process_time()
    result = run_trial(cfg, tmp)
    chance, n = 1 / 120, 8192
    print(
        f"s5 n=2 cot depth 1: acc {result['acc']:.4f} ({result['acc'] / chance:.1f}x chance), {time.process_time() - t0:.1f}s CPU"
    )
    # five standard deviations of a guesser above chance (1.33%): a guesser never gets there
    assert result["acc"] >= chance + 5 * (chance * (1 - chance) / n) ** 0.5
    # s_1 = sigma_1: reading back the chain works
    assert result["chain_acc_per_step"][0] >= 0.99


@pytest.mark.slow
def test_s5_with_cot_at_depth_1_learns_the_composition(tmp: Path) -> None:
    """The longer runs (about 40 s of one core each), where the composition table is learned.

    When the table takes off varies with the seed: at this commit seed 2 holds 0.99 by step
    3000 while seeds 0 and 1 are still climbing (0.10 and 0.15, from 0.02). Three seeds: one
    must have learned it, and every one must be well above chance and rising."""
    chance, n = 1 / 120, 2048
    accs = []
    for seed in (0, 1, 2):
        cfg = tiny_cfg(
            [*S5_COT, "train.steps=3000", "train.eval_every=500", "train.eval_size=2048"]
            + [f"seed={seed}"]
        )
        out = tmp / f"seed{seed}"
        result = run_trial(cfg, out)
        curve = metrics(out, "eval/acc")
        print(f"s5 n=2 cot depth 1, 3000 steps, seed {seed}: acc {result['acc']:.3f}; {curve}")
        accs.append(result["acc"])
        assert result["acc"] >= chance + 5 * (chance * (1 - chance) / n) ** 0.5
    assert max(accs) >= 0.9, accs


# ---------------------------------------------------------------- resume
RESUME_OVERRIDES = [
    "task=modadd",
    "task.length=4",
    "setting=cot",
    "train.lr=3e-3",
    "train.steps=24",
    "train.warmup_steps=5",
    "train.eval_every=8",
    "run.checkpoint_every=100",
]


@pytest.mark.parametrize("log_every", [1, 4])
@pytest.mark.parametrize("stop_at", [8, 10])
def test_an_interrupted_trial_continues_to_the_same_losses(
    tmp_path: Path, log_every: int, stop_at: int
) -> None:
    """Interrupted after ``stop_at`` steps and continued on its directory, a trial logs exactly
    the losses of an uninterrupted one, also when it stops between two log steps."""
    cfg = tiny_cfg([*RESUME_OVERRIDES, f"run.log_every={log_every}"])
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    expected = run_trial(cfg, whole)

    with pytest.raises(TrialInterrupted, match=f"interrupted at step {stop_at}"):
        run_trial(cfg, parts, should_stop=stop_after(stop_at))
    assert torch.load(parts / files.CKPT, weights_only=True)["state"]["step"] == stop_at
    assert not (parts / files.RESULT).exists()
    continued = run_trial(cfg, parts)

    losses = metrics(whole, "train/loss")
    assert [s for s, _ in losses] == list(range(log_every, 25, log_every))
    assert metrics(parts, "train/loss") == losses  # exactly: same floats, same steps, no duplicates
    assert metrics(parts, "eval/acc") == metrics(whole, "eval/acc")
    assert metrics(parts, "train/lr") == metrics(whole, "train/lr")
    a = torch.load(whole / files.CKPT, weights_only=True)["model"]
    b = torch.load(parts / files.CKPT, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    for key in ("acc", "steps", "tokens_seen", "stop_reason"):
        assert continued[key] == expected[key]


def test_a_finished_trial_is_not_run_again(tmp: Path) -> None:
    cfg = tiny_cfg(["train.steps=3", "task.length=2"])
    first = run_trial(cfg, tmp)
    before = snapshot(tmp)
    assert run_trial(cfg, tmp) == first
    assert snapshot(tmp) == before


# ---------------------------------------------------------------- checkpoints
class _RunsAShellCommand:
    """What a crafted pickle can hold: unpickling it calls os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_checkpoint_runs_nothing_and_the_trial_starts_again(tmp_path: Path) -> None:
    cfg = tiny_cfg([*RESUME_OVERRIDES, "run.log_every=4"])
    whole, crafted = tmp_path / "whole", tmp_path / "crafted"
    expected = run_trial(cfg, whole)
    marker = tmp_path / "ran"
    (crafted / "ckpt").mkdir(parents=True)
    torch.save({"state": _RunsAShellCommand(marker)}, crafted / files.CKPT)
    assert run_trial(cfg, crafted)["acc"] == expected["acc"]
    assert not marker.exists(), "loading a checkpoint ran code"
    (event,) = files.attempt_events(crafted)
    assert event["event"] == "checkpoint_unreadable" and "last.pt" in event["detail"]
    assert "UnpicklingError" in event["detail"]
    assert len(list((crafted / "ckpt").glob("last.pt.unreadable-*"))) == 1  # kept, not deleted
    assert metrics(crafted, "train/loss") == metrics(whole, "train/loss")


def test_a_corrupt_newest_checkpoint_resumes_from_the_older_one(tmp_path: Path) -> None:
    cfg = tiny_cfg([*RESUME_OVERRIDES, "run.log_every=2", "run.checkpoint_every=4"])
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    run_trial(cfg, whole)
    with pytest.raises(TrialInterrupted):
        run_trial(cfg, parts, should_stop=stop_after(10))
    newest = parts / files.CKPT
    assert torch.load(newest, weights_only=True)["state"]["step"] == 10
    assert torch.load(parts / files.CKPT_PREV, weights_only=True)["state"]["step"] == 8
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a torn write
    run_trial(cfg, parts)
    (event,) = files.attempt_events(parts)
    assert "last.pt" in event["detail"] and "prev.pt" in event["detail"]
    assert metrics(parts, "train/loss") == metrics(whole, "train/loss")
    assert metrics(parts, "eval/acc") == metrics(whole, "eval/acc")
    assert not list((parts / "ckpt").glob(".*.tmp"))


# ---------------------------------------------------------------- divergence
DIVERGING = [
    "task=modadd",
    "task.length=4",
    "train.lr=1e30",
    "train.warmup_steps=0",
    "train.steps=20",
    "run.checkpoint_every=1",
]


def test_a_non_finite_loss_ends_the_trial_and_keeps_earlier_checkpoints(tmp: Path) -> None:
    cfg = tiny_cfg(DIVERGING)
    with pytest.raises(Diverged, match=r"diverged at step \d+") as info:
        run_trial(cfg, tmp)
    step = info.value.step
    assert 1 < step < 20
    kept = torch.load(tmp / files.CKPT, weights_only=True)
    assert kept["state"]["step"] == step - 1  # the last checkpoint is the last finite step
    assert all(torch.isfinite(w).all() for w in kept["model"].values()), (
        "a checkpoint kept non-finite weights"
    )
    assert not (tmp / files.RESULT).exists()
    # no metrics row at or after the diverged step claims a loss
    assert all(s < step for s, _ in metrics(tmp, "train/loss"))


def test_divergence_exits_non_zero_from_the_cli(tmp: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["train", *TINY_OVERRIDES, *DIVERGING, "run.log_every=50", f"run.out_dir={tmp}"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == EXIT_DIVERGED
    assert "diverged at step" in err
    assert (tmp / files.CKPT).exists()


# ---------------------------------------------------------------- bad input
def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``directory`` with its bytes and modification time."""
    return {
        str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def occupied(tmp: Path) -> Path:
    """An output directory that already holds a trial's files (a checkpoint, metrics, a stray note)."""
    run_trial(tiny_cfg(["task.length=2", "train.steps=2"]), tmp)
    (tmp / files.RESULT).unlink()  # unfinished: a run would continue in it
    (tmp / "notes.txt").write_text("mine\n")
    old = time.time() - 3600
    for p in tmp.rglob("*"):
        os.utime(p, (old, old))
    return tmp


BAD_INPUTS = [
    # (overrides, words the message must contain)
    (["task=nosuch"], ["task", "nosuch", "modadd", "s5", "isq", "cvp"]),
    (["task.name=nosuch"], ["task", "nosuch", "modadd", "s5", "isq", "cvp"]),
    (["setting=bogus"], ["setting", "bogus", "base", "cot", "hint"]),
    (["model.depth=0"], ["model.depth"]),
    (["task.length=0"], ["task.length"]),
    (["task=s5", "task.length=-3"], ["task.length"]),
    (["model.width=64", "model.heads=3"], ["model.heads"]),
    (["task=isq", "task.prime_bound=2"], ["task.prime_bound"]),
    (["task=cvp", "task.length=8", "setting=cot", "model.max_len=20"], ["model.max_len"]),
    (["model.dept=2"], ["dept"]),
    (["train.stepz=5"], ["stepz"]),
    (["model.depth=two"], ["depth", "two"]),
]


@pytest.mark.parametrize(
    ("overrides", "words"), BAD_INPUTS, ids=[" ".join(o) for o, _ in BAD_INPUTS]
)
def test_bad_input_is_refused_naming_the_key_and_touches_nothing(
    occupied: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    overrides: list[str],
    words: list[str],
) -> None:
    before = snapshot(occupied)
    code = main(["train", *TINY_OVERRIDES, *overrides, f"run.out_dir={occupied}"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == EXIT_BAD_INPUT, err
    for word in words:
        assert word in err, f"{word!r} not in: {err}"
    assert snapshot(occupied) == before
    # and no directory is made where there was none
    fresh = tmp_path / "fresh"
    assert main(["train", *TINY_OVERRIDES, *overrides, f"run.out_dir={fresh}"]) == EXIT_BAD_INPUT
    assert not fresh.exists()


def test_a_directory_holding_another_trial_is_refused_untouched(
    occupied: Path, capsys: pytest.CaptureFixture
) -> None:
    """W&B is on (offline) here, as by default: the mirror must not write before the refusal."""
    before = snapshot(occupied)
    code = main(
        [
            "train",
            "model=tiny",
            "run.device=cpu",
            "run.progress=false",
            "task.length=3",
            "train.steps=2",
            f"run.out_dir={occupied}",
        ]
    )
    err = " ".join(capsys.readouterr().err.split())
    assert code == EXIT_BAD_INPUT
    assert "run.out_dir" in err
    assert snapshot(occupied) == before


def test_tasks_sample_refuses_an_unknown_task(capsys: pytest.CaptureFixture) -> None:
    assert main(["tasks", "sample", "nosuch"]) == EXIT_BAD_INPUT
    err = " ".join(capsys.readouterr().err.split())
    assert all(name in err for name in ("modadd", "s5", "isq", "cvp"))
    assert main(["tasks", "sample", "isq", "--set", "prime_bound=1"]) == EXIT_BAD_INPUT
    assert "task.prime_bound" in " ".join(capsys.readouterr().err.split())


def test_the_good_config_of_each_case_runs(tmp_path: Path) -> None:
    """The refusals above are about the bad value alone: the same commands with a good one run."""
    for name, overrides in {
        "isq": ["task=isq", "task.prime_bound=3", "task.length=2"],
        "cvp": ["task=cvp", "task.length=3", "setting=cot", "model.max_len=20"],
        "heads": ["model.width=48", "model.heads=3", "model.pos_encoding=sinusoidal"],
    }.items():
        out = tmp_path / name
        assert (
            main(["train", *TINY_OVERRIDES, *overrides, "train.steps=2", f"run.out_dir={out}"]) == 0
        )
        assert json.loads((out / files.RESULT).read_text())["steps"] == 2


def test_zero_step_trial_evaluates_the_initial_model(tmp):
    """train.steps=0 (the engine benchmark's no-op trial) still writes a full result."""
    from cotsweep.trial import run_trial

    cfg = tiny_cfg(["task=modadd", "task.length=3", "train.steps=0"])
    result = run_trial(cfg, tmp)
    assert result["steps"] == 0 and result["tokens_seen"] == 0
    assert 0.0 <= result["acc"] <= 1.0
    assert (tmp / "result.json").exists()
    assert [
        r["step"] for r in map(json.loads, (tmp / "metrics.jsonl").read_text().splitlines())
    ] == [0]
