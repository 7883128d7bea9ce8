"""tokenward: verify every AI request on its own evidence.

Public API: :class:`Guard`, :class:`Policy`, :class:`Decision`, :class:`TokenwardMiddleware`.
"""

from .decision import Action, Decision, Flavour, Signal
from .guard import Guard
from .policy import Policy, PolicyError, load_policy

__all__ = [
    "Action",
    "Decision",
    "Flavour",
    "Guard",
    "Policy",
    "PolicyError",
    "Signal",
    "TokenwardMiddleware",
    "load_policy",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The middleware pulls in the HTTP layer; import it only when asked for.
    if name == "TokenwardMiddleware":
        from .http.middleware import TokenwardMiddleware

        return TokenwardMiddleware
    raise AttributeError(name)
