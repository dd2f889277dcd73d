"""Causal transitivity evaluated the way the published numbers were measured (STUDIES.md §2).

Three things are checked here, with no network and no published file in the
repository:

* the official-style suites have the statistics of the published evaluation
  files (:data:`PUBLISHED`, measured on them: the first columns are those of
  shared/reference/causal-eval-files.md, the rest measured by
  ``suite_statistics`` on the same files, recorded in STUDIES.md §2);
* the published files' reader refuses a pickle that carries code, without
  running it (a crafted file that would create a file if executed), and reads a
  crafted file in the published layout exactly;
* the original model's training choices (hold-out, one order) do what they say,
  and the report names the kind of suite behind every figure.
"""

from __future__ import annotations

import math
import pickle
import statistics
from pathlib import Path

import pytest
import torch
from conftest import tiny_cfg
from test_causal import task_for

from cotsweep.cli import EXIT_BAD_INPUT, main
from cotsweep.plain_pickle import PlainPickleError, load_plain
from cotsweep.report import ReportContext, load_trials
from cotsweep.report.causal import causal_section
from cotsweep.tasks import IGNORE, ConfigError
from cotsweep.tasks.causal import STOI, Causal, Example
from cotsweep.tasks.causal_examples import (
    SuiteStats,
    published_suites,
    read_published_file,
    suite_statistics,
)
from cotsweep.trial import run_trial

# Per published file: (premises, Yes share, nodes min, max, mean, name length, outside share,
# flip rate, hop Yes, hop No). Premises, Yes, nodes and name length: causal-eval-files.md;
# outside, flip and hops: suite_statistics on the same files. seq_10 is the file named for
# 10 nodes, which holds 15-node chains.
PUBLISHED: dict[str, tuple] = {
    "seq_7": (12, 0.50, 7, 7, 7.0, 1.42, 0.0, 0.0, 2.68, -2.68),
    "seq_8": (9, 0.50, 8, 8, 8.0, 1.99, 0.0, 0.0, 3.01, -3.01),
    "seq_9": (7, 0.50, 9, 9, 9.0, 1.94, 0.0, 0.0, 3.35, -3.35),
    "seq_10": (3, 0.50, 15, 15, 15.0, 2.01, 0.0, 0.0, 5.58, -5.58),
    "seq_11": (5, 0.50, 11, 11, 11.0, 2.21, 0.0, 0.0, 4.09, -4.09),
    "seq_12": (4, 0.50, 12, 12, 12.0, 2.14, 0.0, 0.0, 4.44, -4.44),
    "seq_13": (4, 0.50, 13, 13, 13.0, 2.02, 0.0, 0.0, 4.72, -4.72),
    "seq_14": (3, 0.50, 14, 14, 14.0, 1.98, 0.0, 0.0, 5.18, -5.18),
    "seq_15": (3, 0.50, 15, 15, 15.0, 1.99, 0.0, 0.0, 5.58, -5.58),
    "seq_20": (2, 0.50, 20, 20, 20.0, 2.00, 0.0, 0.0, 7.46, -7.46),
    "seq_50": (1, 0.50, 49, 49, 49.0, 2.10, 0.0, 0.0, 22.50, -21.48),
    "flip_7": (26, 0.50, 7, 7, 7.0, 2.15, 0.0, 0.494, 0.19, 0.09),
    "flip_8": (20, 0.50, 8, 8, 8.0, 1.81, 0.0, 0.529, -0.12, 0.39),
    "flip_9": (19, 0.50, 9, 9, 9.0, 2.03, 0.0, 0.507, -0.13, 0.38),
    "flip_10": (16, 0.50, 10, 10, 10.0, 2.07, 0.0, 0.521, -0.32, 0.53),
    "flip_11": (16, 0.50, 11, 11, 11.0, 2.01, 0.0, 0.500, 0.13, 0.28),
    "flip_12": (13, 0.50, 12, 12, 12.0, 1.92, 0.0, 0.510, 0.16, 0.87),
    "flip_13": (12, 0.50, 13, 13, 13.0, 2.42, 0.0, 0.493, -0.25, 0.41),
    "flip_14": (12, 0.50, 14, 14, 14.0, 2.02, 0.0, 0.513, -0.02, 1.36),
    "flip_15": (9, 0.50, 15, 15, 15.0, 1.95, 0.0, 0.421, 0.71, 1.70),
    "flip_20": (7, 0.50, 19, 20, 19.1, 1.91, 0.0, 0.511, -0.65, 1.16),
    "flip_50": (3, 0.50, 49, 50, 49.2, 2.12, 0.0, 0.463, 0.93, 23.32),
    "reversal_3": (84, 0.50, 3, 3, 3.0, 1.93, 0.0, 0.0, 1.33, -1.33),
    "reversal_4": (42, 0.50, 4, 4, 4.0, 1.83, 0.0, 0.0, 1.67, -1.67),
    "reversal_5": (25, 0.50, 5, 5, 5.0, 1.95, 0.0, 0.0, 2.00, -2.00),
    "reversal_6": (17, 0.50, 6, 6, 6.0, 2.01, 0.0, 0.0, 2.34, -2.34),
    "branch_5_bf14": (292, 0.51, 5, 5, 5.0, 1.99, 0.000, None, None, None),
    "branch_8_bf14": (289, 0.50, 6, 8, 7.8, 2.02, 0.026, None, None, None),
    "branch_10_bf14": (277, 0.50, 8, 10, 9.8, 2.03, 0.024, None, None, None),
    "branch_12_bf14": (281, 0.51, 8, 12, 11.5, 2.02, 0.044, None, None, None),
    "branch_5_bf20": (286, 0.50, 5, 5, 5.0, 2.01, 0.000, None, None, None),
    "branch_8_bf20": (278, 0.49, 7, 8, 8.0, 2.00, 0.002, None, None, None),
    "branch_10_bf20": (284, 0.49, 8, 10, 9.9, 2.01, 0.004, None, None, None),
    "branch_12_bf20": (280, 0.50, 11, 12, 11.9, 2.00, 0.008, None, None, None),
}
FIELDS = ("premises", "yes", "nodes_min", "nodes_max", "nodes_mean", "name_len", "outside")
FIELDS += ("flip", "hop_yes", "hop_no")
SEEDS = range(4)
# the published file for "10" holds 15-node chains: its statistics are our 15-node suite's
OURS_FOR = {"seq_10": "seq_15"}


