"""Print the runtime dependencies pinned in pyproject.toml, one requirement a line.

workers/Dockerfile installs exactly these into the worker image, so the list of
pins lives in one place and the image cannot disagree with what
`pip install -e .` resolves on a node. Standard library only: it runs inside
the bare Ray image before anything of ours is installed (tomllib: Python 3.11+,
which that image has).

    python workers/pinned_requirements.py [PYPROJECT] > requirements.txt
"""

from __future__ import annotations

import sys
from pathlib import Path

import tomllib

DEFAULT_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def pinned_requirements(pyproject: Path) -> list[str]:
    """The `[project] dependencies` of a pyproject.toml, in their written order."""
    with pyproject.open("rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    pyproject = Path(args[0]) if args else DEFAULT_PYPROJECT
    print("\n".join(pinned_requirements(pyproject)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
