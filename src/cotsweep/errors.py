"""Errors every layer raises or explains, with no dependencies of their own.

They live at the bottom of the package so that the layers above can refuse bad
input with one message, named by its key, without importing each other: the
task files raise :class:`ConfigError`, grid expansion and the CLI both turn
Hydra's and OmegaConf's exceptions into one line with :func:`describe_error`.
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A config value that cannot run, named by its key."""

    def __init__(self, key: str, value: Any, why: str):
        self.key, self.value, self.why = key, value, why
        super().__init__(f"{key}={value!r}: {why}")

    def __reduce__(self) -> tuple:
        # rebuilt from its own fields: the default (args=(message,)) cannot be unpickled,
        # and Ray ships a Hydra job's exception back to the driver by pickling it
        return (type(self), (self.key, self.value, self.why))


def describe_error(e: BaseException | None) -> str:
    """Hydra's message and the OmegaConf cause under it, which names the key and value."""
    parts: list[str] = []
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        msg = str(e).strip()
        # OmegaConf also raises its unfilled message templates ("Invalid value '$VALUE'")
        if msg and msg not in parts and "$VALUE" not in msg and "$KEY" not in msg:
            parts.append(msg)
        if "full_key" in msg:  # OmegaConf's own message names the key: enough
            break
        # `raise ... from None`: the message above says it all
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    return "\n  ".join(parts)


class LedgerError(RuntimeError):
    """The sweep's ledger cannot be read or written.

    Its message is one line for the user: the file, SQLite's own reason (the
    real one: "database or disk is full", never a follow-up "cannot rollback")
    and the command that recovers. The CLI prints it and exits 2.
    """

    def __init__(self, path: Any, message: str):
        self.path = path
        super().__init__(message)


def one_line(text: str) -> str:
    """A message on one line: Hydra's and OmegaConf's several lines joined, their type notes dropped.

    ``full_key: model.depth`` stays (it names the key) unless the key is already in
    the message; ``reference_type=`` and ``object_type=`` name Python classes the
    user never wrote.
    """
    parts: list[str] = []
    options: list[str] | None = None  # Hydra's "Available options in 'task':" list, one a line
    for raw in str(text).splitlines():
        line = raw.strip()
        if line.startswith("Config search path:"):  # where Hydra looked: not the user's concern
            break
        if options is not None and raw.startswith(("\t", "    ")) and line:
            options.append(line)
            continue
        if options is not None:
            parts[-1] += " " + ", ".join(options)
            options = None
        if line.startswith("Available options in"):
            parts.append(line.rstrip(":").replace("Available", "available") + ":")
            options = []
            continue
        if not line or line.startswith(("reference_type=", "object_type=")):
            continue
        if line.startswith("full_key:"):
            key = line.split(":", 1)[1].strip()
            if key and not any(key in p for p in parts):
                parts.append(f"(key {key})")
            continue
        parts.append(line.rstrip("."))
    if options is not None and parts:
        parts[-1] += " " + ", ".join(options)
    return "; ".join(parts)
