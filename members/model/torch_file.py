"""Read the tensors of a PyTorch ``state_dict`` file (``.pth``/``.pt``) without unpickling it.

A PyTorch file is a pickle, and loading a pickle runs whatever it names. This reader never
hands the bytes to :mod:`pickle`: it walks the opcodes with :func:`pickletools.genops` on a
small stack machine that knows exactly the handful of names a ``state_dict`` uses
(``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``, ``_rebuild_parameter`` and
the typed storages) and refuses any other with one sentence. Nothing is imported or called.

Both layouts ``torch.save`` writes are read:

* the zip archive (PyTorch ≥ 1.6): ``<name>/data.pkl`` plus one raw file per storage,
  ``<name>/data/<key>``;
* the legacy stream: five pickles (magic number, protocol, system info, the object, the
  storage keys) followed by each storage as an 8-byte element count and its raw bytes.

Example:
    >>> tensors = read_state_dict("efficientnet-lite0.pth")        # doctest: +SKIP
    >>> tensors["_conv_stem.weight"].shape                          # doctest: +SKIP
    (32, 3, 3, 3)
"""

from __future__ import annotations

import io
import os
import pickletools
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from members.infra.errors import UserError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": None,  # no numpy dtype: refused with a sentence
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_DICTS = {"collections OrderedDict", "builtins dict"}
_TENSOR = {"torch._utils _rebuild_tensor_v2", "torch._utils _rebuild_tensor"}
_PARAMETER = "torch._utils _rebuild_parameter"


class _Mark:
    """The MARK opcode's place on the stack."""


@dataclass(frozen=True)
class _Global:
    name: str  # "module qualname"


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: object


@dataclass(frozen=True)
class _Tensor:
    storage: _Storage
    offset: int
    size: tuple
    stride: tuple


def _refuse(path, what: str) -> UserError:
    return UserError(f"{path} is not a plain PyTorch state_dict ({what}); pass a file saved with "
                     "torch.save(model.state_dict(), path), a .weights.h5 or a .keras file.")


def _walk(data: bytes, path, *, start: int = 0) -> tuple[object, int]:
    """Evaluate one pickle of ``data`` from ``start`` on the restricted stack machine: (its object, end offset)."""
    stream = io.BytesIO(data)
    stream.seek(start)
    stack: list = []
    memo: dict = {}

    def pop_mark() -> list:
        items = []
        while True:
            item = stack.pop()
            if isinstance(item, _Mark):
                return items[::-1]
            items.append(item)

    try:
        for op, arg, _ in pickletools.genops(stream):
            name = op.name
            if name in ("PROTO", "FRAME"):
                continue
            if name == "STOP":
                return stack.pop(), stream.tell()
            if name == "MARK":
                stack.append(_Mark())
            elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[arg] = stack[-1]
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                stack.append(memo[arg])
            elif name in ("BININT", "BININT1", "BININT2", "LONG1", "LONG4", "INT", "LONG", "BINFLOAT", "FLOAT",
                          "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "UNICODE", "BINSTRING",
                          "SHORT_BINSTRING", "STRING", "BINBYTES", "SHORT_BINBYTES"):
                stack.append(arg)
            elif name == "NONE":
                stack.append(None)
            elif name in ("NEWTRUE", "NEWFALSE"):
                stack.append(name == "NEWTRUE")
            elif name == "EMPTY_DICT":
                stack.append({})
            elif name == "EMPTY_LIST":
                stack.append([])
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name == "TUPLE":
                stack.append(tuple(pop_mark()))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                items = stack[-n:]
                del stack[-n:]
                stack.append(tuple(items))
            elif name == "DICT":
                items = pop_mark()
                stack.append(dict(zip(items[::2], items[1::2])))
            elif name == "LIST":
                stack.append(pop_mark())
            elif name == "SETITEM":
                value, key = stack.pop(), stack.pop()
                stack[-1][key] = value
            elif name == "SETITEMS":
                items = pop_mark()
                stack[-1].update(zip(items[::2], items[1::2]))
            elif name == "APPEND":
                value = stack.pop()
                stack[-1].append(value)
            elif name == "APPENDS":
                items = pop_mark()
                stack[-1].extend(items)
            elif name == "GLOBAL":
                stack.append(_Global(arg))
            elif name == "STACK_GLOBAL":
                qualname, module = stack.pop(), stack.pop()
                stack.append(_Global(f"{module} {qualname}"))
            elif name == "BINPERSID":
                stack.append(_persistent(stack.pop(), path))
            elif name == "REDUCE":
                args, func = stack.pop(), stack.pop()
                stack.append(_reduce(func, args, path))
            elif name == "BUILD":
                stack.pop()  # an OrderedDict's _metadata (module versions): not needed
            else:
                raise _refuse(path, f"it uses the pickle opcode {name}, which a state_dict does not")
    except (IndexError, KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, UserError):
            raise
        raise _refuse(path, f"its pickle is damaged or cut short ({type(exc).__name__})") from None
    raise _refuse(path, "its pickle has no end")


