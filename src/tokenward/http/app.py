"""Assembling a gateway from a policy: keys, store, log, guard, upstream."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from ..errors import ConfigurationError
from ..evidence import Evidence, prepare_evidence
from ..guard import Guard
from ..log import open_log
from ..metrics import Metrics
from ..policy import Policy, load_policy
from ..proof import KeyRing
from ..store import open_store
from ..watch import PolicyWatcher
from .proxy import Gateway
from .upstream import Upstream

__all__ = ["SERVE_ENV", "create_gateway", "gateway_from_env", "load_keys"]

log = logging.getLogger("tokenward")

# The server runs the app in a worker process; the CLI hands it its settings here.
SERVE_ENV = "TOKENWARD_SERVE"


def load_keys(policy: Policy) -> KeyRing:
    if policy.proof.keys_file is not None:
        return KeyRing.from_file(policy.proof.keys_file)
    ring = KeyRing.from_env()
    if ring is not None:
        return ring
    log.warning(
        "no signing keys configured (proof.keys_file or TOKENWARD_KEYS): using a random key; "
        "challenges will not survive a restart or be shared between instances"
    )
    return KeyRing.generate()


def create_gateway(
    policy: Policy,
    *,
    keys: KeyRing | None = None,
    clock: Callable[[], float] = time.time,
    watch: Callable[[Guard], PolicyWatcher[Any]] | None = None,
) -> Gateway:
    if policy.upstream is None:
        raise ConfigurationError("the policy names no upstream (set upstream.url or pass --upstream)")
    guard = Guard(
        policy,
        store=open_store(policy.store),
        keys=keys or load_keys(policy),
        log=open_log(policy.log),
        clock=clock,
        metrics=Metrics() if policy.admin.metrics else None,
    )
    return Gateway(guard, Upstream(policy.upstream), watcher=watch(guard) if watch else None)


def gateway_from_env() -> Gateway:
    """Factory for the ASGI server's worker: ``{"policy": path, "upstream": url}``."""
    settings = orjson.loads(os.environ.get(SERVE_ENV, "{}"))
    path, upstream = settings.get("policy"), settings.get("upstream")
    policy = load_policy(path, upstream=upstream)
    if path is None:
        return create_gateway(policy)

    def load(p: Path) -> tuple[Policy, Evidence]:
        new = load_policy(p, upstream=upstream)
        return new, prepare_evidence(new, str(p))

    return create_gateway(
        policy,
        watch=lambda guard: PolicyWatcher(Path(path), load, lambda loaded: guard.reload(*loaded)),
    )
