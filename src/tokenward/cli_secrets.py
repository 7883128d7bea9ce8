"""``check-policy --no-secrets``: validate a policy where its secrets are not set (CI).

A policy names its secrets by environment variable: ``${VAR}`` in a string
(``upstream.headers``, ``alerts.webhook`` and ``alerts.headers`` are expanded when the
policy loads) and ``identity.jwt.key_env``. :func:`unset_secrets` lists those that are
not set; :func:`placeholders` sets each to a stand-in of the right shape for the time of
the check (a URL-shaped string; for a JWT key an HMAC secret or a throwaway public key of
the algorithm's type), then restores the environment. Variables that are set are used as
they are, and checked.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["UnsetSecret", "placeholders", "unset_secrets"]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # as tokenward.policy reads them
_PLACEHOLDER = "https://placeholder.invalid/tokenward-check-policy"


@dataclass(frozen=True)
class UnsetSecret:
    variable: str
    where: str  # the setting that names it, e.g. upstream.headers.Authorization
    algorithms: tuple[str, ...] = ()  # for a JWT key: the algorithms it must verify


def unset_secrets(data: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> list[UnsetSecret]:
    """The secrets the raw policy ``data`` names that ``environ`` does not hold, in file order."""
    found: list[UnsetSecret] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, Mapping):
            key_env = node.get("key_env")
            if isinstance(key_env, str) and key_env and key_env not in environ:
                algs = node.get("algorithms")
                algorithms = tuple(str(a) for a in algs) if isinstance(algs, list | tuple) else ()
                found.append(UnsetSecret(key_env, f"{where}.key_env".lstrip("."), algorithms))
            for key, value in node.items():
                walk(value, f"{where}.{key}".lstrip("."))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")
        elif isinstance(node, str):
            for name in _ENV_REF.findall(node):
                if name not in environ:
                    found.append(UnsetSecret(name, where))

    walk(data, "")
    first: dict[str, UnsetSecret] = {}
    for s in found:
        first.setdefault(s.variable, s)
    return list(first.values())


@contextmanager
def placeholders(unset: list[UnsetSecret]) -> Iterator[None]:
    """Set each unset secret to a stand-in while the block runs; restore the environment after."""
    added = [s.variable for s in unset if s.variable not in os.environ]
    try:
        for s in unset:
            os.environ.setdefault(s.variable, _stand_in(s.algorithms) if s.algorithms else _PLACEHOLDER)
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _stand_in(algorithms: tuple[str, ...]) -> str:
    """A key a JWT setting with these algorithms accepts: an HMAC secret, or a fresh public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    first = algorithms[0] if algorithms else "HS256"
    public: Any
    if first.startswith(("RS", "PS")):
        public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    elif first.startswith("ES"):
        public = ec.generate_private_key(ec.SECP256R1()).public_key()
    elif first == "EdDSA":
        public = ed25519.Ed25519PrivateKey.generate().public_key()
    else:
        return secrets.token_urlsafe(48)
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return str(pem.decode())
