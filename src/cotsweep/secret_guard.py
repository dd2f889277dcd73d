"""Secrets never reach a sweep's files: configs that would write one are refused.

A trial's config is written whole, resolved, into the ledger, the trial's
config.yaml and its W&B run (whose files ``cotsweep sync`` uploads). So a
config that reads a secret (``${oc.env:WANDB_API_KEY}``) or holds one (a key
pasted into a tag) is refused before anything is written, with a message that
names the key and never shows the secret. Refused, not masked: a masked config
on disk would no longer be the config that ran, and the secret has no business
in a config anyway; W&B and Ray read their credentials from the environment
and their own files. :func:`refuse_secrets` is called by ``trial.validate``
(every sweep point and ``cotsweep train``, before anything is written), by the
Hydra launcher's composition, and by the W&B mirror on its own.

What counts as a secret:

* an ``oc.env`` interpolation of a variable named like one (``*_KEY``,
  ``*_TOKEN``, ``*_SECRET``, anything with ``PASSWORD``), whether or not it is set;
* a resolved value containing the value of such a variable in this process's
  environment, or a password stored in the user's netrc (where ``wandb login``
  keeps the W&B key);
* a resolved value in a well-known credential format (GitHub, Hugging Face,
  OpenAI/Anthropic, AWS, Google, Slack tokens, JWTs, private keys).
"""

from __future__ import annotations

import netrc
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cotsweep.errors import ConfigError

_SECRET_NAME = re.compile(r"(^|_)(API_?KEY|KEY|TOKEN|SECRET)$|PASSWORD|PASSWD", re.IGNORECASE)
_OC_ENV = re.compile(r"\$\{\s*oc\.env\s*:\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)")
# (what it looks like, pattern): prefixes and shapes the issuers document
_FORMATS = [
    ("a GitHub token", r"\b(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})"),
    ("a Hugging Face token", r"\bhf_[A-Za-z0-9]{30,}"),
    ("an OpenAI or Anthropic key", r"\bsk-[A-Za-z0-9_\-]{20,}"),
    ("an AWS access key", r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    ("a Google API key", r"\bAIza[0-9A-Za-z_\-]{35}"),
    ("a Slack token", r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"),
    ("a JSON Web Token", r"\beyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}"),
    ("a private key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
]
_FORMAT_RES = [(what, re.compile(p)) for what, p in _FORMATS]
_MIN_SECRET_LEN = 8  # shorter values of secret-named variables ("1", "true") are not matched


class SecretInConfig(ConfigError):
    """The config reads or holds a secret; its message names the key, never the secret."""


def refuse_secrets(cfg: DictConfig | dict, leave_out: tuple[str, ...] = ()) -> None:
    """Raise SecretInConfig if ``cfg`` reads or holds a secret (see the module's doc);
    ``leave_out``: top-level keys not looked at (a Hydra job's ``hydra`` node)."""
    found = find_secret(cfg, leave_out)
    if found is not None:
        raise SecretInConfig(found.key, found.shown, found.why)


@dataclass(frozen=True)
class SecretFinding:
    key: str  # the config key, dotted
    shown: str  # what may be printed: the interpolation as written, or a description
    why: str


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def find_secret(cfg: DictConfig | dict, leave_out: tuple[str, ...] = ()) -> SecretFinding | None:
    """The first key of ``cfg`` that reads or holds a secret, or None.

    One walk over the config as written; only interpolations are resolved, one
    by one (resolving the whole config again would double the cost of
    composing a large grid).
    """
    never = "secrets are never written into a sweep's files (ledger, config.yaml, W&B)"
    known = _known_secrets()
    plain = isinstance(cfg, dict)  # plain data (grid expansion): nothing left to resolve
    written_cfg = cfg if plain else OmegaConf.to_container(cfg, resolve=False)
    if leave_out:
        written_cfg = {k: v for k, v in written_cfg.items() if k not in leave_out}
    for key, written in _leaves(written_cfg):
        interpolated = "${" in written and not plain
        for name in _OC_ENV.findall(written) if "${" in written else ():
            if is_secret_name(name):
                return SecretFinding(
                    key,
                    written,
                    f"reads the secret {name}; {never}: leave it in the environment "
                    "(W&B and Ray read their credentials from there themselves)",
                )
        for value in _resolved(cfg, key) if interpolated else (written,):
            what = next((w for w, r in _FORMAT_RES if r.search(value)), None)
            if what is None:
                what = next((where for where, secret in known if secret in value), None)
            if what is not None:
                shown = written if interpolated else f"<{len(value)} characters, not shown>"
                return SecretFinding(
                    key, shown, f"holds {what}; {never}: keep it in the environment"
                )
    return None


def _resolved(cfg: DictConfig, key: str) -> list[str]:
    """The string values an interpolated key resolves to (a node interpolation: all of its)."""
    try:
        value = OmegaConf.select(cfg, key)
        if isinstance(value, (DictConfig, ListConfig)):
            return [v for _, v in _leaves(OmegaConf.to_container(value, resolve=True), key)]
    except OmegaConfBaseException:  # unresolvable: refused by whoever resolves it next
        return []
    return [value] if isinstance(value, str) else []


def _leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, value) of every string leaf; Hydra's own node is not a trial's."""
    if isinstance(node, dict):
        for k, v in node.items():
            if not prefix and k == "hydra":  # Hydra's runtime state, never written by cotsweep
                continue
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, f"{prefix}[{i}]")
    elif isinstance(node, str):
        yield prefix, node


def _known_secrets() -> list[tuple[str, str]]:
    """(what it is, value) of the secrets this process can see."""
    found = [
        (f"the value of {k}", v.strip())
        for k, v in os.environ.items()
        if is_secret_name(k) and len(v.strip()) >= _MIN_SECRET_LEN
    ]
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        hosts = netrc.netrc(path).hosts
    except (OSError, netrc.NetrcParseError):
        hosts = {}
    for host, (_, _, password) in hosts.items():
        if password and len(password) >= _MIN_SECRET_LEN:
            found.append((f"the netrc password for {host}", password))
    return found
