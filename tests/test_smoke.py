"""The README's first command, shrunk: `cotsweep launch smoke` runs a real sweep and ends with its report."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
from figure_checks import captured_figures, check_paper_figures

from cotsweep.cli import main as cli


def test_launch_smoke_ends_with_its_report(tmp_path, ray_local, capsys):
    d = tmp_path / "smoke"
    with captured_figures() as figures:
        rc = cli(
            [
                "launch",
                "smoke",
                "--dir",
                str(d),
                "--no-progress",
                "train.steps=20",
                "train.eval_every=10",
                "train.eval_size=64",
                "tracking=none",
            ]
        )
    assert rc == 0, capsys.readouterr().err
    assert len(list(d.glob("trials/*/result.json"))) == 12
    report = d / "report"
    text = (report / "report.md").read_text()
    assert "| modadd |" in text or "modadd" in text
    manifest = json.loads((report / "manifest.json").read_text())
    assert len(manifest["figures"]) >= 6
    for fig in manifest["figures"]:
        img = mpimg.imread(report / fig["path"])
        assert img.shape[0] > 200 and img.shape[1] > 300 and img.std() > 0.01
    assert (report / "report.html").stat().st_size > 50_000  # the figures are embedded
    # legends, seed counts, ticks, chance lines and chance-relative heat maps, as a reviewer reads them
    check_paper_figures(
        report, figures, chance={"modadd": 1 / 7, "cvp": 0.5}, seeds="1 seed per point"
    )
    # and status reads it back, for scripts
    assert cli(["status", str(d), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["counts"]["done"] == 12 and st["total"] == 12 and st["failures"] == []
