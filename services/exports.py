"""CSV exports: the one writer every list and dashboard table goes through.

A spreadsheet opening a CSV runs any cell that starts with ``=``, ``+``, ``-`` or ``@`` (and
some read a leading tab or carriage return the same way) as a formula: a person named
``=HYPERLINK(...)`` must arrive as text. :func:`safe_cell` prefixes such cells with a single
quote (OWASP's advice), so the value is shown, not run; numbers are written as numbers.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

#: A cell starting with one of these is read as a formula by spreadsheet programs.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str | int | float:
    """One CSV cell, escaped against formula injection.

    Integers and floats stay numbers (a negative number is data, not a formula); ``None`` is
    empty; dates and instants are ISO 8601; lists and dicts are JSON text; every other value
    is text, prefixed with ``'`` when it starts with ``=``, ``+``, ``-``, ``@``, a tab or a
    carriage return.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | dict | tuple):
        value = json.dumps(value, sort_keys=True, default=str)
    text = str(value)
    if text.startswith(FORMULA_TRIGGERS):
        return "'" + text
    return text


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A CSV document (RFC 4180, CRLF line ends) with every cell through :func:`safe_cell`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
    return out.getvalue()
