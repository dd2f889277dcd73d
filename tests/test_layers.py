"""The package's shape: each layer imports only the layers below it, no circles, a light CLI path.

Imports are read from the source with ``ast`` — module-level and function-level
alike, since an import inside a function is still a dependency — so a
lazy import cannot hide an upward dependency. Only ``if TYPE_CHECKING:`` blocks
are skipped: they never run (Hydra's plugins use them for annotations).
docs/ARCHITECTURE.md draws the same map.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Bottom first. A module belongs to the layer of the longest name below that prefixes it.
LAYERS: list[tuple[str, ...]] = [
    # plain Python: no torch, Ray, Hydra or W&B at import (omegaconf and yaml are allowed)
    (
        "cotsweep",
        "cotsweep.errors",
        "cotsweep.files",
        "cotsweep.ids",
        "cotsweep.ledger",
        "cotsweep.config",
        "cotsweep.conf",
        "cotsweep.sweeps",
        "cotsweep.secret_guard",  # (issue 11, landing) what may not be written: omegaconf only
        "cotsweep.plain_pickle",  # (issue 9, landing) a restricted reader: stdlib only
    ),
    # the light verbs: on the bottom layer alone (logs, stop, export belong here too)
    (
        "cotsweep.status",
        "cotsweep.stop",
        "cotsweep.rebuild",
        "cotsweep.selection",  # filters by axis and state, for status/resume/report/export
        "cotsweep.watch",  # status --watch
        "cotsweep.logs",  # a trial's own output per attempt: written by workers, read by `logs`
        "cotsweep.results",  # export, compare, the DataFrame API (pandas inside functions only)
    ),
    # determinism: (issue 8, landing) torch's thread and determinism set-up of a trial
    ("cotsweep.tasks", "cotsweep.model", "cotsweep.tracking", "cotsweep.determinism"),
    ("cotsweep.trial", "cotsweep.compose"),
    ("cotsweep.sweep",),
    ("cotsweep.report", "cotsweep.hydra_app", "hydra_plugins"),
    ("cotsweep.cli",),
]
# third-party packages the two lowest layers never import, even inside a function
HEAVY = ("torch", "ray", "hydra", "wandb", "matplotlib")
# what `cotsweep status` must not load: each costs from a tenth of a second (omegaconf) to seconds
NOT_ON_THE_LIGHT_PATH = ("torch", "hydra", "ray", "omegaconf", "wandb", "matplotlib")


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (ours: the module itself, not a name in it; else the top package)
    line: int
    top_level: bool  # executed when the importing module is imported


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in SRC.rglob("*.py") if "egg-info" not in str(p)}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, path: Path, ours: set[str]) -> list[Import]:
    is_pkg = path.name == "__init__.py"
    found: list[Import] = []

    def resolve(mod: str) -> str:
        return mod if mod.split(".")[0] in ("cotsweep", "hydra_plugins") else mod.split(".")[0]

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub, top)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(name, resolve(alias.name), child.lineno, top))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from the package this module is in
                    pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (child.level - 1)]
                    base = ".".join(pkg + ([base] if base else []))
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    # `from cotsweep import files` imports the module cotsweep.files
                    target = sub if sub in ours else resolve(base)
                    found.append(Import(name, target, child.lineno, top))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
            else:
                visit(child, top)

    visit(ast.parse(path.read_text(), str(path)), True)
    return [i for i in found if i.target != name]


def layer_of(module: str) -> int:
    best, layer = -1, None
    for i, names in enumerate(LAYERS):
        for n in names:
            if (module == n or module.startswith(n + ".")) and len(n) > best:
                best, layer = len(n), i
    assert layer is not None, (
        f"{module} is in no layer: add it to LAYERS (and docs/ARCHITECTURE.md)"
    )
    return layer


def import_graph() -> list[Import]:
    mods = all_modules()
    ours = set(mods)
    return [i for name, path in sorted(mods.items()) for i in imports_of(name, path, ours)]


def cycles(edges: list[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return out


# ---------------------------------------------------------------- the tests
def test_every_module_is_in_a_layer():
    for name in all_modules():
        layer_of(name)


def test_no_layer_imports_a_layer_above_it():
    ours = set(all_modules())
    upward = [
        f"{i.source} (layer {layer_of(i.source)}) imports {i.target} (layer {layer_of(i.target)}) "
        f"at line {i.line}"
        for i in import_graph()
        if i.target in ours and layer_of(i.target) > layer_of(i.source)
    ]
    assert not upward, "upward imports:\n  " + "\n  ".join(upward)


def test_no_import_circles():
    ours = set(all_modules())
    found = cycles([(i.source, i.target) for i in import_graph() if i.target in ours])
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_lowest_layers_import_no_heavy_package():
    bad = [
        f"{i.source} imports {i.target} at line {i.line}"
        for i in import_graph()
        if layer_of(i.source) <= 1 and i.target in HEAVY
    ]
    assert not bad, "\n".join(bad)


def test_the_cli_module_imports_only_light_modules_at_import():
    """Heavy modules are imported inside the heavy verbs only: what `cotsweep.cli` loads at
    import (transitively, through module-level imports) reaches no heavy package."""
    by_source: dict[str, list[Import]] = {}
    for i in import_graph():
        if i.top_level:
            by_source.setdefault(i.source, []).append(i)
    seen, todo = set(), ["cotsweep.cli", "cotsweep.status", "cotsweep.stop"]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        # importing a module imports its parent packages first
        parts = m.split(".")
        todo += [".".join(parts[:k]) for k in range(1, len(parts))]
        todo += [i.target for i in by_source.get(m, [])]
    heavy = sorted(seen & set(NOT_ON_THE_LIGHT_PATH))
    assert not heavy, f"importing cotsweep.cli, .status or .stop loads {heavy}"


def test_the_checker_sees_function_level_and_upward_imports(tmp_path: Path):
    """The checks above can fail: a lazy upward import and a circle are both reported."""
    src = tmp_path / "cotsweep"
    (src / "sweep").mkdir(parents=True)
    (src / "__init__.py").write_text("")
    (src / "sweep" / "__init__.py").write_text("")
    (src / "files.py").write_text("def f():\n    from cotsweep.sweep import grid\n")
    (src / "sweep" / "grid.py").write_text("from cotsweep import files\n")
    mods = {
        ".".join(p.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__"): p
        for p in src.rglob("*.py")
    }
    edges = [i for n, p in mods.items() for i in imports_of(n, p, set(mods))]
    lazy = [i for i in edges if i.source == "cotsweep.files"]
    assert lazy == [Import("cotsweep.files", "cotsweep.sweep.grid", 2, False)]
    assert layer_of("cotsweep.sweep.grid") > layer_of("cotsweep.files")  # so: upward, reported
    assert cycles([(i.source, i.target) for i in edges]) == [
        ["cotsweep.files", "cotsweep.sweep.grid"]
    ]


def test_status_imports_neither_torch_nor_hydra_nor_ray(tmp_path: Path):
    """`cotsweep status` on a real ledger, in a fresh interpreter: no heavy module loaded."""
    from cotsweep.ledger import Ledger

    ledger = Ledger(tmp_path, create=True)
    ledger.add_trials([(f"t{i}", [f"seed={i}"], {"seed": i}, "seed: 0\n") for i in range(3)])
    ledger.update([("t0", {"state": "done", "started": 1.0, "ended": 2.0, "wall_s": 1.0})])
    ledger.close()
    code = (
        "import sys\n"
        "from cotsweep.cli import main\n"
        f"rc = main(['status', {str(tmp_path)!r}])\n"
        "print('@@', rc, ' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rc, *loaded = out.stdout.rsplit("@@", 1)[1].split()
    assert rc == "0", out.stderr
    assert "3 trials" in out.stdout and "done 1" in out.stdout
    roots = {m.split(".")[0] for m in loaded}
    assert "cotsweep" in roots
    assert not roots & set(NOT_ON_THE_LIGHT_PATH), sorted(roots & set(NOT_ON_THE_LIGHT_PATH))
