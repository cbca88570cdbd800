r"""Keras 2 ``tf_keras.optimizers.AdamW`` on TensorFlow (the ``tf_keras`` package, tf-keras 2.21).

Keras 2 computes (``tf_keras/src/optimizers/optimizer.py`` ``apply_gradients`` and
``_apply_weight_decay``, then ``tf_keras/src/optimizers/adamw.py`` ``update_step``), with
:math:`t` = ``iterations + 1`` and :math:`\alpha` the learning rate cast to the variable dtype:

.. math::

   \theta \leftarrow \theta-\theta\lambda\alpha;\quad m \mathrel{+}= (g-m)(1-\beta_1);\quad
   v \mathrel{+}= (g^2-v)(1-\beta_2);\quad
   \theta \leftarrow \theta - \frac{m\,\alpha\sqrt{1-\beta_2^t}/(1-\beta_1^t)}{\sqrt v+\hat\epsilon}

i.e. the ``tf_keras`` profile (the same algebra as Keras 3's ``keras3``): :math:`\hat\epsilon`
(eps before bias correction), decay multiplicative, before the step, scaled by the current lr;
one global count (``iterations``, int64); a ``LearningRateSchedule`` sees ``iterations`` before
the increment. Only variables with a gradient are decayed and updated (``filter_empty_gradients``
runs before the decay). AMSGrad keeps the running max of the raw ``v``. ``jit_compile=True`` (the
default) is dropped by the constructor unless TensorFlow sees a GPU, so on CPU the update runs
eagerly, op by op.

The learning rate is a ``tf.Variable`` of ``backend.floatx()``: float64 runs set ``floatx`` to
float64 while the optimizer is built (otherwise ``lr`` would be rounded to float32).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from adamw_ref import AdamWConfig, get_profile
from adamw_ref.errors import InputError
from adamw_ref.knobs import (
    AmsgradMode,
    DecayForm,
    DecayScaling,
    DecayTiming,
    EpsPlacement,
    ScheduleCount,
    StepCountScope,
)
from adamw_ref.schedules import Constant
from adapters.capabilities import knob_table
from adapters.errors import AdapterError, FrameworkUnavailable, UnsupportedConfig
from adapters.keras.capabilities import keras_defaults
from adapters.protocol import AdapterInfo, Array, CanonicalState, Support

NAME = "tf-keras"
N, E, U = Support.NATIVE, Support.EMULATED, Support.UNSUPPORTED
#: The tf_keras profile's knob values, and what the adapter adds: a decay of 0 ("none"), a
#: post-increment schedule count by shifting the table one step (adapters.capabilities.knob_table).
KNOBS: dict[str, dict[str, Support]] = knob_table(
    get_profile("tf_keras").config,
    {"decay_form": {"none": N}, "schedule_count": {"post_increment": E}},
)
FEATURES: dict[str, Support] = {
    "amsgrad": N,
    "maximize": E,  # the adapter negates the gradient (exact)
    "nesterov": U,
    "eps_root": U,
    "lr_schedule": N,  # a tf_keras LearningRateSchedule (a table of lr*eta(count))
    "wd_schedule": U,  # weight_decay is a float
    "groups": N,  # decay masks only (exclude_from_weight_decay); per-group lr refused
    "frozen": N,  # None gradients are filtered by tf_keras before the decay
    "save_load": N,
}
_LOW = ("bfloat16", "float16")


def check_config(c: AdamWConfig) -> None:
    """Raise UnsupportedConfig for the first knob or feature Keras 2's AdamW cannot express."""

    def no(knob: str, value: object, why: str) -> UnsupportedConfig:
        return UnsupportedConfig(NAME, knob, value, why)

    if c.eps_placement is not EpsPlacement.BEFORE_BIAS_CORRECTION:
        raise no("eps_placement", c.eps_placement.value, "tf_keras adds epsilon hat to sqrt(v)")
    if c.decay_scaling is not DecayScaling.LR:
        raise no("decay_scaling", c.decay_scaling.value, "tf_keras decays by weight_decay * lr")
    if c.decay_form not in (DecayForm.MULTIPLICATIVE, DecayForm.NONE):
        raise no("decay_form", c.decay_form.value, "tf_keras: variable - variable * wd * lr")
    if c.decay_timing is not DecayTiming.BEFORE_STEP:
        raise no("decay_timing", c.decay_timing.value, "tf_keras decays before the Adam step")
    if not c.bias_correction:
        raise no("bias_correction", False, "tf_keras always bias-corrects")
    if c.amsgrad and c.amsgrad_mode is not AmsgradMode.RAW_V:
        raise no("amsgrad_mode", c.amsgrad_mode.value, "tf_keras keeps the running max of the raw v")
    if c.step_count_scope is not StepCountScope.GLOBAL:
        raise no("step_count_scope", c.step_count_scope.value, "tf_keras has one iterations count")
    if c.bias_correction_offset != 0:
        raise no("bias_correction_offset", c.bias_correction_offset, "tf_keras uses iterations + 1")
    if c.nesterov:
        raise no("nesterov", True, "tf_keras AdamW has no Nesterov form")
    if c.eps_root != 0.0:
        raise no("eps_root", c.eps_root, "tf_keras has no eps inside the sqrt")
    if not isinstance(c.wd_schedule, Constant):
        raise no("wd_schedule", c.wd_schedule.to_json().get("kind", "user"), "weight_decay is a float")
    for group in c.groups:
        if group.lr is not None and group.lr != c.lr:
            raise no("groups.lr", group.lr, "tf_keras AdamW has one learning rate for all variables")
        if group.weight_decay not in (None, 0.0, c.weight_decay):
            raise no(
                "groups.weight_decay", group.weight_decay, "tf_keras can only exclude variables from decay"
            )


