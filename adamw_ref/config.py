r"""The configuration: hyperparameters, knobs, schedules and parameter groups.

An :class:`AdamWConfig` is a point in the space of AdamW variants. It is immutable and validated
on construction: every bad value raises :class:`~adamw_ref.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from adamw_ref.errors import ConfigError
from adamw_ref.formats import FORMATS
from adamw_ref.knobs import (
    AmsgradMode,
    DecayForm,
    DecayScaling,
    DecayTiming,
    EpsPlacement,
    ScheduleCount,
    StepCountScope,
)
from adamw_ref.schedules import Constant, Schedule, schedule_from_json

E = TypeVar("E", bound=Enum)

#: Knob fields: the ones that change *which* algorithm runs, not its hyperparameter values.
KNOB_FIELDS: tuple[str, ...] = (
    "eps_placement",
    "decay_scaling",
    "decay_form",
    "decay_timing",
    "bias_correction",
    "amsgrad_mode",
    "schedule_count",
    "step_count_scope",
    "bias_correction_offset",
)

#: State-precision fields: the binary formats the parameters and the moments are *stored* in
#: (``None``: as computed, in the working arithmetic). Not knobs of the algorithm (they are not in
#: :data:`KNOB_FIELDS`) but rounding points of the step; omitted from :meth:`AdamWConfig.to_json`
#: when ``None``, so configurations without them serialise as before.
PRECISION_FIELDS: tuple[str, ...] = ("param_dtype", "m_dtype", "v_dtype")


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(name, value, "must be a real number")
    return float(value)


def _finite_nonneg(name: str, value: object) -> float:
    x = _number(name, value)
    if not math.isfinite(x) or x < 0:
        raise ConfigError(name, value, "must be finite and >= 0")
    return x


def _beta(name: str, value: object) -> float:
    x = _number(name, value)
    if not (0.0 <= x < 1.0):
        raise ConfigError(name, value, "must lie in [0, 1)")
    return x


def _storage_format(name: str, value: object) -> str | None:
    if value is None or (isinstance(value, str) and value in FORMATS):
        return value
    raise ConfigError(name, value, f"unknown; expected null or one of {sorted(FORMATS)}")


def _enum(name: str, cls: type[E], value: object) -> E:
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        allowed = [m.value for m in cls]
        raise ConfigError(name, value, f"unknown; expected one of {allowed}") from None


@dataclass(frozen=True)
class ParamGroup:
    """Overrides for the parameters named in ``names`` (exact names).

    ``lr`` and ``weight_decay`` replace the config's values; ``weight_decay=0.0`` is how decay is
    masked (bias/norm exclusion). The first group naming a parameter wins.
    """

    names: tuple[str, ...]
    lr: float | None = None
    weight_decay: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.names, str) or not all(isinstance(n, str) for n in self.names):
            raise ConfigError("groups.names", self.names, "must be a sequence of parameter names")
        object.__setattr__(self, "names", tuple(self.names))
        if self.lr is not None:
            _finite_nonneg("groups.lr", self.lr)
        if self.weight_decay is not None:
            _finite_nonneg("groups.weight_decay", self.weight_decay)

    def to_json(self) -> dict[str, Any]:
        return {"names": list(self.names), "lr": self.lr, "weight_decay": self.weight_decay}


@dataclass(frozen=True)
class AdamWConfig:
    r"""One AdamW variant and its hyperparameters.

    Hyperparameters: ``lr`` (:math:`\alpha`), ``beta1``, ``beta2``, ``eps``, ``weight_decay``
    (:math:`\lambda`), ``amsgrad``, ``maximize``, ``nesterov`` (Optax's NAdamW form), ``eps_root``
    (Optax: inside the square root). Knobs: see :mod:`adamw_ref.knobs`; ``bias_correction=False``
    drops both corrections (MLX default); ``bias_correction_offset`` shifts the bias-correction
    index (:math:`k=t+\text{offset}`; 0 is standard, 1 reproduces an extra phantom step).
    Schedules: ``lr_schedule`` (:math:`\eta`) and ``wd_schedule`` (:math:`\omega`) multiply
    ``lr`` and ``weight_decay``. ``groups`` hold per-parameter overrides.

    State precision (:data:`PRECISION_FIELDS`): ``param_dtype``, ``m_dtype`` and ``v_dtype``
    name the binary format (``float64``, ``float32``, ``float16``, ``bfloat16``) that
    :math:`\theta`, :math:`m` and :math:`v` (with AMSGrad's :math:`v^{max}`) are *stored* in
    after each step; the step computes in the working arithmetic and rounds once when it stores
    (:func:`adamw_ref.update.store`). ``None`` (the default) stores them as computed: e.g.
    float32 master weights are ``param_dtype=None`` under binary32 arithmetic, bfloat16
    parameters without a master copy ``param_dtype="bfloat16"``; Optax's ``mu_dtype`` stores
    like ``m_dtype`` but also forms :math:`\beta_1 m` in that format (``docs/bitexact``).
    """

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 1e-2
    amsgrad: bool = False
    maximize: bool = False
    nesterov: bool = False
    eps_root: float = 0.0
    eps_placement: EpsPlacement = EpsPlacement.AFTER_BIAS_CORRECTION
    decay_scaling: DecayScaling = DecayScaling.LR
    decay_form: DecayForm = DecayForm.MULTIPLICATIVE
    decay_timing: DecayTiming = DecayTiming.BEFORE_STEP
    bias_correction: bool = True
    amsgrad_mode: AmsgradMode = AmsgradMode.RAW_V
    schedule_count: ScheduleCount = ScheduleCount.PRE_INCREMENT
    step_count_scope: StepCountScope = StepCountScope.GLOBAL
    bias_correction_offset: int = 0
    lr_schedule: Schedule = field(default_factory=Constant)
    wd_schedule: Schedule = field(default_factory=Constant)
    groups: tuple[ParamGroup, ...] = ()
    param_dtype: str | None = None
    m_dtype: str | None = None
    v_dtype: str | None = None

    def __post_init__(self) -> None:
        _finite_nonneg("lr", self.lr)
        _beta("beta1", self.beta1)
        _beta("beta2", self.beta2)
        _finite_nonneg("eps", self.eps)
        _finite_nonneg("weight_decay", self.weight_decay)
        _finite_nonneg("eps_root", self.eps_root)
        for name in ("amsgrad", "maximize", "nesterov", "bias_correction"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, getattr(self, name), "must be a bool")
        set_ = object.__setattr__
        set_(self, "eps_placement", _enum("eps_placement", EpsPlacement, self.eps_placement))
        set_(self, "decay_scaling", _enum("decay_scaling", DecayScaling, self.decay_scaling))
        set_(self, "decay_form", _enum("decay_form", DecayForm, self.decay_form))
        set_(self, "decay_timing", _enum("decay_timing", DecayTiming, self.decay_timing))
        set_(self, "amsgrad_mode", _enum("amsgrad_mode", AmsgradMode, self.amsgrad_mode))
        set_(self, "schedule_count", _enum("schedule_count", ScheduleCount, self.schedule_count))
        set_(
            self,
            "step_count_scope",
            _enum("step_count_scope", StepCountScope, self.step_count_scope),
        )
        off = self.bias_correction_offset
        if isinstance(off, bool) or not isinstance(off, int) or off < 0:
            raise ConfigError("bias_correction_offset", off, "must be an integer >= 0")
        for name in ("lr_schedule", "wd_schedule"):
            if not isinstance(getattr(self, name), Schedule):
                raise ConfigError(name, getattr(self, name), "must be a Schedule")
        if not isinstance(self.groups, tuple) or not all(isinstance(g, ParamGroup) for g in self.groups):
            raise ConfigError("groups", self.groups, "must be a tuple of ParamGroup")
        if self.decay_timing is DecayTiming.AFTER_STEP and self.decay_form in (
            DecayForm.ADDED_TO_UPDATE,
            DecayForm.COUPLED_L2,
        ):
            raise ConfigError(
                "decay_timing",
                self.decay_timing.value,
                f"after_step is meaningless with decay_form={self.decay_form.value}",
            )
        if self.nesterov and self.amsgrad:
            raise ConfigError("nesterov", True, "nesterov with amsgrad is not defined by any profile")
        for name in PRECISION_FIELDS:
            _storage_format(name, getattr(self, name))

    @property
    def stores_narrow(self) -> bool:
        """Whether any state-precision field is set (the step then rounds what it stores)."""
        return any(getattr(self, name) is not None for name in PRECISION_FIELDS)

    # -- convenience -------------------------------------------------------------------------
    def replace(self, **changes: Any) -> AdamWConfig:
        """A copy with ``changes`` applied (validated; unknown fields raise ConfigError)."""
        names = {f.name for f in dataclasses.fields(self)}
        for key in changes:
            if key not in names:
                raise ConfigError(key, changes[key], f"unknown field; expected one of {sorted(names)}")
        return dataclasses.replace(self, **changes)

    def exclude_from_decay(self, names: Iterable[str]) -> AdamWConfig:
        """A copy with decay switched off (``weight_decay=0``) for ``names``."""
        group = ParamGroup(names=tuple(names), weight_decay=0.0)
        return self.replace(groups=(group, *self.groups))

    def group_for(self, name: str) -> tuple[float, float]:
        """The ``(lr, weight_decay)`` that apply to parameter ``name``."""
        for group in self.groups:
            if name in group.names:
                lr = self.lr if group.lr is None else group.lr
                wd = self.weight_decay if group.weight_decay is None else group.weight_decay
                return lr, wd
        return self.lr, self.weight_decay

    def knobs(self) -> dict[str, Any]:
        """The knob values only, as JSON scalars."""
        out: dict[str, Any] = {}
        for name in KNOB_FIELDS:
            value = getattr(self, name)
            out[name] = value.value if isinstance(value, Enum) else value
        return out

    # -- JSON --------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (floats as JSON numbers: they round-trip exactly through repr).

        The state-precision fields appear only when set, so every configuration without them
        (all the committed vectors and case files) serialises byte for byte as before."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in PRECISION_FIELDS:
                if value is not None:
                    out[f.name] = value
            elif isinstance(value, Enum):
                out[f.name] = value.value
            elif f.name in ("lr_schedule", "wd_schedule"):
                out[f.name] = value.to_json()
            elif f.name == "groups":
                out[f.name] = [g.to_json() for g in value]
            else:
                out[f.name] = value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], base: AdamWConfig | None = None) -> AdamWConfig:
        """Build from a (possibly partial) dict, filling missing fields from ``base``."""
        if not isinstance(data, Mapping):
            raise ConfigError("config", data, "must be a JSON object")
        changes: dict[str, Any] = {}
        for key, value in data.items():
            if key in ("lr_schedule", "wd_schedule"):
                changes[key] = schedule_from_json(value, key)
            elif key == "groups":
                if not isinstance(value, list):
                    raise ConfigError("groups", value, "must be a list")
                groups = []
                for item in value:
                    if not isinstance(item, Mapping) or "names" not in item:
                        raise ConfigError("groups[]", item, "must be an object with 'names'")
                    groups.append(
                        ParamGroup(
                            names=tuple(item["names"]),
                            lr=item.get("lr"),
                            weight_decay=item.get("weight_decay"),
                        )
                    )
                changes[key] = tuple(groups)
            else:
                changes[key] = value
        return (base or cls()).replace(**changes)