def published(name: str) -> dict:
    return dict(zip(FIELDS, PUBLISHED[name], strict=True))


@pytest.fixture(scope="module")
def kinds() -> dict[str, Causal]:
    """The task with official-style suites and with independent ones."""
    return {k: task_for(f"task.suite_kind={k}") for k in ("official", "independent")}


@pytest.fixture(scope="module")
def drawn(kinds: dict[str, Causal]) -> dict[str, list[SuiteStats]]:
    """Every official-style suite at the published size, drawn for several evaluation seeds."""
    names = sorted({OURS_FOR.get(n, n) for n in PUBLISHED})
    task = kinds["official"]
    return {
        name: [
            suite_statistics(task.suite_examples(name, 500, seed), name.startswith("reversal"))
            for seed in SEEDS
        ]
        for name in names
    }


def mean(stats: list[SuiteStats], field: str) -> float:
    return statistics.fmean(getattr(s, field) for s in stats)


CHAINS = [n for n in PUBLISHED if not n.startswith("branch")]
BRANCHES = [n for n in PUBLISHED if n.startswith("branch")]


# ---------------------------------------------------------------- suites against the published files
@pytest.mark.parametrize("name", CHAINS)
def test_chain_suites_use_as_few_graphs_as_the_published_files(
    drawn, kinds: dict[str, Causal], name: str
) -> None:
    pub, ours = published(name), drawn[OURS_FOR.get(name, name)]
    if name.startswith(("seq", "reversal")):
        # every chain gives all its pairs until 250 Yes and 250 No: the count is fixed
        assert {s.premises for s in ours} == {pub["premises"]}
    else:  # flipped chains have fewer Yes pairs, a random number of them
        assert abs(mean(ours, "premises") - pub["premises"]) <= max(2.5, 0.2 * pub["premises"])
    fresh = kinds["independent"].suite_examples(name, 60, 0)
    assert len({ex.edges for ex in fresh}) == 60, "independent: a graph per question"


def test_flipped_suites_use_as_many_graphs_in_all(kinds: dict[str, Causal]) -> None:
    task = kinds["official"]
    flips = [n for n in PUBLISHED if n.startswith("flip")]
    ours = sum(
        len({ex.edges for ex in task.suite_examples(n, 500, s)}) for n in flips for s in (0, 1)
    )
    assert abs(ours / 2 - sum(published(n)["premises"] for n in flips)) <= 0.1 * 153


