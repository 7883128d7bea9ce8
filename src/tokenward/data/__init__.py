"""Data files shipped with tokenward: small example CIDR lists in the format the
network signals load (docs/signals.md). They hold documentation ranges only
(RFC 5737, RFC 3849): copy one to see the format, never use it as a real list."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["EXAMPLE_LISTS", "example_list"]

EXAMPLE_LISTS = ("datacenter", "tor")


def example_list(name: str) -> Path:
    """Path of the shipped example list ``cidr-example-<name>.txt``."""
    if name not in EXAMPLE_LISTS:
        raise ValueError(f"no example list {name!r}; there are: {', '.join(EXAMPLE_LISTS)}")
    return Path(str(files(__name__).joinpath(f"cidr-example-{name}.txt")))
