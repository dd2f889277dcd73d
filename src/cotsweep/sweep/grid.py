"""Expand a sweep into its trials, with Hydra's own parser and sweeper semantics, lazily.

A sweep file is a Hydra experiment config whose grid sits under
``hydra.sweeper.params``. The grid is expanded the way Hydra's BasicSweeper
does it (the file's params first, then the command line's overrides, a later
value of the same key replacing an earlier one; lists, ``range()``,
``choice()`` and ``glob()`` all work), and every point is composed into a full
trial config and validated, so a bad key or value is refused before any trial
starts.

The points are a lazy product: a 100,000-point grid is never held in memory,
its trials are yielded one by one (the engine writes them into the ledger as
they come), and its size is known before any is composed, so a grid larger
than ``--max-trials`` is refused at once.

Composing a point with ``hydra.compose`` costs ~70 ms, and applying Hydra's
overrides to a deep copy of an OmegaConf tree ~5 ms; neither is needed per
point. Points differ in a few keys, so:

* each distinct set of config-group choices is composed once by Hydra (a base);
* each distinct value override (``model.depth=2``) is parsed once, and applied
  once per base with Hydra's own override code to a copy of the base, which
  checks the key and converts the value to the schema's type; what comes out
  (the key's new value, as plain data) is kept;
* a point is then the base as plain data with its overrides' values set on a
  copy of only the dicts along their keys: validated, hashed and written as
  plain data.

That is exact when values do not depend on each other: any interpolation in
the base or an override, keys nested in one another, or list indexing, and the
point is composed the slow way (a deep copy of the base and Hydra's override
code over all its overrides), as before.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf._utils import OmegaConfDumper
from omegaconf.errors import OmegaConfBaseException

from cotsweep.compose import UnknownSweep, compose_trial, sweep_search_path
from cotsweep.config import ConfigView, conf_dir
from cotsweep.errors import ConfigError, describe_error, one_line
from cotsweep.ids import trial_id_of
from cotsweep.secret_guard import SecretInConfig, refuse_secrets

# A grid larger than this is refused unless --max-trials raises the limit: a typo such as
# seed=range(0,100000) should not start composing for minutes.
MAX_TRIALS = 10_000

_SECTIONS_KEPT = 10_000  # cached YAML sections and scalars of an expansion, at most

_PLAIN_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class GridError(ValueError):
    """The sweep cannot be expanded or one of its points cannot run."""


class GridTooLarge(GridError):
    """More points than the limit; ``--max-trials`` raises it."""

    def __init__(self, name: str, size: int, limit: int):
        self.size, self.limit = size, limit
        super().__init__(
            f"the grid of sweep {name!r} has {size:,} points, more than the limit of {limit:,}; "
            f"check its axes, or pass --max-trials {size} to run them all"
        )


@dataclass
class Trial:
    id: str
    overrides: list[str]  # the grid point, as Hydra overrides
    axes: dict  # key -> value of each override of the point
    config: dict  # the composed, resolved config as plain data (what config.yaml holds)
    sections: dict[tuple, tuple[Any, str]] | None = field(default=None, repr=False, compare=False)
    task: Any = field(default=None, repr=False, compare=False)  # the validated task, built

    @property
    def yaml(self) -> str:
        return config_yaml(self.config, self.sections)

    @property
    def cfg(self) -> DictConfig:
        """The config as OmegaConf reads it back from the trial's YAML (as a worker does)."""
        return OmegaConf.create(self.config)


def sweep_name(name_or_path: str) -> str:
    return Path(name_or_path).stem


