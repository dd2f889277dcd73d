"""Which trials a verb acts on: ``task=cvp setting=base --state failed``.

``status``, ``resume``, ``report``, ``export`` take the same filters: any axis
of the sweep (a key its grid varies, as recorded in the ledger's ``axes``)
equal to one of the given values (``seed=0,1`` is either), and the trial's
ledger state. Every filter is checked against what the ledger knows before
anything is read or run, so a misspelt axis or a value the grid never had is
refused in one line that lists the known ones, instead of quietly selecting
nothing.

An axis may be named by its full key (``model.depth``) or by its last part when
that is unambiguous (``depth``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cotsweep.ledger import STATES, Ledger


class SelectionError(ValueError):
    """A filter names an axis, value or state the sweep does not have."""


@dataclass(frozen=True)
class Selection:
    """Trials whose state is in ``states`` (all if empty) and whose axes match ``axes``."""

    axes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # axis -> accepted values
    states: tuple[str, ...] = ()

    @property
    def everything(self) -> bool:
        return not self.axes and not self.states

    def matches(self, state: str, axes: dict) -> bool:
        if self.states and state not in self.states:
            return False
        return all(
            key in axes and any(same_value(axes[key], v) for v in values)
            for key, values in self.axes.items()
        )

    def describe(self) -> str:
        """``task=cvp setting=base state=failed``: for headings and file names."""
        parts = [f"{k}={','.join(v)}" for k, v in self.axes.items()]
        if self.states:
            parts.append(f"state={','.join(self.states)}")
        return " ".join(parts)


def parse(filters: Sequence[str], states: Iterable[str] = ()) -> Selection:
    """``["task=cvp", "seed=0,1"]`` and ``["failed"]`` as a Selection (syntax only)."""
    axes: dict[str, tuple[str, ...]] = {}
    for f in filters:
        key, eq, value = f.partition("=")
        key = key.strip()
        if not eq or not key or not value:
            raise SelectionError(
                f"filter {f!r}: expected AXIS=VALUE (e.g. task=cvp, or seed=0,1 for either)"
            )
        axes[key] = tuple(v.strip() for v in value.split(","))
    wanted = tuple(dict.fromkeys(s for spec in states for s in spec.split(",")))
    bad = [s for s in wanted if s not in STATES]
    if bad:
        raise SelectionError(f"--state {bad[0]}: no such state; known: {', '.join(STATES)}")
    return Selection(axes, wanted)


def resolve(selection: Selection, points: Iterable[tuple[str, str]]) -> Selection:
    """The selection with every axis named by its full key, checked against the ledger's
    (state, axes JSON) points; raises SelectionError naming the unknown axis or value."""
    if not selection.axes:
        return selection  # states are checked by parse(); nothing to read
    # the distinct values of each axis; a ledger row's axes repeat the same few values, so
    # they are told apart by their JSON text, and compared with same_value only when asked
    distinct: dict[str, dict[str, object]] = {}
    for _, axes in points:
        for k, v in json.loads(axes).items():
            distinct.setdefault(k, {}).setdefault(json.dumps(v), v)
    known = {k: list(vs.values()) for k, vs in distinct.items()}
    resolved: dict[str, tuple[str, ...]] = {}
    for key, values in selection.axes.items():
        full = _axis_key(key, known)
        for v in values:
            if not any(same_value(k, v) for k in known[full]):
                listed = ", ".join(str(x) for x in sorted(known[full], key=str))
                raise SelectionError(f"{key}={v}: the sweep has no such value; known: {listed}")
        resolved[full] = values
    return Selection(resolved, selection.states)


def _axis_key(key: str, known: dict[str, list]) -> str:
    if key in known:
        return key
    by_last = [k for k in known if k.rsplit(".", 1)[-1] == key]
    if len(by_last) == 1:
        return by_last[0]
    axes = ", ".join(sorted(known)) or "none (a single-point sweep)"
    if len(by_last) > 1:
        raise SelectionError(f"axis {key!r} is ambiguous: {', '.join(sorted(by_last))}")
    raise SelectionError(f"the sweep has no axis {key!r}; its axes: {axes}")


def same_value(recorded: object, given: object) -> bool:
    """An axis value in the ledger (JSON: 2, 0.001, "cvp", true) against a typed one (text)."""
    if str(recorded) == str(given) or json.dumps(recorded) == str(given):
        return True
    try:
        a, b = float(str(recorded)), float(str(given))
    except ValueError:
        return False
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)


def selected_ids(ledger: Ledger, selection: Selection) -> list[str]:
    """Ids of the ledger's trials the selection takes, in creation order (checked first)."""
    rows = ledger.select(("id", "state", "axes"))
    sel = resolve(selection, ((s, a) for _, s, a in rows))
    return [tid for tid, state, axes in rows if sel.matches(state, json.loads(axes))]
