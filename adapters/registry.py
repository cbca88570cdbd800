"""Finding adapters: built-in names, ``package.module:factory`` specs, and entry points.

Nothing is imported until :func:`load_adapter` is called. Third-party packages register in the
entry-point group ``adamw_ref.adapters`` (name -> ``module:factory``); ``factory`` is an
:class:`~adapters.protocol.Adapter` instance, or a class/callable returning one.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from adapters.errors import AdapterError
from adapters.protocol import Adapter

ENTRY_POINT_GROUP = "adamw_ref.adapters"

#: Built-in adapter names -> ``module:factory``. Filled in as adapters land.
BUILTIN_ADAPTERS: dict[str, str] = {
    "reference": "adapters.reference.adapter:ReferenceAdapter",
    "torch": "adapters.torch.adapter:TorchAdamW",
    "torch-adam": "adapters.torch.adapter:TorchAdamDecoupled",
    "keras-tensorflow": "adapters.keras.adapter:KerasTensorFlow",
    "keras-jax": "adapters.keras.adapter:KerasJax",
    "keras-torch": "adapters.keras.adapter:KerasTorch",
    "optax": "adapters.optax.adapter:OptaxAdamW",
    "mlx": "adapters.mlx.adapter:MLXAdamW",
}


def _resolve(spec: str) -> Adapter:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise AdapterError(f"invalid adapter spec {spec!r}: expected 'package.module:factory'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AdapterError(f"adapter spec {spec!r}: cannot import {module_name!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AdapterError(f"adapter spec {spec!r}: {module_name!r} has no {attr!r}") from None
    if isinstance(obj, type) or (not isinstance(obj, Adapter) and callable(obj)):
        try:
            obj = obj()
        except Exception as exc:
            raise AdapterError(f"adapter spec {spec!r}: calling {attr!r} failed: {exc}") from exc
    if not isinstance(obj, Adapter):
        raise AdapterError(f"adapter spec {spec!r} is not an Adapter (needs info, create, ...)")
    return obj


def load_adapter(name_or_spec: str) -> Adapter:
    """A built-in name, an entry-point name, or a ``package.module:factory`` spec."""
    if name_or_spec in BUILTIN_ADAPTERS:
        return _resolve(BUILTIN_ADAPTERS[name_or_spec])
    if ":" in name_or_spec:
        return _resolve(name_or_spec)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name_or_spec:
            return _resolve(ep.value)
    known = sorted(BUILTIN_ADAPTERS) + sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    raise AdapterError(f"unknown adapter {name_or_spec!r}; known: {known} or 'package.module:factory'")


def available_adapters() -> dict[str, str]:
    """Every adapter name this installation knows (built-in and entry points) -> spec."""
    out = dict(BUILTIN_ADAPTERS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        out.setdefault(ep.name, ep.value)
    return out
