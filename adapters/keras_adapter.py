r"""Keras 3 ``keras.optimizers.AdamW`` on the TensorFlow, JAX and PyTorch backends.

Keras computes (``keras/src/optimizers/adam.py`` ``update_step`` and
``base_optimizer.py`` ``_apply_weight_decay``), with :math:`t` = ``iterations + 1``:

.. math::

   \theta \leftarrow \theta-\theta\lambda\alpha_t;\quad m \mathrel{+}= (g-m)(1-\beta_1);\quad
   v \mathrel{+}= (g^2-v)(1-\beta_2);\quad
   \theta \leftarrow \theta - m\,\frac{\alpha_t\sqrt{1-\beta_2^t}/(1-\beta_1^t)}{\sqrt v+\hat\epsilon}

i.e. the ``keras3`` profile: :math:`\hat\epsilon` (eps before bias correction), decay
multiplicative, before the step, scaled by the scheduled lr; one global count (``iterations``);
schedules see the count before the increment. The torch backend uses ``m = b1*m + (1-b1)*g``
and ``theta *= 1 - wd*lr`` instead (same algebra, other rounding). AMSGrad keeps the running max
of the raw ``v``.

The backend is fixed per process (``KERAS_BACKEND``): :class:`KerasTensorFlow`,
:class:`KerasJax` and :class:`KerasTorch` each refuse to run once Keras was imported with
another backend.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from adamw_ref import AdamWConfig
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
from adapters._keras_backend import BACKENDS, import_keras, keras_version
from adapters.errors import UnsupportedConfig
from adapters.protocol import AdapterInfo, Array, OptimizerRun, Support

N, E, U = Support.NATIVE, Support.EMULATED, Support.UNSUPPORTED

KNOBS: dict[str, dict[str, Support]] = {
    "eps_placement": {"before_bias_correction": N, "after_bias_correction": U},
    "decay_scaling": {"lr": N, "schedule_multiplier": U, "unscaled": U},
    "decay_form": {"multiplicative": N, "none": N, "proximal": U, "added_to_update": U,
                   "coupled_l2": U},
    "decay_timing": {"before_step": N, "after_step": U},
    "bias_correction": {"true": N, "false": U},
    "amsgrad_mode": {"raw_v": N, "bias_corrected_v": U},
    "schedule_count": {"pre_increment": N, "post_increment": E},
    "step_count_scope": {"global": N, "per_parameter": U},
    "bias_correction_offset": {"0": N},
}

FEATURES: dict[str, Support] = {
    "amsgrad": N,
    "maximize": E,  # the adapter negates the gradient (exact)
    "nesterov": U,
    "eps_root": U,
    "lr_schedule": N,  # a keras LearningRateSchedule (table of lr*eta(count))
    "wd_schedule": U,  # weight_decay is a float; only Constant schedules
    "groups": N,  # decay masks only (exclude_from_weight_decay); per-group lr refused
    "frozen": N,  # None gradients are filtered by keras
    "save_load": N,
}


def _refuse(adapter: str, knob: str, value: object, reason: str) -> UnsupportedConfig:
    return UnsupportedConfig(adapter, knob, value, reason)


def check_config(adapter: str, config: AdamWConfig) -> None:
    """Raise UnsupportedConfig for the first knob or feature Keras cannot express."""
    c = config
    if c.eps_placement is not EpsPlacement.BEFORE_BIAS_CORRECTION:
        raise _refuse(adapter, "eps_placement", c.eps_placement.value,
                      "keras adds epsilon to sqrt(v) before bias correction ('epsilon hat')")
    if c.decay_scaling is not DecayScaling.LR:
        raise _refuse(adapter, "decay_scaling", c.decay_scaling.value,
                      "keras multiplies weight_decay by the current learning rate")
    if c.decay_form not in (DecayForm.MULTIPLICATIVE, DecayForm.NONE):
        raise _refuse(adapter, "decay_form", c.decay_form.value,
                      "keras decays multiplicatively: theta - theta*wd*lr")
    if c.decay_timing is not DecayTiming.BEFORE_STEP:
        raise _refuse(adapter, "decay_timing", c.decay_timing.value,
                      "keras decays before the Adam step")
    if not c.bias_correction:
        raise _refuse(adapter, "bias_correction", False, "keras always bias-corrects")
    if c.amsgrad and c.amsgrad_mode is not AmsgradMode.RAW_V:
        raise _refuse(adapter, "amsgrad_mode", c.amsgrad_mode.value,
                      "keras keeps the running max of the raw v")
    if c.step_count_scope is not StepCountScope.GLOBAL:
        raise _refuse(adapter, "step_count_scope", c.step_count_scope.value,
                      "keras has one global iterations count")
    if c.bias_correction_offset != 0:
        raise _refuse(adapter, "bias_correction_offset", c.bias_correction_offset,
                      "keras uses t = iterations + 1")
    if c.nesterov:
        raise _refuse(adapter, "nesterov", True, "keras AdamW has no Nesterov form")
    if c.eps_root != 0.0:
        raise _refuse(adapter, "eps_root", c.eps_root, "keras has no eps inside the sqrt")
    if not isinstance(c.wd_schedule, Constant):
        raise _refuse(adapter, "wd_schedule", c.wd_schedule.to_json().get("kind", "user"),
                      "keras weight_decay is a float (only a Constant schedule)")
    for group in c.groups:
        if group.lr is not None and group.lr != c.lr:
            raise _refuse(adapter, "groups.lr", group.lr,
                          "keras AdamW has one learning rate for all variables")
        if group.weight_decay not in (None, 0.0, c.weight_decay):
            raise _refuse(adapter, "groups.weight_decay", group.weight_decay,
                          "keras can only exclude variables from decay (weight_decay 0)")


def decay_mask(config: AdamWConfig, names: list[str]) -> list[str]:
    """The parameter names excluded from decay (their group sets weight_decay to 0)."""
    return [n for n in names if config.group_for(n)[1] == 0.0 and config.weight_decay != 0.0]


class _KerasAdamW:
    """Factory for one Keras backend (see the module docstring for the update rule)."""

    backend: str = ""
    info: AdapterInfo

    def versions(self) -> dict[str, str]:
        out = {"keras": keras_version()}
        from importlib.metadata import PackageNotFoundError, version

        pkg = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[self.backend]
        for cand in (pkg, f"{pkg}-cpu") if pkg == "tensorflow" else (pkg,):
            try:
                out[pkg] = version(cand)
                break
            except PackageNotFoundError:
                continue
        return out

    def native_defaults(self) -> AdamWConfig:
        """The installed ``keras.optimizers.AdamW`` defaults, read by introspection."""
        keras = import_keras(self.backend)
        p = inspect.signature(keras.optimizers.AdamW).parameters
        return AdamWConfig(
            lr=float(p["learning_rate"].default),
            beta1=float(p["beta_1"].default),
            beta2=float(p["beta_2"].default),
            eps=float(p["epsilon"].default),
            weight_decay=float(p["weight_decay"].default),
            amsgrad=bool(p["amsgrad"].default),
            eps_placement=EpsPlacement.BEFORE_BIAS_CORRECTION,
            decay_scaling=DecayScaling.LR,
            decay_form=DecayForm.MULTIPLICATIVE,
            decay_timing=DecayTiming.BEFORE_STEP,
            bias_correction=True,
            amsgrad_mode=AmsgradMode.RAW_V,
            schedule_count=ScheduleCount.PRE_INCREMENT,
            step_count_scope=StepCountScope.GLOBAL,
        )

    def to_native(self, config: AdamWConfig, implementation: str | None = None) -> dict[str, Any]:
        """``keras.optimizers.AdamW`` keyword arguments (a schedule is described, not built)."""
        self._check_impl(implementation)
        check_config(self.info.name, config)
        assert isinstance(config.wd_schedule, Constant)
        wd = 0.0 if config.decay_form is DecayForm.NONE else config.weight_decay
        wd *= config.wd_schedule.value
        lr: Any = config.lr
        if not isinstance(config.lr_schedule, Constant) or config.lr_schedule.value != 1.0:
            lr = {"LearningRateSchedule": "lr * eta(count)", "lr": config.lr,
                  "schedule": config.lr_schedule, "count": config.schedule_count.value}
        return {
            "learning_rate": lr,
            "weight_decay": wd,
            "beta_1": config.beta1,
            "beta_2": config.beta2,
            "epsilon": config.eps,
            "amsgrad": config.amsgrad,
        }

    def _check_impl(self, implementation: str | None) -> None:
        if implementation not in (None, "default"):
            raise UnsupportedConfig(self.info.name, "implementation", implementation,
                                    "keras AdamW has one implementation: 'default'")

    def create(
        self,
        config: AdamWConfig,
        params: Mapping[str, Array],
        *,
        implementation: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> OptimizerRun:
        from adapters._keras_run import KerasRun

        native = self.to_native(config, implementation)
        if dtype not in self.info.dtypes:
            raise UnsupportedConfig(self.info.name, "dtype", dtype,
                                    f"expected one of {list(self.info.dtypes)}")
        import_keras(self.backend, x64=(dtype == "float64"))
        return KerasRun(self.info.name, self.backend, config, native, params, device, dtype)


def _info(backend: str) -> AdapterInfo:
    return AdapterInfo(
        name=BACKENDS[backend],
        framework=f"keras ({backend} backend)",
        profile="keras3",
        implementations=("default",),
        devices=("cpu", "cuda"),
        dtypes=("float32", "float64", "bfloat16", "float16"),
        knobs=KNOBS,
        features=FEATURES,
        notes="one backend per process (KERAS_BACKEND); float64 runs set keras floatx to float64 "
        "while the optimizer is built so that the learning-rate variable is binary64",
        skips={"bfloat16": "beta_2=0.999 rounds to 1.0 in bfloat16 (local_step and beta powers "
               "are cast to the variable dtype): keras makes no Adam update"},
    )


class KerasTensorFlow(_KerasAdamW):
    """``keras.optimizers.AdamW`` with ``KERAS_BACKEND=tensorflow``."""

    backend = "tensorflow"
    info = _info("tensorflow")


class KerasJax(_KerasAdamW):
    """``keras.optimizers.AdamW`` with ``KERAS_BACKEND=jax``."""

    backend = "jax"
    info = _info("jax")


class KerasTorch(_KerasAdamW):
    """``keras.optimizers.AdamW`` with ``KERAS_BACKEND=torch``."""

    backend = "torch"
    info = _info("torch")

