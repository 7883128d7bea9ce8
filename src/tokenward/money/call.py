"""One forwarded call: the body the upstream receives and how its usage is read."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from .tokens import bytes_estimate
from .usage import UsageMeter, prepare_request

__all__ = ["CallPlan", "plan_call"]


@dataclass(frozen=True, slots=True)
class CallPlan:
    """``body`` is what goes upstream (None: the client's bytes unchanged); ``model`` is
    what the call is priced as; the meter reads the response's usage as it streams."""

    flavour: str
    path: str
    body: bytes | None
    model: str | None
    inject_usage: bool
    input_estimate: int
    count: Callable[[str], int]

    def meter(self, status: int, content_type: str) -> UsageMeter:
        return UsageMeter(
            self.flavour,
            self.path,
            inject_usage=self.inject_usage,
            input_estimate=self.input_estimate,
            count=self.count,
            sse=content_type.startswith("text/event-stream"),
            status=status,
        )


def plan_call(
    flavour: str,
    path: str,
    body: Mapping[str, Any],
    *,
    model: str | None,
    degrade: Mapping[str, Any] | None = None,
    output_cap: int | None = None,
    input_estimate: int | None = None,
    count: Callable[[str], int] = bytes_estimate,
    rebuilt: bool = False,
) -> CallPlan:
    """Decide the upstream body: ask OpenAI streams for their usage (stripped again
    before the client sees it when it did not ask), cap the output at what a
    reservation assumed (``output_cap``), and apply a degrade decision (a lower output
    cap, a cheaper model)."""
    limit = degrade.get("max_tokens") if degrade else None
    if output_cap is not None:
        # A reservation assumed at most this much output: make it a true bound.
        limit = output_cap if limit is None else min(limit, output_cap)
    swap = degrade.get("model") if degrade else None
    if swap:
        body, model = {**body, "model": swap}, swap
    prepared = prepare_request(body, flavour, path, output_limit=limit)
    new_body = prepared.body
    if new_body is None and (swap or rebuilt):  # the client's bytes are not what goes upstream
        new_body = orjson.dumps(body)
    if input_estimate is None:
        # No reservation was made: a cheap estimate is enough for a stream cut short.
        input_estimate = bytes_estimate(orjson.dumps(body).decode())
    return CallPlan(flavour, path, new_body, model, prepared.inject_usage, input_estimate, count)
