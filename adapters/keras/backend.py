"""Choosing the Keras 3 backend, importing Keras lazily, and pinning full-precision matmuls.

Keras fixes its backend when it is first imported (``KERAS_BACKEND``), so one process runs one
backend. :func:`import_keras` sets the variable before the import and refuses, with
:class:`~adapters.errors.FrameworkUnavailable`, a backend other than the one already loaded.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from adapters.errors import FrameworkUnavailable

#: Keras backend name -> the registry name of the adapter that drives it.
BACKENDS: dict[str, str] = {
    "tensorflow": "keras-tensorflow",
    "jax": "keras-jax",
    "torch": "keras-torch",
}


def import_keras(backend: str, *, x64: bool = False) -> Any:
    """Import ``keras`` on ``backend`` (TF32 and reduced-precision matmuls off); return the module.

    ``x64=True`` also enables 64-bit arrays in JAX (needed for float64 variables on ``jax``).
    """
    name = BACKENDS[backend]
    loaded = sys.modules.get("keras")
    if loaded is not None:
        current = loaded.backend.backend()
        if current != backend:
            raise FrameworkUnavailable(
                name,
                f"keras is already imported with backend {current!r} in this process; the "
                f"backend is fixed per process (start a new one with KERAS_BACKEND={backend})",
            )
    else:
        os.environ["KERAS_BACKEND"] = backend
    if backend == "jax":
        try:
            import jax
        except ImportError as exc:
            raise FrameworkUnavailable(name, f"jax is not installed: {exc}") from None
        config: Any = jax.config
        config.update("jax_default_matmul_precision", "highest")
        if x64:
            config.update("jax_enable_x64", True)
    try:
        import keras
    except ImportError as exc:
        raise FrameworkUnavailable(name, f"keras is not installed: {exc}") from None
    if keras.backend.backend() != backend:
        raise FrameworkUnavailable(name, f"keras picked backend {keras.backend.backend()!r}, not {backend!r}")
    _disable_tf32(backend)
    return keras


def _disable_tf32(backend: str) -> None:
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
    elif backend == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")


def keras_device(backend: str, device: str) -> str:
    """The ``keras.device`` name for ``cpu`` / ``cuda`` (alias ``gpu``), or FrameworkUnavailable."""
    name = BACKENDS[backend]
    if device == "cpu":
        return "cpu:0"
    if device not in ("cuda", "gpu"):
        raise FrameworkUnavailable(name, f"device={device!r}: expected 'cpu' or 'cuda'")
    if backend == "tensorflow":
        import tensorflow as tf

        ok = bool(tf.config.list_physical_devices("GPU"))
    elif backend == "jax":
        import jax

        ok = any(d.platform == "gpu" for d in jax.devices())
    else:
        import torch

        ok = torch.cuda.is_available()
    if not ok:
        raise FrameworkUnavailable(name, f"device={device!r}: the {backend} backend sees no GPU")
    return "gpu:0"


def keras_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keras")
    except PackageNotFoundError:
        return "not installed"
