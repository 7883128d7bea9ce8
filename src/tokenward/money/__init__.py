"""Money: what a call costs, before (estimates, reservations) and after (exact usage).

* :mod:`.prices` — the price table (USD per 1M tokens, per model).
* :mod:`.tokens` — offline input-token estimates and the output allowance of a request.
* :mod:`.usage` — exact usage read from JSON and SSE responses as they stream through.

Everything here is pure and synchronous: no I/O, no clock. docs/money.md tells users
how reservations, exact accounting and the spend breaker fit together.
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
