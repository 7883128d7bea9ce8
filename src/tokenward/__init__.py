"""tokenward: verify every AI request on its own evidence.

Public API: :class:`Guard`, :class:`Policy`, :class:`Decision`, :class:`TokenwardMiddleware`,
and :class:`TokenwardError`, the base of the errors tokenward raises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .decision import Action, Decision, Flavour, Signal
from .errors import ConfigurationError, TokenwardError
from .guard import Guard
from .policy import Policy, PolicyError, load_policy

if TYPE_CHECKING:  # imported lazily at run time (below): it pulls in the HTTP layer
    from .http.middleware import TokenwardMiddleware

__all__ = [
    "Action",
    "ConfigurationError",
    "Decision",
    "Flavour",
    "Guard",
    "Policy",
    "PolicyError",
    "Signal",
    "TokenwardError",
    "TokenwardMiddleware",
    "load_policy",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> type[TokenwardMiddleware]:
    # The middleware pulls in the HTTP layer; import it only when asked for.
    if name == "TokenwardMiddleware":
        from .http.middleware import TokenwardMiddleware

        return TokenwardMiddleware
    raise AttributeError(name)