# ---------------------------------------------------------------- the grid
@dataclass
class Grid:
    """A sweep's grid: its axes parsed once, its points a lazy product."""

    source: str | None  # the sweep's name or file, as given; None: the command line alone
    name: str
    lines: list[str]  # the file's params, then the command line's overrides
    axes: list[list[str]]  # per key, its values as overrides (BasicSweeper's lists)
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = math.prod(len(a) for a in self.axes)

    def points(self) -> Iterator[list[str]]:
        return (list(p) for p in itertools.product(*self.axes))

    def trials(
        self,
        sweep_dir: Path,
        progress: Callable[[int, int], None] | None = None,
        every: int = 1000,
    ) -> Iterator[Trial]:
        """Compose and validate every point, in order, once per trial id.

        Before the first point, every axis value is checked once against every set of
        group choices (what a bad key or value fails on), so most refusals come before
        the first trial is yielded, and so before a caller has written anything.
        ``progress(composed, size)`` is called every ``every`` points and at the end.
        """
        composer = _Composer(self.source, self.axes)
        seen: set[str] = set()
        sweep_dir = Path(sweep_dir)
        done = 0
        with _search_path(self.source) as search:
            composer.search = search
            composer.preflight(self.axes)
            for point in self.points():
                trial = composer.trial(point, self.name, sweep_dir)
                done += 1
                if progress is not None and done % every == 0:
                    progress(done, self.size)
                if trial.id not in seen:
                    seen.add(trial.id)
                    yield trial
        if progress is not None and done % every:
            progress(done, self.size)


@contextmanager
def _search_path(source: str | None) -> Iterator[list[str]]:
    """The overrides that select the sweep file (none for a grid of the command line alone)."""
    if source is None:
        yield []
        return
    with sweep_search_path(source) as (search, select):
        yield [search, select]