@pytest.mark.parametrize("name", CHAINS)
def test_questions_span_the_published_hop_distances(drawn, name: str) -> None:
    pub, ours = published(name), drawn[OURS_FOR.get(name, name)]
    if name.startswith(("seq", "reversal")):
        # Yes: every later node along the chain; No: the same pairs reversed. The 50-node file
        # has one name twice (49 names, 21 labels its own text contradicts): 8% apart
        tol = 0.08 * abs(pub["hop_yes"]) if name == "seq_50" else 0.01
        assert abs(mean(ours, "hop_yes") - pub["hop_yes"]) <= tol
        assert abs(mean(ours, "hop_no") - pub["hop_no"]) <= tol
    else:  # forks and colliders: Yes runs either way along the chain, a few steps
        assert abs(mean(ours, "hop_yes") - pub["hop_yes"]) <= 1.2
        assert abs(mean(ours, "hop_no") - pub["hop_no"]) <= 1.5


def test_flip_rates_match_the_published_files(drawn) -> None:
    flips = [n for n in PUBLISHED if n.startswith("flip")]
    for name in flips:  # each file is a handful of chains: 0.42-0.53 published
        pub = published(name)
        edges = pub["premises"] * (pub["nodes_max"] - 1)
        spread = 3 * math.sqrt(0.25 / edges)  # three standard deviations of a file's flip rate
        assert abs(mean(drawn[name], "flip") - pub["flip"]) <= spread + 0.02, name
    ours = statistics.fmean(mean(drawn[n], "flip") for n in flips)
    theirs = statistics.fmean(published(n)["flip"] for n in flips)
    assert abs(ours - theirs) <= 0.03 and abs(theirs - 0.5) <= 0.03
    assert all(s.flip == 0.0 for n in drawn if n.startswith("seq") for s in drawn[n])


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_node_counts_names_and_yes_share_match(drawn, name: str) -> None:
    pub, ours = published(name), drawn[OURS_FOR.get(name, name)]
    for s in ours:
        assert s.yes == 0.5 and abs(pub["yes"] - 0.5) <= 0.011  # published: 0.49-0.51
        assert s.max_name <= 3 and s.conflicts == 0
    assert max(s.max_name for s in ours) == 3
    if name.startswith("branch"):  # isolated nodes are not mentioned; published names repeat
        assert abs(mean(ours, "nodes_mean") - pub["nodes_mean"]) <= 0.15
        assert min(s.nodes_min for s in ours) <= pub["nodes_min"] + 1
    else:  # chains: every node mentioned; the published 20/50-node files repeat a name
        n = ours[0].nodes_max
        assert all(s.nodes_min == s.nodes_max == n for s in ours)
        assert pub["nodes_min"] <= n and n - pub["nodes_max"] <= 1


def test_name_lengths_match_over_all_files(drawn) -> None:
    ours = statistics.fmean(mean(drawn[OURS_FOR.get(n, n)], "name_len") for n in PUBLISHED)
    theirs = statistics.fmean(published(n)["name_len"] for n in PUBLISHED)
    assert abs(ours - theirs) <= 0.05  # 1-3 characters, uniform: mean 2
    # a published chain file draws all its chains' names from 12-15 names; so do ours
    for name in ("seq_7", "seq_12", "flip_9", "flip_14", "reversal_4"):
        assert all(13 <= s.names <= 16 for s in drawn[name]), name


@pytest.mark.parametrize("name", BRANCHES)
def test_branching_suites_match_the_published_files(
    drawn, kinds: dict[str, Causal], name: str
) -> None:
    pub, ours = published(name), drawn[name]
    # one Yes and one No question on each of 300 graphs, 500 kept: about 290 graphs. The
    # published generator also dropped graphs whose repeated names made a cycle: 277-292
    assert abs(mean(ours, "premises") - pub["premises"]) <= 18
    # a node no sentence mentions is asked about now and then, more with fewer edges
    assert abs(mean(ours, "outside") - pub["outside"]) <= 0.015
    n, k = (int(v) for v in name.removeprefix("branch_").split("_bf"))
    for ex in kinds["official"].suite_examples(name, 100, 0):
        assert len(ex.edges) == int(n * k / 10)
        causes = [a for a, _ in ex.edges]
        blocks = [a for i, a in enumerate(causes) if i == 0 or causes[i - 1] != a]
        assert len(blocks) == len(set(blocks)), "sentences grouped by cause node"


