"""causal: causal transitivity by axiomatic training (STUDIES.md §2, Vashishtha et al.).

A premise is a list of sentences "A causes B." over a small causal graph, the
hypothesis is "Does X cause Y?", and the label is Yes exactly when a directed
path leads from X to Y (the transitivity axiom applied as often as needed)::

    qz causes e. f causes qz. Does f cause e?      -> Yes

Tokens *(paper's tokenizer; ids ours)*: node names character by character
(``a``..``z``, ``A``..``Z``, ``0``..``9``), the words ``causes cause Does Yes
No`` and the marks ``.`` ``?`` whole, and ``<pad>``. The example above is::

    q z causes e . f causes q z . Does f cause e ?        label Yes read at "?"

Only the label is supervised, at the example's own last position (the ``?``).
Batches of different lengths are padded on the right with ``<pad>``; the model
is causal, so what follows the label position never reaches it.

Node names are 1-3 random letters or digits *(paper)*, distinct within an
example, and never one of the fixed words *(ours: "No" or "Yes" as a node name
would make the text ambiguous)*.

Training chains *(paper: 3-6 nodes)*: ``task.length`` is the largest number of
nodes of a training chain and ``task.min_length`` the smallest (*ours*: length
counts nodes, as the paper's "chains of length 7-15" do). Each chain is
*sequential* (every edge forward, listed in chain order) or *flipped* (each edge
reversed with probability ``flip_prob``, which makes forks and colliders, still
listed in chain order). The fraction of flipped chains is the training mix.
Named presets (``task.mix``) stand for the paper's training sets; the paper
names them but its exact mixes could not be read, so the numbers are *(ours)*
and can be overridden (``task.flipped_fraction``, ``task.flip_prob``):

- ``sequential``: flipped_fraction 0 -- the paper's sequential-only set;
- ``TS1``: flipped_fraction 0.5, flip_prob 0.5 *(ours)* -- half sequential,
  half flipped chains;
- ``TS2``: flipped_fraction 0.75, flip_prob 0.5 *(ours)* -- leaning to flipped
  chains; the set the reported table of STUDIES.md §2 was trained on;
- ``custom``: both values given explicitly.

(``flip_prob`` of the sequential preset only shapes the ``flip_N`` suites.)

Labels are balanced exactly: the i-th training example (and question of an
independent suite) asks a Yes question when i is odd and a No question when
even, the pair being drawn uniformly among the pairs of mentioned nodes with
that answer; an official-style suite keeps ``suite_size // 2`` Yes questions.

Training data, as ``task.train_set_size`` says: 0 draws fresh examples for every
step; N > 0 draws a fixed set of N examples once and walks through it in a new
random order every epoch, or in its own (random) order every epoch with
``task.shuffle=false`` (the official code: a DataLoader without shuffling; the
paper: about 175k examples, 100 epochs). ``task.val_fraction`` holds that share
of N out of training (the official code: 10%): the set trained on is that much
smaller, and as many examples of the same distribution, drawn apart from it from
the evaluation seed, are scored as ``acc/val``. Either
way the examples of step s are a function of the trial's seed and s alone (the
seed is the training generator's ``initial_seed()``), so a resumed trial sees
exactly the stream it would have seen, and building a batch never waits on the
device. Generation is plain Python per example (graphs are small): measured
about 50k training examples/s on one core (2.5 ms for a batch of 128, built on
the host while the device runs the previous step; the paper's 175k-example set
in about 4 s), about 3k/s for 50-node chains. Evaluation suites are drawn once
per trial and kept.

The model's answer is the likelier of Yes and No at the "?" *(ours: the paper
takes the argmax over the whole vocabulary; the two differ only where a model
puts its mass on neither word, and ours keeps chance at exactly 0.5)*.

Evaluation suites, each reported as ``acc/<suite>`` beside ``acc`` (the training
distribution), ``task.suite_size`` examples each (the paper: 500), balanced.
How a suite's questions spread over graphs is ``task.suite_kind``:

- ``official`` (default): as the published evaluation files are built
  (measured in STUDIES.md §2): chain suites draw chains one at a time and ask
  every ordered pair of each until both answers' quotas are full (a 500-question
  suite of 7-node sequential chains: 12 chains; of 50 nodes: one), their names
  an ordered subset of one pool of ``task.name_pool`` names per suite;
  branching suites ask one Yes and one No question on each of 0.6 x
  ``suite_size`` graphs, about nodes no sentence mentions too, with the
  sentences grouped by cause node (:func:`pooled_examples`,
  :func:`branching_examples`);
- ``independent``: a fresh graph for every question (the spread of the
  training data).

``task.eval_files=DIR`` replaces the suites with the published files under DIR,
read as plain data (:mod:`cotsweep.tasks.causal_examples`): exactly their
questions and labels, named ``seq_N``, ``flip_N``, ``reversal_N`` and
``branch_N_bfK`` after the files (the file named for 10 nodes holds 15-node
chains).

=================  ==========================================================
``seq_N``          sequential chain of N nodes (paper: N = 7..15, 20, 50)
``flip_N``         chain of N nodes with edges flipped with ``flip_prob``
``reversal``       sequential chain of min_length..length nodes, its sentences
                   listed in reverse order (``reversal_N``: N nodes)
``branch_N_bfK``   random DAG on N nodes with int(N * K/10) edges (paper:
                   N = 5, 8, 10, 12; K = 14 or 20, branching factor 1.4 or 2.0):
                   an Erdős-Rényi graph oriented along a random order (paper);
                   independent: sentences in random order, questions only
                   about mentioned nodes *(ours)*; official: as published
``long_names``     chains drawn as in training, with names of
                   ``long_name_min``..``long_name_max`` characters *(ours: 4-6)*
=================  ==========================================================

The model's context (``model_spec().seq_len``) is the longest sequence any of
the configured suites (or published files) or the training data can produce.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch

from cotsweep.config import Setting, TaskConfig
from cotsweep.tasks.base import IGNORE, Batch, ConfigError, ModelSpec, Task
from cotsweep.tasks.causal_examples import NO, YES, Example, descendants, published_suites
from cotsweep.tasks.registry import register

PAD, CAUSES, CAUSE, DOES, DOT, QMARK = "<pad>", "causes", "cause", "Does", ".", "?"
WORDS = (PAD, CAUSES, CAUSE, DOES, YES, NO, DOT, QMARK)
NAME_CHARS = string.ascii_letters + string.digits
ITOS = list(WORDS) + list(NAME_CHARS)
STOI = {s: i for i, s in enumerate(ITOS)}
FIXED_WORDS = frozenset((CAUSES, CAUSE, DOES, YES, NO))
SUITE_KINDS = ("official", "independent")

DEFAULT_SUITES = (
    [f"seq_{n}" for n in (*range(7, 16), 20, 50)]
    + [f"flip_{n}" for n in (*range(7, 16), 20, 50)]
    + ["reversal"]
    + [f"branch_{n}_bf{k}" for k in (14, 20) for n in (5, 8, 10, 12)]
    + ["long_names"]
)


@dataclass(frozen=True)
class Mix:
    """A training set's mix: how many chains are flipped, and how much."""

    flipped_fraction: float
    flip_prob: float


