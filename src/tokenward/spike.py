"""Temporary alias: this module is now :mod:`tokenward.money.spike`.

Only so that the committed ``policy.py`` keeps importing until its import line (changed in
the working tree, committed by the lead) lands; then delete this file.
"""

from .money.spike import BreakerSettings, SpikeSettings

__all__ = ["BreakerSettings", "SpikeSettings"]
