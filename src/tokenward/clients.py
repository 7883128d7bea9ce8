"""Temporary alias: this module is now the package :mod:`tokenward.trusted_clients`.

Only so that the committed ``policy.py`` keeps importing until its import line (changed in
the working tree, committed by the lead) lands; then delete this file.
"""

from .trusted_clients import ClientsSettings

__all__ = ["ClientsSettings"]