def load_grid(
    name_or_path: str | None, overrides: list[str], max_trials: int | None = None
) -> Grid:
    """Parse a sweep's grid (nothing composed per point yet); refuse an empty or too large one.

    ``name_or_path=None``: the grid of the command line's overrides alone (a Hydra multirun).
    """
    params: Any = {}
    if name_or_path is not None:
        _check_sweep_file(name_or_path)
        with sweep_search_path(name_or_path) as (search, select):
            base = _compose([search, select], return_hydra_config=True)
        params = base.hydra.sweeper.get("params") or {}
    lines = [f"{k}={v}" for k, v in params.items()] + list(overrides)
    if not lines and name_or_path is not None:
        raise GridError(
            f"sweep {name_or_path!r} has no grid: hydra.sweeper.params is empty and the command "
            "line adds no axis; list at least one (e.g. seed: 0,1,2)"
        )
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except HydraException as e:
        raise GridError(describe_error(e)) from e
    axes: OrderedDict[str, list[str]] = OrderedDict()
    for o in parsed:  # BasicSweeper.split_arguments, without building the product
        key = o.get_key_element()
        if key.lstrip("+~").startswith("hydra"):
            raise GridError(f"{o.input_line}: hydra.* keys cannot be set per trial")
        if o.is_sweep_override():
            if not o.is_discrete_sweep():
                raise GridError(
                    f"{o.input_line}: a {o.value_type.name if o.value_type else 'range'} sweep "
                    "is not a list of values; the basic grid takes lists, range() and choice()"
                )
            axes[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            axes[key] = [f"{key}={o.get_value_element_as_str()}"]
    name = sweep_name(name_or_path) if name_or_path is not None else "multirun"
    grid = Grid(name_or_path, name, lines, list(axes.values()))
    if grid.size == 0:
        raise GridError(
            f"the grid of sweep {name_or_path!r} is empty (an axis has no values): {lines}"
        )
    limit = MAX_TRIALS if max_trials is None else max_trials
    if grid.size > limit:
        raise GridTooLarge(grid.name, grid.size, limit)
    return grid


def grid_points(name_or_path: str, overrides: list[str]) -> list[list[str]]:
    """Every point of the grid as a list of overrides (BasicSweeper's expansion)."""
    return list(load_grid(name_or_path, overrides, max_trials=math.inf).points())  # type: ignore[arg-type]


def expand(
    name_or_path: str, overrides: list[str], sweep_dir: Path, max_trials: int | None = None
) -> list[Trial]:
    """Every trial of the sweep (deduplicated by id), validated, in memory: for small grids."""
    return list(load_grid(name_or_path, overrides, max_trials).trials(sweep_dir))


def _check_sweep_file(name_or_path: str) -> None:
    """A sweep file that YAML cannot read, or that asks for Python objects, named by line."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        return  # a packaged sweep, or no such file: compose names it
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise GridError(f"cannot read sweep file {path}: {e}") from e
    try:
        yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        what = " ".join(str(x) for x in (e.context, e.problem) if x)
        if isinstance(e, yaml.constructor.ConstructorError):
            what += " (sweep files are plain YAML: no !!python tags)"
        raise GridError(f"sweep file {where}: {what}; fix the YAML") from None
    except yaml.YAMLError as e:
        raise GridError(f"sweep file {path}: {one_line(str(e))}; fix the YAML") from None


# ---------------------------------------------------------------- composition of a point
@dataclass
class _Base:
    """One composition by Hydra (a set of group choices), and what each override does to it."""

    cfg: DictConfig
    plain: dict  # resolved, enums as their names
    interpolated: bool  # any ${...} in it: its points take the slow path
    effects: dict[str, tuple[str, tuple[str, ...], Any]] = field(default_factory=dict)


class _Composer:
    def __init__(self, source: str | None, axes: list[list[str]]):
        self.source = source
        self.search: list[str] = []
        self.parser = OverridesParser.create()
        self.groups = {p.name for p in conf_dir().iterdir() if p.is_dir()}
        self.parsed: dict[str, Override] = {}
        self.int_templates: dict[str, Override] = {}
        self.validated: dict[tuple, Any] = {}  # points that differ only in their seed: one task
        from cotsweep.trial import validate  # torch: loaded when a grid is expanded, not before

        self.validate = validate
        self.bases: dict[tuple[str, ...], _Base] = {}
        self.sections: dict[tuple, tuple[Any, str]] = {}  # YAML of the bases' shared sections
        # keys of the value axes; one nested in (or equal to) another makes their values interact
        keys = [a[0].split("=", 1)[0].lstrip("+~") for a in axes if a]
        keys = [k for k in keys if k not in self.groups]
        self.nested = any(
            a == b or b.startswith(a + ".")
            for i, a in enumerate(keys)
            for j, b in enumerate(keys)
            if i != j
        )

    def preflight(self, axes: list[list[str]]) -> None:
        """Every base (set of group choices) composed, every value override applied to each."""
        parsed = [[self._parse(line) for line in axis] for axis in axes]
        groups = [a for a in parsed if a and a[0].key_or_group in self.groups]
        values = [o for a in parsed if not (a and a[0].key_or_group in self.groups) for o in a]
        for choice in itertools.product(*groups):
            base = self._base(tuple(o.input_line for o in choice))
            for o in values:
                self._effect(base, o)

    def _parse(self, line: str) -> Override:
        o = self.parsed.get(line)
        if o is None:
            o = self._parse_int(line)
        if o is None:
            try:
                (o,) = self.parser.parse_overrides([line])
            except HydraException as e:
                raise GridError(describe_error(e)) from e
        self.parsed[line] = o
        return o

    def _parse_int(self, line: str) -> Override | None:
        """``key=123`` as Hydra's grammar reads it, from an earlier ``key=`` line (seed=range(...)).

        Hydra's parser costs ~0.3 ms a line, a whole second per 3,000 seeds; a plain
        decimal integer can only be an int, so it takes the parsed shape of the first
        such line of the same key with its value replaced.
        """
        key, _, value = line.partition("=")
        m = _PLAIN_INT.fullmatch(value)
        if m is None:
            return None
        template = self.int_templates.get(key)
        if template is None:
            try:
                (template,) = self.parser.parse_overrides([line])
            except HydraException as e:
                raise GridError(describe_error(e)) from e
            if not isinstance(template.value(), int) or isinstance(template.value(), bool):
                return template
            self.int_templates[key] = template
            return template
        return dataclasses.replace(template, _value=int(value), input_line=line)

    def _base(self, group_ov: tuple[str, ...]) -> _Base:
        b = self.bases.get(group_ov)
        if b is None:
            cfg = _compose([*self.search, *group_ov])
            _refuse_secrets(cfg)
            raw = OmegaConf.to_container(cfg, resolve=False)
            plain = _to_plain(cfg)
            b = self.bases[group_ov] = _Base(cfg, plain, _has_interpolation(raw))
            _keep_sections(plain, self.sections)
        return b

    def _effect(self, base: _Base, o: Override) -> tuple[str, tuple[str, ...], Any]:
        """What ``o`` does to the base: ("set", path, value) / ("del", path) / ("slow", ...)."""
        eff = base.effects.get(o.input_line)
        if eff is not None:
            return eff
        key = o.key_or_group
        path = tuple(key.split("."))
        leaf = _leaf_value(base.cfg, o, path)
        if leaf is not _NO_LEAF:
            if isinstance(leaf, str):  # a number is no secret
                _refuse_secrets(_nested(path, leaf))
            eff = base.effects[o.input_line] = ("set", path, leaf)
            return eff
        cfg = copy.deepcopy(base.cfg)
        _apply([o], cfg)  # Hydra checks the key and converts the value to the schema's type
        if not _PLAIN_KEY.fullmatch(key) or "${" in str(o.value()):  # (unescaped, unlike the line)
            eff = ("slow", path, None)
        elif o.is_delete():
            eff = ("del", path, None)
        else:
            value = OmegaConf.select(cfg, key)
            raw = (
                OmegaConf.to_container(value, resolve=False)
                if isinstance(value, (DictConfig, ListConfig))
                else None
            )
            if raw is not None and _has_interpolation(raw):
                eff = ("slow", path, None)
            else:
                eff = ("set", path, _to_plain(value))
        if eff[0] == "set":
            _refuse_secrets(_nested(path, eff[2]))
        base.effects[o.input_line] = eff
        return eff

    def trial(self, point: list[str], name: str, sweep_dir: Path) -> Trial:
        parsed = [self._parse(line) for line in point]
        group_ov = tuple(o.input_line for o in parsed if o.key_or_group in self.groups)
        value_ov = [o for o in parsed if o.key_or_group not in self.groups]
        base = self._base(group_ov)
        effects = [self._effect(base, o) for o in value_ov]
        memo: tuple | None = None
        if base.interpolated or self.nested or any(e[0] == "slow" for e in effects):
            cfg = copy.deepcopy(base.cfg)
            _apply(value_ov, cfg)
            _refuse_secrets(cfg)  # interpolations (oc.env) are judged as written too
            plain = _to_plain(cfg)
        else:
            plain = _with_effects(base.plain, effects)
            # the config is a function of the base and the effects; validation reads no seed
            memo = (group_ov, *(e for e in effects if e[1] != ("seed",)))
        task = self.validated.get(memo) if memo is not None and _hashable(memo) else None
        if task is None:
            try:
                task = self.validate(ConfigView(plain), secrets=False)  # checked: base, values
            except ConfigError as e:
                raise GridError(f"trial {' '.join(point)}: {e}") from e
            if memo is not None and _hashable(memo) and len(self.validated) < _SECTIONS_KEPT:
                self.validated[memo] = task
        tid = trial_id_of(plain)
        # copies: the base's dicts are shared by every point
        plain["sweep"] = {**(plain.get("sweep") or {}), "name": name, "dir": str(sweep_dir)}
        plain["run"] = {
            **plain["run"],
            "out_dir": str(sweep_dir / "trials" / tid),
            "progress": False,
        }
        axes = {o.get_key_element(): _axis_value(o) for o in parsed}
        return Trial(tid, list(point), axes, plain, self.sections, task)


def _hashable(key: tuple) -> bool:
    try:
        hash(key)
    except TypeError:  # a list or dict value
        return False
    return True


def _refuse_secrets(cfg: DictConfig | dict) -> None:
    """A config that reads or holds a secret; the message never shows the point (it may)."""
    try:
        refuse_secrets(cfg)
    except SecretInConfig as e:
        raise GridError(str(e)) from e


def _nested(path: tuple[str, ...], value: Any) -> dict:
    for k in reversed(path):
        value = {k: value}
    return value


def _apply(overrides: list[Override], cfg: DictConfig) -> None:
    try:
        ConfigLoaderImpl._apply_overrides_to_config(overrides, cfg)
    except (HydraException, OmegaConfBaseException) as e:
        raise GridError(describe_error(e)) from e


_NO_LEAF = object()


def _leaf_value(cfg: DictConfig, o: Override, path: tuple[str, ...]) -> Any:
    """The value a plain ``key=value`` override gives an existing leaf, converted to its type.

    What OmegaConf's assignment does to a leaf (``ValueNode._set_value``), asked of
    that node rather than of a copy of the whole config (~3 ms a copy: per seed
    of a 100,000-seed axis), without changing it. Anything else (a new key, ``+``/``~``, a dict or
    list, an interpolation, a value the node refuses) returns _NO_LEAF: Hydra's
    own code then applies it, or names the error.
    """
    from enum import Enum

    from omegaconf.nodes import AnyNode, ValueNode

    if o.is_add() or o.is_force_add() or o.is_delete() or o.package is not None:
        return _NO_LEAF
    if not _PLAIN_KEY.fullmatch(o.key_or_group):
        return _NO_LEAF
    value = o.value()
    if not isinstance(value, (int, float, str, bool)):
        return _NO_LEAF
    if isinstance(value, str) and ("${" in value or value == "???"):  # interpolation, missing
        return _NO_LEAF
    node: Any = cfg
    for k in path:
        try:
            node = node._get_node(k) if isinstance(node, DictConfig) else None
        except OmegaConfBaseException:  # no such key in a schema: Hydra names it
            return _NO_LEAF
        if node is None:
            return _NO_LEAF
    if not isinstance(node, ValueNode) or node._is_interpolation():
        return _NO_LEAF
    if not (node._has_ref_type() or isinstance(node, AnyNode)) or node._get_flag("readonly"):
        return _NO_LEAF
    try:
        # what _set_value stores, without setting it: the base stays as composed
        v = node.validate_and_convert(value)
    except OmegaConfBaseException:
        return _NO_LEAF  # Hydra's code raises it again, with the key in its message
    return v.name if isinstance(v, Enum) else v


def _with_effects(base: dict, effects: list[tuple[str, tuple[str, ...], Any]]) -> dict:
    """The base with each effect applied, copying only the dicts along the effects' keys."""
    out = dict(base)
    copied: set[tuple[str, ...]] = set()
    for kind, path, value in effects:
        d = out
        for i, k in enumerate(path[:-1]):
            sub = d.get(k)
            if not isinstance(sub, dict):  # Hydra accepted it, so it is an added branch
                sub = {}
            if path[: i + 1] not in copied:
                sub = dict(sub)
                copied.add(path[: i + 1])
            d[k] = sub
            d = sub
        if kind == "del":
            d.pop(path[-1], None)
        else:
            d[path[-1]] = value
    return out


def _to_plain(value: Any) -> Any:
    from enum import Enum

    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True, enum_to_str=True)
    if isinstance(value, Enum):
        return value.name
    return value


