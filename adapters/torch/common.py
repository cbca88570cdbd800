"""Torch plumbing shared by the torch-family adapters: devices, dtypes, exact tensor I/O and
pickle-free ``state_dict`` encoding (the knob check itself is :mod:`adapters.capabilities`).

Nothing here knows an optimizer's math. ``torch`` is imported inside the functions.
"""

from __future__ import annotations

__all__ = ["decay_active", "knob_value", "refuse_unsupported", "relevant_knobs"]

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from adamw_ref.formats import FORMATS, round_to_format
from adapters.capabilities import decay_active, knob_value, refuse_unsupported, relevant_knobs
from adapters.errors import AdapterError, FrameworkUnavailable

if TYPE_CHECKING:
    import torch

TORCH_DTYPES: tuple[str, ...] = ("float32", "float64", "bfloat16", "float16")


def import_torch(adapter: str) -> Any:
    """``torch``, or FrameworkUnavailable naming the adapter."""
    try:
        import torch
    except ImportError as exc:
        raise FrameworkUnavailable(adapter, f"torch is not installed ({exc})") from None
    return torch


def resolve_device(adapter: str, device: str) -> torch.device:
    """``cpu`` or ``cuda[:n]``; CUDA only when available. Disables TF32 on CUDA."""
    tm = import_torch(adapter)
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise AdapterError(f"{adapter}: device {device!r} unknown; expected 'cpu' or 'cuda[:n]'")
    if device.startswith("cuda"):
        if not tm.cuda.is_available():
            raise FrameworkUnavailable(adapter, f"device {device!r}: torch.cuda.is_available() is False")
        tm.backends.cuda.matmul.allow_tf32 = False
        tm.backends.cudnn.allow_tf32 = False
    dev: torch.device = tm.device(device)
    return dev


def resolve_dtype(adapter: str, dtype: str) -> torch.dtype:
    tm = import_torch(adapter)
    if dtype not in TORCH_DTYPES:
        raise AdapterError(f"{adapter}: dtype {dtype!r} unknown; expected one of {list(TORCH_DTYPES)}")
    out: torch.dtype = getattr(tm, dtype)
    return out


def to_tensor(x: object, name: str, dtype: str, device: torch.device) -> torch.Tensor:
    """A float64 array rounded once (nearest-even) to ``dtype`` on ``device``.

    torch converts float64 to bfloat16/float16 through float32 (double rounding); the adapter
    rounds with :func:`adamw_ref.formats.round_to_format` first, so the conversion is exact.
    """
    import torch

    from adapters.arrays import as_float64

    arr = as_float64(x, name)
    if dtype in ("bfloat16", "float16"):
        fmt = FORMATS[dtype]
        flat = [round_to_format(float(v), fmt) for v in arr.reshape(-1)]
        arr = np.asarray(flat, dtype=np.float64).reshape(arr.shape)
    return _fresh(torch.from_numpy(arr.copy(order="C")), device, getattr(torch, dtype))


def _fresh(src: torch.Tensor, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
    """``src`` copied into a new tensor with standard strides (numpy and ``torch.tensor`` give
    zero-size arrays strides like ``(0, 0)``; the fused CUDA kernels then reject a state whose
    layout differs from the parameter's: "must have same dtype, device, and layout")."""
    import torch

    return torch.empty(tuple(src.shape), dtype=dtype, device=device).copy_(src)


def to_float64(t: torch.Tensor) -> NDArray[np.float64]:
    """A tensor as a float64 numpy array (exact for every floating dtype)."""
    import torch

    return np.array(t.detach().to(device="cpu", dtype=torch.float64).numpy(), dtype=np.float64)


def tensor_bits(t: torch.Tensor) -> tuple[NDArray[Any], str]:
    """A CPU numpy array holding ``t`` bit-exactly, and the torch dtype name to restore it."""
    import torch

    name = str(t.dtype).removeprefix("torch.")
    c = t.detach().to("cpu").contiguous()
    if t.dtype == torch.bfloat16:
        return c.view(torch.int16).numpy().copy(), name
    return c.numpy().copy(), name


def tensor_from_bits(arr: NDArray[Any], dtype_name: str, device: torch.device | str) -> torch.Tensor:
    import torch

    if dtype_name == "bfloat16":
        src = torch.from_numpy(np.array(arr, dtype=np.int16)).view(torch.bfloat16)
    else:
        src = torch.from_numpy(np.array(arr)).to(getattr(torch, dtype_name))
    return _fresh(src, device, src.dtype)


def encode(obj: Any, arrays: dict[str, NDArray[Any]], key: str) -> Any:
    """``obj`` (a state_dict piece) as JSON; tensors go to ``arrays`` under keys from ``key``."""
    import torch

    if isinstance(obj, torch.Tensor):
        arr, dt = tensor_bits(obj)
        arrays[key] = arr
        return {"__tensor__": key, "dtype": dt, "device": str(obj.device)}
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise AdapterError(f"cannot encode state_dict key {k!r} of type {type(k).__name__}")
            out[f"{type(k).__name__}:{k}"] = encode(v, arrays, f"{key}/{k}")
        return {"__dict__": out}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, arrays, f"{key}/{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode(v, arrays, f"{key}/{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise AdapterError(f"cannot encode {key}: {type(obj).__name__} (no pickle)")


def decode(doc: Any, arrays: Mapping[str, NDArray[Any]], device: torch.device | str) -> Any:
    """Inverse of :func:`encode`; tensors are restored to ``device``."""
    if isinstance(doc, list):
        return [decode(v, arrays, device) for v in doc]
    if isinstance(doc, dict):
        if "__tensor__" in doc:
            dev = "cpu" if doc.get("device") == "cpu" else device
            return tensor_from_bits(arrays[doc["__tensor__"]], doc["dtype"], dev)
        if "__tuple__" in doc:
            return tuple(decode(v, arrays, device) for v in doc["__tuple__"])
        if "__dict__" in doc:
            out: dict[Any, Any] = {}
            for tk, v in doc["__dict__"].items():
                kind, _, k = tk.partition(":")
                out[int(k) if kind == "int" else k] = decode(v, arrays, device)
            return out
    return doc
