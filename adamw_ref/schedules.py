r"""Schedules: multipliers :math:`\eta(c)\ge 0` of a base value, as functions of a step count.

A schedule never knows whether it multiplies the learning rate or the weight decay: the config
holds one of each (``lr_schedule``, ``wd_schedule``). The count :math:`c` it is evaluated at is set
by :class:`~adamw_ref.knobs.ScheduleCount`. Every built-in schedule serialises to JSON
(``to_json``/``schedule_from_json``); :class:`UserSchedule` wraps any callable but cannot.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from adamw_ref.errors import ConfigError


@runtime_checkable
class Schedule(Protocol):
    """A multiplier as a function of the step count."""

    def __call__(self, count: int) -> float: ...

    def to_json(self) -> dict[str, Any]: ...


def _nonneg_int(field_name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(field_name, value, "must be an integer >= 0")
    return value


def _finite_nonneg(field_name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(field_name, value, "must be a number")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(field_name, value, "must be finite and >= 0")
    return float(value)


@dataclass(frozen=True)
class Constant:
    r""":math:`\eta(c)=v` for every :math:`c`."""

    value: float = 1.0

    def __post_init__(self) -> None:
        _finite_nonneg("schedule.value", self.value)

    def __call__(self, count: int) -> float:
        return float(self.value)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "constant", "value": self.value}


@dataclass(frozen=True)
class LinearWarmup:
    r""":math:`\eta(c)=s+(1-s)\min(1,c/W)`: linear from ``start`` at :math:`c=0` to 1 at :math:`c=W`."""

    warmup_steps: int
    start: float = 0.0

    def __post_init__(self) -> None:
        _nonneg_int("schedule.warmup_steps", self.warmup_steps)
        _finite_nonneg("schedule.start", self.start)

    def __call__(self, count: int) -> float:
        if self.warmup_steps == 0 or count >= self.warmup_steps:
            return 1.0
        return self.start + (1.0 - self.start) * count / self.warmup_steps

    def to_json(self) -> dict[str, Any]:
        return {"kind": "linear_warmup", "warmup_steps": self.warmup_steps, "start": self.start}


@dataclass(frozen=True)
class Cosine:
    r""":math:`\eta(c)=f+(1-f)\tfrac12(1+\cos(\pi\min(c,T)/T))`, from 1 at 0 to ``final`` at ``T``."""

    total_steps: int
    final: float = 0.0

    def __post_init__(self) -> None:
        if _nonneg_int("schedule.total_steps", self.total_steps) == 0:
            raise ConfigError("schedule.total_steps", self.total_steps, "must be >= 1")
        _finite_nonneg("schedule.final", self.final)

    def __call__(self, count: int) -> float:
        frac = min(count, self.total_steps) / self.total_steps
        return self.final + (1.0 - self.final) * 0.5 * (1.0 + math.cos(math.pi * frac))

    def to_json(self) -> dict[str, Any]:
        return {"kind": "cosine", "total_steps": self.total_steps, "final": self.final}


@dataclass(frozen=True)
class WarmupCosine:
    r"""Linear warmup from 0 over ``W`` steps, then cosine from 1 to ``final`` at ``T``.

    :math:`\eta(c)=c/W` for :math:`c<W`, else
    :math:`f+(1-f)\tfrac12(1+\cos(\pi\min(c-W,T-W)/(T-W)))`.
    """

    warmup_steps: int
    total_steps: int
    final: float = 0.0

    def __post_init__(self) -> None:
        _nonneg_int("schedule.warmup_steps", self.warmup_steps)
        _nonneg_int("schedule.total_steps", self.total_steps)
        if self.total_steps <= self.warmup_steps:
            raise ConfigError("schedule.total_steps", self.total_steps, "must exceed warmup_steps")
        _finite_nonneg("schedule.final", self.final)

    def __call__(self, count: int) -> float:
        if count < self.warmup_steps:
            return count / self.warmup_steps
        span = self.total_steps - self.warmup_steps
        frac = min(count - self.warmup_steps, span) / span
        return self.final + (1.0 - self.final) * 0.5 * (1.0 + math.cos(math.pi * frac))

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "warmup_cosine",
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "final": self.final,
        }


@dataclass(frozen=True)
class StepDecay:
    r""":math:`\eta(c)=\gamma^{\lfloor c/S\rfloor}` (PyTorch ``StepLR``)."""

    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if _nonneg_int("schedule.step_size", self.step_size) == 0:
            raise ConfigError("schedule.step_size", self.step_size, "must be >= 1")
        _finite_nonneg("schedule.gamma", self.gamma)

    def __call__(self, count: int) -> float:
        return float(self.gamma ** (count // self.step_size))

    def to_json(self) -> dict[str, Any]:
        return {"kind": "step_decay", "step_size": self.step_size, "gamma": self.gamma}


@dataclass(frozen=True)
class Delayed:
    r""":math:`\eta(c)=0` for :math:`c<D`, else ``then(c)``: the seeds' "decay delayed until after warmup".

    Used as a ``wd_schedule``. ``then`` defaults to the constant 1.
    """

    until: int
    then: Schedule = field(default_factory=Constant)

    def __post_init__(self) -> None:
        _nonneg_int("schedule.until", self.until)

    def __call__(self, count: int) -> float:
        return 0.0 if count < self.until else self.then(count)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "delayed", "until": self.until, "then": self.then.to_json()}


@dataclass(frozen=True)
class UserSchedule:
    """Any callable ``count -> multiplier``; usable in Python, not serialisable to JSON."""

    fn: Callable[[int], float]
    name: str = "user"

    def __call__(self, count: int) -> float:
        value = float(self.fn(count))
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"schedule[{self.name}]({count})", value, "must be finite and >= 0")
        return value

    def to_json(self) -> dict[str, Any]:
        raise ConfigError("schedule", self.name, "a user callable cannot be written to JSON")


_KINDS: dict[str, type] = {
    "constant": Constant,
    "linear_warmup": LinearWarmup,
    "cosine": Cosine,
    "warmup_cosine": WarmupCosine,
    "step_decay": StepDecay,
}


def schedule_from_json(data: Mapping[str, Any], field_name: str = "schedule") -> Schedule:
    """Build a schedule from its JSON form ``{"kind": ..., **parameters}``."""
    if not isinstance(data, Mapping) or "kind" not in data:
        raise ConfigError(field_name, data, "must be an object with a 'kind'")
    kind = data["kind"]
    args = {k: v for k, v in data.items() if k != "kind"}
    if kind == "delayed":
        then = args.pop("then", None)
        inner = Constant() if then is None else schedule_from_json(then, f"{field_name}.then")
        try:
            return Delayed(then=inner, **args)
        except TypeError as exc:
            raise ConfigError(field_name, dict(data), str(exc)) from None
    cls = _KINDS.get(kind)
    if cls is None:
        known = sorted([*_KINDS, "delayed"])
        raise ConfigError(f"{field_name}.kind", kind, f"unknown; expected one of {known}")
    try:
        built: Schedule = cls(**args)
    except TypeError as exc:
        raise ConfigError(field_name, dict(data), str(exc)) from None
    return built
