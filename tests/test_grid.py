"""Grid expansion's shortcuts hold to Hydra's and OmegaConf's own results.

The fast path composes a point as plain data instead of an OmegaConf tree, and
writes its YAML section by section; each test compares it with the slow path
it replaces (a deep copy of the composed config, Hydra's override code over the
whole point, OmegaConf.to_yaml) on the same points.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cotsweep.compose import compose_trial, sweep_search_path
from cotsweep.ids import trial_id
from cotsweep.sweep.grid import GridError, _dump, _scalar_line, expand, load_grid


def slow_path(name: str, point: list[str], sweep_dir: Path) -> tuple[str, str]:
    """(id, YAML) of a point the way the engine composed every point before: Hydra throughout."""
    with sweep_search_path(name) as (search, select):
        cfg = compose_trial([search, select, *point])
    tid = trial_id(cfg)
    cfg = copy.deepcopy(cfg)
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.sweep.name = Path(name).stem
        cfg.sweep.dir = str(sweep_dir)
        cfg.run.out_dir = str(sweep_dir / "trials" / tid)
        cfg.run.progress = False
    return tid, OmegaConf.to_yaml(cfg, resolve=True)


@pytest.mark.parametrize(
    "overrides",
    [
        ["seed=0,1", "train.lr=1,0.5", "+model.extra=1"],  # int -> float, an added key
        ["model=small,tiny", "model.depth=3", "tracking.wandb.tags=[a,b]"],  # groups, a list
        ["train.steps=${train.eval_every}", "seed=2"],  # an interpolation: the slow path
        ["tracking.wandb.entity=me,null", "resources.gpus=0.5,auto", "run.progress=yes"],
        ["model.depth=1", "model.depth=2,3"],  # a later value of a key replaces an earlier one
        ["task=cvp", "task.pass_prob=0.5,1", "setting=cot"],
    ],
)
def test_fast_points_equal_hydras_composition(tmp_path, overrides):
    fast = expand("smoke", overrides, tmp_path)
    assert fast
    for t in fast[:: max(1, len(fast) // 4)]:  # four points spread over the grid
        tid, text = slow_path("smoke", t.overrides, tmp_path)
        assert (t.id, t.yaml) == (tid, text), t.overrides


@pytest.mark.slow
def test_every_packaged_sweep_expands_as_before(tmp_path):
    from cotsweep.compose import available_sweeps

    for name in available_sweeps():
        trials = expand(name, [], tmp_path / name)
        for t in trials[:: max(1, len(trials) // 2)]:  # the first point and one further on
            assert (t.id, t.yaml) == slow_path(name, t.overrides, tmp_path / name), name


@pytest.mark.parametrize(
    "value",
    [
        0,
        -3,
        10**12,
        True,
        False,
        None,
        0.1,
        1e-05,
        3.0,
        float("inf"),
        "cpu",
        "learned",
        "/tmp/a b/c",
        "/runs/x-y_z.1/trials/0123456789ab",
        "yes",
        "No",
        "null",
        "nan",
        "inf",
        "1e5",
        "007",
        "0x1f",
        "a: b",
        "#x",
        "-x",
        "x:",
        "",
        " ",
        "é",
        "multi\nline",
        "'q'",
    ],
)
def test_scalar_lines_are_the_dumpers(value):
    assert _scalar_line("key", value, {}) == _dump({"key": value})


def test_points_are_a_lazy_product_and_a_large_grid_is_refused_at_once():
    grid = load_grid("smoke", ["seed=range(0,1000)"], max_trials=12_000)
    assert grid.size == 12_000
    points = grid.points()
    assert next(points) == ["task=modadd", "setting=base", "model.depth=1", "seed=0"]
    with pytest.raises(GridError, match="--max-trials 120000"):
        load_grid("smoke", ["seed=range(0,10000)"])


def test_a_bad_value_deep_in_an_axis_is_refused_before_the_first_trial(tmp_path):
    trials = load_grid("smoke", ["model.depth=1,2,3,two"]).trials(tmp_path)
    with pytest.raises(GridError, match="model.depth=two"):
        next(trials)


def test_dry_run_prints_points_states_and_cost_and_writes_nothing(tmp_path, capsys):
    """launch --dry-run on a sweep already partly recorded: which points are new, done or
    unfinished, and the estimated FLOPs of what is left; the sweep directory is untouched."""
    from sweep_support import sweep_file

    from cotsweep.cli import main as cli
    from cotsweep.sweep.engine import prepare

    sw = sweep_file(tmp_path, "dry", {"seed": "0,1"})
    d = tmp_path / "sweep"
    prep = prepare(str(sw), [], d)
    done = sorted(prep.ids)[0]
    prep.ledger.update([(done, {"state": "done"})])
    prep.ledger.release()
    prep.ledger.close()

    def state() -> tuple:  # the ledger's rows (SQLite may fold its WAL in on close) and files
        import sqlite3

        db = sqlite3.connect(d / "ledger.sqlite")
        try:
            rows = sorted(db.execute("SELECT * FROM trials")) + sorted(
                db.execute("SELECT * FROM meta")
            )
        finally:
            db.close()
        other = {p: p.read_bytes() for p in d.rglob("*") if p.is_file() and "ledger" not in p.name}
        return rows, other

    before = state()
    assert cli(["launch", str(sw), "seed=0,1,2", "--dir", str(d), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "3 points, 3 trials: 1 new, 1 done, 1 unfinished, 0 failed" in out, out
    assert "to run: 2 trials, 80 training steps, about " in out and "FLOP" in out, out
    assert out.count("[new]") == 1 and out.count("[done]") == 1 and out.count("[pending]") == 1
    assert state() == before
