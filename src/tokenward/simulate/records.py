"""What one simulated call did, as the client saw it.

A *call* is one thing a person or a script wanted from the model (one chat message,
one stolen completion). It takes one or more *attempts* on the protected route — a
refusal that carries a fresh challenge is proved again and retried once, as the SDKs
do — plus auxiliary requests (challenges, device registrations, page loads). The
call's outcome is the gateway's verdict on its last attempt.
"""

from __future__ import annotations

import contextvars
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "OUTCOMES",
    "Attempt",
    "CallRecord",
    "classify",
    "current_call",
    "read_records",
    "write_records",
]

# The final outcome of a call, from the last attempt's status and Tokenward-Decision.
OUTCOMES = ("allowed", "degraded", "challenged", "throttled", "blocked", "spend_limit", "error", "not_sent")

Side = Literal["legit", "attack"]


@dataclass(slots=True)
class Attempt:
    t_send: float
    t_headers: float
    status: int
    decision: str | None  # Tokenward-Decision
    request_id: str | None  # Tokenward-Request-Id
    code: str | None = None  # the refusal's error code, when read
    upstream: bool = False  # the answer came from the upstream model
    difficulty: int | None = None
    nonce: int | None = None


@dataclass(slots=True)
class CallRecord:
    actor: str
    side: Side
    t_arrival: float  # when the scheduler released the call (unix seconds)
    ip: str = ""
    t_start: float = 0.0  # when the person pressed Enter / the script began
    t_first_byte: float | None = None  # headers of the final answer
    t_end: float = 0.0
    outcome: str = "error"
    status: int = 0
    code: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    solve_s: float = 0.0  # time spent solving (legit: paced to the browser's speed)
    hashes: int = 0  # proof-of-work hashes computed (nonce + 1 per proof, registrations included)
    cpu_s: float = 0.0  # compute the call cost its client (solving; a farm's browser time)
    bytes_up: int = 0
    bytes_down: int = 0
    new_device: bool = False
    new_account: bool = False
    account: str | None = None
    device: str | None = None
    error: str | None = None

    @property
    def request_ids(self) -> list[str]:
        return [a.request_id for a in self.attempts if a.request_id]

    @property
    def challenged(self) -> bool:
        """Met at least one 401 (a proof problem or a harder challenge) on the way."""
        return any(a.status == 401 for a in self.attempts)

    @property
    def reached_upstream(self) -> bool:
        return self.outcome in ("allowed", "degraded")

    def add(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)
        self.status = attempt.status
        self.code = attempt.code
        self.t_first_byte = attempt.t_headers
        self.outcome = classify(attempt.status, attempt.decision, attempt.code, attempt.upstream)
        if attempt.nonce is not None:
            self.hashes += attempt.nonce + 1

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["challenged"] = self.challenged
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CallRecord:
        d = dict(d)
        d.pop("challenged", None)
        attempts = [Attempt(**a) for a in d.pop("attempts", [])]
        return cls(**d, attempts=attempts)


def classify(status: int, decision: str | None, code: str | None, upstream: bool) -> str:
    if 200 <= status < 300:
        return "degraded" if decision == "degrade" else "allowed"
    if status == 401:
        return "challenged"
    if status == 403:
        return "blocked"
    if status == 429:
        return "throttled"
    if status == 503 and code == "spend_limit":
        return "spend_limit"
    return "error"


# The call the current task is making: transports that see every HTTP request of an
# official SDK record their attempts here and add the call's client address.
current_call: contextvars.ContextVar[CallRecord | None] = contextvars.ContextVar("tokenward_sim_call", default=None)


def write_records(path: Path, records: list[CallRecord]) -> None:
    """One JSON object per line (blocking: call it off the event loop)."""
    with path.open("w") as f:
        for rec in records:
            f.write(json.dumps(rec.to_json()) + "\n")


def read_records(path: Path) -> list[CallRecord]:
    with path.open() as f:
        return [CallRecord.from_json(json.loads(line)) for line in f if line.strip()]
