"""Which W&B mode a run gets, from the configuration and the credentials on this machine.

``auto`` is online when an API key is configured (``WANDB_API_KEY`` or a netrc
entry for the W&B host) and offline otherwise, so a machine without a key never
waits on the network. Nothing here makes a network call or returns the key.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__package__)  # one logger for the whole W&B mirror: cotsweep.tracking

_notified: set[str] = set()  # offline notices already printed in this process


def _base_url() -> str:
    try:
        from wandb.sdk.lib import urls

        default = urls.DEFAULT_BASE_URL
    except Exception:  # an internal module that may move between wandb releases
        default = "https://api.wandb.ai"
    return os.environ.get("WANDB_BASE_URL") or default


def _netrc_path() -> Path:
    """Where wandb looks for a netrc file (NETRC, else ~/.netrc, else ~/_netrc)."""
    if os.environ.get("NETRC"):
        return Path(os.environ["NETRC"]).expanduser()
    home = Path("~/.netrc").expanduser()
    return (
        home
        if home.exists() or not Path("~/_netrc").expanduser().exists()
        else Path("~/_netrc").expanduser()
    )


def api_key_configured() -> bool:
    """Whether W&B credentials exist on this machine, found without any network call.

    The key itself is never returned, so it cannot leak into a config or a log.
    Without a netrc file this does not even import wandb (a second of start-up).
    """
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    if not _netrc_path().is_file():
        return False
    host = _base_url()
    try:
        from wandb.sdk.lib.wbauth import wbnetrc

        return wbnetrc.read_netrc_auth(host=host) is not None
    except ImportError:
        pass
    except Exception:  # a malformed entry: online would fail too
        return False
    import netrc
    from urllib.parse import urlsplit

    try:
        entries = netrc.netrc(str(_netrc_path()))
    except (OSError, netrc.NetrcParseError):
        return False
    hosts = {urlsplit(host).hostname, "api.wandb.ai"}
    return any(h and entries.authenticators(h) for h in hosts)


def resolve_mode(mode: str | None) -> str:
    """``online``, ``offline`` or ``disabled`` for a configured mode (auto|online|offline|disabled).

    ``auto`` follows WANDB_MODE when it is set, else online exactly when a key is
    configured. ``online`` without a key falls back to offline (wandb would
    otherwise stop the trial to ask for one).
    """
    mode = (mode or "auto").lower()
    if mode == "auto":
        env = os.environ.get("WANDB_MODE", "").lower()
        if env in ("online", "offline", "disabled"):
            mode = env
        elif env == "dryrun":
            mode = "offline"
        elif os.environ.get("WANDB_DISABLED", "").lower() in ("1", "true", "yes"):
            mode = "disabled"
        else:
            mode = "online" if api_key_configured() else "offline"
    if mode not in ("online", "offline", "disabled"):
        raise ValueError(f"tracking.wandb.mode={mode!r}: must be auto, online, offline or disabled")
    if mode == "online" and not api_key_configured():
        log.warning("W&B: mode online but no API key is configured; logging offline instead")
        mode = "offline"
    return mode


def offline_notice(target: Path | str, reason: str = "no API key") -> str:
    """The one line that tells a user where offline runs are and how to upload them."""
    return f"W&B is offline ({reason}): runs are saved under {target}; upload them with: cotsweep sync {target}"


def notify_offline(target: Path, reason: str = "no API key") -> None:
    key = str(target)
    if key not in _notified:
        _notified.add(key)
        print(offline_notice(target, reason), file=sys.stderr, flush=True)
