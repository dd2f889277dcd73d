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


# Hydra's modes that print and exit; Hydra takes only one mode, so with these -m is dropped
PRINTING = (
    "--cfg",
    "-c",
    "--info",
    "-i",
    "--shell-completion",
    "-sc",
    "--help",
    "-h",
    "--hydra-help",
)


def train_with_hydra(args: list[str]) -> int:
    """``cotsweep train`` with Hydra's own flags: -m, --cfg, --info, -sc, --help, ...

    The overrides are checked first with the sweep engine's composition (every
    point of a multirun grid, and what this machine can run), so a typo is
    refused in one line with exit 2 before Hydra starts anything. A multirun gets
    a sweep of its own: a name and a directory from the keys it sweeps
    (``runs/multirun-seed-task``), the same for the same command, so running it
    again reruns nothing and status/resume find it.
    """
    from hydra._internal.utils import get_args_parser

    def has(*flags: str) -> bool:
        return any(a.split("=", 1)[0] in flags for a in args)

    multirun = has("-m", "--multirun")
    if multirun and has(*PRINTING):
        args = [a for a in args if a not in ("-m", "--multirun")]
        multirun = False
    parsed, _ = get_args_parser().parse_known_args(args)
    overrides = list(parsed.overrides or [])
    ours = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    helping = has("-sc", "--shell-completion", "--help", "-h", "--hydra-help")
    if not helping:
        _check_overrides(ours, multirun, overrides)
    rest = list(args)
    if multirun:
        launchers = [o for o in overrides if o.startswith("hydra/launcher=")]
        if not launchers:
            rest.append("hydra/launcher=cotsweep")
        if (
            not helping
            and launchers in ([], ["hydra/launcher=cotsweep"])
            and not any(o.startswith("hydra/sweeper=") for o in overrides)
        ):
            # the grid was composed and checked just above, and the cotsweep launcher
            # composes each job: Hydra's basic sweeper need not compose them once more
            rest.append("hydra/sweeper=cotsweep_grid")
        name = multirun_name(ours)
        if not any(o.startswith("hydra.job.name=") for o in overrides):
            rest.append(f"hydra.job.name={name}")
        if not any(o.startswith("hydra.sweep.dir=") for o in overrides):
            rest.append(f"hydra.sweep.dir=runs/{name}")  # fixed, so a relaunch reruns nothing
            print(
                f"multirun sweep {name} in runs/{name} (cotsweep status runs/{name})",
                file=sys.stderr,
                flush=True,
            )
        if "hydra/sweeper=optuna" in overrides:
            rest += optuna_defaults(overrides)
    return cli(rest, prog="cotsweep")


def optuna_defaults(args: list[str]) -> list[str]:
    """What `train -m hydra/sweeper=optuna` needs and the command line did not say.

    Optuna takes one number per trial (the app returns the result's ``acc``, to
    maximise), and a seeded sampler asks the same points when the same command runs
    again, which the ledger answers from the finished trials: a relaunch reruns
    nothing, and an interrupted search continues from its checkpoints.
    """
    given = {a.split("=", 1)[0].lstrip("+~") for a in args}
    extra = []
    if "run.objective" not in given:
        extra.append("run.objective=acc")
        if not given & {"hydra.sweeper.direction"}:
            extra.append("hydra.sweeper.direction=maximize")
    if not given & {"hydra.sweeper.sampler.seed", "hydra/sweeper/sampler"}:
        extra.append("hydra.sweeper.sampler.seed=0")
    return extra


def _check_overrides(ours: list[str], multirun: bool, overrides: list[str]) -> None:
    """Compose what Hydra is about to compose; raises GridError or Hydra's error, in one message.

    A multirun's points are composed as a sweep's (BasicSweeper's grid; another
    sweeper's syntax, such as Optuna's interval(), is its own) and checked against
    this machine when they will run on its embedded Ray (a cluster may autoscale).
    """
    import os

    from cotsweep.compose import compose_trial

    if not multirun:
        compose_trial(ours)  # HydraException / OmegaConfBaseException: the CLI says it
        return
    if any(o.startswith("hydra/sweeper=") and o != "hydra/sweeper=basic" for o in overrides):
        return
    from cotsweep.sweep.engine import trial_checker
    from cotsweep.sweep.grid import load_grid

    local = not os.environ.get("RAY_ADDRESS") and not any(
        o.startswith(("hydra.launcher.address=", "hydra/launcher=basic")) for o in overrides
    )
    check = trial_checker(None, None, warn=lambda m: print(f"warning: {m}", file=sys.stderr))
    for t in load_grid(None, ours).trials(Path("runs") / "multirun-check"):
        if local:
            check(t)


def multirun_name(overrides: list[str]) -> str:
    """A multirun's sweep name: the keys it sweeps, and a short hash of the values it fixes.

    Sweeping more values of the same keys (seed=0,1 then seed=0,1,2) keeps the name,
    so the sweep is extended as ``cotsweep launch`` extends one; other fixed values
    (model.depth=2 or 3) make another sweep.
    """
    import hashlib
    import re

    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    swept = sorted(o.get_key_element() for o in parsed if o.is_sweep_override())
    fixed = sorted(o.input_line for o in parsed if not o.is_sweep_override())
    keys = re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(swept))[:60] or "point"
    name = f"multirun-{keys}"
    if fixed:
        name += "-" + hashlib.sha256("\n".join(fixed).encode()).hexdigest()[:6]
    return name


def shell_completion(argv: list[str]) -> int:
    """``cotsweep -sc query=bash``: what the script of ``cotsweep train -sc install=bash`` asks.

    Hydra's script runs its program (``cotsweep``) with the whole command line in
    COMP_LINE; the ``train`` in it is ours, not an override, so it is taken out
    before Hydra completes the overrides.
    """
    import os

    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    if len(words) >= 2 and words[1] == "train":
        cut = line.index("train") + len("train")
        os.environ["COMP_LINE"] = line[: line.index("train")].rstrip() + line[cut:]
        point = int(os.environ.get("COMP_POINT", len(line)) or len(line))
        os.environ["COMP_POINT"] = str(
            max(0, point - (cut - len(line[: line.index("train")].rstrip())))
        )
        return cli(argv, prog="cotsweep")
    # completing the verb itself
    word = words[1] if len(words) >= 2 and not line.endswith(" ") else ""
    verbs = ("launch", "status", "resume", "report", "sync", "train", "tasks")
    print(" ".join(v for v in verbs if v.startswith(word)))
    return 0


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
