"""The causal study's examples as data: one question, the published files read back, statistics.

:class:`Example` is one premise and question, whether generated
(:mod:`cotsweep.tasks.causal`) or read from a published file.

The official repository (github.com/AniketVashishtha/Causal_Axioms, folder
``eval_transitivity/``) holds its evaluation sets as Python pickles, each one
``dict``: the whole prompt text -> ``"Yes"`` or ``"No"``::

    V causes f. f causes jbj. ag causes jbj. Does V cause f?      -> "Yes"

They are read with :func:`cotsweep.plain_pickle.load_plain` (no code in a file
ever runs) and every prompt is parsed back into sentences and a question, so
the model reads exactly the published questions with their published labels.
A suite's name follows from where the file sits in the published layout:

==============================================================  ================
``simple_linear*/N_len_test.pkl``                               ``seq_N``
``complex_linear*/N_len_test.pkl``                              ``flip_N``
``*reversal*/N_len_test.pkl``                                   ``reversal_N``
``N_node_branching_14_bfactor.pkl``                             ``branch_N_bf14``
``N_node_branching_2_bfactor.pkl``, ``N_node_branching.pkl``    ``branch_N_bf20``
==============================================================  ================

The names are the files' names, not what the files hold: the published
``simple_linear_subset_test/10_len_test.pkl`` holds 15-node chains (STUDIES.md
§2), and ``seq_10`` read from it is scored on those. The two ``bf20`` names are
byte-identical files in the published folder; one is kept.

:func:`suite_statistics` measures any list of examples the way
``shared/reference/causal-eval-files.md`` measures the published files, so the
suites built here can be compared with them (tests/test_causal_official.py).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cotsweep.plain_pickle import PlainPickleError, load_plain

YES, NO = "Yes", "No"  # the labels: words of the vocabulary and the files' values

_NAME = r"[A-Za-z0-9]+"
_PROMPT = re.compile(rf"(?:{_NAME} causes {_NAME}\. )+Does {_NAME} cause {_NAME}\?")
_SENTENCE = re.compile(rf"({_NAME}) causes ({_NAME})\. ")
_QUESTION = re.compile(rf"Does ({_NAME}) cause ({_NAME})\?$")
_LEN_FILE = re.compile(r"(\d+)_len_test")
_BRANCH_FILE = re.compile(r"(\d+)_node_branching(?:_(14|2)_bfactor)?")


@dataclass(frozen=True)
class Example:
    """One premise and question: sentences in the order they are read."""

    edges: tuple[tuple[str, str], ...]
    query: tuple[str, str]
    label: bool
    kind: str  # sequential | flipped | reversed | branching | published

    @property
    def text(self) -> str:
        premise = " ".join(f"{a} causes {b}." for a, b in self.edges)
        return f"{premise} Does {self.query[0]} cause {self.query[1]}?"

    @property
    def answer(self) -> str:
        return YES if self.label else NO


def descendants(edges: Sequence[tuple[str, str]]) -> dict[str, set[str]]:
    """Every mentioned node -> the nodes a directed path from it reaches."""
    children: dict[str, list[str]] = {}
    for a, b in edges:
        children.setdefault(a, []).append(b)
        children.setdefault(b, [])
    out: dict[str, set[str]] = {}
    for start in children:
        seen: set[str] = set()
        stack = list(children[start])
        while stack:
            v = stack.pop()
            if v not in seen:
                seen.add(v)
                stack.extend(children[v])
        out[start] = seen
    return out


@dataclass(frozen=True)
class PublishedSuite:
    name: str  # our suite name (seq_N, flip_N, reversal_N, branch_N_bfK)
    path: Path
    examples: tuple[Example, ...]


def parse_prompt(text: str) -> tuple[tuple[tuple[str, str], ...], tuple[str, str]] | None:
    """A published prompt's sentences (cause, effect) and question (x, y); None if it is not one."""
    if not _PROMPT.fullmatch(text):
        return None
    premise, question = text.rsplit(" Does ", 1)
    edges = tuple(_SENTENCE.findall(premise + " "))
    query = _QUESTION.match("Does " + question)
    assert query is not None  # the full match above guarantees both parts
    return edges, (query.group(1), query.group(2))


def read_published_file(path: Path | str) -> tuple[Example, ...]:
    """Every question of one published file, in the file's order, with the file's own labels.

    Raises PlainPickleError naming the file for a file that is not one dict of
    prompt text -> "Yes"/"No" over letter-and-digit node names.
    """
    data = load_plain(path)
    if not isinstance(data, dict) or not data:
        raise PlainPickleError(
            path, f"expected one non-empty dict of prompt -> 'Yes'/'No', got {type(data).__name__}"
        )
    out = []
    for key, value in data.items():
        parsed = parse_prompt(key) if isinstance(key, str) else None
        if parsed is None:
            raise PlainPickleError(
                path,
                f"prompt {str(key)[:60]!r} is not 'A causes B. ... Does X cause Y?' over "
                "letter-and-digit names",
            )
        if value not in (YES, NO):
            raise PlainPickleError(path, f"label {str(value)[:20]!r} is neither 'Yes' nor 'No'")
        edges, query = parsed
        out.append(Example(edges=edges, query=query, label=value == YES, kind="published"))
    return tuple(out)


