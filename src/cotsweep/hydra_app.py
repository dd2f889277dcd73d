"""cotsweep's trial as a plain Hydra application, for Hydra's own multirun.

    python -m cotsweep.hydra_app -m task=modadd,s5 seed=0,1 hydra/launcher=cotsweep \\
        hydra.sweep.dir=runs/my_sweep

composes the packaged ``conf/`` like ``cotsweep train`` does, and with
``hydra/launcher=cotsweep`` every job is a trial of the sweep engine: content-
addressed id, a row in ``DIR/ledger.sqlite``, files in ``DIR/trials/<id>/``,
Ray scheduling, retries, and nothing rerun when the same multirun runs again
(give it a fixed ``hydra.sweep.dir``: Hydra's default is a new timestamped one
per run). Any other launcher works too; a trial then runs in its Hydra job's
output directory.

The task function returns the trial's result (what result.json holds), or the
one figure of it that ``run.objective`` names, for a sweeper that optimises it:

    cotsweep train -m hydra/sweeper=optuna hydra.sweeper.n_trials=20 \\
        'train.lr=interval(0.0001,0.01)' task=s5 hydra.sweep.dir=runs/lr_search

(``cotsweep train -m`` with the Optuna sweeper sets ``run.objective=acc``,
``hydra.sweeper.direction=maximize`` and the sampler's seed to 0 where the
command line does not: a seeded sampler asks the same points again when the
same command runs again, which the ledger answers from the finished trials, so
a relaunch reruns nothing and an interrupted search continues where it stopped.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from cotsweep.compose import register_configs

# the trial schemas must be in the ConfigStore before @hydra.main composes conf/config.yaml
register_configs()


def trial_dir(cfg: DictConfig) -> Path:
    """Where the job's trial writes its files.

    The cotsweep launcher fills ``sweep.dir`` and points ``run.out_dir`` at
    ``DIR/trials/<id>``, the engine's layout; under any other launcher the trial
    runs in its Hydra job's output directory, one per job.
    """
    if cfg.sweep.dir:
        return Path(cfg.run.out_dir)
    return Path(HydraConfig.get().runtime.output_dir)


def run(cfg: DictConfig) -> dict:
    """Train and evaluate the trial ``cfg`` (one Hydra job); returns its result.

    Exceptions propagate: Hydra records them in the job's FAILED JobReturn, and
    the cotsweep launcher retries the job, then records it failed.
    """
    from cotsweep import files
    from cotsweep.ids import trial_id
    from cotsweep.tracking import open_tracker
    from cotsweep.trial import run_trial

    out = trial_dir(cfg)
    done = files.read_json(out / files.RESULT)
    if done is not None:  # finished by an earlier attempt: it costs no attempt
        return done
    files.record_attempt(out)  # attempts.jsonl, as the engine's worker keeps it
    tracker = open_tracker(cfg, out, trial_id(cfg))
    try:
        result = run_trial(cfg, out, tracker=tracker)
    finally:
        if tracker is not None:
            tracker.finish()
    # a sweeper that optimises (Optuna's) takes one number: the figure run.objective names
    return files.result_figure(result, cfg.run.objective) if cfg.run.objective else result


@hydra.main(version_base="1.3", config_path="pkg://cotsweep.conf", config_name="config")
def main(cfg: DictConfig) -> dict:
    return run(cfg)


def cli(args: list[str], prog: str = "cotsweep train") -> int:
    """Run the app with ``args`` as its command line (``-m`` and overrides); returns the exit code.

    For ``cotsweep train -m ...``: Hydra reads sys.argv itself, and on an error
    prints it and exits with 1.
    """
    argv = sys.argv
    sys.argv = [prog, *args]
    try:
        main()
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
    return 0


if __name__ == "__main__":
    main()