def _has_interpolation(node: Any) -> bool:
    if isinstance(node, dict):
        return any(_has_interpolation(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_interpolation(v) for v in node)
    return isinstance(node, str) and "${" in node


def _axis_value(o: Override) -> Any:
    v = o.value()
    return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)


def _compose(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    try:
        return compose_trial(overrides, return_hydra_config=return_hydra_config)
    except UnknownSweep:
        raise
    except (HydraException, OmegaConfBaseException) as e:
        raise GridError(describe_error(e)) from e


# ---------------------------------------------------------------- the YAML of a trial
class _Dumper(getattr(yaml, "CDumper", yaml.Dumper)):  # type: ignore[misc]
    """OmegaConf's YAML (strings that read as numbers or booleans quoted), emitted by libyaml."""


_Dumper.add_representer(str, OmegaConfDumper.str_representer)


def config_yaml(
    cfg: dict | DictConfig, sections: dict[tuple, tuple[Any, str]] | None = None
) -> str:
    """A trial's config as OmegaConf.to_yaml(cfg, resolve=True) writes it.

    A block mapping's YAML is its entries' YAML one after another, so with
    ``sections`` (a cache shared by the points of a grid) each top-level entry is
    written on its own: a section no override touches (``train``, ``resources``)
    from the cache, by object; a section of plain scalars (``run``, ``model``)
    line by line, each line cached or, for ints, booleans and path-like strings,
    written directly; anything else by the YAML dumper. OmegaConf's YAML
    (PyYAML's, strings that read as numbers or booleans quoted) is the
    reference: tests/test_grid.py holds every shortcut to it.
    """
    data = _to_plain(cfg) if isinstance(cfg, DictConfig) else cfg
    if sections is None:
        return _dump(data)
    out = []
    for key, value in data.items():
        if isinstance(value, (dict, list)):
            hit = sections.get((key, id(value)))  # only the bases' own sections are kept
            if hit is not None and hit[0] is value:
                out.append(hit[1])
            else:
                out.append(_flat_section(key, value, sections) or _dump({key: value}))
        else:
            out.append(_scalar_line(key, value, sections))
    return "".join(out)


def _flat_section(key: str, section: Any, sections: dict[tuple, tuple[Any, str]]) -> str | None:
    """``key:`` and one indented line per scalar of a non-empty dict of scalars, else None."""
    if not isinstance(section, dict) or not section or not _plain_key(key, sections):
        return None
    lines = [f"{key}:\n"]
    for k, v in section.items():
        if isinstance(v, (dict, list)):
            return None
        line = _scalar_line(k, v, sections)
        if line.count("\n") != 1:  # a multi-line scalar: its continuation lines need indenting
            return None
        lines.append("  " + line)
    return "".join(lines)


_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}
_PATHLIKE = re.compile(r"[A-Za-z_/][A-Za-z0-9_./-]*")


