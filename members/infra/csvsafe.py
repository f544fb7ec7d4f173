"""CSV cells that are safe to open in a spreadsheet (no formula injection).

Excel, LibreOffice and Google Sheets run a cell that starts with ``=``, ``+``, ``-`` or
``@`` (and some also after a leading tab or carriage return) as a formula, so an image
named ``=HYPERLINK(...)`` or a class folder ``+cmd`` in a CSV we write could run code in
the reader's spreadsheet. :func:`cell` prefixes such text with a single quote, which the
spreadsheet shows as plain text; plain numbers (``-1``, ``+0.5``, ``-1e-05``) are left as
they are, so numeric columns stay numeric. Text that itself starts with a quote gets one more,
so the escaping can be undone without doubt (:func:`uncell`: a cell that starts with ``'``
drops that first quote): ``-dash.jpg`` is written ``'-dash.jpg``, ``'-dash.jpg`` is written
``''-dash.jpg``. Text that is not valid UTF-8 (a file name in
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
QUOTE = "'"
"""Put before a cell that starts with one of :data:`TRIGGERS`, and before one that starts with itself."""
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
    """``value`` with a leading ``'`` when it is text a spreadsheet would run as a formula, or text that starts with
    ``'`` itself (so that :func:`uncell` undoes it exactly); other values unchanged.

    Example:
        >>> cell("caf\\udce9.jpeg")  # the file name's Latin-1 byte, escaped
        'caf\\\\xe9.jpeg'
        >>> cell("-dash.jpg"), cell("'-dash.jpg")
        ("'-dash.jpg", "''-dash.jpg")
    """
    if isinstance(value, str) and not is_utf8(value):
        value = printable(value)
    if not isinstance(value, str) or not value.startswith((*TRIGGERS, QUOTE)) or _NUMBER.match(value):
        return value
    return QUOTE + value


def uncell(text: str) -> str:
    """The text :func:`cell` was given: one leading ``'`` removed where :func:`cell` put it (before a formula
    character or another ``'``); any other text unchanged.

    Example:
        >>> uncell("'-dash.jpg"), uncell("''-dash.jpg"), uncell("'plain.jpg")
        ('-dash.jpg', "'-dash.jpg", "'plain.jpg")
    """
    if text[:1] == QUOTE and text[1:2] and text[1:2] in (*TRIGGERS, QUOTE):
        return text[1:]
    return text


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
