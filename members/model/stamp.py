"""A member's ``model.keras`` says which member it is, so that a copy taken away from its folder still does.

``save_model`` adds one entry, :data:`ENTRY`, to the ``.keras`` archive: a JSON object with the member's
resolved ``spec.toml`` text (its ``preprocessing`` and ``fundus_crop`` run before the model, so whoever
feeds it images must run them too), its ``input_size`` and its ``classes`` in output order. Keras reads only
its own entries (``config.json``, ``metadata.json``, ``model.weights.h5``), so loading, ``safe_mode``
included, is unchanged; a model saved before the stamp existed simply has none (:func:`read_stamp` is None).

Example:
    >>> record = member_record('preprocessing = "ben"\\n', 224, [0, 1, 2, 3, 4])
    >>> sorted(record)
    ['classes', 'input_size', 'spec_toml', 'toolkit']
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Sequence

ENTRY = "cnn_ensemble_member.json"
"""The archive entry that holds the stamp."""
TOOLKIT = "cnn-ensemble"


def member_record(spec_toml: str, input_size: int, classes: Sequence) -> dict:
    """The stamp of a member: its spec's TOML text, the input size it was trained at, its classes in order."""
    return {"toolkit": TOOLKIT, "spec_toml": spec_toml, "input_size": int(input_size),
            "classes": [c if isinstance(c, (str, int)) and not isinstance(c, bool) else str(c) for c in classes]}


def write_stamp(path: str | Path, record: dict) -> None:
    """Add ``record`` to the ``.keras`` archive at ``path`` (a file being written, before it is moved in place)."""
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(ENTRY, json.dumps(record, ensure_ascii=False, indent=1))


def read_stamp(path: str | Path) -> dict | None:
    """The stamp of the ``.keras`` archive at ``path``, or None (a model from elsewhere, or saved before stamps)."""
    try:
        with zipfile.ZipFile(path) as archive:
            record = json.loads(archive.read(ENTRY))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    ok = isinstance(record, dict) and record.get("toolkit") == TOOLKIT and isinstance(record.get("spec_toml"), str)
    return record if ok else None