MIXES = {
    "sequential": Mix(flipped_fraction=0.0, flip_prob=0.5),
    "TS1": Mix(flipped_fraction=0.5, flip_prob=0.5),
    "TS2": Mix(flipped_fraction=0.75, flip_prob=0.5),
}


@dataclass
class CausalConfig(TaskConfig):
    name: str = "causal"
    length: int = 6  # most nodes of a training chain
    min_length: int = 3  # fewest nodes of a training chain
    mix: str = "TS2"  # sequential | TS1 | TS2 | custom
    flipped_fraction: float | None = None  # None: the preset's
    flip_prob: float | None = None  # None: the preset's
    name_min: int = 1  # characters of a node name
    name_max: int = 3
    long_name_min: int = 4  # the long_names suite
    long_name_max: int = 6
    train_set_size: int = 0  # 0: fresh examples every step; N: a fixed set trained for epochs
    val_fraction: float = 0.0  # share of the fixed set held out of training, scored as acc/val
    shuffle: bool = True  # the fixed set in a new order every epoch; false: one order throughout
    suite_size: int = 200  # examples per evaluation suite (the paper: 500)
    suite_kind: str = "official"  # official: few graphs per suite, as published | independent
    name_pool: int = 15  # official chain suites: names from one pool of max(this, N + 1); 0: fresh
    suites: list[str] = field(default_factory=lambda: list(DEFAULT_SUITES))
    eval_files: str | None = None  # a folder of the published evaluation pickles: its suites


