"""Decision records for the log tests (a module of its own: the killed child processes of
test_journal.py import it, and it needs neither psycopg nor a server)."""

from __future__ import annotations

from typing import Any

from tokenward.log import DecisionRecord


def make_record(i: int, **overrides: Any) -> DecisionRecord:
    fields: dict[str, Any] = {
        "ts": 1_700_000_000.0 + i,
        "request_id": f"req-{i:05d}",
        "method": "POST",
        "path": "/v1/chat/completions",
        "route": "/v1/chat/completions",
        "client_ip": "203.0.113.7",
        "action": "allow",
        "name": "proof/ok",
        "reasons": ["proof/ok"],
        "signals": [{"name": "proof/ok", "score": 0.0, "evidence": {"difficulty": 8, "i": i}}],
        "proof": {"difficulty": 8, "kid": "0a0b0c0d", "age_ms": 12.5},
        "status": 200,
        "decision_ms": 0.25,
        "total_ms": 40.5,
        "upstream_status": 200,
    }
    fields.update(overrides)
    return DecisionRecord(**fields)
