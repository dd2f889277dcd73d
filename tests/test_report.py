"""``cotsweep report``: from a sweep directory's files and ledger to figures, tables and findings.

The synthetic sweep is written the way the trial worker and the ledger write
it (config.yaml from a real Hydra composition, result.json, metrics.jsonl, a
SQLite ``trials`` table), with known accuracies, so that the tables can be
checked number by number, and with failed, running and missing trials, so
that the gaps can be checked too. One test builds the report from real
(short) trials.
"""

from __future__ import annotations

import copy
import json
import math
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import tiny_cfg
from figure_checks import captured_figures, check_paper_figures, legend_labels
from matplotlib.image import imread
from omegaconf import OmegaConf

from cotsweep.report import Section, build_report, load_trials, manifest_images, section
from cotsweep.report.findings import NOT_REPRODUCED, NOT_RUN, REPRODUCED, check_findings
from cotsweep.report.registry import SECTIONS
from cotsweep.trial import run_trial

TASKS = ("modadd", "s5", "cvp")
DRAWN = ("s5", "cvp")  # the tasks of the sweep whose report is rendered (figures cost time)
SETTINGS = ("base", "cot", "hint")
DEPTHS = (1, 4, 16)
LENGTHS = (4, 16)
SEEDS = (0, 1, 2)
CHANCE = {"modadd": 1 / 7, "s5": 1 / 120, "cvp": 0.5}
STEPS = 3000  # the findings' budget: the synthetic trials are evidence

# grid points whose every seed failed, or never started (pending in the ledger, no directory)
FAILED_CELL = ("s5", "base", 16, 16)
MISSING_CELL = ("s5", "hint", 16, 16)
# one seed failed, one still running: the cell is the mean of the remaining seed(s)
PARTIAL_FAILED = ("cvp", "cot", 1, 16, 2)
RUNNING = ("cvp", "cot", 4, 16, 1)
FINDINGS = Path(__file__).parents[1] / "src/cotsweep/report/findings_cot.yaml"
OOM = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"


def true_acc(task: str, setting: str, depth: int, length: int) -> float:
    """The accuracies the synthetic sweep 'found', shaped like the reported ones."""
    if setting == "cot":
        return 1.0
    if task == "modadd":
        return 1.0 if length <= 4 or depth >= 4 else 0.9
    if task == "s5":
        return 0.2 if setting == "base" else (0.7 if length <= 4 else 0.35)
    # cvp: base about 0.5 shallow, near 1.0 at depth 16
    return {1: 0.5, 4: 0.52, 16: 0.97}[depth] + (0.02 if setting == "hint" else 0.0)


def seed_acc(task: str, setting: str, depth: int, length: int, seed: int) -> float:
    return min(1.0, max(0.0, true_acc(task, setting, depth, length) + 0.01 * (seed - 1)))


def _metrics(acc: float, chance: float, last_step: int) -> list[dict]:
    rows = []
    for step in range(100, last_step + 1, 100):
        rows.append(
            {
                "step": step,
                "train/loss": 0.05 + 3.0 * math.exp(-step / 300),
                "train/lr": 1e-3,
                "perf/tokens_per_s": 5e4,
            }
        )
        if step % 200 == 0:
            rows.append(
                {"step": step, "eval/acc": chance + (acc - chance) * (1 - math.exp(-step / 200))}
            )
    return rows