def _persistent(pid, path) -> _Storage:
    if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage" and isinstance(pid[1], _Global)):
        raise _refuse(path, f"it refers to an object {pid!r} that is not a tensor storage")
    module, _, kind = pid[1].name.partition(" ")
    if module != "torch" or kind not in STORAGE_DTYPES:
        raise _refuse(path, f"it names the storage type {pid[1].name!r}")
    if STORAGE_DTYPES[kind] is None:
        raise UserError(f"{path} holds {kind} tensors, which numpy cannot read; save the state_dict as float32 "
                        "(model.float()) and pass it again.")
    return _Storage(str(pid[2]), STORAGE_DTYPES[kind])


def _reduce(func, args, path):
    if not isinstance(func, _Global):
        raise _refuse(path, "it calls something that is not a named function")
    if func.name in _DICTS:
        return {}
    if func.name in _TENSOR:
        storage, offset, size, stride = args[:4]
        return _Tensor(storage, int(offset), tuple(size), tuple(stride))
    if func.name == _PARAMETER:
        return args[0]
    raise _refuse(path, f"it calls {func.name.replace(' ', '.')}, which a state_dict does not")


def _array(tensor: _Tensor, raw: bytes, path) -> np.ndarray:
    flat = np.frombuffer(raw, dtype=np.dtype(tensor.storage.dtype).newbyteorder("<"))
    if not tensor.size:
        return flat[tensor.offset:tensor.offset + 1].reshape(()).copy()
    item = flat.itemsize
    end = tensor.offset + 1 + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride))
    if tensor.offset < 0 or end > flat.size:
        raise _refuse(path, f"a tensor of shape {tensor.size} reaches past its storage")
    view = np.lib.stride_tricks.as_strided(flat[tensor.offset:], shape=tensor.size,
                                           strides=tuple(s * item for s in tensor.stride))
    return np.ascontiguousarray(view).astype(view.dtype.newbyteorder("="))


def _tensor_refs(obj, path) -> dict[str, _Tensor]:
    """The tensors of a state_dict (or of a training checkpoint's ``state_dict``) by name, not yet read."""
    if not isinstance(obj, dict):
        raise _refuse(path, f"it holds a {type(obj).__name__}, not a dict of tensors")
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):  # a training checkpoint
        obj = obj["state_dict"]
    return {str(key): value for key, value in obj.items() if isinstance(value, _Tensor)}


def _tensors(refs: dict[str, _Tensor], storages: dict, path) -> dict[str, np.ndarray]:
    out = {key: _array(value, storages[value.storage.key], path) for key, value in refs.items()}
    if not out:
        raise _refuse(path, "it holds no tensor")
    return out


def _read_zip(file: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(file) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise _refuse(file, "its archive has no data.pkl")
        prefix = pkl[: -len("data.pkl")]
        obj, _ = _walk(archive.read(pkl), file)
        refs = _tensor_refs(obj, file)
        try:
            storages = {key: archive.read(f"{prefix}data/{key}") for key in {v.storage.key for v in refs.values()}}
        except KeyError as exc:
            raise _refuse(file, f"its archive lacks the storage {exc}") from None
    return _tensors(refs, storages, file)


def _read_legacy(file: Path, data: bytes) -> dict[str, np.ndarray]:
    magic, at = _walk(data, file)
    if magic != LEGACY_MAGIC:
        raise _refuse(file, "it does not start with PyTorch's magic number")
    _, at = _walk(data, file, start=at)  # protocol version
    _, at = _walk(data, file, start=at)  # system info
    obj, at = _walk(data, file, start=at)
    keys, at = _walk(data, file, start=at)
    refs = _tensor_refs(obj, file)
    dtypes = {value.storage.key: value.storage.dtype for value in refs.values()}
    storages = {}
    for key in keys:
        (count,) = struct.unpack_from("<q", data, at)
        size = count * np.dtype(dtypes.get(str(key), np.uint8)).itemsize
        at += 8
        if count < 0 or at + size > len(data):
            raise _refuse(file, "it ends inside a storage (truncated?)")
        storages[str(key)] = data[at:at + size]
        at += size
    return _tensors(refs, storages, file)


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of the PyTorch ``state_dict`` saved at ``path``, by name, as numpy arrays.

    Raises:
        UserError: the file is missing, not a PyTorch file, or holds more than a state_dict
            (the sentence names what it found). Nothing in the file is executed.
    """
    file = Path(path)
    if not file.is_file():
        raise UserError(f"Weights file {file} does not exist; pass the path of a PyTorch .pth state_dict.")
    if zipfile.is_zipfile(file):
        return _read_zip(file)
    data = file.read_bytes()
    return _read_legacy(file, data)
