"""Trusted server clients: named identities, their Ed25519 keys, and where the keys live.

A client is a backend the owner trusts (its own app server, a partner). It signs every
request (RFC 9421, :mod:`tokenward.proof.signature`) with one of its keys; a verified
request skips the browser proof-of-work but not its route's budgets, limits or content
rules, which are keyed by the account ``client:<name>``.

Keys come from three places, merged by keyid:

* the policy (``clients.named[].keys``), for a handful of static clients;
* a key file the operator controls (``clients.keys_file``, JSON or YAML), written by
  ``tokenward keys``; read when the registry is built (start and policy reload);
* the Store (``clients.keys_in_store``), for several gateway instances: a key is
  ``sigkey:<keyid>`` (fetched once per instance, then cached: a keyid's public key never
  changes) and its revocation ``sigrevoked:<keyid>``, read in every signed request's
  batch so a revocation takes effect on every instance with the next request.

Rotation: ``tokenward keys rotate`` adds a key and gives the old ones a ``not_after``
(the overlap); both verify until then.

* :mod:`.settings` — the policy section, :class:`ClientsError`, route patterns;
* :mod:`.key_records` — key records, the key file, keys and revocations in the Store;
* :mod:`.agents` — Web Bot Auth agents and their key directories;
* :mod:`.registry` — :class:`ClientRegistry`, what the guard asks.
"""

from .agents import load_jwks
from .key_records import (
    FOREVER,
    STORE_INDEX,
    KeyFile,
    KeyRecord,
    Revocation,
    StoreKeys,
    new_key,
    revocation_key,
    store_key,
)
from .registry import ClientRegistry
from .settings import (
    AgentSpec,
    ClientBudget,
    ClientKeySpec,
    ClientLimit,
    ClientsError,
    ClientSpec,
    ClientsSettings,
    route_allowed,
)

__all__ = [
    "FOREVER",
    "STORE_INDEX",
    "AgentSpec",
    "ClientBudget",
    "ClientKeySpec",
    "ClientLimit",
    "ClientRegistry",
    "ClientSpec",
    "ClientsError",
    "ClientsSettings",
    "KeyFile",
    "KeyRecord",
    "Revocation",
    "StoreKeys",
    "load_jwks",
    "new_key",
    "revocation_key",
    "route_allowed",
    "store_key",
]