def _write_trial(
    root: Path,
    base_cfg: dict,
    task: str,
    setting: str,
    depth: int,
    length: int,
    seed: int,
    *,
    state: str,
    error: str | None = None,
    write_dir: bool = True,
) -> tuple:
    cfg = copy.deepcopy(base_cfg)
    cfg["task"] = {"name": task, "length": length}
    cfg["setting"], cfg["seed"] = setting, seed
    cfg["model"]["depth"] = depth
    cfg["sweep"] = {"name": "synthetic_cot", "dir": str(root)}
    tid = f"{task}-{setting}-d{depth}-n{length}-s{seed}"
    overrides = [
        f"task={task}",
        f"setting={setting}",
        f"model.depth={depth}",
        f"task.length={length}",
        f"seed={seed}",
    ]
    axes = {
        "task": task,
        "setting": setting,
        "model.depth": depth,
        "task.length": length,
        "seed": seed,
    }
    text = yaml.safe_dump(cfg)
    if write_dir:
        d = root / "trials" / tid
        d.mkdir(parents=True)
        (d / "config.yaml").write_text(text)
        acc = seed_acc(task, setting, depth, length, seed)
        last = STEPS if state == "done" else 400
        (d / "metrics.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in _metrics(acc, CHANCE[task], last))
        )
        if state == "done":
            result = {
                "trial_id": tid,
                "task": task,
                "setting": setting,
                "depth": depth,
                "length": length,
                "seed": seed,
                "acc": acc,
                "chain_acc": acc if setting != "base" else None,
                "chance": CHANCE[task],
                "steps": STEPS,
                "wall_time_s": 12.5,
            }
            (d / "result.json").write_text(json.dumps(result))
    return (tid, state, 1, json.dumps(overrides), json.dumps(axes), text, error)


def _ledger(root: Path, rows: list[tuple], columns: str = "full") -> None:
    db = sqlite3.connect(root / "ledger.sqlite")
    if columns == "full":
        db.execute(
            "CREATE TABLE trials (id TEXT PRIMARY KEY, state TEXT NOT NULL, attempts INTEGER, "
            "overrides TEXT, axes TEXT, config TEXT, error TEXT, traceback TEXT)"
        )
        db.executemany(
            "INSERT INTO trials (id, state, attempts, overrides, axes, config, error) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    else:
        db.execute("CREATE TABLE trials (id TEXT PRIMARY KEY, state TEXT NOT NULL, error TEXT)")
        db.executemany("INSERT INTO trials VALUES (?, ?, ?)", [(r[0], r[1], r[6]) for r in rows])
    db.commit()
    db.close()


def make_synthetic_sweep(root: Path, tasks: tuple[str, ...] = DRAWN) -> Path:
    """A CoT sweep of tasks × 3 settings × 3 depths × 2 lengths × 3 seeds, with gaps."""
    base_cfg = OmegaConf.to_container(tiny_cfg(), resolve=True, enum_to_str=True)
    rows = []
    for task in tasks:
        for setting in SETTINGS:
            for depth in DEPTHS:
                for length in LENGTHS:
                    for seed in SEEDS:
                        point = (task, setting, depth, length)
                        kw: dict = {"state": "done"}
                        if point == FAILED_CELL or (*point, seed) == PARTIAL_FAILED:
                            kw = {"state": "failed", "error": f"{OOM} (seed {seed})"}
                        elif point == MISSING_CELL:
                            kw = {"state": "pending", "write_dir": False}
                        elif (*point, seed) == RUNNING:
                            kw = {"state": "running"}
                        rows.append(_write_trial(root, base_cfg, *point, seed, **kw))
    _ledger(root, rows)
    return root


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory):
    root = make_synthetic_sweep(tmp_path_factory.mktemp("sweep"))
    with captured_figures() as figures:
        report = build_report(root)
    report.drawn = figures  # the matplotlib figures themselves, for the reviewer's checks
    return root, report


def _assert_real_png(path: Path) -> None:
    img = imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4), img.shape
    h, w = img.shape[:2]
    assert 300 <= h <= 4000 and 500 <= w <= 5000, (path.name, img.shape)
    rgb = img[..., :3]
    ink = (rgb < 0.9).any(axis=2).mean()  # share of pixels that are not (near) white
    assert 0.02 < ink < 0.9, (path.name, ink)
    assert rgb.std() > 0.05, path.name
    colourful = (rgb.max(axis=2) - rgb.min(axis=2) > 0.25).mean()
    assert colourful > 0.002, (path.name, colourful)  # the data is drawn in colour, not only axes


