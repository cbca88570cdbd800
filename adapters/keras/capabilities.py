"""What Keras 3's ``AdamW`` can express, as data, and the rules that refuse the rest.

Capabilities are declared per knob value and feature (:class:`~adapters.protocol.Support`);
:func:`check_config` names the first knob a configuration needs that Keras lacks. Shared by the
factory (:mod:`adapters.keras.adapter`) and the live optimizer (:mod:`adapters.keras.run`).
"""

from __future__ import annotations

import inspect
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
from adapters.errors import UnsupportedConfig
from adapters.keras.backend import BACKENDS
from adapters.protocol import AdapterInfo, Support

N, E, U = Support.NATIVE, Support.EMULATED, Support.UNSUPPORTED

KNOBS: dict[str, dict[str, Support]] = {
    "eps_placement": {"before_bias_correction": N, "after_bias_correction": U},
    "decay_scaling": {"lr": N, "schedule_multiplier": U, "unscaled": U},
    "decay_form": {"multiplicative": N, "none": N, "proximal": U, "added_to_update": U, "coupled_l2": U},
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
        raise _refuse(
            adapter,
            "eps_placement",
            c.eps_placement.value,
            "keras adds epsilon to sqrt(v) before bias correction ('epsilon hat')",
        )
    if c.decay_scaling is not DecayScaling.LR:
        raise _refuse(
            adapter,
            "decay_scaling",
            c.decay_scaling.value,
            "keras multiplies weight_decay by the current learning rate",
        )
    if c.decay_form not in (DecayForm.MULTIPLICATIVE, DecayForm.NONE):
        raise _refuse(
            adapter, "decay_form", c.decay_form.value, "keras decays multiplicatively: theta - theta*wd*lr"
        )
    if c.decay_timing is not DecayTiming.BEFORE_STEP:
        raise _refuse(adapter, "decay_timing", c.decay_timing.value, "keras decays before the Adam step")
    if not c.bias_correction:
        raise _refuse(adapter, "bias_correction", False, "keras always bias-corrects")
    if c.amsgrad and c.amsgrad_mode is not AmsgradMode.RAW_V:
        raise _refuse(
            adapter, "amsgrad_mode", c.amsgrad_mode.value, "keras keeps the running max of the raw v"
        )
    if c.step_count_scope is not StepCountScope.GLOBAL:
        raise _refuse(
            adapter, "step_count_scope", c.step_count_scope.value, "keras has one global iterations count"
        )
    if c.bias_correction_offset != 0:
        raise _refuse(
            adapter, "bias_correction_offset", c.bias_correction_offset, "keras uses t = iterations + 1"
        )
    if c.nesterov:
        raise _refuse(adapter, "nesterov", True, "keras AdamW has no Nesterov form")
    if c.eps_root != 0.0:
        raise _refuse(adapter, "eps_root", c.eps_root, "keras has no eps inside the sqrt")
    if not isinstance(c.wd_schedule, Constant):
        raise _refuse(
            adapter,
            "wd_schedule",
            c.wd_schedule.to_json().get("kind", "user"),
            "keras weight_decay is a float (only a Constant schedule)",
        )
    for group in c.groups:
        if group.lr is not None and group.lr != c.lr:
            raise _refuse(
                adapter, "groups.lr", group.lr, "keras AdamW has one learning rate for all variables"
            )
        if group.weight_decay not in (None, 0.0, c.weight_decay):
            raise _refuse(
                adapter,
                "groups.weight_decay",
                group.weight_decay,
                "keras can only exclude variables from decay (weight_decay 0)",
            )


def decay_mask(config: AdamWConfig, names: list[str]) -> list[str]:
    """The parameter names excluded from decay (their group sets weight_decay to 0)."""
    return [n for n in names if config.group_for(n)[1] == 0.0 and config.weight_decay != 0.0]


def info_for(backend: str) -> AdapterInfo:
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
        skips={
            "bfloat16": "beta_2=0.999 rounds to 1.0 in bfloat16 (local_step and beta powers "
            "are cast to the variable dtype): keras makes no Adam update"
        },
    )


def keras_defaults(adamw_class: Any) -> AdamWConfig:
    """The defaults of a Keras-style ``AdamW`` constructor (Keras 3 and Keras 2 / tf_keras share
    ``learning_rate``, ``beta_1``, ``beta_2``, ``epsilon``, ``weight_decay``, ``amsgrad``), read
    from its signature, with the knob values both implement: :math:`\\hat\\epsilon`, decay
    :math:`\\theta \\leftarrow \\theta - \\eta\\lambda\\theta` before the step, one global count."""
    p = inspect.signature(adamw_class).parameters
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
