"""How the CLI prints tables and money, piped or on a terminal of any width.

Piped (stdout not a terminal): one line per row, columns aligned with spaces, never
wrapped whatever ``COLUMNS`` says — ``grep`` and ``sort`` see whole rows, and ``--json``
is there for programs. On a terminal: the same aligned lines when they fit its width;
otherwise one block per row (the first columns on its first line, then ``name: value``
pairs packed on indented lines), so that no route, id or rule is ever split, and only the
column named ``wrap`` (reasons) is wrapped, between its words.
"""

from __future__ import annotations

import math
import sys
import textwrap
from collections.abc import Sequence
from urllib.parse import urlsplit

from rich.console import Console

__all__ = ["mask_uri", "print_json", "print_table", "usd"]

_GAP = "  "


def usd(value: float) -> str:
    """Dollars with at least three significant digits and four decimals: ``12.3400``,
    ``0.0012`` is ``0.00123``, eight calls of $0.000006 are ``0.000048`` (never ``0.0000``)."""
    if value == 0:
        return "0"
    decimals = max(4, 2 - math.floor(math.log10(abs(value))))
    text = f"{value:,.{decimals}f}"
    if decimals > 4:  # the extra decimals are there for the significant digits only
        text = text.rstrip("0")
    return text


def print_json(document: object) -> None:
    """One JSON document on stdout (``--json``)."""
    import orjson

    sys.stdout.write(orjson.dumps(document, default=str).decode() + "\n")


def mask_uri(uri: str) -> str:
    """A store or log URI without its password (``redis://:secret@h`` -> ``redis://:***@h``)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.password is None:
        return uri
    user, _, host = parts.netloc.rpartition("@")
    name = user.partition(":")[0]
    return parts._replace(netloc=f"{name}:***@{host}").geturl()


def print_table(
    console: Console,
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Sequence[str] = (),
    wrap: str | None = None,
    lead: int = 2,
) -> None:
    """Print ``rows`` under ``columns`` (see the module's docstring). ``right``: columns
    aligned right (numbers); ``wrap``: the one column that may be wrapped between words;
    ``lead``: how many first columns head a row's block on a narrow terminal."""
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        out = [
            cell.rjust(w) if col in right else cell.ljust(w)
            for col, cell, w in zip(columns, cells, widths, strict=True)
        ]
        return _GAP.join(out).rstrip()

    tty = console.is_terminal
    _say(console, title, "bold" if tty else None)
    if not rows:
        _say(console, "  (none)")
        return
    natural = sum(widths) + len(_GAP) * (len(widths) - 1)
    if not tty or natural <= console.width:
        _say(console, line(columns), "bold" if tty else None)
        for row in rows:
            _say(console, line(row))
        return
    for row in rows:
        _block(console, columns, row, wrap=wrap, lead=max(1, min(lead, len(columns))))


def _block(console: Console, columns: Sequence[str], row: Sequence[str], *, wrap: str | None, lead: int) -> None:
    """One row as a block that fits ``console.width``: never a value split mid-word."""
    width = console.width
    _say(console, _GAP.join(row[:lead]), "bold")
    indent = "  "
    current = ""
    for col, cell in zip(columns[lead:], row[lead:], strict=True):
        pair = f"{col}: {cell}"
        if col == wrap and len(indent) + len(pair) > width:
            if current:
                _say(console, indent + current)
                current = ""
            for text in textwrap.wrap(
                pair, width=width, initial_indent=indent, subsequent_indent=indent * 2,
                break_long_words=False, break_on_hyphens=False,
            ):  # fmt: skip
                _say(console, text)
            continue
        candidate = f"{current}{_GAP}{pair}" if current else pair
        if current and len(indent) + len(candidate) > width:
            _say(console, indent + current)
            current = pair
        else:
            current = candidate
    if current:
        _say(console, indent + current)


def _say(console: Console, text: str, style: str | None = None) -> None:
    console.print(text, style=style, markup=False, highlight=False, soft_wrap=True, emoji=False)