def suite_name_of(path: Path) -> str | None:
    """The suite a published file stands for, from its name and its folder's; None if unknown."""
    folder = path.parent.name.lower()
    if m := _LEN_FILE.fullmatch(path.stem):
        for marker, family in (
            ("simple_linear", "seq"),
            ("complex_linear", "flip"),
            ("reversal", "reversal"),
        ):
            if marker in folder:
                return f"{family}_{m.group(1)}"
        return None
    if m := _BRANCH_FILE.fullmatch(path.stem):
        return f"branch_{m.group(1)}_bf{'14' if m.group(2) == '14' else '20'}"
    return None


def published_suites(folder: Path | str) -> dict[str, PublishedSuite]:
    """The suites of every published evaluation file under ``folder``, by suite name.

    Raises PlainPickleError naming the folder or file: a folder with no
    ``*.pkl``, a file outside the published layout, two different files for one
    suite, or a file that is not plain prompt -> label data.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise PlainPickleError(
            root, "not a folder (task.eval_files names the folder of the .pkl files)"
        )
    files = sorted(root.rglob("*.pkl"))
    if not files:
        raise PlainPickleError(root, "holds no .pkl evaluation file")
    suites: dict[str, PublishedSuite] = {}
    for path in files:
        name = suite_name_of(path)
        if name is None:
            raise PlainPickleError(
                path,
                "not a published evaluation file: expected N_len_test.pkl under a "
                "simple_linear*, complex_linear* or *reversal* folder, or "
                "N_node_branching[_14_bfactor|_2_bfactor].pkl",
            )
        if name in suites:
            if suites[name].path.read_bytes() != path.read_bytes():
                raise PlainPickleError(
                    path, f"a second, different file for suite {name} (first: {suites[name].path})"
                )
            if "_bfactor" not in path.stem:  # byte-identical twins: keep the explicit name
                continue
        suites[name] = PublishedSuite(name, path, read_published_file(path))
    return dict(sorted(suites.items()))


# ---------------------------------------------------------------- statistics
def chain_order(edges: Sequence[tuple[str, str]]) -> list[str] | None:
    """The nodes of a chain whose sentences are listed along it; None if they do not continue each other."""
    if not edges:
        return None
    if len(edges) == 1:
        return list(edges[0])
    shared = set(edges[0]) & set(edges[1])
    if len(shared) != 1:
        return None
    (v1,) = shared
    rest = [v for v in edges[0] if v != v1]
    nodes = [rest[0] if rest else v1, v1]
    for e in edges[1:]:
        if nodes[-1] not in e:
            return None
        nxt = [v for v in e if v != nodes[-1]]
        nodes.append(nxt[0] if nxt else nodes[-1])
    return nodes


@dataclass(frozen=True)
class SuiteStats:
    """What causal-eval-files.md measures per file, and what the issue adds (flips, hops)."""

    questions: int
    yes: float  # share of Yes labels
    premises: int  # distinct premises (graphs) the questions use
    nodes_min: int  # nodes mentioned per premise
    nodes_max: int
    nodes_mean: float  # over the questions
    name_len: float  # mean name length over each question's premise nodes, over the questions
    max_name: int
    names: int  # distinct names over the whole suite
    outside: float  # share of questions naming a node no sentence mentions
    conflicts: int  # labels that disagree with a path search over the premise's own sentences
    flip: float | None  # chains: share of sentences against the chain's direction, over premises
    hop_yes: float | None  # chains: mean signed distance along the chain from X to Y, Yes questions
    hop_no: float | None  # the same over No questions


def suite_statistics(examples: Sequence[Example], reversed_listing: bool = False) -> SuiteStats:
    """Measure a suite as causal-eval-files.md measures the published files.

    ``reversed_listing``: the sentences run back to front along the chain (reversal suites).
    """
    nodes_of = [sorted({v for e in ex.edges for v in e}) for ex in examples]
    premises = {ex.edges for ex in examples}
    flips = sentences = 0
    orders: dict[tuple, list[str] | None] = {}
    for edges in premises:
        listing = list(reversed(edges)) if reversed_listing else list(edges)
        order = orders[edges] = chain_order(listing)
        if order is not None:
            sentences += len(listing)
            flips += sum(a == order[i + 1] for i, (a, _) in enumerate(listing))
    hops: dict[bool, list[int]] = {True: [], False: []}
    for ex in examples:
        order = orders[ex.edges]
        if order is not None and all(v in order for v in ex.query):
            pos: dict[str, int] = {}
            for i, v in enumerate(order):
                pos.setdefault(v, i)
            hops[ex.label].append(pos[ex.query[1]] - pos[ex.query[0]])
    conflicts = sum(ex.label != _reachable(ex.edges, *ex.query) for ex in examples)
    is_chain = all(o is not None for o in orders.values())
    return SuiteStats(
        questions=len(examples),
        yes=sum(ex.label for ex in examples) / len(examples),
        premises=len(premises),
        nodes_min=min(map(len, nodes_of)),
        nodes_max=max(map(len, nodes_of)),
        nodes_mean=statistics.fmean(map(len, nodes_of)),
        name_len=statistics.fmean(len(v) for ns in nodes_of for v in ns),
        max_name=max(len(v) for ns in nodes_of for v in ns),
        names=len({v for ns in nodes_of for v in ns}),
        outside=sum(
            any(v not in ns for v in ex.query) for ex, ns in zip(examples, nodes_of, strict=True)
        )
        / len(examples),
        conflicts=conflicts,
        flip=flips / sentences if is_chain and sentences else None,
        hop_yes=statistics.fmean(hops[True]) if is_chain and hops[True] else None,
        hop_no=statistics.fmean(hops[False]) if is_chain and hops[False] else None,
    )


def _reachable(edges: Sequence[tuple[str, str]], x: str, y: str) -> bool:
    return y in descendants(edges).get(x, set())