def _scalar_line(key: str, value: Any, sections: dict[tuple, tuple[Any, str]]) -> str:
    """``key: value`` as the dumper writes it: directly when that is certain, else cached."""
    if _plain_key(key, sections):
        kind = type(value)
        if kind is int:
            return f"{key}: {value}\n"
        if kind is bool:
            return f"{key}: {'true' if value else 'false'}\n"
        if value is None:
            return f"{key}: null\n"
        # a path or a name: plain style, never read back as a number, a boolean or null
        if kind is str and _PATHLIKE.fullmatch(value) and not _reads_as_other(value):
            return f"{key}: {value}\n"
    hit = sections.get((key, type(value), value))
    if hit is None:
        hit = (value, _dump({key: value}))
        if len(sections) < _SECTIONS_KEPT:
            sections[key, type(value), value] = hit
    return hit[1]


def _reads_as_other(text: str) -> bool:
    """Whether YAML or OmegaConf would read ``text`` as a boolean, null or number (nan, inf)."""
    if text.lower() in _YAML_WORDS:
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def _plain_key(key: str, sections: dict[tuple, tuple[Any, str]]) -> bool:
    """Whether YAML writes ``key`` as it is (not quoted)."""
    hit = sections.get(("plain key", key))
    if hit is None:
        plain = (
            isinstance(key, str)
            and _PATHLIKE.fullmatch(key) is not None
            and _dump({key: 1}) == f"{key}: 1\n"
        )
        hit = sections["plain key", key] = (key, "yes" if plain else "")
    return bool(hit[1])


def _keep_sections(plain: dict, sections: dict[tuple, tuple[Any, str]]) -> None:
    """Cache the YAML of a base's sections, which its points share unless they override them."""
    for key, value in plain.items():
        if isinstance(value, (dict, list)):
            sections[key, id(value)] = (value, _dump({key: value}))


def _dump(data: Any) -> str:
    return yaml.dump(
        data, Dumper=_Dumper, default_flow_style=False, allow_unicode=True, sort_keys=False
    )
