"""The decision log: every decision with its reasons, written off the request path."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

__all__ = ["DecisionLog", "DecisionRecord", "clean"]


@dataclass(slots=True)
class DecisionRecord:
    ts: float
    request_id: str
    method: str
    path: str
    route: str | None
    client_ip: str
    action: str  # what was done (allow when shadow)
    name: str  # namespaced rule: proof/ok, proof/replayed, route/unprotected...
    code: str | None = None
    shadow_action: str | None = None  # in shadow mode: what enforce mode would have done
    reasons: list[str] = field(default_factory=list)
    signals: list[dict[str, Any]] = field(default_factory=list)
    proof: dict[str, Any] | None = None
    status: int = 0
    decision_ms: float = 0.0
    total_ms: float = 0.0
    upstream_status: int | None = None
    error: str | None = None
    risk: dict[str, Any] | None = None
    model: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    usage_exact: bool | None = None
    cost_usd: float | None = None  # what the upstream call cost
    reserved_usd: float | None = None  # what was held against budgets before it
    # A refusal on a protected route: what the call would have held at most (its
    # reservation, or its input and full output allowance at its model's price).
    held_usd: float | None = None
    account: str | None = None  # the account the request was judged as, when it had one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DecisionLog(Protocol):
    def record(self, rec: DecisionRecord) -> None:
        """Queue one record; never blocks on I/O in the common case. Called once per
        request, after it ended."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Write everything queued, then release resources."""
        ...


def clean(value: Any) -> Any:
    """What a database or JSON encoder cannot store, replaced: NUL characters (PostgreSQL's
    text and jsonb refuse them) and unpaired surrogates (not UTF-8)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, dict):
        return {clean(str(k)): clean(v) for k, v in value.items()}
    return value
