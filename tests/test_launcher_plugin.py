"""The Hydra launcher plugin (``hydra/launcher=cotsweep``) on a real local Ray, on loopback.

Hydra's own launcher test suites run first: every test of ``LauncherTestSuite``
uses the test applications and configs that ship inside the installed hydra
package (``hydra.test_utils.a_module`` and ``hydra/test_utils/configs``), so the
whole suite runs here. ``IntegrationTestSuite`` writes a small application and
runs it in a fresh Python process per case (12 of them), each joining this
module's Ray: it is marked slow.

Then our own: a multirun of cotsweep's Hydra app over real tiny trials, its
ledger and ids, a rerun that runs nothing, and a raising trial that is retried
and recorded failed while the other completes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import ray
from hydra import version
from hydra.core.utils import JobStatus
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite
from hydra.test_utils.test_utils import TSweepRunner
from omegaconf import OmegaConf
from packaging.version import Version
from sweep_support import ledger_rows

import cotsweep  # noqa: F401  (sets Ray's environment before Ray starts)
from cotsweep import files, hydra_app
from cotsweep.compose import compose_trial
from cotsweep.ids import trial_id

# a real trial, as small as a trial gets: tiny model, a few steps, short inputs
TRIAL = [
    "model=tiny",
    "tracking=none",
    "run.device=cpu",
    "task.length=3",
    "train.steps=4",
    "train.eval_every=4",
    "train.eval_size=64",
    "train.warmup_steps=1",
    "train.batch_size=16",
    "run.checkpoint_every=2",
]


@pytest.fixture(autouse=True)
def _ray(ray_local):
    """Every test of this module joins the session's embedded Ray."""


# ---------------------------------------------------------------- Hydra's suites
@pytest.mark.parametrize("launcher_name, overrides", [("cotsweep", [])])
class TestCotsweepLauncher(LauncherTestSuite):
    """Hydra's contract for launchers: job order, configs, overrides, output dirs, bad keys."""

    @pytest.fixture(autouse=True)
    def legacy_version_base(self, hydra_restore_singletons: None) -> None:
        """Run the suite under the version base it is written for.

        Its apps (hydra.test_utils.a_module) give no version_base, so jobs chdir into their
        output dirs, where the suite looks for their logs; but importing a @hydra.main app
        with version_base="1.3" (ours, here or in another test module) sets the base for
        the whole process. hydra_restore_singletons puts the process's base back after.
        """
        version.VersionBase.instance().setbase(Version("1.1"))


@pytest.fixture
def task_launcher_cfg() -> dict:
    return {}


@pytest.fixture
def extra_flags() -> list[str]:
    # the fresh process joins this module's Ray instead of starting its own (~20 s here)
    address = ray.get_runtime_context().gcs_address
    return ["-m", "hydra/launcher=cotsweep", f"hydra.launcher.address={address}"]


@pytest.mark.slow
class TestCotsweepLauncherIntegration(IntegrationTestSuite):
    """Hydra's end-to-end cases: job names, sweep dirs, original cwd, to_absolute_path."""

    @pytest.mark.xfail(
        strict=True,
        raises=AssertionError,
        reason="by design: this case runs two apps with the same (empty) config into the same "
        "sweep dir; the second job is the same trial, done already in the ledger, so it is not "
        "rerun and the second app's prints never happen. Strict: it fails if a done trial reruns.",
    )
    def test_to_absolute_path_multirun(
        self, tmpdir: Path, task_launcher_cfg: dict, extra_flags: list[str]
    ) -> None:
        super().test_to_absolute_path_multirun(tmpdir, task_launcher_cfg, extra_flags)


# ---------------------------------------------------------------- discovery
def test_plugin_is_discovered_without_importing_ray_or_torch():
    code = (
        "import sys\n"
        "from hydra.core.plugins import Plugins\n"
        "from hydra.plugins.launcher import Launcher\n"
        "from hydra.core.config_store import ConfigStore\n"
        "names = [p.__name__ for p in Plugins.instance().discover(Launcher)]\n"
        "print(names, ConfigStore.instance().list('hydra/launcher'), 'ray' in sys.modules, 'torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert (
        out.strip()
        == "['BasicLauncher', 'CotsweepLauncher'] ['basic.yaml', 'cotsweep.yaml'] False False"
    )


