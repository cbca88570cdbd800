"""Bad input to an adapter fails loudly, the same way for every framework.

:func:`~adapters.registry.load_adapter` returns adapters wrapped in :class:`CheckedAdapter`, so a
direct user of any adapter (built-in, plug-in or generic wrapper) gets one
:class:`~adapters.errors.AdapterError` naming the parameter and the value, instead of whatever
the framework does with nonsense (PyTorch accepts NaN initial parameters silently; numpy drops
the imaginary part of a complex array; a ``(4,)`` gradient broadcast onto a ``(2, 2)``
parameter):

* ``create``: the config is an :class:`~adamw_ref.AdamWConfig` whose groups name only existing
  parameters; ``params`` a non-empty mapping of string names to real, finite numeric arrays
  (bool, complex, object and string values refused);
* ``step``: a gradient for exactly the run's parameters, each ``None`` (frozen) or a real array
  of exactly the parameter's shape (NaN and infinities allowed: they propagate by IEEE rules, as
  the specification says);
* ``set_state``: parameters of the run's shapes;
* ``load``: a path that exists (a corrupt file's error from the framework is re-raised as one line
  naming the path).

Everything else passes through to the wrapped adapter and run (``__getattr__``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from adamw_ref import AdamWConfig
from adamw_ref.config import PRECISION_FIELDS
from adapters.errors import AdapterError, FrameworkUnavailable, UnsupportedConfig
from adapters.protocol import AdapterInfo, CanonicalState

F64 = NDArray[np.float64]
_REAL_KINDS = "iuf"  # signed, unsigned, float (numpy dtype kinds); bool, complex, object refused


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def real_array(adapter: str, what: str, value: object) -> F64:
    """``value`` as a float64 array, or AdapterError naming ``what`` when it is not real numbers."""
    if isinstance(value, (str, bytes)) or value is None:
        raise AdapterError(f"{adapter}: {what}: {_show(value)}: must be an array of real numbers")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise AdapterError(f"{adapter}: {what}: {_show(value)}: not an array ({exc})") from None
    if arr.dtype.kind not in _REAL_KINDS and arr.dtype.name != "bfloat16":
        raise AdapterError(
            f"{adapter}: {what}: dtype {arr.dtype}: must be real numbers "
            "(not bool, complex, object or strings)"
        )
    return np.array(arr, dtype=np.float64)


def checked_params(adapter: str, params: object, finite: bool = True) -> dict[str, F64]:
    """Initial parameters: a non-empty mapping of names to real (and ``finite``) arrays."""
    if not isinstance(params, Mapping) or not params:
        raise AdapterError(
            f"{adapter}: params: {_show(params)}: must be a non-empty mapping of name -> array"
        )
    out: dict[str, F64] = {}
    for name, value in params.items():
        if not isinstance(name, str):
            raise AdapterError(f"{adapter}: params name {_show(name)}: must be a string")
        arr = real_array(adapter, f"params[{name!r}]", value)
        if finite and arr.size and not np.all(np.isfinite(arr)):
            i = int(np.flatnonzero(~np.isfinite(arr.ravel()))[0])
            raise AdapterError(
                f"{adapter}: params[{name!r}] element {i}: {arr.ravel()[i]!r}: "
                "initial parameters must be finite"
            )
        out[name] = arr
    return out


def checked_grads(adapter: str, grads: object, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """One step's gradients: exactly the run's names, ``None`` or a real array of the shape."""
    if not isinstance(grads, Mapping):
        raise AdapterError(f"{adapter}: grads: {_show(grads)}: must be a mapping of name -> array or None")
    missing = sorted(set(shapes) - set(grads))
    extra = sorted(str(k) for k in set(grads) - set(shapes))
    if missing or extra:
        raise AdapterError(
            f"{adapter}: grads: names {sorted(map(str, grads))}: missing {missing}, "
            f"unknown {extra} (None freezes a parameter)"
        )
    out: dict[str, Any] = {}
    for name, value in grads.items():
        if value is None:
            out[name] = None
            continue
        arr = real_array(adapter, f"grads[{name!r}]", value)
        if arr.shape != shapes[name]:
            raise AdapterError(
                f"{adapter}: grads[{name!r}]: shape {arr.shape}: the parameter has shape {shapes[name]}"
            )
        out[name] = arr
    return out


class CheckedRun:
    """A live optimizer whose inputs are checked (see the module docstring)."""

    def __init__(self, adapter: str, run: Any, shapes: Mapping[str, tuple[int, ...]]) -> None:
        self._adapter = adapter
        self._run = run
        self._shapes = dict(shapes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run, name)

    def step(self, grads: Mapping[str, Any]) -> None:
        self._run.step(checked_grads(self._adapter, grads, self._shapes))

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = self._run.params()
        return out

    def state(self) -> CanonicalState:
        st: CanonicalState = self._run.state()
        return st

    def save(self, path: Path) -> None:
        self._run.save(path)

    def load(self, path: Path) -> None:
        p = Path(path)
        if not p.is_file():
            raise AdapterError(f"{self._adapter}: load: {str(path)!r}: no such file")
        try:
            self._run.load(p)
        except (AdapterError, UnsupportedConfig, FrameworkUnavailable):
            raise
        except Exception as exc:  # a corrupt or foreign file, whatever the framework raises
            raise AdapterError(
                f"{self._adapter}: load: {str(path)!r}: not a saved state of this "
                f"optimizer ({type(exc).__name__}: {str(exc)[:120]})"
            ) from None

    def set_state(self, params: Mapping[str, Any], state: CanonicalState) -> None:
        p = checked_params(self._adapter, params, finite=False)
        wrong = {k: v.shape for k, v in p.items() if self._shapes.get(k) != v.shape}
        if set(p) != set(self._shapes) or wrong:
            raise AdapterError(
                f"{self._adapter}: set_state: params {wrong or sorted(p)} do not match "
                f"the run's {self._shapes}"
            )
        self._run.set_state(p, state)

    def close(self) -> None:
        self._run.close()


class CheckedAdapter:
    """An adapter whose ``create`` checks its inputs and returns a :class:`CheckedRun`."""

    def __init__(self, adapter: Any) -> None:
        self._inner = adapter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def info(self) -> AdapterInfo:
        info: AdapterInfo = self._inner.info
        return info

    def versions(self) -> dict[str, str]:
        out: dict[str, str] = self._inner.versions()
        return out

    def native_defaults(self) -> AdamWConfig:
        cfg: AdamWConfig = self._inner.native_defaults()
        return cfg

    def to_native(self, config: AdamWConfig, implementation: str | None = None) -> dict[str, Any]:
        self._check_precision(config, implementation)
        out: dict[str, Any] = self._inner.to_native(config, implementation)
        return out

    def _check_precision(self, config: AdamWConfig, implementation: str | None) -> None:
        """A config with state-precision fields (``param_dtype``, ``m_dtype``, ``v_dtype``) runs
        only where the implementation stores exactly that: the adapter's ``expected_config`` of
        the full-precision config must give it back (Optax's ``jit-mu-bfloat16`` is
        ``m_dtype="bfloat16"``); anything else would be computed in full precision and judged as
        if it were not, so it is refused."""
        if not isinstance(config, AdamWConfig) or not config.stores_narrow:
            return
        if getattr(self._inner, "computes_state_precision", False):
            return
        expected = getattr(self._inner, "expected_config", None)
        base = config.replace(**dict.fromkeys(PRECISION_FIELDS))
        if expected is not None and expected(base, implementation) == config:
            return
        asked = {f: getattr(config, f) for f in PRECISION_FIELDS if getattr(config, f) is not None}
        raise UnsupportedConfig(
            self.info.name,
            "state precision",
            asked,
            f"implementation {implementation!r} keeps its state as computed"
            + ("; see the implementations that store a narrower state" if expected else ""),
        )

    def create(self, config: AdamWConfig, params: Mapping[str, Any], **options: Any) -> CheckedRun:
        """The wrapped adapter's ``create`` (its own defaults for ``implementation``, ``device``
        and ``dtype``), with the inputs checked first."""
        name = self.info.name
        if not isinstance(config, AdamWConfig):
            raise AdapterError(f"{name}: config: {_show(config)}: must be an AdamWConfig")
        for what in ("device", "dtype"):
            if what in options and not isinstance(options[what], str):
                raise AdapterError(f"{name}: {what}: {_show(options[what])}: must be a string")
        self._check_precision(config, options.get("implementation"))
        p = checked_params(name, params)
        for gi, group in enumerate(config.groups):
            unknown = [n for n in group.names if n not in p]
            if unknown:  # a misspelt name would silently do nothing in most frameworks
                raise AdapterError(
                    f"{name}: groups[{gi}].names: {unknown}: no such parameter (parameters: {sorted(p)})"
                )
        run = self._inner.create(config, p, **options)
        return CheckedRun(name, run, {k: v.shape for k, v in p.items()})


def unchecked(adapter: Any) -> Any:
    """The adapter inside a :class:`CheckedAdapter` (itself otherwise)."""
    return adapter._inner if isinstance(adapter, CheckedAdapter) else adapter
