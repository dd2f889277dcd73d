"""Ray nodes started with the real `ray start` on loopback, and stopped by process tree.

A test that plays an operator starts Ray the way docs/CLUSTER.md does, on a
machine that other people's Rays share. Each :class:`Machine` is one "machine"
of such a test: an address (127.0.0.2, 127.0.0.3), a home directory of its own
(so its own ~/.ray/auth_token) and a shell environment; what it starts it can
kill, all of it, without `ray stop` (which stops every Ray of the user here).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port(host: str) -> int:
    """A port free on ``host`` now (Ray's fixed defaults may be taken by another Ray here)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def process_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, process group, state) of every live process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # gone since listdir
            continue
        # the command name stands in parentheses and may hold anything, even ") "
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), int(fields[2]), fields[0])
    return table


def has_marker(pid: int, marker: str) -> bool:
    try:
        return marker.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


class Machine:
    """One loopback "machine": its address, home directory, shell environment, and processes.

    Everything run on it starts in a new session, so its process group holds
    what `ray start` leaves running (GCS, raylet, dashboard, agents); Ray's
    workers and the job's driver get groups of their own but stay descendants
    of those. Most also carry this machine's marker in their environment, a net
    under the tree walk for a process whose parent died first (not all: a
    process that renames itself, as Ray's agents do, may overwrite it).
    """

    def __init__(self, name: str, ip: str, home: Path) -> None:
        self.name, self.ip, self.home = name, ip, home
        self.marker = f"COTSWEEP_LOOPBACK_NODE={name}-{uuid.uuid4().hex[:12]}"
        home.mkdir(parents=True)
        self.env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            self.marker.split("=")[0]: self.marker.split("=")[1],
        }
        self.groups: set[int] = set()
        self.temp_dirs: list[Path] = []

    def popen(self, script: str, **kw) -> subprocess.Popen:
        proc = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", script],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            **kw,
        )
        self.groups.add(proc.pid)
        return proc

    def run(self, script: str, timeout: float = 120) -> str:
        """Run a shell script here; its output; fail the test with it on a non-zero exit."""
        proc = self.popen(script)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            pytest.fail(f"{self.name}: timed out after {timeout}s:\n{script}\n{out[-4000:]}")
        assert proc.returncode == 0, (
            f"{self.name}: exit {proc.returncode}:\n{script}\n{out[-4000:]}"
        )
        return out

    def ray_temp_dir(self) -> Path:
        """A short one (Ray's socket paths must fit in 107 bytes), fresh for each `ray start`."""
        path = Path(tempfile.mkdtemp(prefix=f"cotsweep-{self.name}-", dir="/tmp"))
        self.temp_dirs.append(path)
        return path

    def processes(self) -> set[int]:
        """Every live process started on this machine, and every descendant of one."""
        table = process_table()
        mine = {
            pid
            for pid, (_, group, state) in table.items()
            if state != "Z" and (group in self.groups or has_marker(pid, self.marker))
        }
        children: dict[int, list[int]] = {}
        for pid, (parent, _, state) in table.items():
            if state != "Z":
                children.setdefault(parent, []).append(pid)
        todo = list(mine)
        while todo:
            for child in children.get(todo.pop(), []):
                if child not in mine:
                    mine.add(child)
                    todo.append(child)
        return mine

    def freeze(self) -> set[int]:
        """SIGSTOP every process of this machine until no new one appears: none can fork now."""
        frozen: set[int] = set()
        while fresh := self.processes() - frozen:
            for pid in fresh:
                try:
                    os.kill(pid, signal.SIGSTOP)
                except ProcessLookupError:
                    pass
            frozen |= fresh
        return frozen

    def kill(self) -> None:
        """The machine dies: every process of it, at once, with no chance to clean up."""
        for pid in self.freeze():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.time() + 30
        while (left := self.processes()) and time.time() < deadline:
            time.sleep(0.1)
        assert not left, f"{self.name}: processes left after SIGKILL: {sorted(left)}"

    def ray_start_flags(self, dashboard_port: int | None = None) -> list[str]:
        """What keeps a `ray start` here apart from other Rays on this machine.

        Its own --temp-dir (`ray start --head` also writes the temp dir's
        ray_current_cluster, which `--address auto` reads), free ports where Ray's
        are fixed (the dashboard agent's 52365 on every node, the head's
        dashboard and Ray client server), and one CPU: two "machines" share two
        cores. ``dashboard_port``: this is the head.
        """
        flags = [
            f"--temp-dir={self.ray_temp_dir()}",
            "--num-cpus=1",
            f"--dashboard-agent-listen-port={free_port(self.ip)}",
        ]
        if dashboard_port is not None:
            flags += [
                f"--dashboard-port={dashboard_port}",
                f"--ray-client-server-port={free_port(self.ip)}",
            ]
        return flags

    def stop(self) -> None:
        """Kill everything started here and remove Ray's temp dirs: `ray stop`, scoped."""
        self.kill()
        for path in self.temp_dirs:
            shutil.rmtree(path, ignore_errors=True)
