"""Reading a pickle that should hold only plain data, without ever running its code.

Published evaluation sets (the causal study's ``eval_transitivity/*.pkl``) are
Python pickles, and ``pickle.load`` on a file from elsewhere runs whatever code
the file names. This reader never does: before unpickling it walks the file's
opcodes (``pickletools.genops`` only decodes them) and refuses any opcode
outside plain containers, strings, numbers and memo bookkeeping, so a file
that names a callable (GLOBAL, STACK_GLOBAL, REDUCE, BUILD, INST, OBJ,
NEWOBJ, EXT*, PERSID) is refused before anything is built; the unpickler that
then runs also refuses every class lookup, in case the two ever disagree.

Errors are one line naming the file (:class:`PlainPickleError`).
"""

from __future__ import annotations

import io
import pickle
import pickletools
from pathlib import Path
from typing import Any

# opcodes that build plain data: containers, strings, numbers, None/bools, and the
# memo and framing bookkeeping that go with them; nothing here looks up or calls code
PLAIN_OPCODES = frozenset(
    {
        "PROTO",
        "FRAME",
        "STOP",
        "MARK",
        "POP",
        "POP_MARK",
        "DUP",
        "MEMOIZE",
        "PUT",
        "BINPUT",
        "LONG_BINPUT",
        "GET",
        "BINGET",
        "LONG_BINGET",
        "NONE",
        "NEWTRUE",
        "NEWFALSE",
        "INT",
        "BININT",
        "BININT1",
        "BININT2",
        "LONG",
        "LONG1",
        "LONG4",
        "FLOAT",
        "BINFLOAT",
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
        "UNICODE",
        "BINUNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE8",
        "EMPTY_DICT",
        "DICT",
        "SETITEM",
        "SETITEMS",
        "EMPTY_LIST",
        "LIST",
        "APPEND",
        "APPENDS",
        "EMPTY_TUPLE",
        "TUPLE",
        "TUPLE1",
        "TUPLE2",
        "TUPLE3",
        "EMPTY_SET",
        "ADDITEMS",
        "FROZENSET",
    }
)

MAX_BYTES = 256 * 2**20  # far above any evaluation set; refuses a runaway file before reading it


class PlainPickleError(ValueError):
    """A file that is not a pickle of plain data; the message names the file."""

    def __init__(self, path: Path | str, why: str):
        self.path = str(path)
        super().__init__(f"{path}: {why}")


class _NoClasses(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refers to code ({module}.{name})")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refers to a persistent object")


def load_plain(path: Path | str) -> Any:
    """The plain data pickled in ``path`` (dicts, lists, tuples, sets, strings, numbers).

    Raises PlainPickleError naming the file when it cannot be read, is not a
    pickle, or holds anything else: nothing in the file is ever executed.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise PlainPickleError(path, f"{size} bytes, more than the {MAX_BYTES} allowed")
        data = path.read_bytes()
    except OSError as e:
        raise PlainPickleError(path, f"cannot read: {e.strerror or e}") from None
    try:
        for op, _arg, pos in pickletools.genops(io.BytesIO(data)):
            if op.name not in PLAIN_OPCODES:
                raise PlainPickleError(
                    path,
                    f"refused: opcode {op.name} at byte {pos} builds objects or calls code "
                    "(only plain containers, strings and numbers are read)",
                )
    except PlainPickleError:
        raise
    except Exception as e:  # genops: truncated or not a pickle at all
        raise PlainPickleError(path, f"not a readable pickle ({e})") from None
    try:
        return _NoClasses(io.BytesIO(data)).load()
    except Exception as e:
        raise PlainPickleError(path, f"refused: {e}") from None