# ---------------------------------------------------------------- the restricted reader
class WouldCreateAFile:
    """Pickled, it names ``open(path, "w")``: unpickling it with pickle.load creates the file."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("wrapped", [False, True])
def test_reader_refuses_a_pickle_that_carries_code(
    tmp_path: Path, protocol: int, wrapped: bool
) -> None:
    marker = tmp_path / "executed"
    payload = WouldCreateAFile(marker)
    data = {"a causes b. Does a cause b?": payload} if wrapped else payload
    evil = tmp_path / "7_len_test.pkl"
    evil.write_bytes(pickle.dumps(data, protocol=protocol))
    with pytest.raises(PlainPickleError) as e:
        load_plain(evil)
    message = str(e.value)
    assert str(evil) in message and "\n" not in message and "refused" in message
    assert not marker.exists(), "the reader ran the pickle's code"
    # the control: the same bytes through pickle.load do run it, so the test can fail
    opened = pickle.loads(evil.read_bytes())
    (opened["a causes b. Does a cause b?"] if wrapped else opened).close()
    assert marker.exists()


def test_reader_refuses_what_is_not_prompt_to_label_data(tmp_path: Path) -> None:
    cases = {
        "junk.pkl": b"not a pickle at all",
        "cut.pkl": pickle.dumps({"a causes b. Does a cause b?": "Yes"})[:-5],
        "list.pkl": pickle.dumps(["a causes b. Does a cause b?"]),
        "label.pkl": pickle.dumps({"a causes b. Does a cause b?": "Maybe"}),
        "prompt.pkl": pickle.dumps({"a leads to b. Does a cause b?": "Yes"}),
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(PlainPickleError) as e:
            read_published_file(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value), name


def write_published(path: Path, examples: list[Example]) -> None:
    """A file as the published ones are: one dict, prompt text -> "Yes"/"No", protocol 4."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({ex.text: ex.answer for ex in examples}, protocol=4))


@pytest.fixture
def published_folder(tmp_path: Path) -> Path:
    """The published layout in miniature, made of our own official-style suites."""
    task = task_for("task.suite_kind=official")
    root = tmp_path / "eval_transitivity"
    linear = root / "simple_linear_long" / "simple_linear_subset_test"
    write_published(linear / "7_len_test.pkl", task.suite_examples("seq_7", 40, 0))
    # as published: the file named for 10 nodes holds 15-node chains
    write_published(linear / "10_len_test.pkl", task.suite_examples("seq_15", 40, 0))
    write_published(
        root / "complex_linear_" / "8_len_test.pkl", task.suite_examples("flip_8", 30, 0)
    )
    reversal = task.suite_examples("reversal_3", 20, 0)
    # a label the premise contradicts, as the published files have (a name used twice):
    # the reader keeps the file's label, it does not recompute it
    reversal[0] = Example(reversal[0].edges, reversal[0].query, not reversal[0].label, "x")
    write_published(root / "test_data_reversal_transitivity" / "3_len_test.pkl", reversal)
    branching = root / "branching_transitivity"
    write_published(
        branching / "5_node_branching_14_bfactor.pkl", task.suite_examples("branch_5_bf14", 20, 0)
    )
    twin = task.suite_examples("branch_5_bf20", 20, 0)
    write_published(branching / "5_node_branching_2_bfactor.pkl", twin)
    write_published(branching / "5_node_branching.pkl", twin)  # byte-identical, as published
    (branching / "5_node_branching.txt").write_text("the published folders hold text dumps too")
    return root


def test_a_published_layout_is_read_exactly(published_folder: Path) -> None:
    suites = published_suites(published_folder)
    assert list(suites) == [
        "branch_5_bf14",
        "branch_5_bf20",
        "flip_8",
        "reversal_3",
        "seq_10",
        "seq_7",
    ]
    for name, suite in suites.items():
        on_disk = pickle.loads(suite.path.read_bytes())  # our own files: safe to load here
        assert [(ex.text, ex.answer) for ex in suite.examples] == list(on_disk.items()), name
    assert suites["branch_5_bf20"].path.name == "5_node_branching_2_bfactor.pkl"
    assert {len({v for e in ex.edges for v in e}) for ex in suites["seq_10"].examples} == {15}
    stats = suite_statistics(suites["reversal_3"].examples, reversed_listing=True)
    assert stats.conflicts == 1 and stats.questions == 20

    task = task_for(f"task.eval_files={published_folder}")
    assert task.suite_names == list(suites)
    assert task.suite_examples("reversal_3", 500, seed=9) == list(suites["reversal_3"].examples)
    longest = max(len(task.describe(ex)["tokens"]) for s in suites.values() for ex in s.examples)
    assert task.model_spec().seq_len >= longest


