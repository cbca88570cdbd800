"""Finding adapters: built-in names, entry points, ``package.module:factory`` specs, and the
generic wrappers' ``kind:target?args`` specs (``torch:torch.optim.AdamW``).

Nothing is imported until :func:`load_adapter` is called. Third-party packages register in the
entry-point group ``adamw_ref.adapters`` (name -> ``module:factory``, or a wrapper spec such as
``torch:pkg.mod.Class``); ``factory`` is an :class:`~adapters.protocol.Adapter` instance, or a
class/callable returning one. :func:`parse_spec` checks a spec's form without importing anything
(the grammar: :mod:`adapters.generic.spec`); :func:`expand_spec` turns ``keras:X`` into one spec
per installed Keras backend.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from importlib.metadata import entry_points
from typing import Any

from adapters.errors import AdapterError
from adapters.generic.spec import (
    KERAS_KINDS,
    SPEC_KINDS,
    WRAPPER_KINDS,
    AdapterSpec,
    is_wrapper_spec,
    parse_wrapper,
)
from adapters.protocol import Adapter

__all__ = [
    "BUILTIN_ADAPTERS",
    "ENTRY_POINT_GROUP",
    "SPEC_KINDS",
    "WRAPPER_KINDS",
    "AdapterSpec",
    "available_adapters",
    "expand_spec",
    "load_adapter",
    "parse_spec",
]

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
    "tf-keras": "adapters.tf_keras.adapter:TfKerasAdamW",
    "paddle": "adapters.paddle.adapter:PaddleAdamW",
    "tinygrad": "adapters.tinygrad.adapter:TinygradAdamW",
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
    if (
        not isinstance(obj, Adapter)
        and callable(obj)
        and not (isinstance(obj, type) or inspect.isfunction(obj) or inspect.ismethod(obj))
    ):
        # a builtin or another callable: calling it to find out could do anything (os:getcwd)
        raise AdapterError(
            f"adapter spec {spec!r}: {attr!r} is not an Adapter, an adapter class or a factory function"
        )
    if isinstance(obj, type) or (not isinstance(obj, Adapter) and callable(obj)):
        try:
            obj = obj()
        except Exception as exc:
            raise AdapterError(f"adapter spec {spec!r}: calling {attr!r} failed: {exc}") from exc
    if not isinstance(obj, Adapter):
        raise AdapterError(f"adapter spec {spec!r} is not an Adapter (needs info, create, ...)")
    return obj


def _entry_point(name: str) -> str | None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return str(ep.value)
    return None


def _dotted(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def parse_spec(spec: str) -> AdapterSpec:
    """The form of an adapter spec, checked without importing any framework or plug-in.

    ``kind`` is ``builtin`` (a name of :data:`BUILTIN_ADAPTERS`), ``entry_point`` (a name in the
    ``adamw_ref.adapters`` group; ``module``/``attr`` from its value), ``plugin``
    (``package.module:factory``) or a wrapper kind (:data:`WRAPPER_KINDS`, with the constructor
    overrides in ``kwargs`` and ``?profile=`` in ``profile``). A bad spec raises AdapterError
    with a one-line message naming it.
    """
    if not isinstance(spec, str) or not spec.strip() or spec != spec.strip():
        raise AdapterError(f"adapter spec {spec!r}: expected a name, package.module:factory or kind:target")
    if spec in BUILTIN_ADAPTERS:
        module, _, attr = BUILTIN_ADAPTERS[spec].partition(":")
        return AdapterSpec(spec=spec, kind="builtin", module=module, attr=attr)
    if is_wrapper_spec(spec):
        return parse_wrapper(spec)
    if ":" in spec:
        module, _, attr = spec.partition(":")
        if "?" in attr:
            raise AdapterError(
                f"adapter spec {spec!r}: ?key=value arguments only follow a wrapper kind "
                f"({', '.join(WRAPPER_KINDS)})"
            )
        if not _dotted(module) or not _dotted(attr):
            raise AdapterError(f"invalid adapter spec {spec!r}: expected 'package.module:factory'")
        return AdapterSpec(spec=spec, kind="plugin", module=module, attr=attr)
    value = _entry_point(spec)
    if value is None:
        known = sorted(BUILTIN_ADAPTERS) + sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
        raise AdapterError(
            f"unknown adapter {spec!r}; known: {known}, 'package.module:factory' or "
            f"'kind:package.module.Class' (kinds: {', '.join(WRAPPER_KINDS)})"
        )
    module, _, attr = value.partition(":")
    return AdapterSpec(spec=spec, kind="entry_point", module=module, attr=attr)


def expand_spec(spec: str) -> list[str]:
    """``keras:X[?args]`` -> ``keras-<backend>:X[?args]`` for every installed backend (in the
    order tensorflow, jax, torch); every other spec -> ``[spec]``. Imports nothing."""
    parsed = parse_spec(spec)
    if parsed.kind != "keras":
        return [spec]
    if importlib.util.find_spec("keras") is None:
        raise AdapterError(f"adapter spec {spec!r}: keras is not installed")
    out = [parsed.with_kind(kind) for kind, pkg in KERAS_KINDS.items() if importlib.util.find_spec(pkg)]
    if not out:
        raise AdapterError(f"adapter spec {spec!r}: no Keras backend (tensorflow, jax, torch) is installed")
    return out


def load_adapter(name_or_spec: str) -> Adapter:
    """A built-in name, an entry-point name, a ``package.module:factory`` spec or a generic
    wrapper spec (``kind:target?args``, :mod:`adapters.generic`), wrapped so that bad input to
    it fails in one line (:class:`adapters.validation.CheckedAdapter`)."""
    from adapters.validation import CheckedAdapter

    if not isinstance(name_or_spec, str):
        raise AdapterError(
            f"adapter spec {name_or_spec!r}: must be a string (a name or package.module:factory)"
        )
    checked: Adapter = CheckedAdapter(_load(name_or_spec))  # type: ignore[assignment]
    return checked


def _load(name_or_spec: str) -> Adapter:
    if name_or_spec in BUILTIN_ADAPTERS:
        return _resolve(BUILTIN_ADAPTERS[name_or_spec])
    parsed = parse_spec(name_or_spec)
    if parsed.kind == "entry_point":
        value = _entry_point(name_or_spec) or ""
        if is_wrapper_spec(value):
            return _load(value)
        return _resolve(value)
    if parsed.kind == "plugin":
        return _resolve(name_or_spec)
    from adapters.generic.loader import load_wrapper

    adapter: Adapter = load_wrapper(parsed)
    return adapter


def available_adapters() -> dict[str, str]:
    """Every adapter name this installation knows (built-in and entry points) -> spec."""
    out = dict(BUILTIN_ADAPTERS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        out.setdefault(ep.name, ep.value)
    return out
