"""One live ``keras.optimizers.AdamW`` over named Keras variables (an :class:`OptimizerRun`).

Parameters become ``keras.Variable`` objects named after the parameters (a name containing ``/``,
which Keras rejects, becomes ``param<i>``). Decay masks use
``exclude_from_weight_decay(var_names=["^<escaped name>(:\\d+)?$", ...])``, anchored so that ``w``
does not also exclude ``w2`` (the optional ``:0`` is the TensorFlow backend's ``tf.Variable``
name, which is what Keras searches there). A non-constant lr schedule is a ``LearningRateSchedule`` returning
``table[count]`` with ``table[c] = fl(fl(lr) * fl(eta(c)))`` in the parameter dtype (the
reference's rounding of :math:`\\alpha\\eta(c)`); the table grows on demand. For float64 runs
Keras' ``floatx`` is float64 while the optimizer is built, so the learning-rate variable is
binary64 (it would otherwise be float32 and round ``lr``).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from adamw_ref import AdamWConfig
from adamw_ref.errors import InputError
from adamw_ref.knobs import ScheduleCount
from adapters.arrays import as_float64, load_arrays, numpy_dtype, save_arrays
from adapters.errors import AdapterError
from adapters.keras.capabilities import decay_mask
from adapters.protocol import Array, CanonicalState

_LOW = ("bfloat16", "float16")


def lr_table(config: AdamWConfig, dtype: str, length: int) -> np.ndarray[Any, Any]:
    """``fl(fl(lr) * fl(eta(c)))`` for ``c < length`` in ``dtype`` (float32 for 16-bit dtypes)."""
    np_dt = np.float64 if dtype == "float64" else np.float32
    shift = 1 if config.schedule_count is ScheduleCount.POST_INCREMENT else 0
    etas = np.array([config.lr_schedule(c + shift) for c in range(length)], dtype=np.float64)
    lr = np.asarray(config.lr, dtype=np_dt)
    return np.asarray(np.multiply(etas.astype(np_dt), lr), dtype=np_dt)


def _make_schedule(keras: Any, config: AdamWConfig, dtype: str) -> Any:
    base = keras.optimizers.schedules.LearningRateSchedule

    class TableSchedule(base):  # type: ignore[misc, valid-type]
        """lr * eta(count) read from a table (graph-friendly ``take``)."""

        def __init__(self) -> None:
            self.table = lr_table(config, dtype, 64)

        def ensure(self, count: int) -> None:
            while count >= len(self.table):
                self.table = lr_table(config, dtype, 2 * len(self.table))

        def __call__(self, step: Any) -> Any:
            ops = keras.ops
            t = ops.convert_to_tensor(self.table)
            return ops.take(t, ops.cast(step, "int32"))

        def get_config(self) -> dict[str, Any]:
            return {"config": config.to_json()}

    return TableSchedule()


def _keras_names(names: list[str]) -> list[str]:
    return [n if n and "/" not in n else f"param{i}" for i, n in enumerate(names)]


class KerasRun:
    """A Keras AdamW optimizer and its variables; see the module docstring."""

    def __init__(
        self,
        adapter: str,
        backend: str,
        config: AdamWConfig,
        native: Mapping[str, Any],
        params: Mapping[str, Array],
        device: str,
        dtype: str,
    ) -> None:
        from adapters.keras.backend import import_keras, keras_device

        if not isinstance(params, Mapping) or not params:
            raise InputError("params", params, "must be a non-empty mapping of name -> array")
        self.adapter, self.backend, self.config, self.dtype = adapter, backend, config, dtype
        self.keras = keras = import_keras(backend, x64=(dtype == "float64"))
        self.device = keras_device(backend, device)
        self.names = list(params)
        self.shapes = {n: as_float64(params[n], f"params[{n!r}]").shape for n in self.names}
        knames = _keras_names(self.names)
        self.schedule = None
        lr = native["learning_rate"]
        if isinstance(lr, dict):
            self.schedule = _make_schedule(keras, config, dtype)
            lr = self.schedule
        old_floatx = keras.config.floatx()
        with keras.device(self.device):
            self.vars = [
                keras.Variable(
                    as_float64(params[n], f"params[{n!r}]").astype(
                        numpy_dtype(dtype) if dtype not in _LOW else np.float32
                    ),
                    dtype=dtype,
                    name=k,
                    trainable=True,
                )
                for n, k in zip(self.names, knames, strict=True)
            ]
            try:
                if dtype == "float64":
                    keras.config.set_floatx("float64")
                self.opt = self.build_optimizer(keras, lr, native)
            finally:
                keras.config.set_floatx(old_floatx)
            masked = decay_mask(config, self.names)
            if masked:
                kmap = dict(zip(self.names, knames, strict=True))
                self.opt.exclude_from_weight_decay(
                    var_names=[rf"^{re.escape(kmap[n])}(:\d+)?$" for n in masked]
                )
            self.opt.build(self.vars)

    def build_optimizer(self, keras: Any, learning_rate: Any, native: Mapping[str, Any]) -> Any:
        """``keras.optimizers.AdamW`` from the ``to_native`` arguments (a seam: the generic
        wrapper builds another optimizer class). Called inside the device scope."""
        return keras.optimizers.AdamW(
            learning_rate=learning_rate,
            weight_decay=float(native["weight_decay"]),
            beta_1=float(native["beta_1"]),
            beta_2=float(native["beta_2"]),
            epsilon=float(native["epsilon"]),
            amsgrad=bool(native["amsgrad"]),
        )

    def amsgrad(self) -> bool:
        """Whether the optimizer keeps ``_velocity_hats`` (AMSGrad)."""
        return bool(getattr(self.opt, "amsgrad", False))

    # -- helpers -----------------------------------------------------------------------------
    def _np(self, x: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
        ops = self.keras.ops
        value = x.value if hasattr(x, "value") else x
        if self.dtype in _LOW:
            value = ops.cast(value, "float32")
        return np.array(ops.convert_to_numpy(value), dtype=np.float64)

    def _slot(self, kind: str, var: Any) -> Any:
        idx = self.opt._get_variable_index(var)
        return getattr(self.opt, kind)[idx]

    def _assign(self, var: Any, value: np.ndarray[Any, Any]) -> None:
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != tuple(var.shape):
            raise InputError(var.name, arr.shape, f"expected shape {tuple(var.shape)}")
        var.assign(
            self.keras.ops.cast(
                arr.astype(np.float32) if self.dtype in _LOW else arr.astype(self.dtype), var.dtype
            )
        )

    # -- protocol ----------------------------------------------------------------------------
    def step(self, grads: Mapping[str, Array | None]) -> None:
        keras = self.keras
        missing = [n for n in self.names if n not in grads]
        extra = [n for n in grads if n not in self.shapes]
        if missing or extra:
            raise InputError("grads", sorted(grads), f"missing {missing}, unknown {extra}")
        tensors: list[Any] = []
        for n, var in zip(self.names, self.vars, strict=True):
            g = grads[n]
            if g is None:
                tensors.append(None)
                continue
            arr = as_float64(g, f"grads[{n!r}]")
            if arr.shape != self.shapes[n]:
                raise InputError(f"grads[{n!r}]", arr.shape, f"expected {self.shapes[n]}")
            if self.config.maximize:
                arr = -arr
            src = arr.astype(np.float32) if self.dtype in _LOW else arr.astype(self.dtype)
            with keras.device(self.device):
                tensors.append(keras.ops.cast(keras.ops.convert_to_tensor(src), var.dtype))
        if self.schedule is not None:
            self.schedule.ensure(int(self._np(self.opt.iterations)) + 1)
        if all(t is None for t in tensors):
            # Keras raises on an all-None step; every parameter is frozen, only the count moves.
            self.opt.iterations.assign_add(1)
            return
        with warnings.catch_warnings(), keras.device(self.device):
            warnings.filterwarnings("ignore", message="Gradients do not exist")
            self.opt.apply(tensors, self.vars)

    def params(self) -> dict[str, Array]:
        return {n: self._np(v) for n, v in zip(self.names, self.vars, strict=True)}

    def state(self) -> CanonicalState:
        m = {n: self._np(self._slot("_momentums", v)) for n, v in zip(self.names, self.vars, strict=True)}
        v_ = {n: self._np(self._slot("_velocities", v)) for n, v in zip(self.names, self.vars, strict=True)}
        vmax = None
        if self.amsgrad():
            vmax = {
                n: self._np(self._slot("_velocity_hats", v))
                for n, v in zip(self.names, self.vars, strict=True)
            }
        return CanonicalState(step=int(self._np(self.opt.iterations)), m=m, v=v_, v_max=vmax)

    def save(self, path: Path) -> None:
        """The optimizer's variables (``optimizer.variables``, in order) and the parameters."""
        arrays: dict[str, Any] = {}
        names: list[str] = []
        for i, var in enumerate(self.opt.variables):
            arrays[f"opt{i:04d}"] = self._native(var)
            names.append(var.name)
        for i, var in enumerate(self.vars):
            arrays[f"param{i:04d}"] = self._native(var)
        meta = {
            "format": "adamw-ref/keras",
            "adapter": self.adapter,
            "dtype": self.dtype,
            "optimizer_variables": names,
            "params": self.names,
        }
        save_arrays(path, arrays, meta)

    def _native(self, var: Any) -> np.ndarray[Any, Any]:
        ops = self.keras.ops
        value = var.value
        if str(var.dtype) in _LOW:
            return np.asarray(ops.convert_to_numpy(ops.cast(value, "float32")))  # exact
        return np.asarray(ops.convert_to_numpy(value))

    def load(self, path: Path) -> None:
        arrays, meta = load_arrays(path)
        if not isinstance(meta, dict) or meta.get("format") != "adamw-ref/keras":
            raise AdapterError(f"{str(path)!r} is not a keras adapter state file")
        names = [v.name for v in self.opt.variables]
        if meta.get("optimizer_variables") != names or meta.get("params") != self.names:
            raise AdapterError(
                f"{str(path)!r}: variables {meta.get('optimizer_variables')} "
                f"do not match this optimizer's {names}"
            )
        ops = self.keras.ops
        for i, var in enumerate(self.opt.variables):
            var.assign(ops.cast(ops.convert_to_tensor(arrays[f"opt{i:04d}"]), var.dtype))
        for i, var in enumerate(self.vars):
            var.assign(ops.cast(ops.convert_to_tensor(arrays[f"param{i:04d}"]), var.dtype))

    def set_state(self, params: Mapping[str, Array], state: CanonicalState) -> None:
        if (state.v_max is None) == self.amsgrad():
            raise InputError(
                "state.v_max", state.v_max is not None, f"this optimizer has amsgrad={self.amsgrad()}"
            )
        for n, var in zip(self.names, self.vars, strict=True):
            self._assign(var, params[n])
            self._assign(self._slot("_momentums", var), state.m[n])
            self._assign(self._slot("_velocities", var), state.v[n])
            if state.v_max is not None:
                self._assign(self._slot("_velocity_hats", var), state.v_max[n])
        it = self.opt.iterations
        it.assign(self.keras.ops.cast(int(state.step), it.dtype))

    def close(self) -> None:
        self.vars = []