def test_a_trial_scores_the_published_questions(published_folder: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg(
        [
            "task=causal",
            f"task.eval_files={published_folder}",
            "train.steps=4",
            "train.eval_every=4",
            "train.batch_size=8",
            "train.eval_size=16",
            "run.log_every=2",
        ]
    )
    ev = run_trial(cfg, tmp_path / "trial")["eval"]
    sizes = {n: len(s.examples) for n, s in published_suites(published_folder).items()}
    assert set(ev) == {"acc", *(f"acc/{n}" for n in sizes)}
    for name, size in sizes.items():  # every question of the file, and only those
        assert math.isclose(ev[f"acc/{name}"] * size, round(ev[f"acc/{name}"] * size))


def test_a_folder_holding_code_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "eval_transitivity" / "complex_linear_"
    folder.mkdir(parents=True)
    marker = tmp_path / "executed"
    evil = folder / "7_len_test.pkl"
    evil.write_bytes(pickle.dumps({"a causes b. Does a cause b?": WouldCreateAFile(marker)}))
    with pytest.raises(ConfigError) as e:
        task_for(f"task.eval_files={folder.parent}")
    assert e.value.key == "task.eval_files" and str(evil) in str(e.value)
    out = tmp_path / "trial"
    code = main(["train", "task=causal", "model=tiny", "tracking=none", "run.progress=false",
                 f"task.eval_files={folder.parent}", f"run.out_dir={out}"])  # fmt: skip
    err = "".join(capsys.readouterr().err.split())  # the console wraps long lines
    assert code == EXIT_BAD_INPUT and str(evil) in err and "refused:opcode" in err
    assert not marker.exists() and not out.exists()
    other = tmp_path / "odd"
    write_published(other / "notes.pkl", [Example((("a", "b"),), ("a", "b"), True, "x")])
    with pytest.raises(ConfigError, match="not a published evaluation file"):
        task_for(f"task.eval_files={other}")
    with pytest.raises(ConfigError, match="not a folder"):
        task_for(f"task.eval_files={tmp_path / 'missing'}")


# ---------------------------------------------------------------- the original training loop
def test_a_held_out_share_is_never_trained_on_and_one_order_is_kept() -> None:
    t = task_for("task.train_set_size=40", "task.val_fraction=0.25", "task.shuffle=false")
    assert t.val_size() == 10

    def texts(step: int) -> list[tuple]:
        b = t.train_batch(10, torch.Generator().manual_seed(3), torch.device("cpu"), step)
        return [tuple(r[r != STOI["<pad>"]].tolist()) + (int(y[y != IGNORE]),) for r, y in zip(b.x, b.y, strict=True)]  # fmt: skip

    epoch1 = texts(1) + texts(2) + texts(3)  # 30 examples left after the hold-out
    epoch2 = texts(4) + texts(5) + texts(6)
    assert epoch1 == epoch2, "shuffle=false: the same order every epoch"
    assert len(set(epoch1)) == 30
    held = t.suite_examples("val", 0, seed=5)
    assert len(held) == 10 and sum(ex.label for ex in held) == 5
    shuffled = task_for("task.train_set_size=40", "task.val_fraction=0.25")

    def order(task: Causal, step: int) -> list:
        b = task.train_batch(10, torch.Generator().manual_seed(3), torch.device("cpu"), step)
        return b.x.tolist()

    assert [order(shuffled, s) for s in (1, 2, 3)] != [order(shuffled, s) for s in (4, 5, 6)]


def test_acc_val_is_reported_and_the_report_names_the_suite_kind(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    common = [
        "task=causal",
        "task.suites=[seq_7,flip_7,branch_5_bf14]",
        "task.suite_size=20",
        "train.steps=4",
        "train.eval_every=4",
        "train.batch_size=8",
        "train.eval_size=16",
        "run.log_every=2",
    ]
    results = {}
    for kind in ("official", "independent"):
        extra = ["task.train_set_size=40", "task.val_fraction=0.1"] if kind == "official" else []
        cfg = tiny_cfg([*common, f"task.suite_kind={kind}", *extra])
        results[kind] = run_trial(cfg, sweep / "trials" / kind)
    assert (
        "acc/val" in results["official"]["eval"] and "acc/val" not in results["independent"]["eval"]
    )
    records = [r for r in load_trials(sweep) if r.task == "causal"]
    ctx = ReportContext(sweep_dir=sweep, report_dir=tmp_path / "report", records=records)
    sec = causal_section(records, ctx)
    texts = " ".join(getattr(b, "text", "") for b in sec.blocks)
    assert "official-style suites" in texts and "independent suites" in texts
    tables = [b for b in sec.blocks if b.__class__.__name__ == "Table"]
    assert all("Suites —" in t.caption for t in tables)
    rows = [row[0] for t in tables for row in t.rows]
    assert any("(official suites)" in r for r in rows) and any(
        "(independent suites)" in r for r in rows
    )
    assert "held-out training set" in tables[-1].headers
    assert all("Our suites —" in f.caption for f in sec.figures)
