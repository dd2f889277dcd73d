"""A sandbox for real offline W&B in tests: a private home, no credentials, a network tripwire.

W&B runs here are real (wandb.init, wandb-core, transaction logs on disk); only
where they may write and whom they may call is fenced in:

* HOME, the W&B config/cache/data dirs and NETRC point into a temporary
  directory, so nothing reads or writes the real home and no stored key is found;
* WANDB_API_KEY and friends are removed;
* every proxy variable points at a loopback listener that counts connections.
  HTTP clients (Python's and wandb-core's Go client alike) send every outside
  request through the proxy, so a test can assert that W&B tried no network at
  all, without any network being reachable.

wandb-core is one process per Python process, started on first use with the
environment of that moment; the sandbox shuts it down on entry and exit so
that the core it uses sees the sandbox and no later test sees the sandbox's.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
CREDENTIAL_VARS = (
    "WANDB_API_KEY",
    "WANDB_IDENTITY_TOKEN_FILE",
    "WANDB_BASE_URL",
    "WANDB_ENTITY",
    "WANDB_PROJECT",
)


@dataclass
class NetworkTripwire:
    """A loopback listener posing as the proxy: records the first bytes of every connection."""

    sock: socket.socket
    requests: list[bytes] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()
        return f"http://{host}:{port}"

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed at teardown
            with conn:
                conn.settimeout(2)
                try:
                    self.requests.append(conn.recv(256))
                except OSError:
                    self.requests.append(b"")


def _teardown_wandb() -> None:
    import wandb

    wandb.teardown()


@pytest.fixture(scope="module", name="wandb_sandbox")
def wandb_sandbox_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetworkTripwire]:
    home = tmp_path_factory.mktemp("wandb-home")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    wire = NetworkTripwire(sock)
    threading.Thread(target=wire.serve, daemon=True).start()
    env = {
        "HOME": str(home),
        "WANDB_CONFIG_DIR": str(home / "config"),
        "WANDB_CACHE_DIR": str(home / "cache"),
        "WANDB_DATA_DIR": str(home / "data"),
        "WANDB_DIR": str(home / "wandb"),
        "NETRC": str(home / "netrc"),  # absent: no stored key
        "WANDB_SILENT": "true",
        "NO_PROXY": "",
        "no_proxy": "",
        **{v: wire.url for v in PROXY_VARS},
    }
    _teardown_wandb()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        for k in CREDENTIAL_VARS:
            mp.delenv(k, raising=False)
        try:
            yield wire
        finally:
            _teardown_wandb()
    sock.close()


def all_bytes_under(root: Path) -> Iterator[tuple[Path, bytes]]:
    """Every regular file under ``root`` with its content (links not followed)."""
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                yield path, path.read_bytes()
