"""What Optax can express, as data, and how a configuration is realised as an Optax chain.

:data:`KNOBS` and :data:`FEATURES` declare the support of every knob value and feature;
:func:`check_config` refuses the rest, naming the knob; :func:`plan` says which chain realises a
configuration (pure data); :func:`partition` splits per-group hyperparameters for
``optax.multi_transform``. Shared by the factory (:mod:`adapters.optax.adapter`) and the live
optimizer (:mod:`adapters.optax.run`).
"""

from __future__ import annotations

from typing import Any

from adamw_ref import AdamWConfig
from adamw_ref.knobs import (
    AmsgradMode,
    DecayForm,
    DecayScaling,
    DecayTiming,
    EpsPlacement,
    StepCountScope,
)
from adamw_ref.schedules import Constant
from adapters.errors import UnsupportedConfig
from adapters.protocol import Support

NAME = "optax"
N, E, U = Support.NATIVE, Support.EMULATED, Support.UNSUPPORTED

KNOBS: dict[str, dict[str, Support]] = {
    "eps_placement": {"after_bias_correction": N, "before_bias_correction": E},
    "decay_scaling": {"lr": N, "schedule_multiplier": E, "unscaled": E},
    "decay_form": {"added_to_update": N, "none": N, "coupled_l2": E, "multiplicative": U, "proximal": U},
    "decay_timing": {"before_step": N, "after_step": U},
    "bias_correction": {"true": N, "false": E},
    "amsgrad_mode": {"bias_corrected_v": E, "raw_v": U},
    "schedule_count": {"pre_increment": N, "post_increment": E},
    "step_count_scope": {"global": N, "per_parameter": U},
    "bias_correction_offset": {"0": N, "1": E},  # any offset >= 1: the custom scale_by_adam
}

FEATURES: dict[str, Support] = {
    "amsgrad": E,  # chain(scale_by_amsgrad, add_decayed_weights, scale_by_learning_rate)
    "maximize": E,  # the adapter negates the gradient (exact)
    "nesterov": N,
    "eps_root": N,
    "lr_schedule": N,
    "wd_schedule": N,
    "groups": E,  # decay masks via mask=; per-group lr/weight_decay via optax.multi_transform
    "frozen": E,  # the adapter restores frozen leaves of params and moments after the update
    "save_load": N,
}

#: implementation -> (jit?, mu_dtype). ``jit-mu-*`` store the first moment in a 16-bit format
#: (``optax.adamw(mu_dtype=...)``); the reference computes them with ``m_dtype`` set
#: (:meth:`adapters.optax.adapter.OptaxAdamW.expected_config`).
IMPL_MODES: dict[str, tuple[bool, str | None]] = {
    "jit": (True, None),
    "nojit": (False, None),
    "jit-mu-bfloat16": (True, "bfloat16"),
    "jit-mu-float16": (True, "float16"),
}
IMPLEMENTATIONS: tuple[str, ...] = tuple(IMPL_MODES)

#: Constructor arguments without a default, filled from the ``optax`` profile by native_defaults.
REQUIRED_FILLED = ("lr",)


def check_config(config: AdamWConfig) -> None:
    """Raise UnsupportedConfig for the first knob or feature no Optax chain here expresses."""
    c = config
    if c.decay_form in (DecayForm.MULTIPLICATIVE, DecayForm.PROXIMAL):
        raise UnsupportedConfig(
            NAME,
            "decay_form",
            c.decay_form.value,
            "optax adds the decay to the update (use decay_form='added_to_update': same algebra, "
            "different rounding); a multiplicative shrink cannot be rounded the reference's way",
        )
    if c.decay_timing is not DecayTiming.BEFORE_STEP:
        raise UnsupportedConfig(
            NAME, "decay_timing", c.decay_timing.value, "optax decays the parameter the update is computed at"
        )
    if c.amsgrad and c.amsgrad_mode is not AmsgradMode.BIAS_CORRECTED_V:
        raise UnsupportedConfig(
            NAME, "amsgrad_mode", c.amsgrad_mode.value, "optax.scale_by_amsgrad maxes the bias-corrected nu"
        )
    if c.amsgrad and (
        c.eps_placement is not EpsPlacement.AFTER_BIAS_CORRECTION
        or not c.bias_correction
        or c.bias_correction_offset
    ):
        raise UnsupportedConfig(
            NAME, "amsgrad", True, "AMSGrad only with the standard eps placement and corrections"
        )
    if c.step_count_scope is not StepCountScope.GLOBAL:
        raise UnsupportedConfig(
            NAME, "step_count_scope", c.step_count_scope.value, "optax has one count in the optimizer state"
        )
    if c.nesterov and (
        c.eps_placement is not EpsPlacement.AFTER_BIAS_CORRECTION
        or not c.bias_correction
        or c.bias_correction_offset
    ):
        raise UnsupportedConfig(NAME, "nesterov", True, "nesterov only with optax's own scale_by_adam")


def needs_partition(config: AdamWConfig) -> bool:
    """True when a group has its own lr or a weight decay other than 0 / the global one."""
    c = config
    return any(
        (g.lr is not None and g.lr != c.lr) or g.weight_decay not in (None, 0.0, c.weight_decay)
        for g in c.groups
    )


def partition(config: AdamWConfig, names: list[str]) -> dict[str, tuple[AdamWConfig, list[str]]]:
    """Label -> (the group's config, its parameter names) for ``optax.multi_transform``.

    One label per distinct ``(lr, weight_decay)`` of :meth:`AdamWConfig.group_for`; each label's
    config is ``config`` with that lr and weight decay and no groups (same schedules, knobs).
    """
    out: dict[str, tuple[AdamWConfig, list[str]]] = {}
    for n in names:
        lr, wd = config.group_for(n)
        label = f"lr={lr!r},wd={wd!r}"
        if label not in out:
            out[label] = (config.replace(lr=lr, weight_decay=wd, groups=()), [])
        out[label][1].append(n)
    return out


def plan(config: AdamWConfig) -> dict[str, Any]:
    """How ``config`` is realised: ``{"kind": "adamw"|"amsgrad"|"chain", ...}`` (pure data)."""
    check_config(config)
    c = config
    custom = (
        c.eps_placement is EpsPlacement.BEFORE_BIAS_CORRECTION
        or not c.bias_correction
        or c.bias_correction_offset != 0
    )
    decay = c.decay_form is not DecayForm.NONE and c.weight_decay != 0.0
    native = (
        not custom
        and not c.amsgrad
        and c.decay_scaling is DecayScaling.LR
        and c.decay_form in (DecayForm.ADDED_TO_UPDATE, DecayForm.NONE)
    )
    kind = "adamw" if native else ("amsgrad" if c.amsgrad else "chain")
    return {
        "kind": kind,
        "partition": needs_partition(c),
        "adam": "custom" if custom else ("amsgrad" if c.amsgrad else "scale_by_adam"),
        "decay": None
        if not decay
        else ("coupled_l2" if c.decay_form is DecayForm.COUPLED_L2 else c.decay_scaling.value),
        "lr_schedule": not _is_one(c.lr_schedule) or c.schedule_count.value == "post_increment",
        "wd_schedule": not _is_one(c.wd_schedule),
    }


def _is_one(schedule: object) -> bool:
    return isinstance(schedule, Constant) and schedule.value == 1.0