def _task_part(md: str, task: str) -> str:
    """The part of the report about one task (from its heading to the next)."""
    parts = re.split(r"^#{2,3} ", md, flags=re.M)
    return next(p for p in parts if p.startswith(f"{task} — "))


def _table_row(md: str, *cells: str) -> str:
    """The Markdown table row starting with these cells."""
    start = "| " + " | ".join(cells) + " |"
    rows = [line for line in md.splitlines() if line.startswith(start)]
    assert rows, f"no row starting {start!r}"
    return rows[0]


# ---------------------------------------------------------------- records
def test_load_trials_reads_states_axes_and_gaps(synthetic):
    root, _ = synthetic
    records = load_trials(root)
    assert len(records) == len(DRAWN) * len(SETTINGS) * len(DEPTHS) * len(LENGTHS) * len(SEEDS)
    by_id = {r.id: r for r in records}
    states = {
        s: sum(r.state == s for r in records) for s in ("done", "failed", "running", "missing")
    }
    assert states == {"done": len(records) - 3 - 3 - 1 - 1, "failed": 4, "running": 1, "missing": 3}
    missing = by_id["s5-hint-d16-n16-s0"]
    assert missing.dir is None and missing.result is None
    # axes of a trial that never started come from the ledger's config
    assert {
        "task": "s5",
        "setting": "hint",
        "depth": 16,
        "length": 16,
        "seed": 0,
    }.items() <= missing.axes.items()
    failed = by_id["s5-base-d16-n16-s1"]
    assert failed.state == "failed" and OOM in failed.error and failed.metrics  # partial curve kept
    done = by_id["s5-cot-d1-n4-s2"]
    assert (
        done.done
        and done.value("acc") == pytest.approx(1.0)
        and done.value("chance") == pytest.approx(1 / 120)
    )
    assert done.axes["pos_encoding"] == "learned"
    steps, losses = done.series("train/loss")
    assert steps[0] == 100 and steps[-1] == STEPS and losses[0] > losses[-1]


def test_without_a_ledger_a_dir_without_result_is_unfinished(tmp_path):
    base_cfg = OmegaConf.to_container(tiny_cfg(), resolve=True, enum_to_str=True)
    _write_trial(tmp_path, base_cfg, "s5", "cot", 1, 4, 0, state="done")
    _write_trial(tmp_path, base_cfg, "s5", "cot", 2, 4, 0, state="running")
    records = {r.id: r for r in load_trials(tmp_path)}
    assert records["s5-cot-d1-n4-s0"].state == "done"
    assert records["s5-cot-d2-n4-s0"].state == "unfinished"
    # depth varies between the two: it is an axis; the width does not vary, and stays a standard axis
    assert records["s5-cot-d2-n4-s0"].axes["depth"] == 2


def test_a_ledger_with_only_id_state_error_still_lists_trials_that_never_started(tmp_path):
    base_cfg = OmegaConf.to_container(tiny_cfg(), resolve=True, enum_to_str=True)
    rows = [
        _write_trial(tmp_path, base_cfg, "s5", "cot", 1, 4, 0, state="done"),
        _write_trial(tmp_path, base_cfg, "s5", "cot", 2, 4, 0, state="pending", write_dir=False),
        _write_trial(
            tmp_path, base_cfg, "s5", "base", 1, 4, 0, state="failed", error="ValueError: boom"
        ),
    ]
    _ledger(tmp_path, rows, columns="minimal")
    records = {r.id: r for r in load_trials(tmp_path)}
    assert [
        records[k].state for k in ("s5-cot-d1-n4-s0", "s5-cot-d2-n4-s0", "s5-base-d1-n4-s0")
    ] == ["done", "missing", "failed"]
    report = build_report(tmp_path)
    md = report.markdown.read_text()
    assert "`s5-cot-d2-n4-s0`" in md and "(unknown)" in md  # listed though nothing is known of it
    assert "ValueError: boom" in md


