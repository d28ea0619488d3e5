"""Read a PyTorch zip checkpoint (torch.save format) into numpy arrays without torch.

A torch checkpoint is a zip holding `<root>/data.pkl` (a pickle whose tensors are
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` calls with storages
referenced by persistent ids) and the raw storages as `<root>/data/<key>`. We unpickle with a
whitelist: only the handful of globals a state dict needs are resolved, anything else is an
error, so a malicious checkpoint cannot run code (unlike plain `pickle.load`).
"""
from __future__ import annotations

import collections
import io
import pickle
import zipfile

import numpy as np

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class TorchZipError(ValueError):
    pass


class _StorageType:
    def __init__(self, name: str):
        if name not in _STORAGE_DTYPES:
            raise TorchZipError(f"unsupported storage type torch.{name}")
        self.dtype = _STORAGE_DTYPES[name]


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    size, stride = tuple(size), tuple(stride)
    if not size:
        return storage[offset:offset + 1].reshape(()).copy()
    need = offset + 1 + sum((s - 1) * st for s, st in zip(size, stride))
    if need > storage.size:
        raise TorchZipError(f"tensor of size {size} runs past its storage ({storage.size} elements)")
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=tuple(st * storage.itemsize for st in stride))
    return np.ascontiguousarray(view)


def _rebuild_parameter(data, _requires_grad, _hooks, *_ignored):
    return data


def load(data: bytes) -> dict:
    """Return the unpickled checkpoint with every tensor as a numpy array."""
    z = zipfile.ZipFile(io.BytesIO(data))
    pkls = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pkls) != 1:
        raise TorchZipError(f"expected one data.pkl in the checkpoint, found {pkls}")
    root = pkls[0][: -len("data.pkl")]
    storages: dict[str, np.ndarray] = {}

    allowed = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) in allowed:
                return allowed[(module, name)]
            if module == "torch" and name.endswith("Storage"):
                return _StorageType(name)
            raise TorchZipError(f"checkpoint refers to {module}.{name}, which this loader does not allow")

        def persistent_load(self, pid):
            kind, stype, key, _location, numel = pid
            if kind != "storage" or not isinstance(stype, _StorageType):
                raise TorchZipError(f"unexpected persistent id {pid!r}")
            if key not in storages:
                raw = z.read(f"{root}data/{key}")
                arr = np.frombuffer(raw, dtype=stype.dtype)
                if arr.size != numel:
                    raise TorchZipError(f"storage {key}: {arr.size} elements, header says {numel}")
                storages[key] = arr
            return storages[key]

    return Unpickler(io.BytesIO(z.read(pkls[0]))).load()
