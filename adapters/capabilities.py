"""Capabilities as data, and the rules that apply them: shared by every adapter.

An adapter declares, per knob value and feature, whether it can express it
(:class:`~adapters.protocol.Support`); :func:`refuse_unsupported` turns those tables into the
refusal ``to_native`` must raise (:class:`~adapters.errors.UnsupportedConfig`, naming the first
knob or feature the configuration needs and the adapter lacks); :func:`knob_table` builds the
table of an implementation that computes one profile and nothing else. A plug-in needs no more::

    info = AdapterInfo(..., profile="torch", knobs=knob_table(get_profile("torch").config), ...)

    def to_native(self, config, implementation=None):
        refuse_unsupported(self.info, config)
        return {"lr": config.lr, ...}
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

from adamw_ref import KNOB_FIELDS, AdamWConfig, Constant
from adamw_ref.knobs import (
    AmsgradMode,
    DecayForm,
    DecayScaling,
    DecayTiming,
    EpsPlacement,
    ScheduleCount,
    StepCountScope,
)
from adapters.errors import AdapterError, UnsupportedConfig
from adapters.protocol import AdapterInfo, Support

N, U = Support.NATIVE, Support.UNSUPPORTED

#: Every value of every knob, as the string keys of :attr:`AdapterInfo.knobs`.
KNOB_VALUES: dict[str, tuple[str, ...]] = {
    "eps_placement": tuple(e.value for e in EpsPlacement),
    "decay_scaling": tuple(e.value for e in DecayScaling),
    "decay_form": tuple(e.value for e in DecayForm),
    "decay_timing": tuple(e.value for e in DecayTiming),
    "bias_correction": ("true", "false"),
    "amsgrad_mode": tuple(e.value for e in AmsgradMode),
    "schedule_count": tuple(e.value for e in ScheduleCount),
    "step_count_scope": tuple(e.value for e in StepCountScope),
    "bias_correction_offset": ("0", "1"),
}


def knob_value(value: object) -> str:
    """A knob value as the string key used in :attr:`AdapterInfo.knobs`."""
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def decay_active(config: AdamWConfig) -> bool:
    return config.decay_form.value != "none" and (
        config.weight_decay > 0 or any((g.weight_decay or 0) > 0 for g in config.groups)
    )


def relevant_knobs(config: AdamWConfig) -> list[str]:
    """The knobs whose value changes the computation of ``config`` (others are moot)."""
    out = []
    active = decay_active(config)
    scheduled = not (isinstance(config.lr_schedule, Constant) and isinstance(config.wd_schedule, Constant))
    for name in KNOB_FIELDS:
        if name in ("decay_scaling", "decay_timing") and not active:
            continue
        if name == "decay_form" and not active:
            continue
        if name == "amsgrad_mode" and not config.amsgrad:
            continue
        if name == "schedule_count" and not scheduled:
            continue
        out.append(name)
    return out


def refuse_unsupported(info: AdapterInfo, config: AdamWConfig, fixed_eps_root: float = 0.0) -> None:
    """Raise UnsupportedConfig for the first relevant knob or feature ``info`` cannot express.

    ``fixed_eps_root`` is the constant a framework adds inside the square root (0 for torch).
    """
    if not isinstance(config, AdamWConfig):
        raise AdapterError(f"{info.name}: config must be an AdamWConfig, got {config!r}")
    for name in relevant_knobs(config):
        value = knob_value(getattr(config, name))
        declared = info.knobs.get(name, {})
        if declared.get(value, Support.UNSUPPORTED) is Support.UNSUPPORTED:
            ok = [k for k, s in declared.items() if s is not Support.UNSUPPORTED]
            raise UnsupportedConfig(info.name, name, value, f"supported values: {ok}")
    used = {
        "amsgrad": (config.amsgrad, config.amsgrad),
        "maximize": (config.maximize, config.maximize),
        "nesterov": (config.nesterov, config.nesterov),
        "eps_root": (config.eps_root != fixed_eps_root, config.eps_root),
        "wd_schedule": (not isinstance(config.wd_schedule, Constant), config.wd_schedule),
        "groups": (bool(config.groups), config.groups),
    }
    for feat, (on, fvalue) in used.items():
        if on and info.features.get(feat, Support.UNSUPPORTED) is Support.UNSUPPORTED:
            why = (
                f"fixed at {fixed_eps_root!r}"
                if feat == "eps_root"
                else "only a Constant schedule"
                if feat == "wd_schedule"
                else "not available in this framework"
            )
            raise UnsupportedConfig(info.name, feat, fvalue, why)


def knob_table(
    profile_config: AdamWConfig, overrides: Mapping[str, Mapping[str, Support]] | None = None
) -> dict[str, dict[str, Support]]:
    """The claimed profile's knob values NATIVE, every other value UNSUPPORTED, then
    ``overrides`` (knob -> {value: Support}: what an adapter adds, e.g. ``decay_form=none``
    NATIVE, or a post-increment schedule count EMULATED)."""
    out: dict[str, dict[str, Support]] = {}
    for name in KNOB_FIELDS:
        own = knob_value(getattr(profile_config, name))
        values = dict.fromkeys(KNOB_VALUES[name], U)
        values[own] = N
        values.update((overrides or {}).get(name, {}))
        out[name] = values
    return out