# ---------------------------------------------------------------- our trials, the Hydra way
def _sweep(runner: TSweepRunner, sweep_dir: Path, overrides: list[str]):
    return runner(
        calling_file=None,
        calling_module="cotsweep.hydra_app",
        task_function=hydra_app.run,
        config_path="pkg://cotsweep.conf",
        config_name="config",
        overrides=["hydra/launcher=cotsweep", *overrides],
        temp_dir=sweep_dir,
    )


@pytest.mark.usefixtures("hydra_restore_singletons")
def test_multirun_records_trial_ids_and_a_second_run_reruns_nothing(tmp_path, hydra_sweep_runner):
    sweep_dir = tmp_path / "sweep"
    expected = {trial_id(compose_trial([*TRIAL, f"task={t}"])): t for t in ("modadd", "s5")}

    code = hydra_app.cli(
        ["-m", "task=modadd,s5", *TRIAL, "hydra/launcher=cotsweep", f"hydra.sweep.dir={sweep_dir}"]
    )
    assert code == 0
    rows = ledger_rows(sweep_dir)
    assert set(rows) == set(expected)
    for tid, task in expected.items():
        row = rows[tid]
        assert (row["state"], row["attempts"], json.loads(row["overrides"])[0]) == (
            "done",
            1,
            f"task={task}",
        )
        assert files.read_json(sweep_dir / "trials" / tid / files.RESULT)["steps"] == 4
    assert (sweep_dir / "0" / ".hydra" / "overrides.yaml").exists()  # Hydra's own job outputs too
    results = {
        p: (p.stat().st_mtime_ns, files.read_json(p))
        for p in sweep_dir.glob("trials/*/result.json")
    }
    attempts = {p: p.read_text() for p in sweep_dir.glob("trials/*/attempts.jsonl")}

    # the same multirun again, through Hydra's test runner to see the JobReturns
    with _sweep(hydra_sweep_runner, sweep_dir, ["task=modadd,s5", *TRIAL]) as sweep:
        rets = sweep.returns[0]
        assert [r.status for r in rets] == [JobStatus.COMPLETED] * 2
        assert [r.overrides[0] for r in rets] == ["task=modadd", "task=s5"]  # job order
        for r in rets:
            tid = r.hydra_cfg.hydra.job.id
            assert expected[tid] == r.cfg.task.name
            assert r.return_value == results[sweep_dir / "trials" / tid / "result.json"][1]
        assert ledger_rows(sweep_dir) == rows  # nothing submitted, nothing run
        assert {p: (p.stat().st_mtime_ns, files.read_json(p)) for p in results} == results
        assert {p: p.read_text() for p in attempts} == attempts


@pytest.mark.usefixtures("hydra_restore_singletons")
def test_raising_job_is_retried_then_recorded_failed_while_the_other_completes(
    tmp_path, hydra_sweep_runner
):
    sweep_dir = tmp_path / "sweep"
    good, bad = (trial_id(compose_trial([*TRIAL, "task=s5", f"seed={s}"])) for s in (0, 1))
    # the trial's directory holds another trial's files: it raises on every attempt
    foreign = sweep_dir / "trials" / bad / "config.yaml"
    foreign.parent.mkdir(parents=True)
    other = OmegaConf.to_yaml(compose_trial([*TRIAL, "task=s5", "seed=7"]))
    foreign.write_text(other)

    sweep = _sweep(
        hydra_sweep_runner,
        sweep_dir,
        ["task=s5", "seed=0,1", *TRIAL, "hydra.launcher.max_attempts=3"],
    )
    with pytest.raises(Exception) as raised:  # Hydra's sweeper re-raises a FAILED job's exception
        with sweep:
            pass
    assert not isinstance(raised.value, ray.exceptions.RayError)  # the trial's own exception
    rows = ledger_rows(sweep_dir)
    assert rows[good]["state"] == "done" and rows[good]["attempts"] == 1
    failed = rows[bad]
    assert (failed["state"], failed["attempts"], failed["error_kind"]) == ("failed", 3, "error")
    assert failed["error"].startswith(type(raised.value).__name__)
    assert "Traceback" in failed["traceback"]
    assert files.count_attempts(sweep_dir / "trials" / bad) == 3
    assert foreign.read_text() == other  # nothing destroyed


