"""What the policy points at on disk, loaded once per policy: CIDR lists, JWT keys,
client keys and the challenge-signing key file.

Loading can take seconds (a million CIDRs) and reads files, so it happens when a policy
is loaded — at start, and in a worker thread when the policy file changes — never on
the request path. Problems are reported like any other policy problem.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .content import EmbeddingUnavailable, PurposeScorer, runtime_status
from .policy import Policy, PolicyError, Problem
from .proof.keys import KeyRing, KeyRingError
from .signals.identity import AccountResolver, IdentityConfigError
from .signals.network import CidrListError, CidrLists, load_lists
from .trusted_clients import ClientRegistry, ClientsError

__all__ = ["Evidence", "prepare_evidence"]


@dataclass(frozen=True, slots=True)
class Evidence:
    lists: CidrLists
    accounts: AccountResolver
    clients: ClientRegistry
    purposes: dict[str, PurposeScorer]  # route path -> its purpose scorer
    signing_keys: KeyRing | None = None  # proof.keys_file, when the policy names one


def prepare_evidence(policy: Policy, source: str = "policy", *, models: bool = True) -> Evidence:
    """Load what the policy points at. ``models=False`` only validates (purpose scorers
    are built lexical-only): for a process that forks servers afterwards, since the
    embedding runtime's threads would not survive the fork."""
    problems: list[Problem] = []
    lists = CidrLists.empty()
    try:
        lists = load_lists(policy.network)
    except CidrListError as exc:
        problems.extend(Problem("network.lists", p) for p in exc.problems)
    except OSError as exc:
        problems.append(Problem("network.lists", f"cannot read: {exc}"))
    try:
        accounts = AccountResolver(policy.identity)
    except (IdentityConfigError, OSError) as exc:
        problems.append(Problem("identity", str(exc)))
    for where, message in policy.clients.problems([x.name for x in policy.limits], [b.name for b in policy.budgets]):
        problems.append(Problem(where, message))
    try:
        clients = ClientRegistry.load(policy.clients, limits=policy.limits, budgets=policy.budgets)
    except (ClientsError, OSError) as exc:
        problems.append(Problem("clients", str(exc)))
    signing_keys = None
    if policy.proof.keys_file is not None:
        try:
            signing_keys = KeyRing.from_file(policy.proof.keys_file)
        except KeyRingError as exc:
            problems.append(Problem("proof.keys_file", str(exc)))
    purposes: dict[str, PurposeScorer] = {}
    for i, route in enumerate(policy.routes):
        if route.purpose is None or not route.protect:
            continue
        try:
            # The model is loaded once per process and shared by every route.
            if models:
                purposes[route.path] = PurposeScorer.create(route.purpose)
            else:  # validation only: the serving process loads (and checks) the model
                purposes[route.path] = PurposeScorer.create(
                    route.purpose.model_copy(update={"semantic": "off"}), runtime=None
                )
        except EmbeddingUnavailable as exc:
            problems.append(Problem(f"routes[{i}].purpose.semantic", str(exc)))
    if purposes and models:
        logging.getLogger("tokenward").warning("%s", runtime_status())
    if problems:
        raise PolicyError(problems, source)
    return Evidence(lists, accounts, clients, purposes, signing_keys)