def _import() -> tuple[Any, Any]:
    try:
        import tensorflow as tf

        tf_keras = importlib.import_module("tf_keras")  # untyped, not in mypy's overrides
    except ImportError as exc:
        raise FrameworkUnavailable(NAME, f"tf_keras is not installed: {exc}") from None
    tf.config.experimental.enable_tensor_float_32_execution(False)
    return tf, tf_keras


def lr_table(config: AdamWConfig, dtype: str, length: int) -> np.ndarray[Any, Any]:
    """``fl(fl(lr) * fl(eta(c)))`` for ``c < length`` in ``dtype`` (float32 for 16-bit dtypes)."""
    np_dt = np.float64 if dtype == "float64" else np.float32
    shift = 1 if config.schedule_count is ScheduleCount.POST_INCREMENT else 0
    etas = np.array([config.lr_schedule(c + shift) for c in range(length)], dtype=np.float64)
    return np.asarray(np.multiply(etas.astype(np_dt), np.asarray(config.lr, dtype=np_dt)), dtype=np_dt)


class TfKerasAdamW:
    """Factory for ``tf_keras.optimizers.AdamW`` runs (implementation ``default``)."""

    info = AdapterInfo(
        name=NAME,
        framework="tf_keras (Keras 2) on tensorflow",
        profile="tf_keras",
        implementations=("default",),
        devices=("cpu",),
        dtypes=("float32", "float64", "bfloat16", "float16"),
        knobs=KNOBS,
        features=FEATURES,
        notes="float64 runs set tf_keras floatx to float64 while the optimizer is built so that "
        "the learning-rate variable is binary64; jit_compile is off on CPU (tf_keras drops it "
        "without a GPU)",
        skips={
            "bfloat16": "beta_2=0.999 rounds to 1.0 in bfloat16 (tf_keras casts beta_2 and the "
            "local step to the variable dtype): 1 - beta_2**t is 0, so no Adam update is made"
        },
    )

    def versions(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        out: dict[str, str] = {}
        for key, cands in (
            ("tf_keras", ("tf-keras", "tf_keras")),
            ("tensorflow", ("tensorflow-cpu", "tensorflow")),
        ):
            out[key] = "not installed"
            for cand in cands:
                try:
                    out[key] = version(cand)
                    break
                except PackageNotFoundError:
                    continue
        return out

    def native_defaults(self) -> AdamWConfig:
        """``inspect.signature(tf_keras.optimizers.AdamW)`` of the installed package."""
        tf_keras = _import()[1]
        return keras_defaults(tf_keras.optimizers.AdamW)

    def to_native(self, config: AdamWConfig, implementation: str | None = None) -> dict[str, Any]:
        """``tf_keras.optimizers.AdamW`` keyword arguments (a schedule is described, not built)."""
        if implementation not in (None, "default"):
            raise UnsupportedConfig(NAME, "implementation", implementation, "expected 'default'")
        if not isinstance(config, AdamWConfig):
            raise AdapterError(f"{NAME}: config must be an AdamWConfig, got {config!r}")
        check_config(config)
        assert isinstance(config.wd_schedule, Constant)
        wd = 0.0 if config.decay_form is DecayForm.NONE else config.weight_decay * config.wd_schedule.value
        lr: Any = config.lr
        if not (isinstance(config.lr_schedule, Constant) and config.lr_schedule.value == 1.0):
            lr = {
                "LearningRateSchedule": "lr * eta(count)",
                "lr": config.lr,
                "schedule": config.lr_schedule.to_json(),
                "count": config.schedule_count.value,
            }
        return {
            "learning_rate": lr,
            "weight_decay": wd,
            "beta_1": config.beta1,
            "beta_2": config.beta2,
            "epsilon": config.eps,
            "amsgrad": config.amsgrad,
        }

    def create(
        self,
        config: AdamWConfig,
        params: Mapping[str, Array],
        *,
        implementation: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> TfKerasRun:
        native = self.to_native(config, implementation)
        if device != "cpu":
            raise FrameworkUnavailable(NAME, f"device={device!r}: this adapter runs tf_keras on cpu")
        if dtype not in self.info.dtypes:
            raise UnsupportedConfig(NAME, "dtype", dtype, f"expected one of {list(self.info.dtypes)}")
        _import()
        return TfKerasRun(config, native, params, dtype)


class TfKerasRun:
    """A live ``tf_keras.optimizers.AdamW`` over named ``tf.Variable`` parameters."""

    def __init__(
        self, config: AdamWConfig, native: Mapping[str, Any], params: Mapping[str, Array], dtype: str
    ) -> None:
        from adapters.arrays import as_float64

        tf, tf_keras = _import()
        if not isinstance(params, Mapping) or not params:
            raise InputError("params", params, "must be a non-empty mapping of name -> array")
        self.tf, self.config, self.dtype = tf, config, dtype
        self.tf_dtype = getattr(tf, dtype)
        self.names = list(params)
        arrays = {n: as_float64(params[n], f"params[{n!r}]") for n in self.names}
        self.shapes = {n: a.shape for n, a in arrays.items()}
        with tf.device("/CPU:0"):
            self.vars = [
                tf.Variable(self._tensor(arrays[n]), name=f"param{i}") for i, n in enumerate(self.names)
            ]
        self.table: np.ndarray[Any, Any] | None = None
        lr: Any = native["learning_rate"]
        if isinstance(lr, dict):
            lr = self._schedule(tf_keras)
        old = tf_keras.backend.floatx()
        try:
            if dtype == "float64":
                tf_keras.backend.set_floatx("float64")
            self.opt = tf_keras.optimizers.AdamW(
                learning_rate=lr,
                weight_decay=float(native["weight_decay"]),
                beta_1=float(native["beta_1"]),
                beta_2=float(native["beta_2"]),
                epsilon=float(native["epsilon"]),
                amsgrad=bool(native["amsgrad"]),
            )
        finally:
            tf_keras.backend.set_floatx(old)
        masked = [
            v
            for n, v in zip(self.names, self.vars, strict=True)
            if config.group_for(n)[1] == 0.0 and config.weight_decay != 0.0
        ]
        if masked:
            self.opt.exclude_from_weight_decay(var_list=masked)
        self.opt.build(self.vars)  # all of them: a first step with a frozen one must not shrink it

    def _schedule(self, tf_keras: Any) -> Any:
        run = self
        tf = self.tf
        run.table = lr_table(self.config, self.dtype, 64)

        class TableSchedule(tf_keras.optimizers.schedules.LearningRateSchedule):  # type: ignore[misc]
            """lr * eta(count) read from a table that grows on demand."""

            def __call__(self, step: Any) -> Any:
                assert run.table is not None
                return tf.gather(tf.constant(run.table), tf.cast(step, tf.int64))

            def get_config(self) -> dict[str, Any]:
                return {"config": run.config.to_json()}

        return TableSchedule()

    def _tensor(self, a: np.ndarray[Any, Any]) -> Any:
        tf = self.tf
        src = np.asarray(a, dtype=np.float32 if self.dtype in _LOW else np.dtype(self.dtype))
        return tf.cast(tf.constant(src), self.tf_dtype)

    def _np(self, x: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
        value = x.read_value() if hasattr(x, "read_value") else x
        if self.dtype in _LOW:
            value = self.tf.cast(value, self.tf.float32)
        return np.array(value.numpy(), dtype=np.float64)

    def _slot(self, kind: str, var: Any) -> Any:
        return getattr(self.opt, kind)[self.opt._index_dict[self.opt._var_key(var)]]

    def amsgrad(self) -> bool:
        return bool(self.opt.amsgrad)

    def step(self, grads: Mapping[str, Array | None]) -> None:
        from adapters.arrays import as_float64

        missing = [n for n in self.names if n not in grads]
        extra = [n for n in grads if n not in self.shapes]
        if missing or extra:
            raise InputError("grads", sorted(grads), f"missing {missing}, unknown {extra}")
        pairs = []
        for n, var in zip(self.names, self.vars, strict=True):
            g = grads[n]
            if g is None:
                continue
            arr = as_float64(g, f"grads[{n!r}]")
            if arr.shape != self.shapes[n]:
                raise InputError(f"grads[{n!r}]", arr.shape, f"expected {self.shapes[n]}")
            pairs.append((self._tensor(-arr if self.config.maximize else arr), var))
        if self.table is not None:
            k = int(self.opt.iterations.numpy()) + 1
            while k >= len(self.table):
                self.table = lr_table(self.config, self.dtype, 2 * len(self.table))
        if not pairs:
            # tf_keras raises on an all-None step; every parameter is frozen, only the count moves.
            self.opt.iterations.assign_add(1)
            return
        with warnings.catch_warnings(), self.tf.device("/CPU:0"):
            warnings.filterwarnings("ignore", message="Gradients do not exist")
            self.opt.apply_gradients(pairs)

    def params(self) -> dict[str, Array]:
        return {n: self._np(v) for n, v in zip(self.names, self.vars, strict=True)}

    def state(self) -> CanonicalState:
        pairs = list(zip(self.names, self.vars, strict=True))
        m = {n: self._np(self._slot("_momentums", v)) for n, v in pairs}
        v_ = {n: self._np(self._slot("_velocities", v)) for n, v in pairs}
        vmax = {n: self._np(self._slot("_velocity_hats", v)) for n, v in pairs} if self.amsgrad() else None
        return CanonicalState(step=int(self.opt.iterations.numpy()), m=m, v=v_, v_max=vmax)

    def _raw(self, var: Any) -> np.ndarray[Any, Any]:
        value = var.read_value()
        if value.dtype in (self.tf.bfloat16, self.tf.float16):
            value = self.tf.cast(value, self.tf.float32)  # exact; cast back on load
        return np.asarray(value.numpy())

    def save(self, path: Path) -> None:
        """``optimizer.variables`` (iterations, learning rate, m, v[, vhat]) and the parameters."""
        from adapters.arrays import save_arrays

        arrays: dict[str, Any] = {f"opt{i:04d}": self._raw(v) for i, v in enumerate(self.opt.variables)}
        arrays.update({f"param{i:04d}": self._raw(v) for i, v in enumerate(self.vars)})
        meta = {
            "format": "adamw-ref/tf_keras",
            "dtype": self.dtype,
            "optimizer_variables": [v.name for v in self.opt.variables],
            "params": self.names,
        }
        save_arrays(path, arrays, meta)

    def load(self, path: Path) -> None:
        from adapters.arrays import load_arrays

        arrays, meta = load_arrays(path)
        if not isinstance(meta, dict) or meta.get("format") != "adamw-ref/tf_keras":
            raise AdapterError(f"{str(path)!r} is not a tf_keras adapter state file")
        names = [v.name for v in self.opt.variables]
        if meta.get("optimizer_variables") != names or meta.get("params") != self.names:
            raise AdapterError(f"{str(path)!r}: variables do not match this optimizer's {names}")
        tf = self.tf
        for i, var in enumerate(self.opt.variables):
            var.assign(tf.cast(tf.constant(arrays[f"opt{i:04d}"]), var.dtype))
        for i, var in enumerate(self.vars):
            var.assign(tf.cast(tf.constant(arrays[f"param{i:04d}"]), var.dtype))

    def set_state(self, params: Mapping[str, Array], state: CanonicalState) -> None:
        if (state.v_max is None) == self.amsgrad():
            raise InputError("state.v_max", state.v_max is not None, f"amsgrad={self.amsgrad()}")
        for n, var in zip(self.names, self.vars, strict=True):
            var.assign(self._tensor(np.asarray(params[n], dtype=np.float64)))
            self._slot("_momentums", var).assign(self._tensor(np.asarray(state.m[n], dtype=np.float64)))
            self._slot("_velocities", var).assign(self._tensor(np.asarray(state.v[n], dtype=np.float64)))
            if state.v_max is not None:
                self._slot("_velocity_hats", var).assign(
                    self._tensor(np.asarray(state.v_max[n], dtype=np.float64))
                )
        self.opt.iterations.assign(int(state.step))

    def close(self) -> None:
        self.vars = []