@pytest.mark.usefixtures("hydra_restore_singletons")
def test_jobs_with_the_same_config_run_once_and_each_gets_its_return(tmp_path, hydra_sweep_runner):
    # +a=1,1 is two jobs of one config: one trial id, one run, two JobReturns in job order
    sweep_dir = tmp_path / "sweep"
    sweep = hydra_sweep_runner(
        calling_file=None,
        calling_module="hydra.test_utils.a_module",
        task_function=lambda cfg: cfg.a * 10,
        config_path="configs",
        config_name="compose",
        overrides=["hydra/launcher=cotsweep", "+a=1,2,1"],
        temp_dir=sweep_dir,
    )
    with sweep:
        rets = sweep.returns[0]
        assert [r.overrides for r in rets] == [["+a=1"], ["+a=2"], ["+a=1"]]
        assert [r.return_value for r in rets] == [10, 20, 10]
        ids = [r.hydra_cfg.hydra.job.id for r in rets]
        assert ids[0] == ids[2] != ids[1]
        rows = ledger_rows(sweep_dir)
        assert set(rows) == {ids[0], ids[1]}
        assert all(r["state"] == "done" and r["attempts"] == 1 for r in rows.values())
        assert sorted(p.name for p in sweep_dir.iterdir() if p.name.isdigit()) == [
            "0",
            "1",
        ]  # job 2 never ran
        # launched again, every job is done: the returns come back from return.json, plain
        # data (inside the first runner: its exit deletes the directory)
        for tid, value in zip(ids[:2], (10, 20), strict=True):
            assert json.loads((sweep_dir / "trials" / tid / "return.json").read_text()) == {
                "value": value
            }
        again = hydra_sweep_runner(
            calling_file=None,
            calling_module="hydra.test_utils.a_module",
            task_function=lambda cfg: 1 / 0,  # would fail if any job ran again
            config_path="configs",
            config_name="compose",
            overrides=["hydra/launcher=cotsweep", "+a=1,2,1"],
            temp_dir=sweep_dir,
        )
        with again:
            assert [r.return_value for r in again.returns[0]] == [10, 20, 10]


@pytest.mark.usefixtures("hydra_restore_singletons")
def test_app_under_hydras_basic_launcher_runs_the_trial_in_the_job_dir(tmp_path):
    # no ledger, no Ray: the trial lives in its Hydra job's output directory
    sweep_dir = tmp_path / "plain"
    assert hydra_app.cli(["-m", "task=modadd", *TRIAL, f"hydra.sweep.dir={sweep_dir}"]) == 0
    assert files.read_json(sweep_dir / "0" / files.RESULT)["steps"] == 4
    assert not (sweep_dir / "ledger.sqlite").exists()


@pytest.mark.usefixtures("hydra_restore_singletons")
def test_jobs_composed_once_per_group_choice_are_the_jobs_hydra_composes(
    tmp_path, hydra_sweep_runner
):
    """The launcher composes once per set of group choices and applies value overrides; each
    job's config, overrides and override_dirname are what Hydra's basic launcher composes."""
    grid = ["task=modadd,s5", "seed=0,1", "train.lr=0.001,0.002", *TRIAL, "train.steps=0"]
    placed = {"sweep", "run"}  # where the cotsweep launcher puts a trial: DIR/trials/<id>
    jobs = {}
    for launcher in ("basic", "cotsweep"):
        with hydra_sweep_runner(
            calling_file=None,
            calling_module="cotsweep.hydra_app",
            task_function=hydra_app.run,
            config_path="pkg://cotsweep.conf",
            config_name="config",
            overrides=[f"hydra/launcher={launcher}", *grid],
            temp_dir=tmp_path / launcher,
        ) as sweep:
            jobs[launcher] = [
                (
                    {k: v for k, v in OmegaConf.to_container(r.cfg).items() if k not in placed},
                    list(r.hydra_cfg.hydra.overrides.task),
                    r.hydra_cfg.hydra.job.override_dirname,
                    {  # the launcher's own choice aside
                        k: v
                        for k, v in r.hydra_cfg.hydra.runtime.choices.items()
                        if k != "hydra/launcher"
                    },
                )
                for r in sweep.returns[0]
            ]
    assert len(jobs["basic"]) == 8
    for ours, hydras in zip(jobs["cotsweep"], jobs["basic"], strict=True):
        assert ours[1:] == hydras[1:]  # overrides, override_dirname, group choices
        assert ours[0] == hydras[0]  # the config the task function received
