"""Generic checks of user numbers and spec fields, each failing with one plain sentence.

:func:`check_fields` checks every field of a dataclass against its declared type
(``int``, ``float``, ``bool``, ``str``, ``tuple[int, ...]``, ``X | None``...): the type,
finiteness of floats, a sane magnitude for integers. It reads the annotations, so fields
added later are covered without code here. :func:`check_seed` bounds seeds (NumPy and
TensorFlow take 0 … 2³²-1). :func:`check_memory` estimates a member's training memory
from its spec (parameters with their gradient and optimizer copies, plus the activations
of one batch at the input size) and refuses a spec whose estimate exceeds the limit.

Example:
    >>> check_seed(-1, "--seed")
    Traceback (most recent call last):
    ...
    members.infra.errors.UserError: --seed must be an integer from 0 to 4294967295; got -1. Received: --seed=-1
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
from typing import Any

from members.infra.errors import UserError

MAX_SEED = 2**32 - 1
MAX_CLASSES = 1000  # labels are class indices 0..k-1; a larger one is a typo or a code, not a class
MAX_INT = 2**31 - 1  # TensorFlow shapes and counts are int32 in many places
MEMORY_ENV = "CNN_ENSEMBLE_MAX_MEMORY_GB"
BYTES_PER_FLOAT = 4
UNKNOWN_ARCH_FLOATS_PER_PIXEL = 300  # Keras applications: a rough activation count per input pixel
UNKNOWN_ARCH_PARAMS = 30_000_000

def is_int(value: Any) -> bool:
    """Whether ``value`` is a whole number: an int or a NumPy integer (``np.int64(2)``), never a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """Whether ``value`` is a number: an int, a float or a NumPy number (``np.float32(0.1)``), never a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _split_union(annotation: str) -> list[str]:
    """``"tuple[int, ...] | None"`` -> ``["tuple[int, ...]", "None"]`` (only top-level bars split)."""
    parts, depth, current = [], 0, ""
    for char in annotation:
        depth += char == "["
        depth -= char == "]"
        if char == "|" and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return [p[len("Optional["):-1] if p.startswith("Optional[") else p for p in parts]


def _type_ok(value: Any, annotation: str) -> str | None:
    """None when ``value`` fits ``annotation`` (a string, as under ``from __future__ import annotations``), else why not."""
    options = _split_union(annotation)
    if "None" in options:
        if value is None:
            return None
        options = [o for o in options if o != "None"]
    problems = [_one_type(value, option) for option in options]
    return None if not problems or None in problems else problems[0]


def _one_type(value: Any, option: str) -> str | None:
    if option == "float":
        if not is_real(value):
            return "a number"
        finite = abs(value) <= 1e300 if is_int(value) else math.isfinite(value)
        return None if finite else "a finite number"
    if option == "int":
        if not is_int(value):
            return "an integer" + (" (a whole number, without a decimal point)" if isinstance(value, float) else "")
        return None if abs(value) <= MAX_INT else f"an integer of at most {MAX_INT}"
    if option == "bool":
        return None if isinstance(value, bool) else "true or false"
    if option == "str":
        return None if isinstance(value, str) else "a string (in quotes)"
    match = re.fullmatch(r"(?:tuple|list)\[(\w+)(?:, \.\.\.)?\]", option)
    if match:
        if not isinstance(value, (list, tuple)):
            return f"a list of {match.group(1)} values (e.g. [64, 128])"
        for item in value:
            problem = _one_type(item, match.group(1))
            if problem is not None:
                return f"a list whose items are each {problem}"
        return None
    return None  # a type this checker does not know: the field's own check decides


def check_fields(obj: Any) -> None:
    """Check every dataclass field of ``obj`` for its declared type, finiteness and magnitude.

    Raises:
        UserError: the first field that does not fit, with what was expected.
    """
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        problem = _type_ok(value, f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type)))
        if problem is not None:
            raise UserError(f"{f.name} must be of type {f.type}; got {_show(value)} ({type(value).__name__}), "
                            f"expected {problem}. Received: {f.name}={_show(value)}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_seed(value: Any, name: str = "seed") -> int:
    """``value`` as a seed (a Python int): an integer from 0 to 2³²-1, else a :class:`UserError` naming ``name``."""
    if not is_int(value) or not 0 <= value <= MAX_SEED:
        raise UserError(f"{name} must be an integer from 0 to {MAX_SEED}; got {_show(value)}. "
                        f"Received: {name}={_show(value)}")
    return int(value)


def memory_limit() -> int:
    """Bytes a member may plan to use: ``$CNN_ENSEMBLE_MAX_MEMORY_GB``, else 90 % of physical memory."""
    env = os.environ.get(MEMORY_ENV)
    if env:
        try:
            gb = float(env)
            if math.isfinite(gb) and gb > 0:
                return int(gb * 2**30)
        except ValueError:
            pass
        raise UserError(f"{MEMORY_ENV} must be a positive number of GiB; got {env!r}.")
    try:
        return int(0.9 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 64 * 2**30


def estimate_memory(spec: Any, num_classes: int) -> tuple[int, int]:
    """``(bytes, parameters)``: a rough training-memory estimate of a member, from its spec alone.

    Parameters count four times (weights, gradients, momentum, best copy); activations of
    one batch at the largest input size twice (forward and backward), float32.
    """
    s, batch, k = int(spec.input_size), int(spec.batch_size), int(num_classes)
    arch = getattr(spec, "architecture", "convnet")
    if arch == "convnet":
        act, params, cin, side, f = 3 * s * s, 0, 3, s, 3
        for block in range(int(spec.depth)):
            f = min(int(spec.width) * 2**block, int(spec.max_width))
            for _ in range(int(spec.convs_per_block)):
                act += side * side * f * (3 if spec.batch_norm else 2)
                params += 9 * cin * f + 2 * f
                cin = f
            side = max(side // 2, 1)
        features = f * side * side if spec.pooling == "flatten" else (2 * f if spec.pooling == "avgmax" else f)
    elif arch == "article":
        act, params, side = 700 * s * s, 1_000_000, max(s // 4 - 8, 1)
        features = 128 * side * side
    else:
        act, params, features = UNKNOWN_ARCH_FLOATS_PER_PIXEL * s * s, UNKNOWN_ARCH_PARAMS, 2048
    units, layers = int(getattr(spec, "dense_units", 0)), int(getattr(spec, "dense_layers", 0))
    width_in = features
    for _ in range(layers):
        params += width_in * units + units
        width_in = units
    params += width_in * k + k
    total = BYTES_PER_FLOAT * (4 * params + 2 * batch * act)
    return total, params


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n < 2**60 else f"about 10^{int(math.log10(n))} bytes"


def check_memory(spec: Any, num_classes: int, *, limit: int | None = None) -> int:
    """Refuse a spec whose estimated training memory exceeds ``limit`` (default :func:`memory_limit`).

    Returns:
        The estimate in bytes.

    Raises:
        UserError: the estimate, the limit and what to lower.
    """
    total, params = estimate_memory(spec, num_classes)
    limit = memory_limit() if limit is None else limit
    if total > limit:
        raise UserError(
            f"This member would need about {_gib(total)} to train (an estimated {params:,} parameters; batch "
            f"{spec.batch_size} at {spec.input_size} px), more than the {_gib(limit)} available; lower input_size, "
            f"batch_size, width or dense_units (or raise {MEMORY_ENV} if the estimate is wrong). "
            f"Received: input_size={spec.input_size}, batch_size={spec.batch_size}")
    return total