# ---------------------------------------------------------------- files and figures
def test_every_expected_file_exists_and_each_figure_is_a_real_image(synthetic):
    root, report = synthetic
    out = root / "report"
    assert report.dir == out
    for name in ("report.md", "report.html", "manifest.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 1000
    kinds = ("accuracy_vs_depth", "accuracy_vs_length", "depth_length_heatmap")
    expected = {f"{kind}_{t}.png" for t in DRAWN for kind in kinds}
    expected |= {f"training_curves_{t}_n{n}.png" for t in DRAWN for n in LENGTHS}
    assert {p.name for p in report.images} == expected
    assert {p.name for p in (out / "figures").glob("*.png")} == expected
    assert manifest_images(out) == report.images
    for p in report.images:
        _assert_real_png(p)


def test_figures_of_three_seeds_with_gaps_pass_a_reviewers_checks(synthetic):
    root, report = synthetic
    check_paper_figures(root / "report", report.drawn, chance=CHANCE)
    manifest = json.loads((root / "report" / "manifest.json").read_text())
    captions = {Path(f["path"]).name: f["caption"] for f in manifest["figures"]}
    # three seeds, one failed cell (no seed finished) and one never started
    assert "3 seeds per point (0–3 finished)" in captions["accuracy_vs_depth_s5.png"]
    # the seeds differ (±0.01), so the band is drawn and named; the gaps too
    legend = legend_labels(report.drawn["accuracy_vs_depth_s5.png"])
    assert "min–max over seeds" in legend and "no result (failed / missing)" in legend
    assert "chance" in legend


def test_markdown_holds_the_tables_behind_the_plots(synthetic):
    _, report = synthetic
    md = report.markdown.read_text()
    for t in DRAWN:
        assert f"![{t}: accuracy against depth" in md
    assert "| setting | depth | n=4 | n=16 |" in md
    assert "failed to build" not in md
    s5, cvp = (_task_part(md, t) for t in DRAWN)
    # seeds at 0.96, 0.97, 0.98: mean [min–max]
    assert _table_row(cvp, "base", "16").split("|")[3].strip() == "0.97 [0.96–0.98]"
    # a cell whose seeds all failed, or never started, is a gap that says which
    assert _table_row(s5, "base", "16").rstrip(" |").endswith("failed")
    assert _table_row(s5, "hint", "16").rstrip(" |").endswith("missing")
    # a cell with one failed (or running) seed is the mean of the others, and says so
    assert _table_row(cvp, "cot", "1").rstrip(" |").endswith("0.99 [0.99–1.00] (2/3 seeds)")
    assert _table_row(cvp, "cot", "4").rstrip(" |").endswith("0.99 [0.99–1.00] (2/3 seeds)")
    # smallest depth that solves each length: cvp base only at depth 16, cot at depth 1
    assert "smallest depth that solves each input length" in cvp
    assert "| base | 16 | 16 |" in cvp and "| cot | 1 | 1 |" in cvp
    # s5 base and hint never solve; at n=16 depth 16 failed / is missing, so there it is undetermined
    assert "| base | none ≤ 16 | none ≤ 16 † |" in s5 and "| hint | none ≤ 16 | none ≤ 16 † |" in s5
    # training table: seeds done, final loss, first step reaching the threshold
    loss = f"{0.05 + 3.0 * math.exp(-STEPS / 300):.3g}"
    assert _table_row(s5, "cot", "4", "1").startswith(f"| cot | 4 | 1 | 3/3 | {loss} | ")
    assert _table_row(s5, "base", "4", "1").split("|")[7].strip() == "never"


def test_findings_are_checked_against_the_sweep(tmp_path):
    root = make_synthetic_sweep(tmp_path, tasks=TASKS)
    _, verdicts = check_findings(FINDINGS, load_trials(root))
    status = {v.finding.id: v.status for v in verdicts}
    assert status["s5-cot-1layer"] == REPRODUCED
    assert status["s5-base-about-20"] == REPRODUCED  # 0.19..0.21 at every depth that ran, n = 16
    assert status["s5-cot-beats-base"] == REPRODUCED  # cot 1.00 against base 0.20 at each point
    assert status["cvp-base-4-layers"] == REPRODUCED  # 0.51..0.53 against "about 0.5"
    assert status["cvp-base-16-layers"] == REPRODUCED
    assert status["cvp-base-improves-with-depth"] == REPRODUCED  # 0.97 at depth 16, 0.50 at 1
    assert status["cvp-cot-beats-base"] == REPRODUCED
    assert status["cvp-base-8-layers"] == NOT_RUN  # depth 8 is not in the grid
    assert status["isq-cot-1layer"] == NOT_RUN  # isq is not in the sweep
    # cot − base at n = 16: +0.10 at depth 1, 0 at depths 4 and 16: a mean of +0.03 < 0.05
    assert status["modadd-cot-advantage-n16"] == NOT_REPRODUCED
    assert status["modadd-hint-learns"] == REPRODUCED
    s5_base = next(v for v in verdicts if v.finding.id == "s5-base-about-20")
    assert "1 of 3 grid points have no result" in s5_base.detail  # depth 16 failed
    assert s5_base.ours == "d=1: 0.20; d=4: 0.20; chance 0.008"
    advantage = next(v for v in verdicts if v.finding.id == "modadd-cot-advantage-n16")
    assert advantage.ours == "+0.03 (mean of 3 points); chance 0.143"


def test_the_report_sets_our_figures_beside_the_reported_ones(synthetic):
    root, report = synthetic
    md = report.markdown.read_text()
    assert "Comparison with the reported findings" in md
    _, verdicts = check_findings(FINDINGS, load_trials(root))
    # each finding's row carries the reported figure beside ours and the status
    row = _table_row(md, "s5 with CoT: 100% with a 1-layer model")
    assert "1.00 at depth 1" in row and "n=4: 1.00; n=16: 1.00" in row
    assert row.split(" | ")[-2:] == [REPRODUCED, "— |"]  # the status, and no reason needed
    # modadd (4), isq (3) and cvp at depth 8 are not in this sweep
    assert md.count(f"| {NOT_RUN} |") == sum(v.status == NOT_RUN for v in verdicts) == 8


def test_failed_and_missing_trials_are_listed_with_their_errors(synthetic):
    _, report = synthetic
    md = report.markdown.read_text()
    overview = md.split("## Chain of thought")[0]
    assert "Trials without a result" in overview
    for tid in (
        "s5-base-d16-n16-s0",
        "s5-base-d16-n16-s2",
        "cvp-cot-d1-n16-s2",
        "s5-hint-d16-n16-s1",
        "cvp-cot-d4-n16-s1",
    ):
        assert f"`{tid}`" in overview
    assert overview.count(OOM) == 4
    assert _table_row(overview, "`s5-hint-d16-n16-s1`").split("|")[3].strip() == "missing"


def test_html_is_self_contained_with_the_same_content(synthetic):
    _, report = synthetic
    page = report.html.read_text()
    assert page.count('src="data:image/png;base64,') == len(report.images)
    assert 'src="figures/' not in page
    md = report.markdown.read_text()
    for claim in ("s5 with CoT: 100% with a 1-layer model", "Trials without a result", OOM):
        assert claim in md and claim in page
    assert page.count("<table>") == sum(line.startswith("|---") for line in md.splitlines())
    assert 'class="reproduced"' in page and 'class="not-run"' in page


def test_a_study_adds_its_section_by_registering_it(tmp_path):
    base_cfg = OmegaConf.to_container(tiny_cfg(), resolve=True, enum_to_str=True)
    d = tmp_path / "trials" / "t1"
    d.mkdir(parents=True)
    cfg = copy.deepcopy(base_cfg) | {"task": {"name": "toy_study", "length": 3}}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    (d / "result.json").write_text(json.dumps({"acc": 0.75, "chance": 0.5}))
    seen = {}

    @section("toy_study", title="Toy study (a test)")
    def toy(records, ctx):
        seen["ids"] = [r.id for r in records]
        return Section("").table(["trial", "acc"], [[r.id, r.value("acc")] for r in records])

    try:
        md = build_report(tmp_path).markdown.read_text()
    finally:
        SECTIONS[:] = [e for e in SECTIONS if e.fn is not toy]
    assert seen["ids"] == ["t1"]
    assert "## Toy study (a test)" in md and "| t1 | 0.75 |" in md
    # without its section the task still appears, in the generic view
    md = build_report(tmp_path).markdown.read_text()
    assert "## Task toy_study" in md and "0.75" in md


# ---------------------------------------------------------------- real trials
def test_report_from_real_short_trials(tmp_path, one_thread):
    """Two depths × two settings of modadd, trained for a few steps, then reported."""
    for setting in ("base", "cot"):
        for depth in (1, 2):
            cfg = tiny_cfg(
                [
                    f"setting={setting}",
                    f"model.depth={depth}",
                    "task=modadd",
                    "task.length=4",
                    "train.steps=20",
                    "train.eval_every=10",
                    "train.eval_size=32",
                    "run.log_every=5",
                ]
            )
            result = run_trial(cfg, tmp_path / "trials" / f"{setting}-d{depth}")
            assert 0.0 <= result["acc"] <= 1.0
    report = build_report(tmp_path)
    records = report.records
    assert len(records) == 4 and all(r.done for r in records)
    assert {(r.axes["setting"], r.axes["depth"]) for r in records} == {
        ("base", 1),
        ("base", 2),
        ("cot", 1),
        ("cot", 2),
    }
    md = report.markdown.read_text()
    assert "| setting | depth | n=4 |" in md
    for r in records:
        assert f"{r.value('acc'):.2f}" in _table_row(md, r.axes["setting"], str(r.axes["depth"]))
    assert {p.name for p in report.images} == {
        "accuracy_vs_depth_modadd.png",
        "depth_length_heatmap_modadd.png",
        "training_curves_modadd_n4.png",
    }
    assert "One input length only (n = 4): no figure against length." in md
    for p in report.images:
        _assert_real_png(p)
    assert np.isfinite([r.series("train/loss")[1][-1] for r in records]).all()


def test_an_empty_sweep_and_a_task_whose_every_trial_failed_still_report(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    md = build_report(empty).markdown.read_text()
    assert "0 trials: none." in md and "failed to build" not in md

    base_cfg = OmegaConf.to_container(tiny_cfg(), resolve=True, enum_to_str=True)
    root = tmp_path / "broken"
    rows = [
        _write_trial(
            root, base_cfg, "cvp", setting, depth, 8, 0, state="failed", error="Diverged: step 7"
        )
        for setting in ("base", "cot")
        for depth in (1, 4)
    ]
    _ledger(root, rows)
    report = build_report(root)
    md = report.markdown.read_text()
    assert "failed to build" not in md
    assert md.count("Diverged: step 7") == 4
    assert "| base | failed | failed |" not in md  # one length: the rows are per depth
    assert "| cot | 4 | failed |" in md
    assert "chance unknown (no finished trial)" in md
    for p in report.images:
        imread(p)  # drawn, though every point is a gap


def test_a_rebuild_drops_figures_of_points_no_longer_in_the_sweep(tmp_path):
    base_cfg = OmegaConf.to_container(tiny_cfg(), resolve=True, enum_to_str=True)
    for task in ("s5", "cvp"):
        _write_trial(tmp_path, base_cfg, task, "cot", 1, 4, 0, state="done")
    first = {p.name for p in build_report(tmp_path).images}
    assert "accuracy_vs_depth_cvp.png" in first
    for f in (tmp_path / "trials" / "cvp-cot-d1-n4-s0").iterdir():
        f.unlink()
    (tmp_path / "trials" / "cvp-cot-d1-n4-s0").rmdir()
    second = build_report(tmp_path)
    assert {p.name for p in (tmp_path / "report" / "figures").glob("*.png")} == {
        p.name for p in second.images
    }
    assert not any("cvp" in p.name for p in second.images)
