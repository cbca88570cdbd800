"""Resolving a wrapper spec: import the target, check its kind, build the wrapper.

Called by :func:`adapters.registry.load_adapter` for the kinds of :data:`WRAPPER_KINDS`. A
module that cannot be imported, a missing attribute, a target of the wrong kind or a bad
override is one :class:`~adapters.errors.AdapterError` line naming the spec.
"""

from __future__ import annotations

import importlib
from typing import Any

from adapters.errors import AdapterError
from adapters.generic.spec import AdapterSpec


def import_target(spec: AdapterSpec) -> Any:
    """The object ``spec.module`` / ``spec.attr`` names."""
    try:
        obj: Any = importlib.import_module(spec.module)
    except ImportError as exc:
        raise AdapterError(f"adapter spec {spec.spec!r}: cannot import {spec.module!r}: {exc}") from None
    except Exception as exc:  # a module that fails while importing
        raise AdapterError(
            f"adapter spec {spec.spec!r}: importing {spec.module!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    for part in spec.attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AdapterError(f"adapter spec {spec.spec!r}: {spec.module!r} has no {spec.attr!r}") from None
    return obj


def load_wrapper(spec: AdapterSpec) -> Any:
    """The generic adapter for a parsed wrapper spec (kinds torch, optax, keras-*, mlx, numpy)."""
    if spec.kind == "keras":
        raise AdapterError(
            f"adapter spec {spec.spec!r}: 'keras:' means every installed backend; load one of "
            "keras-jax:, keras-tensorflow:, keras-torch: (adapters.registry.expand_spec lists them)"
        )
    if spec.backend is not None:
        from adapters.keras.backend import import_keras

        import_keras(spec.backend)  # before the target's module imports keras itself
    target = import_target(spec)
    if spec.kind == "torch":
        from adapters.generic.torch_wrapper import TorchWrapper

        return TorchWrapper(spec, target)
    if spec.kind == "optax":
        from adapters.generic.optax_wrapper import OptaxWrapper

        return OptaxWrapper(spec, target)
    if spec.kind == "mlx":
        from adapters.generic.mlx_wrapper import MLXWrapper

        return MLXWrapper(spec, target)
    if spec.backend is not None:
        from adapters.generic.keras_wrapper import KerasWrapper

        return KerasWrapper(spec, target)
    from adapters.generic.numpy_wrapper import NumpyWrapper

    return NumpyWrapper(spec, target)