# ---------------------------------------------------------------- examples
@dataclass(frozen=True)
class Suite:
    """How one family of examples is drawn (the training data is a suite too)."""

    name: str
    kind: str  # chain | reversal | branching
    nodes: tuple[int, int]  # fewest, most
    flipped_fraction: float = 0.0  # chains only: share of flipped chains
    flip_prob: float = 0.0
    branching: float = 0.0  # branching only: edges per node
    name_len: tuple[int, int] = (1, 3)
    style: str = "independent"  # how questions spread over graphs: independent | official
    name_pool: int = 0  # official chains: names drawn from one pool of this many per suite

    def max_edges(self) -> int:
        n = self.nodes[1]
        if self.kind == "branching":
            return min(int(n * self.branching), n * (n - 1) // 2)
        return n - 1

    def max_tokens(self) -> int:
        """The longest token sequence this suite can produce (premise and question)."""
        name = self.name_len[1]
        return self.max_edges() * (2 * name + 2) + (2 * name + 3)


def draw_names(rng: random.Random, n: int, name_len: tuple[int, int]) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        name = "".join(rng.choice(NAME_CHARS) for _ in range(rng.randint(*name_len)))
        if name not in seen and name not in FIXED_WORDS:
            seen.add(name)
            names.append(name)
    return names


def ask(
    rng: random.Random,
    edges: Sequence[tuple[str, str]],
    label: bool,
    nodes: Sequence[str] | None = None,
) -> tuple[str, str]:
    """A question with the given answer, uniform over the ordered pairs of ``nodes`` that have it.

    ``nodes``: the mentioned nodes unless given (official branching suites also
    ask about nodes no sentence mentions). Both answers always exist: any
    sentence "a causes b" gives a Yes pair (a, b) and, the graph being acyclic,
    a No pair (b, a).
    """
    reach = descendants(edges)
    nodes = list(reach) if nodes is None else list(nodes)
    pairs = [(x, y) for x in nodes for y in nodes if x != y and (y in reach.get(x, ())) == label]
    return rng.choice(pairs)


def draw_graph(
    rng: random.Random, suite: Suite, pool: Sequence[str] = ()
) -> tuple[list[str], list[tuple[str, str]], str]:
    """One premise of ``suite``: its nodes (chains: in chain order), sentences in reading order, kind.

    ``pool``: the nodes are an ordered random subset of this name sequence (official chains).
    """
    n = rng.randint(*suite.nodes)
    if pool:
        names = [pool[i] for i in sorted(rng.sample(range(len(pool)), n))]
    else:
        names = draw_names(rng, n, suite.name_len)
    if suite.kind == "branching":
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        m = min(int(n * suite.branching), len(pairs))
        chosen = rng.sample(pairs, m)  # an Erdős-Rényi graph with exactly m edges
        if suite.style == "official":
            # the published generator orients the graph along a random order and reads the
            # sentences off the adjacency matrix row by row: grouped by cause node, the causes
            # (and each one's effects) in the names' own random order
            rank = list(range(n))
            rng.shuffle(rank)
            oriented = sorted((i, j) if rank[i] < rank[j] else (j, i) for i, j in chosen)
            return names, [(names[i], names[j]) for i, j in oriented], "branching"
        # the names are random, so their index order is a random topological order;
        # the sentences come in the sampled (random) order
        return names, [(names[i], names[j]) for i, j in chosen], "branching"
    flipped = suite.kind == "chain" and rng.random() < suite.flipped_fraction
    edges = []
    for i in range(n - 1):
        a, b = names[i], names[i + 1]
        edges.append((b, a) if flipped and rng.random() < suite.flip_prob else (a, b))
    kind = "flipped" if flipped else "sequential"
    if suite.kind == "reversal":
        edges.reverse()
        kind = "reversed"
    return names, edges, kind


def draw_example(rng: random.Random, suite: Suite, label: bool) -> Example:
    _, edges, kind = draw_graph(rng, suite)
    return Example(edges=tuple(edges), query=ask(rng, edges, label), label=label, kind=kind)


def draw_examples(rng: random.Random, suite: Suite, count: int) -> list[Example]:
    """``count`` examples, exactly balanced: ``count // 2`` ask a Yes question.

    Independent style: a fresh graph per example, Yes at odd indices. Official
    style: few graphs, many questions each, as the published files are built
    (:func:`pooled_examples`, :func:`branching_examples`).
    """
    if suite.style == "official":
        build = branching_examples if suite.kind == "branching" else pooled_examples
        return build(rng, suite, count)
    return [draw_example(rng, suite, label=bool(i % 2)) for i in range(count)]


def pooled_examples(rng: random.Random, suite: Suite, count: int) -> list[Example]:
    """Chains asked about every ordered pair of their nodes until both answers' quotas are full.

    As the published chain files are built (measured in STUDIES.md §2): graphs
    are drawn one at a time; each contributes its ordered pairs in the published
    generator's order (the pairs i < j along the chain, then the same pairs
    reversed), a question kept while its answer still has room, until
    ``count // 2`` Yes and ``count - count // 2`` No questions are kept. A
    500-question suite of sequential 7-node chains thus uses 12 chains, one of
    50 nodes a single chain; flipped chains have fewer Yes pairs, so their No
    quota fills within the first few chains and the Yes questions spread over more.

    With ``suite.name_pool`` = K > 0, the suite's chains share one sequence of
    max(K, N + 1) names, each chain an ordered random subset of it (then
    flipped edge by edge), as the published chain files are: 12-15 distinct
    names per file up to 14 nodes, every chain ordered alike, so a pair of
    names recurs across a suite's chains with the same answer on sequential ones.
    A question is asked once: the published files are dicts keyed by the prompt
    text, so a chain drawn twice adds nothing (the pool is made large enough
    for the suite's questions to exist).
    """
    room = {True: count // 2, False: count - count // 2}
    out: list[Example] = []
    pool: list[str] = []
    if suite.name_pool:
        n = suite.nodes[0]
        flips = suite.flipped_fraction > 0
        # enough distinct questions of each answer for the larger quota: a sequential chain
        # has C(n, 2) of each, one with flips at least its n - 1 sentences (and them reversed)
        per_subset = 2 ** (n - 1) * (n - 1) if flips else math.comb(n, 2)
        size = max(suite.name_pool, suite.nodes[1] + 1)
        while math.comb(size, n) * per_subset < max(room.values()):
            size += 1
        pool = draw_names(rng, size, suite.name_len)
    asked: set[tuple] = set()
    while room[True] or room[False]:
        nodes, edges, kind = draw_graph(rng, suite, pool)
        reach = descendants(edges)
        forward = list(itertools.combinations(nodes, 2))
        for x, y in forward + [(y, x) for x, y in forward]:
            label = y in reach[x]
            key = (tuple(edges), x, y)
            if room[label] and key not in asked:
                asked.add(key)
                room[label] -= 1
                out.append(Example(edges=tuple(edges), query=(x, y), label=label, kind=kind))
    return out


# the published branching files: 300 graphs, one Yes and one No question each, 500 kept
BRANCH_GRAPHS_PER_QUESTION = 300 / 500


def branching_examples(rng: random.Random, suite: Suite, count: int) -> list[Example]:
    """Graphs with one Yes and one No question each, over all their nodes; ``count`` kept.

    As the published branching files are built: ``0.6 * count`` graphs (300 for
    500), each asked one Yes and one No question drawn among the ordered pairs
    of all its nodes, so a node no sentence mentions (isolated in the drawn
    graph) can be asked about; then ``count // 2`` Yes and ``count - count // 2``
    No questions kept at random *(ours: exactly balanced; the published files
    keep 500 of the 600 at random, Yes 0.49-0.51)*.
    """
    yes: list[Example] = []
    no: list[Example] = []
    for _ in range(max(count - count // 2, math.ceil(count * BRANCH_GRAPHS_PER_QUESTION))):
        nodes, edges, kind = draw_graph(rng, suite)
        for label, kept in ((True, yes), (False, no)):
            query = ask(rng, edges, label, nodes)
            kept.append(Example(edges=tuple(edges), query=query, label=label, kind=kind))
    return rng.sample(yes, count // 2) + rng.sample(no, count - count // 2)


# ---------------------------------------------------------------- tokens
def encode(ex: Example) -> list[int]:
    """The token ids the model reads: premise, then question, ending at "?"."""
    ids = {name: [STOI[c] for c in name] for edge in ex.edges for name in edge}
    ids.update({name: [STOI[c] for c in name] for name in ex.query})
    out: list[int] = []
    causes, dot = STOI[CAUSES], STOI[DOT]
    for a, b in ex.edges:
        out += ids[a]
        out.append(causes)
        out += ids[b]
        out.append(dot)
    out.append(STOI[DOES])
    out += ids[ex.query[0]]
    out.append(STOI[CAUSE])
    out += ids[ex.query[1]]
    out.append(STOI[QMARK])
    return out


def tokens_to_text(tokens: Sequence[str]) -> str:
    """Token strings back to text: name characters join, words are spaced, marks attach."""
    words: list[str] = []
    name = ""
    for t in tokens:
        if t == PAD:
            continue
        if t in WORDS:
            if name:
                words.append(name)
                name = ""
            if t in (DOT, QMARK) and words:
                words[-1] += t
            else:
                words.append(t)
        else:
            name += t
    if name:
        words.append(name)
    return " ".join(words)


def text_to_tokens(text: str) -> list[str]:
    """The tokenizer: fixed words and marks whole, every other word character by character."""
    out: list[str] = []
    for word in text.split():
        mark = word[-1] if word[-1] in (DOT, QMARK) else ""
        body = word[:-1] if mark else word
        if body in FIXED_WORDS:
            out.append(body)
        else:
            bad = [c for c in body if c not in STOI or c in WORDS]
            if bad or not body:
                raise ValueError(f"cannot tokenize {word!r}: node names are letters and digits")
            out += list(body)
        if mark:
            out.append(mark)
    return out


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from its parts, the same in every process (unlike ``hash``)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


_SUITE_RE = re.compile(r"^(?:(seq|flip|reversal)(?:_(\d+))?|branch_(\d+)_bf(\d+)|long_names)$")


# ---------------------------------------------------------------- the task
@register("causal", CausalConfig)
class Causal(Task):
    itos = ITOS

    def __init__(self, cfg, setting=Setting.base):
        super().__init__(cfg, setting)
        preset = MIXES.get(cfg.mix)
        self.flipped_fraction = (
            cfg.flipped_fraction
            if cfg.flipped_fraction is not None
            else (preset.flipped_fraction if preset else None)
        )
        self.flip_prob = (
            cfg.flip_prob if cfg.flip_prob is not None else (preset.flip_prob if preset else None)
        )
        self._published: dict | None = None  # task.eval_files' suites, read on first use
        self._pool: dict | None = None  # the fixed training set, built on first use
        self._perms: dict[int, torch.Tensor] = {}
        self._eval_cache: dict = {}
        self.yes, self.no = STOI[YES], STOI[NO]

    # -- configuration --------------------------------------------------------
    def validate(self) -> None:
        c = self.cfg
        if Setting(self.setting) != Setting.base:
            raise ConfigError(
                "setting",
                Setting(self.setting).value,
                "the causal task has no chain of thought: use base",
            )
        if c.min_length < 2:
            raise ConfigError("task.min_length", c.min_length, "a chain needs >= 2 nodes")
        if c.length < c.min_length:
            raise ConfigError("task.length", c.length, f"must be >= task.min_length={c.min_length}")
        if c.mix not in MIXES and c.mix != "custom":
            raise ConfigError("task.mix", c.mix, f"known mixes: {', '.join([*MIXES, 'custom'])}")
        for key, value in (
            ("flipped_fraction", self.flipped_fraction),
            ("flip_prob", self.flip_prob),
        ):
            if value is None:
                raise ConfigError(f"task.{key}", value, "mix=custom needs it set")
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"task.{key}", value, "must be a probability in [0, 1]")
        if not 1 <= c.name_min <= c.name_max:
            raise ConfigError(
                "task.name_min", c.name_min, f"must be in 1..task.name_max={c.name_max}"
            )
        if not c.name_max < c.long_name_min <= c.long_name_max:
            raise ConfigError(
                "task.long_name_min",
                c.long_name_min,
                f"must exceed task.name_max={c.name_max} and be <= task.long_name_max={c.long_name_max}",
            )
        if c.train_set_size < 0:
            raise ConfigError(
                "task.train_set_size",
                c.train_set_size,
                "must be >= 0 (0: fresh examples every step)",
            )
        if not 0.0 <= c.val_fraction < 1.0:
            raise ConfigError("task.val_fraction", c.val_fraction, "must be in [0, 1)")
        if c.val_fraction > 0 and (c.train_set_size == 0 or self.val_size() == 0):
            raise ConfigError(
                "task.val_fraction",
                c.val_fraction,
                "holds out part of a fixed training set: needs task.train_set_size > 0 "
                "and at least one example held out",
            )
        if c.train_set_size and c.train_set_size - self.val_size() < 1:
            raise ConfigError("task.val_fraction", c.val_fraction, "leaves no training example")
        if c.suite_size < 2:
            raise ConfigError("task.suite_size", c.suite_size, "must be >= 2 (both answers)")
        if c.name_pool < 0:
            raise ConfigError("task.name_pool", c.name_pool, "must be >= 0 (0: fresh names)")
        if c.suite_kind not in SUITE_KINDS:
            raise ConfigError(
                "task.suite_kind", c.suite_kind, f"known kinds: {', '.join(SUITE_KINDS)}"
            )
        if c.eval_files:
            from cotsweep.plain_pickle import PlainPickleError

            try:
                self.published()
            except PlainPickleError as e:
                raise ConfigError("task.eval_files", c.eval_files, str(e)) from None
        suites = [self.suite(s) for s in self.suite_names] if not c.eval_files else []
        most = max(s.nodes[1] for s in [self.train_suite(), *suites])
        names = sum(len(NAME_CHARS) ** k for k in range(c.name_min, c.name_max + 1))
        if names < most + len(FIXED_WORDS):
            raise ConfigError(
                "task.name_max", c.name_max, f"too few distinct names for {most} nodes"
            )

    @property
    def suite_names(self) -> list[str]:
        """The evaluation suites: ``task.suites``, or the published files' when ``task.eval_files`` is set."""
        return list(self.published()) if self.cfg.eval_files else list(self.cfg.suites)

    def published(self) -> dict:
        """The suites of the published files under ``task.eval_files`` (name -> PublishedSuite), read once."""
        if self._published is None:
            self._published = published_suites(self.cfg.eval_files) if self.cfg.eval_files else {}
        return self._published

    def val_size(self) -> int:
        """Examples of the fixed training set held out of training (``task.val_fraction``), scored as acc/val."""
        return round(self.cfg.train_set_size * self.cfg.val_fraction)

    def train_suite(self) -> Suite:
        c = self.cfg
        return Suite(
            "train",
            "chain",
            (c.min_length, c.length),
            self.flipped_fraction or 0.0,
            self.flip_prob or 0.0,
            name_len=(c.name_min, c.name_max),
        )

    def suite(self, name: str) -> Suite:
        """The evaluation suite called ``name`` (see the module docstring), in ``task.suite_kind``'s style."""
        official = self.cfg.suite_kind == "official"
        return replace(
            self._suite_shape(name),
            style=self.cfg.suite_kind,
            name_pool=self.cfg.name_pool if official else 0,
        )

    def _suite_shape(self, name: str) -> Suite:
        c = self.cfg
        m = _SUITE_RE.match(name)
        if m is None:
            raise ConfigError(
                "task.suites",
                name,
                "suites are seq_N, flip_N, reversal, reversal_N, branch_N_bfK, long_names",
            )
        family, n, bn, bk = m.groups()
        names = (c.name_min, c.name_max)
        train = (c.min_length, c.length)
        flip = self.flip_prob or 0.0
        if family in ("seq", "flip"):
            if n is None or int(n) < 2:
                raise ConfigError("task.suites", name, f"{family}_N needs N >= 2 nodes")
            frac = 1.0 if family == "flip" else 0.0
            return Suite(name, "chain", (int(n), int(n)), frac, flip, name_len=names)
        if family == "reversal":
            nodes = (int(n), int(n)) if n else train
            if nodes[0] < 2:
                raise ConfigError("task.suites", name, "reversal_N needs N >= 2 nodes")
            return Suite(name, "reversal", nodes, name_len=names)
        if bn is not None:
            if int(bn) < 2 or int(bn) * int(bk) < 10:
                raise ConfigError(
                    "task.suites",
                    name,
                    "branch_N_bfK needs N >= 2 nodes and an edge: N * K/10 >= 1 (K/10 edges per node)",
                )
            return Suite(
                name, "branching", (int(bn), int(bn)), branching=int(bk) / 10, name_len=names
            )
        return Suite(
            name,
            "chain",
            train,
            self.flipped_fraction or 0.0,
            flip,
            name_len=(c.long_name_min, c.long_name_max),
        )

    # -- what the trial asks --------------------------------------------------
    def model_spec(self) -> ModelSpec:
        longest = self.train_suite().max_tokens()
        if self.cfg.eval_files:
            longest = max(
                [
                    longest,
                    *(len(encode(ex)) for s in self.published().values() for ex in s.examples),
                ]
            )
        else:
            longest = max([longest, *(self.suite(s).max_tokens() for s in self.suite_names)])
        return ModelSpec(seq_len=longest, vocab_size=len(ITOS))

    def chance(self) -> float:
        return 0.5

    def layout(self, examples: Sequence[Example], device: torch.device | str = "cpu") -> Batch:
        """Right-padded token ids, the label at each example's own last position."""
        seqs = [encode(ex) for ex in examples]
        x, lengths, labels = _pad(seqs, [ex.label for ex in examples])
        y = _labels(x, lengths, labels)
        return Batch(x=_to_device(x, device), y=_to_device(y, device))

    def train_batch(
        self, batch_size: int, gen: torch.Generator, device: torch.device, step: int = 0
    ) -> Batch:
        seed = gen.initial_seed()
        if self.cfg.train_set_size > 0:
            return self._from_set(batch_size, seed, device, step)
        rng = random.Random(stable_seed("causal/train", seed, step))
        return self.layout(draw_examples(rng, self.train_suite(), batch_size), device)

    def _from_set(self, batch_size: int, seed: int, device: torch.device, step: int) -> Batch:
        """Step ``step`` of epochs over the fixed set: each epoch a fresh order, batches wrap across epochs."""
        size = self.cfg.train_set_size - self.val_size()
        key = (seed, str(device))
        if self._pool is None or self._pool["key"] != key:
            rng = random.Random(stable_seed("causal/set", seed))
            examples = draw_examples(rng, self.train_suite(), size)
            x, lengths, labels = _pad(
                [encode(ex) for ex in examples], [ex.label for ex in examples]
            )
            y = _labels(x, lengths, labels)
            self._pool = {"key": key, "x": x.to(device), "y": y.to(device), "lengths": lengths}
            self._perms = {}
        pos = (max(step, 1) - 1) * batch_size + torch.arange(batch_size)
        epochs, within = pos // size, pos % size
        idx = torch.empty(batch_size, dtype=torch.long)
        for e in epochs.unique().tolist():
            if e not in self._perms:
                g = torch.Generator().manual_seed(stable_seed("causal/epoch", seed, e))
                self._perms = {k: v for k, v in self._perms.items() if k >= e - 1}
                # shuffle=false: the set's own (random) order every epoch, as the official loop
                self._perms[e] = (
                    torch.randperm(size, generator=g) if self.cfg.shuffle else torch.arange(size)
                )
            sel = epochs == e
            idx[sel] = self._perms[e][within[sel]]
        lengths = self._pool["lengths"][idx]
        T = int(lengths.max())
        dev_idx = _to_device(idx, device)
        return Batch(x=self._pool["x"][dev_idx, :T], y=self._pool["y"][dev_idx, :T])

    def suite_examples(self, name: str, count: int, seed: int) -> list[Example]:
        """The examples of suite ``name`` (or ``train``, ``val``) for evaluation seed ``seed``.

        ``count`` examples, except for a published file's suite (all its questions)
        and ``val``: the held-out share of the fixed training set
        (``task.val_fraction``). The training set is that much smaller, and the
        held-out examples are drawn apart from it, from the evaluation seed: the
        evaluation needs them without the training stream's seed, and examples
        drawn at random are the same distribution whether split off or drawn apart.
        """
        if name in self.published():
            return list(self.published()[name].examples)
        if name == "val":
            name, count = "train", self.val_size()
            rng = random.Random(stable_seed("causal/val", seed))
            return draw_examples(rng, self.train_suite(), count)
        suite = self.train_suite() if name == "train" else self.suite(name)
        return draw_examples(random.Random(stable_seed("causal/eval", seed, name)), suite, count)

    @torch.no_grad()
    def evaluate(
        self, model: torch.nn.Module, n: int, gen: torch.Generator, device: torch.device
    ) -> dict:
        """``acc`` on the training distribution (n examples), ``acc/<suite>`` on every suite.

        With a held-out share of the fixed training set, ``acc/val`` on it too.
        """
        seed = gen.initial_seed()
        out = {"acc": self._accuracy(model, "train", n, seed, device)}
        if self.val_size():
            out["acc/val"] = self._accuracy(model, "val", self.val_size(), seed, device)
        for name in self.suite_names:
            out[f"acc/{name}"] = self._accuracy(model, name, self.cfg.suite_size, seed, device)
        return out

    def _accuracy(self, model, name: str, count: int, seed: int, device, chunk: int = 256) -> float:
        key = (name, count, seed, str(device))
        if key not in self._eval_cache:  # the same every evaluation: drawn once
            exs = self.suite_examples(name, count, seed)
            x, lengths, labels = _pad([encode(ex) for ex in exs], [ex.label for ex in exs])
            self._eval_cache[key] = (x.to(device), lengths, lengths.to(device), labels.to(device))
        x, lengths, lengths_dev, labels = self._eval_cache[key]
        correct = torch.zeros((), dtype=torch.long, device=x.device)
        for i in range(0, x.shape[0], chunk):
            xb = x[i : i + chunk, : int(lengths[i : i + chunk].max())]
            last = model(xb)[
                torch.arange(xb.shape[0], device=xb.device), lengths_dev[i : i + chunk] - 1
            ]  # (b, V) at "?"
            pred = torch.where(last[:, self.yes] > last[:, self.no], self.yes, self.no)
            correct += (pred == labels[i : i + chunk]).sum()
        return int(correct) / x.shape[0]

    def sample(self, count: int, gen: torch.Generator) -> list[dict]:
        rng = random.Random(stable_seed("causal/sample", gen.initial_seed()))
        return [self.describe(ex) for ex in draw_examples(rng, self.train_suite(), count)]

    @staticmethod
    def describe(ex: Example) -> dict:
        """An example as JSON: its graph, question, answer, text, and what the model reads and is taught."""
        tokens = [ITOS[t] for t in encode(ex)]
        return {
            "edges": [list(e) for e in ex.edges],
            "query": list(ex.query),
            "label": ex.answer,
            "kind": ex.kind,
            "text": ex.text,
            "tokens": tokens,
            "labels": [None] * (len(tokens) - 1) + [ex.answer],
        }


def _pad(
    seqs: Sequence[list[int]], labels: Sequence[bool]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, T) right-padded ids, (B,) lengths, (B,) label token ids; all on the CPU."""
    T = max(len(s) for s in seqs)
    pad = STOI[PAD]
    x = torch.tensor([s + [pad] * (T - len(s)) for s in seqs], dtype=torch.long)
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    answer = torch.tensor([STOI[YES] if lab else STOI[NO] for lab in labels], dtype=torch.long)
    return x, lengths, answer


def _labels(x: torch.Tensor, lengths: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
    """(B, T) IGNORE everywhere but each example's last position, which holds its answer."""
    y = torch.full_like(x, IGNORE)
    y[torch.arange(x.shape[0]), lengths - 1] = answer
    return y


def _to_device(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A host tensor onto ``device`` without making the host wait for the device.

    A plain copy to a GPU waits for the stream; from pinned memory with
    ``non_blocking`` it is queued, so the host goes on to build the next batch.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)
