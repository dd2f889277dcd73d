"""Run `cotsweep` command lines through the real CLI entry point, one after another, in this process.

    python cli_rows.py ROWS.json RESULTS.json

Each row is ``{"args": [...], "cwd": DIR, "env": {...}}`` (env optional: set for
that row only). Its stdout and stderr are captured at the file descriptors (so
whatever writes there, Python or not, is seen), its exit code kept; an
exception that escapes ``main`` is recorded with its traceback, as a user would
see it. One interpreter for the whole table keeps the default test
run short; tests/test_bad_input.py also runs every row as its own `cotsweep`
process (marked slow).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback


def run_rows(rows: list[dict]) -> list[dict]:
    from cotsweep.cli import main

    results = []
    for row in rows:
        os.chdir(row["cwd"])
        env_before = {k: os.environ.get(k) for k in row.get("env", {})}
        os.environ.update(row.get("env", {}))
        with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
            sys.stdout.flush()
            sys.stderr.flush()
            saved_err, saved_out = os.dup(2), os.dup(1)
            os.dup2(err.fileno(), 2)
            os.dup2(out.fileno(), 1)
            started = time.perf_counter()
            try:
                rc: int | str = main(row["args"])
            except BaseException as e:  # what would reach the user's terminal as a traceback
                rc = f"raised {type(e).__name__}"
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved_err, 2)
                os.dup2(saved_out, 1)
                os.close(saved_err)
                os.close(saved_out)
                for k, v in env_before.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            err.seek(0)
            out.seek(0)
            results.append(
                {
                    "rc": rc,
                    "stderr": err.read().decode(errors="replace"),
                    "stdout": out.read().decode(errors="replace"),
                    "seconds": time.perf_counter() - started,
                }
            )
    return results


def run_in_process(rows: list[dict], tmp: str, prefix: list[str] = ()) -> list[dict]:
    """The rows through this file in a fresh interpreter (``prefix``: e.g. setpriv)."""
    import json as _json
    import subprocess
    from pathlib import Path

    here = Path(__file__).resolve().parent
    spec, res = Path(tmp) / "rows.json", Path(tmp) / "results.json"
    spec.write_text(_json.dumps(rows))
    env = {**os.environ, "PYTHONPATH": str(here.parent / "src"), "COLUMNS": "2000"}
    env.pop("WANDB_API_KEY", None)
    r = subprocess.run(
        [*prefix, sys.executable, str(here / "cli_rows.py"), str(spec), str(res)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = _json.loads(res.read_text())
    spec.unlink()
    res.unlink()
    return out


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        rows = json.load(f)
    out = run_rows(rows)
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)
