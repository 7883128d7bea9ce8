"""The guard: every protected request judged on its own evidence (see :mod:`.pipeline`)."""

from .base import DEVICE_ROUTE, RequestOutcome, new_request_id
from .pipeline import Guard

__all__ = ["DEVICE_ROUTE", "Guard", "RequestOutcome", "new_request_id"]
