"""The repository's promises to a newcomer: README's two commands and CI's use of them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    first_screen = text.split("## ")[0]
    return re.findall(r"```bash\n(.+?)\n```", first_screen)


def test_readme_first_screen_has_exactly_two_commands():
    run_sweep, run_tests = readme_commands()
    assert "cotsweep launch smoke" in run_sweep and "pip install" in run_sweep
    assert run_tests.endswith("pytest") and "'.[dev]'" in run_tests


def test_ci_runs_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1].replace(" -q", "") in [line.replace(" -q", "") for line in ci]


def test_every_named_sweep_is_packaged():
    from cotsweep.compose import available_sweeps

    names = set(available_sweeps())
    assert {"smoke", "cot_expressiveness"} <= names
    assert names == {p.stem for p in (ROOT / "sweeps").glob("*.yaml")}
