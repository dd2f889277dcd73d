"""What a process tree listens on and runs with, read from /proc (Linux), no psutil needed.

A listening socket is a TCP socket in state LISTEN or an unconnected UDP socket
(state 7, "close": bound, no peer), in /proc/net/{tcp,tcp6,udp,udp6}; a process
owns the sockets whose inodes its file descriptors point at.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

_TCP_LISTEN, _UDP_UNCONNECTED = "0A", "07"


@dataclass(frozen=True)
class Listener:
    pid: int
    command: str  # the process's command line
    proto: str  # tcp, tcp6, udp, udp6
    address: str
    port: int

    @property
    def loopback(self) -> bool:
        ip = ipaddress.ip_address(self.address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:127.0.0.1, a v6 socket bound to the v4 loopback
        return ip.is_loopback


def process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it (read from each process's stat)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # the command name (field 2) may hold spaces and parentheses: split after the last ")"
            parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(p for p, pp in parent.items() if pp == pid)
    return tree


def command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def environment(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (e.decode(errors="replace").partition("=") for e in raw.split(b"\0") if e)
    return {k: v for k, _, v in pairs}


def _socket_inodes(pid: int) -> set[int]:
    found = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def _address(hex_addr: str, v6: bool) -> tuple[str, int]:
    ip, port = hex_addr.split(":")
    raw = bytes.fromhex(ip)
    if v6:  # four 32-bit words, each in host (little-endian) order
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        return socket.inet_ntop(socket.AF_INET6, raw), int(port, 16)
    return socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(ip, 16))), int(port, 16)


def _listening_inodes() -> dict[int, tuple[str, str, int]]:
    out = {}
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        want = _TCP_LISTEN if proto.startswith("tcp") else _UDP_UNCONNECTED
        try:
            lines = Path(f"/proc/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == want:
                out[int(f[9])] = (proto, *_address(f[1], proto.endswith("6")))
    return out


def listeners(root: int) -> set[Listener]:
    """Every listening TCP socket and bound UDP socket of ``root``'s process tree."""
    table = _listening_inodes()
    found = set()
    for pid in process_tree(root):
        mine = _socket_inodes(pid) & table.keys()
        if mine:
            cmd = command(pid)
            found.update(Listener(pid, cmd, *table[i]) for i in mine)
    return found


class ListenerSampler:
    """Collects :func:`listeners` of a tree every ``every`` seconds while a block runs.

    Sockets that live for a moment (a data-parallel trial's rendezvous) are
    caught as long as they live longer than one period.
    """

    def __init__(self, root: int, every: float = 0.2):
        self.root, self.every = root, every
        self.seen: set[Listener] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen |= listeners(self.root)
            self._stop.wait(self.every)

    def __enter__(self) -> ListenerSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.seen |= listeners(self.root)
