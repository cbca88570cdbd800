"""Small numpy helpers shared by the adapters: dtypes, flat views, pickle-free ``.npz`` files.

Imported lazily by adapters (never by :mod:`adapters` itself), so numpy stays optional for the
reference. ``bfloat16`` comes from ``ml_dtypes`` when it is installed.

File format of :func:`save_arrays`: one ``.npz`` (``numpy.savez``) whose members are the named
arrays plus ``__meta__``, a 0-d unicode array holding JSON. Arrays whose dtype numpy cannot store
natively (``bfloat16``) are stored as their ``uint16`` bit patterns and named in the meta
``__dtypes__`` map, so :func:`load_arrays` restores them bit-exactly with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from adapters.errors import AdapterError

DTYPE_NAMES: tuple[str, ...] = ("float64", "float32", "float16", "bfloat16")
_META = "__meta__"
_BITS = "__dtypes__"


def numpy_dtype(name: str) -> np.dtype[Any]:
    """The numpy dtype called ``name`` (``float64``, ``float32``, ``float16``, ``bfloat16``)."""
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            raise AdapterError("dtype 'bfloat16' needs the ml_dtypes package") from None
        bf16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
        return bf16
    if name not in DTYPE_NAMES:
        raise AdapterError(f"unknown dtype {name!r}; expected one of {list(DTYPE_NAMES)}")
    return np.dtype(name)


def as_float64(x: object, name: str = "array") -> NDArray[np.float64]:
    """``x`` as a float64 ndarray (a copy); raises AdapterError naming ``name`` if not numeric."""
    try:
        arr = np.array(x)
        if arr.dtype.kind not in "fiub" and arr.dtype.name != "bfloat16":
            raise TypeError(arr.dtype)
        return np.array(arr, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AdapterError(f"{name}: expected a real numeric array, got {x!r} ({exc})") from None


def flatten(x: object, name: str = "array") -> list[float]:
    """Row-major flat list of Python floats (the reference's parameter form)."""
    return [float(v) for v in as_float64(x, name).reshape(-1)]


def reshape(values: object, shape: tuple[int, ...]) -> NDArray[np.float64]:
    """Flat values (any sequence of numbers) as a float64 array of ``shape`` (row-major)."""
    return np.asarray([float(v) for v in values], dtype=np.float64).reshape(shape)  # type: ignore[attr-defined]


def save_arrays(path: Path | str, arrays: Mapping[str, NDArray[Any]], meta: Any = None) -> None:
    """Write named arrays and JSON ``meta`` to ``path`` (exactly that name; no pickle)."""
    out: dict[str, NDArray[Any]] = {}
    bits: dict[str, str] = {}
    for key, arr in arrays.items():
        if key in (_META,) or not isinstance(key, str):
            raise AdapterError(f"save_arrays: invalid array name {key!r}")
        a = np.asarray(arr)
        if a.dtype.name == "bfloat16":
            bits[key] = "bfloat16"
            a = a.view(np.uint16)
        elif a.dtype.hasobject:
            raise AdapterError(f"save_arrays: {key!r} has dtype object (would need pickle)")
        out[key] = a
    doc = {"meta": meta, _BITS: bits}
    out[_META] = np.array(json.dumps(doc, allow_nan=True))
    with open(path, "wb") as f:
        np.savez(f, **out)  # type: ignore[arg-type]


def load_arrays(path: Path | str) -> tuple[dict[str, NDArray[Any]], Any]:
    """Inverse of :func:`save_arrays`: ``(arrays, meta)``, loaded with ``allow_pickle=False``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            raw = {k: np.array(data[k]) for k in data.files}
    except (OSError, ValueError) as exc:
        raise AdapterError(f"cannot read array file {str(path)!r}: {exc}") from None
    if _META not in raw:
        raise AdapterError(f"{str(path)!r} is not an adamw-ref array file (no {_META})")
    doc = json.loads(str(raw.pop(_META)))
    for key, kind in doc.get(_BITS, {}).items():
        raw[key] = raw[key].view(numpy_dtype(kind))
    return raw, doc.get("meta")
