"""`cotsweep train` speaks Hydra: --cfg, --info, --help and -sc with and without -m, its own
sweep per multirun, and never the schemas' internal entries.

Every command line runs through the real CLI entry point in one fresh
interpreter (tests/cli_rows.py), its stdout and stderr captured at the file
descriptors.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_rows import run_in_process

HERE = Path(__file__).resolve().parent
TINY = ["model=tiny", "tracking=none", "run.device=cpu", "train.steps=0", "train.eval_size=8"]


def test_hydra_flags_work_with_and_without_multirun(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    rows = {
        "cfg-job": ["train", "--cfg", "job", "task=s5"],
        "cfg-job-m": ["train", "-m", "--cfg", "job", "task=s5"],
        "cfg-hydra-m": ["train", "-m", "--cfg", "hydra"],
        "cfg-all": ["train", "--cfg", "all"],
        "info": ["train", "--info"],
        "info-m": ["train", "-m", "--info"],
        "help": ["train", "--help"],
        "help-m": ["train", "-m", "--help"],
        "install-bash": ["train", "-sc", "install=bash"],
        "install-bash-m": ["train", "-m", "-sc", "install=bash"],
        # what the installed script asks when the user presses Tab after `cotsweep train task=`
        "query-bash": ["-sc", "query=bash"],
        "query-verb": ["-sc", "query=bash"],
        # two multiruns (Hydra's basic launcher: no Ray) with different fixed values
        "multirun-a": ["train", "-m", "seed=0,1", *TINY, "hydra/launcher=basic"],
        "multirun-b": ["train", "-m", "seed=0,1", *TINY, "model.depth=2", "hydra/launcher=basic"],
    }
    env = {
        "query-bash": {"COMP_LINE": "cotsweep train task=", "COMP_POINT": "20"},
        "query-verb": {"COMP_LINE": "cotsweep la", "COMP_POINT": "11"},
    }
    results = dict(
        zip(
            rows,
            run_in_process(
                [{"args": a, "cwd": str(work), "env": env.get(k, {})} for k, a in rows.items()],
                str(tmp_path),
            ),
            strict=True,
        )
    )
    for k, r in results.items():
        assert r["rc"] == 0, (k, r["stderr"][-2000:])
        assert "Traceback" not in r["stderr"], (k, r["stderr"][-2000:])
        if not k.startswith("info"):  # (--info lists the composition, schemas included)
            assert "_schema" not in r["stdout"], k  # never offered, by help or completion
    out = {k: r["stdout"] for k, r in results.items()}
    assert out["cfg-job"] == out["cfg-job-m"] and "name: s5" in out["cfg-job"]
    assert "hydra:" in out["cfg-hydra-m"] and "hydra:" in out["cfg-all"]
    for k in ("info", "info-m"):
        assert "Defaults List" in out[k] and "task/modadd" in out[k], out[k][-500:]
    for k in ("help", "help-m"):
        assert "cotsweep train" in out[k] and "task: causal, cvp" in out[k], out[k]
    for k in ("install-bash", "install-bash-m"):
        # the completion is registered for the program, `cotsweep`, which then asks for it
        assert "hydra_bash_completion cotsweep\n" in out[k], out[k][-300:]
    assert "task=cvp" in out["query-bash"].split() and "task=modadd" in out["query-bash"].split()
    assert out["query-verb"].split() == ["launch"]
    # each multirun its own sweep: named by what it sweeps, and by what it fixes
    dirs = sorted(p.name for p in (work / "runs").iterdir())
    assert len(dirs) == 2 and all(d.startswith("multirun-seed-") for d in dirs), dirs
    assert not (work / "runs" / "multirun").exists()
    for k in ("multirun-a", "multirun-b"):
        assert "multirun sweep multirun-seed-" in results[k]["stderr"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completion_installs_and_completes_overrides(tmp_path):
    """The script Hydra prints, sourced by a real bash, completes `cotsweep train task=`."""
    # the cotsweep installed beside this interpreter, whatever else PATH holds (pytest may
    # run from a venv that is not activated)
    bin_dir = Path(sys.executable).parent
    script = (
        'eval "$(cotsweep train -sc install=bash)"\n'
        'COMP_LINE="cotsweep train task="; COMP_POINT=${#COMP_LINE}; COMP_CWORD=2\n'
        'hydra_bash_completion; echo "${COMPREPLY[@]}"\n'
    )
    r = subprocess.run(
        ["bash", "-c", script],
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    words = r.stdout.split()
    assert "task=cvp" in words and not any("schema" in w for w in words), r.stdout + r.stderr
