"""Any Hydra sweeper over our launcher: the official Optuna sweeper plugin, for real.

`cotsweep train -m hydra/sweeper=optuna` searches train.lr with Optuna's TPE
sampler; every trial Optuna asks for is a trial of cotsweep's engine (content-
addressed id, a row in the ledger, Ray, its files and log), and the figure
Optuna optimises is the trial's returned ``acc``. The same command again asks
the same points (the sampler is seeded) and the ledger answers them from the
finished trials: nothing runs again. Asking for more trials runs only the new ones.
"""

from __future__ import annotations

import pytest
import yaml
from sweep_support import ledger_rows

import cotsweep  # noqa: F401  (sets Ray's environment before Ray starts)
from cotsweep import files
from cotsweep.cli import main as cli

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")

TRIAL = [
    "model=tiny",
    "tracking=none",
    "run.device=cpu",
    "task=modadd",
    "task.length=3",
    "train.steps=10",
    "train.eval_every=10",
    "train.eval_size=64",
    "train.warmup_steps=1",
    "train.batch_size=16",
]


def search(sweep_dir, n_trials: int) -> int:
    return cli(
        [
            "train",
            "-m",
            "hydra/sweeper=optuna",
            f"hydra.sweeper.n_trials={n_trials}",
            "hydra.sweeper.n_jobs=2",
            "train.lr=interval(0.0005,0.005)",
            *TRIAL,
            f"hydra.sweep.dir={sweep_dir}",
        ]
    )


def snapshot(sweep_dir) -> dict:
    return {
        p: (p.stat().st_mtime_ns, p.read_bytes())
        for p in sweep_dir.glob("trials/*/*")
        if p.name in (files.RESULT, files.ATTEMPTS)
    }


@pytest.mark.usefixtures("hydra_restore_singletons", "ray_local")
def test_optuna_searches_through_the_ledger_and_a_relaunch_reruns_nothing(tmp_path):
    d = tmp_path / "lr_search"
    assert search(d, 2) == 0
    rows = ledger_rows(d)
    assert len(rows) == 2 and all(r["state"] == "done" for r in rows.values())
    accs = {}
    for tid in rows:
        result = files.read_json(d / "trials" / tid / files.RESULT)
        accs[tid] = result["acc"]
        log = (d / "trials" / tid / "logs" / "attempt-1.log").read_text()
        assert log.startswith("== attempt 1 on ") and "== attempt 1: completed" in log
    lrs = sorted(float(yaml.safe_load(r["config"])["train"]["lr"]) for r in rows.values())
    assert len(set(lrs)) == 2 and 0.0005 <= lrs[0] and lrs[-1] <= 0.005  # Optuna's own points
    best = yaml.safe_load((d / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(accs.values())  # it optimised the trials' returned acc

    before = snapshot(d)
    assert search(d, 2) == 0  # the same search again: the same points, all done already
    assert ledger_rows(d) == rows and snapshot(d) == before
    assert yaml.safe_load((d / "optimization_results.yaml").read_text()) == best

    assert search(d, 4) == 0  # two more: only they run
    more = ledger_rows(d)
    assert len(more) == 4 and set(rows) < set(more)
    assert {p: v for p, v in snapshot(d).items() if p in before} == before
