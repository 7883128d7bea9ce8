"""Money: what a call costs, before (estimates, reservations) and after (exact usage).

* :mod:`.prices` — the price table (USD per 1M tokens, per model).
* :mod:`.tokens` — offline input-token estimates and the output allowance of a request.
* :mod:`.usage` — exact usage read from JSON and SSE responses as they stream through.
* :mod:`.call` — one forwarded call: the body the upstream receives and how its usage is read.
* :mod:`.budgets` — spend budgets per key (the ``budgets:`` section), reserved per request.
* :mod:`.spike` — traffic and spend spikes, under-attack mode, the global spend breaker.
* :mod:`.alerts` — a log line and a webhook POST for each of their state changes.

Everything here is pure and synchronous (no I/O, no clock) except :mod:`.alerts`, which
posts webhooks from a background task. docs/money.md tells users how reservations,
exact accounting and the spend breaker fit together.
"""

from .prices import EXAMPLE_PRICES, ModelPrice, PriceTable
from .tokens import (
    Endpoint,
    TokenEstimator,
    bytes_estimate,
    default_estimator,
    endpoint_of,
    limit_output,
    max_output,
)
from .usage import Prepared, Usage, UsageMeter, prepare_request, usage_from_json

__all__ = [
    "EXAMPLE_PRICES",
    "Endpoint",
    "ModelPrice",
    "Prepared",
    "PriceTable",
    "TokenEstimator",
    "Usage",
    "UsageMeter",
    "bytes_estimate",
    "default_estimator",
    "endpoint_of",
    "limit_output",
    "max_output",
    "prepare_request",
    "usage_from_json",
]
