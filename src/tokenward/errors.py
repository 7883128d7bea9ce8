"""The errors tokenward raises on purpose, under one base.

Catch :class:`TokenwardError` to handle anything tokenward refuses to do; catch a branch
for one concern. :class:`ConfigurationError` is also a ``ValueError`` and the store and
log errors are also ``RuntimeError``\\ s, as they were before this hierarchy, so existing
``except`` clauses keep working.
"""

from __future__ import annotations

__all__ = ["ConfigurationError", "LogError", "StoreError", "TokenwardError", "UpstreamError"]


class TokenwardError(Exception):
    """Base of every error tokenward raises on purpose."""


class ConfigurationError(TokenwardError, ValueError):
    """Something configured cannot be used: a policy, a store or log URI, a key file, a list."""


class StoreError(TokenwardError, RuntimeError):
    """The shared store could not do what was asked."""


class LogError(TokenwardError, RuntimeError):
    """The decision log could not do what was asked."""


class UpstreamError(TokenwardError):
    """The upstream model endpoint could not be reached or answered out of protocol."""
