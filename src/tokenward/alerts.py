"""Temporary alias: this module is now :mod:`tokenward.money.alerts`.

Only so that the committed ``policy.py`` keeps importing until its import line (changed in
the working tree, committed by the lead) lands; then delete this file.
"""

from .money.alerts import AlertSettings

__all__ = ["AlertSettings"]
