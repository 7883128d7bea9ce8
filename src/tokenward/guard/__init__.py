"""The guard: every protected request judged on its own evidence (see :mod:`.pipeline`)."""

from .base import DEVICE_ROUTE, RequestOutcome, new_request_id
from .pipeline import Guard
from .unproved import refuse_unproved

__all__ = ["DEVICE_ROUTE", "Guard", "RequestOutcome", "new_request_id", "refuse_unproved"]
