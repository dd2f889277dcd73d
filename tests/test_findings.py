"""The CoT study's findings (findings_cot.yaml) cannot pass for the wrong reason.

Each test builds the records a sweep would leave (result.json figures per grid
point) and judges the real findings file on them: a base model at chance is not
"about 20 %", a run stopped before the rule's budget is inconclusive rather than
reproduced, a contrast only compares settings at the same depth and length, and a
base model that solves a task the paper says it fails is not reproduced, loudly.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from cotsweep.report.findings import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    Verdict,
    check_findings,
)
from cotsweep.report.records import DONE, TrialRecord

FINDINGS = Path(__file__).parents[1] / "src/cotsweep/report/findings_cot.yaml"
CHANCE = {"modadd": 1 / 7, "s5": 1 / 120, "isq": 0.16, "cvp": 0.5}
SOLVED_EARLY = 1200  # where a solved trial early-stops


def trial(
    task: str,
    setting: str,
    depth: int,
    length: int,
    acc: float,
    steps: int = 3000,
    seed: int = 0,
    early_stop: bool = False,
) -> TrialRecord:
    axes = {"task": task, "setting": setting, "depth": depth, "length": length, "seed": seed}
    result = {
        **axes,
        "acc": acc,
        "chance": CHANCE[task],
        "steps": steps,
        "tokens_seen": steps * 128 * (2 * length + 2),
        "stop_reason": "early_stop" if early_stop else "completed",
    }
    tid = f"{task}-{setting}-d{depth}-n{length}-s{seed}"
    return TrialRecord(id=tid, state=DONE, axes=axes, result=result)


def solved_cot(task: str, depth: int, length: int) -> TrialRecord:
    return trial(task, "cot", depth, length, 1.0, steps=SOLVED_EARLY, early_stop=True)


def judge(records: list[TrialRecord]) -> dict[str, Verdict]:
    _, verdicts = check_findings(FINDINGS, records)
    return {v.finding.id: v for v in verdicts}


# ---------------------------------------------------------------- chance is not a figure
def test_s5_base_at_chance_is_not_about_20_percent():
    records = [solved_cot("s5", 1, 4), trial("s5", "base", 1, 4, 0.009)]
    v = judge(records)
    assert v["s5-base-about-20"].status == NOT_REPRODUCED
    assert "chance 0.008" in v["s5-base-about-20"].ours
    # the contrast itself is what the paper found, and it holds at this budget
    assert v["s5-cot-beats-base"].status == REPRODUCED
    assert v["s5-cot-beats-base"].ours.startswith("+1.00 (1.00 vs 0.01)")
    # at 0.20 the figure is reproduced too
    v = judge([solved_cot("s5", 1, 4), trial("s5", "base", 1, 4, 0.21)])
    assert v["s5-base-about-20"].status == REPRODUCED


def test_cvp_base_at_chance_does_not_pass_a_fails_rule_by_default():
    # chance on cvp is 0.5: a contrast on the chance scale needs cot far above it, not acc <= 0.5
    v = judge([trial("cvp", "cot", 1, 8, 0.74), trial("cvp", "base", 1, 8, 0.5)])
    assert v["cvp-cot-beats-base"].status == NOT_REPRODUCED  # (0.74 - 0.5)/0.5 = 0.48 < 0.5
    v = judge([trial("cvp", "cot", 1, 8, 0.99), trial("cvp", "base", 1, 8, 0.5)])
    assert v["cvp-cot-beats-base"].status == REPRODUCED


def test_a_sweep_at_chance_everywhere_reproduces_only_claims_of_failure():
    """A trainer that learns nothing (every setting at chance, full budget, the CPU study's grid
    and the paper's depths) reproduces no claim that a setting learns, solves or beats another:
    only 'base fails' and cvp's 'about 50 % at 4 layers' (chance there is the paper's figure)."""
    records = [
        trial(task, setting, depth, length, CHANCE[task])
        for task in CHANCE
        for setting in ("base", "hint", "cot")
        for depth in (1, 2, 4, 8, 16)
        for length in (8, 16)
    ]
    reproduced = {k for k, x in judge(records).items() if x.status == REPRODUCED}
    assert reproduced == {"isq-base-fails-16-layers", "cvp-base-4-layers"}


# ---------------------------------------------------------------- budgets
def test_a_too_short_run_is_never_reproduced():
    """Every trial of a full small grid stopped at 800 steps: nothing may be marked reproduced
    except what a trial finished by solving (early stop) shows."""
    records = []
    for task, depth in itertools.product(CHANCE, (1, 2, 4)):
        for setting in ("base", "hint"):
            records.append(trial(task, setting, depth, 4, CHANCE[task] + 0.01, steps=800))
        records.append(trial(task, "cot", depth, 4, 0.6, steps=800))  # not yet solved
    v = judge(records)
    assert REPRODUCED not in {x.status for x in v.values()}, {
        k: x.status for k, x in v.items() if x.status == REPRODUCED
    }
    for fid in ("s5-base-about-20", "isq-base-fails-16-layers", "modadd-base-learns"):
        assert v[fid].status == INCONCLUSIVE, (fid, v[fid].status)
        assert "budget of 3000 steps" in v[fid].reason and "800 steps" in v[fid].reason


def test_short_base_against_solved_cot_is_inconclusive_until_base_trains_the_budget():
    short = [solved_cot("isq", 1, 8), trial("isq", "base", 1, 8, 0.2, steps=800)]
    v = judge(short)["isq-cot-beats-base"]
    assert v.status == INCONCLUSIVE
    assert "counterpart 800 steps" in v.reason
    full = [solved_cot("isq", 1, 8), trial("isq", "base", 1, 8, 0.2, steps=3000)]
    assert judge(full)["isq-cot-beats-base"].status == REPRODUCED


def test_short_runs_that_already_decide_the_question_are_evidence():
    # modadd base solved within 800 steps: "learns it" stands whatever more training would do
    v = judge([trial("modadd", "base", 1, 4, 0.99, steps=800)])
    assert v["modadd-base-learns"].status == REPRODUCED
    # isq base solved at 800 steps: "fails" cannot become true with more training
    v = judge([solved_cot("isq", 1, 8), trial("isq", "base", 1, 8, 0.99, steps=800)])
    assert v["isq-base-fails-16-layers"].status == NOT_REPRODUCED


# ---------------------------------------------------------------- loud contradictions
def test_base_solving_isq_at_depth_1_is_not_reproduced_loudly_without_depth_16():
    records = [solved_cot("isq", 1, 8), trial("isq", "base", 1, 8, 1.0)]
    v = judge(records)
    for fid in ("isq-cot-beats-base", "isq-base-fails-16-layers"):
        assert v[fid].status == NOT_REPRODUCED, fid
        assert "base SOLVES isq at d=1 n=8 (acc 1.00)" in v[fid].alarm
        assert v[fid].reason == v[fid].alarm


def test_base_solving_with_a_layer_per_serial_step_is_no_contradiction():
    # cvp n=4 solved by a 4-layer base model: a layer per gate; the figure "≈ 50 %" fails, quietly
    v = judge([trial("cvp", "base", 4, 4, 1.0), trial("cvp", "cot", 4, 4, 1.0)])
    assert v["cvp-base-4-layers"].status == NOT_REPRODUCED
    assert v["cvp-base-4-layers"].alarm == ""
    # at n=8 the same model has fewer layers than gates: loud
    v = judge([trial("cvp", "base", 4, 8, 1.0)])
    assert "base SOLVES cvp at d=4 n=8" in v["cvp-base-4-layers"].alarm


# ---------------------------------------------------------------- contrasts at the same points
def test_a_contrast_compares_only_the_same_depth_and_length():
    # cot at depth 1 and base at depth 2 only: no point has its counterpart
    v = judge([solved_cot("s5", 1, 4), trial("s5", "base", 2, 4, 0.01)])
    assert v["s5-cot-beats-base"].status == NOT_RUN
    v = judge(
        [
            solved_cot("s5", 1, 4),
            trial("s5", "base", 1, 4, 0.01),
            solved_cot("s5", 2, 4),
            trial("s5", "base", 2, 4, 0.97),  # base solves at depth 2 < n = 4
        ]
    )["s5-cot-beats-base"]
    assert v.status == NOT_REPRODUCED and "d=2" in v.alarm
    assert [lab for lab, _ in v.points] == ["d=1", "d=2"]


def test_cvp_base_improves_with_depth_compares_deepest_with_shallowest():
    records = [trial("cvp", "base", d, 4, a) for d, a in ((1, 0.55), (2, 0.6), (4, 0.8))]
    v = judge(records)["cvp-base-improves-with-depth"]
    assert v.status == REPRODUCED and v.ours.startswith("+0.25")
    records = [trial("cvp", "base", d, 4, 0.55) for d in (1, 2, 4)]
    assert judge(records)["cvp-base-improves-with-depth"].status == NOT_REPRODUCED


@pytest.mark.parametrize("bad", [{"budget": {"epochs": 3}}, {"scale": "log"}])
def test_a_malformed_rule_is_refused(tmp_path, bad):
    import yaml

    rule = {
        "id": "x",
        "claim": "c",
        "reported": "r",
        "where": {"task": "s5"},
        "check": {"op": ">=", "value": 0.5},
        **bad,
    }
    path = tmp_path / "f.yaml"
    path.write_text(yaml.safe_dump({"findings": [rule]}))
    with pytest.raises(ValueError, match="finding x"):
        check_findings(path, [])
