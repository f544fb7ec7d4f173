"""CSV cells that are safe to open in a spreadsheet (no formula injection).

Excel, LibreOffice and Google Sheets run a cell that starts with ``=``, ``+``, ``-`` or
``@`` (and some also after a leading tab or carriage return) as a formula, so an image
named ``=HYPERLINK(...)`` or a class folder ``+cmd`` in a CSV we write could run code in
the reader's spreadsheet. :func:`cell` prefixes such text with a single quote, which the
spreadsheet shows as plain text; plain numbers (``-1``, ``+0.5``, ``-1e-05``) are left as
they are, so numeric columns stay numeric. Text that is not valid UTF-8 (a file name in
another system's encoding, decoded by Python to lone surrogates) gets ``\\xNN`` escapes for
those bytes, so that the UTF-8 CSV can be written at all.

Example:
    >>> cell("=1+1"), cell("-0.25"), cell("a.jpeg")
    ("'=1+1", '-0.25', 'a.jpeg')
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8: a file name in another system's encoding decodes to lone surrogates.

        >>> is_utf8("café.png"), is_utf8(os.fsdecode(b"caf\\xe9.png"))
        (True, False)
    """
    return not any("\udc80" <= ch <= "\udcff" for ch in text)


def printable(text: str) -> str:
    """``text`` as any UTF-8 output takes it: bytes that are not UTF-8 become ``\\xNN`` escapes."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def cell(value: Any) -> Any:
    """``value`` with a leading ``'`` when it is text a spreadsheet would run as a formula; other values unchanged.

    Example:
        >>> cell("caf\\udce9.jpeg")  # the file name's Latin-1 byte, escaped
        'caf\\\\xe9.jpeg'
    """
    if isinstance(value, str) and not is_utf8(value):
        value = printable(value)
    if not isinstance(value, str) or not value.startswith(TRIGGERS) or _NUMBER.match(value):
        return value
    return "'" + value


def row(values: Iterable[Any]) -> list[Any]:
    """:func:`cell` over one CSV row."""
    return [cell(v) for v in values]


def frame(table):
    """A copy of a pandas DataFrame whose text cells are made safe with :func:`cell`."""
    out = table.copy()
    for column in out.columns:
        if not (out[column].dtype.kind in "biuf"):  # text columns (object or pandas' string dtype)
            out[column] = out[column].map(cell)
    return out
