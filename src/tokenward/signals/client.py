"""Temporary alias: this module is now :mod:`tokenward.signals.http_client`.

Only so that the committed ``policy.py`` keeps importing until its import line (changed in
the working tree, committed by the lead) lands; then delete this file.
"""

from .http_client import ClientSettings

__all__ = ["ClientSettings"]
