r"""Capabilities discovered from a constructor's signature, and the refusals they imply.

A generic wrapper knows nothing about the optimizer it wraps but its constructor. It reads the
signature (:func:`inspect.signature`) and maps the spec's hyperparameters onto the arguments it
finds (:data:`HYPERPARAMETERS`, :data:`BETA_PAIRS`):

======================  =============================================================
spec hyperparameter     constructor argument (first match wins)
======================  =============================================================
``lr``                  ``lr``, ``learning_rate``
``beta1``, ``beta2``    ``betas`` (one tuple), else ``beta1``/``beta2``, ``b1``/``b2``,
                        ``beta_1``/``beta_2``
``eps``                 ``eps``, ``epsilon``
``weight_decay``        ``weight_decay``, ``wd``
``amsgrad``             ``amsgrad``
``maximize``            ``maximize``
``nesterov``            ``nesterov``
``eps_root``            ``eps_root``
======================  =============================================================

What follows from the mapping:

* **Native defaults** (:meth:`Capabilities.native_defaults`): the claimed profile's config with
  every mapped hyperparameter replaced by the constructor's default (or the spec's override). An
  argument without a default (Optax's ``learning_rate``) keeps the profile's value. A
  hyperparameter the constructor does not take is fixed: ``weight_decay`` at 0, ``amsgrad``,
  ``maximize`` and ``nesterov`` off, and ``lr``, the betas, ``eps`` and ``eps_root`` at the
  claimed profile's value (the optimizer claims that profile; the suite checks the claim).
* **Knobs**: a wrapper can only set hyperparameters, so every knob value other than the claimed
  profile's is UNSUPPORTED (:func:`knob_table`).
* **Refusals** (:meth:`Capabilities.check`): a relevant knob value other than the profile's; a
  feature the wrapper declared UNSUPPORTED; a value for a hyperparameter the constructor does
  not take (other than its fixed value); a value other than one pinned by the spec (``?lr=...``
  pins ``lr``: native defaults report it, configs with another value are refused); per-group
  values the wrapper cannot give. Each raises :class:`~adapters.errors.UnsupportedConfig`
  naming the knob or hyperparameter.
* **Keyword arguments** (:meth:`Capabilities.kwargs`): the mapped hyperparameters of a config,
  with constant schedules folded in (``lr * eta``, ``weight_decay * omega``), plus the spec's
  overrides.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from adamw_ref import AdamWConfig, Constant
from adamw_ref.profiles import get_profile
from adapters.capabilities import decay_active, knob_value, relevant_knobs
from adapters.errors import AdapterError, UnsupportedConfig
from adapters.protocol import Support

N, E, U = Support.NATIVE, Support.EMULATED, Support.UNSUPPORTED

#: spec hyperparameter -> accepted constructor argument names (first match wins)
HYPERPARAMETERS: dict[str, tuple[str, ...]] = {
    "lr": ("lr", "learning_rate"),
    "eps": ("eps", "epsilon"),
    "weight_decay": ("weight_decay", "wd"),
    "amsgrad": ("amsgrad",),
    "maximize": ("maximize",),
    "nesterov": ("nesterov",),
    "eps_root": ("eps_root",),
}
#: ``(beta1, beta2)`` as two arguments, when there is no ``betas`` tuple
BETA_PAIRS: tuple[tuple[str, str], ...] = (("beta1", "beta2"), ("b1", "b2"), ("beta_1", "beta_2"))
FLOAT_FIELDS: tuple[str, ...] = ("lr", "beta1", "beta2", "eps", "weight_decay", "eps_root")
BOOL_FIELDS: tuple[str, ...] = ("amsgrad", "maximize", "nesterov")
#: Every value a knob can take, as the strings of AdapterInfo.knobs.
FEATURE_NAMES: tuple[str, ...] = (
    "amsgrad",
    "maximize",
    "nesterov",
    "eps_root",
    "lr_schedule",
    "wd_schedule",
    "groups",
    "frozen",
    "save_load",
)


@dataclass(frozen=True)
class Signature:
    """The constructor's arguments and the hyperparameters mapped onto them.

    ``names`` maps a spec field (``lr``, ``beta1``, ...) to its argument; with a ``betas`` tuple
    both betas map to ``"betas"``. ``defaults`` holds each argument's default
    (:data:`inspect.Parameter.empty` when it has none).
    """

    target: str
    arguments: tuple[str, ...]
    defaults: Mapping[str, Any]
    annotations: Mapping[str, str]
    var_keyword: bool
    names: Mapping[str, str]

    @property
    def betas_tuple(self) -> bool:
        return self.names.get("beta1") == "betas"

    def accepts_callable(self, field_name: str) -> bool:
        """Whether the argument of ``field_name`` is annotated as taking a callable (a schedule)."""
        arg = self.names.get(field_name)
        text = self.annotations.get(arg, "") if arg else ""
        return "Callable" in text or "Schedule" in text


def read_signature(target: Any, label: str, *, skip_first: bool) -> Signature:
    """Read ``target``'s constructor (a class's ``__init__`` or a factory function).

    ``skip_first`` drops the first argument (the parameters of a torch or numpy optimizer).
    """
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError) as exc:
        raise AdapterError(
            f"adapter spec {label!r}: cannot read the signature of the target: {exc}"
        ) from None
    params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    params = [p for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD]
    if skip_first:
        if not params:
            raise AdapterError(f"adapter spec {label!r}: the constructor takes no parameters argument")
        params = params[1:]
    args = tuple(p.name for p in params)
    names: dict[str, str] = {}
    for field_name, candidates in HYPERPARAMETERS.items():
        for cand in candidates:
            if cand in args:
                names[field_name] = cand
                break
    if "betas" in args:
        names["beta1"] = names["beta2"] = "betas"
    else:
        for a, b in BETA_PAIRS:
            if a in args and b in args:
                names["beta1"], names["beta2"] = a, b
                break
    return Signature(
        target=label,
        arguments=args,
        defaults={p.name: p.default for p in params},
        annotations={
            p.name: str(p.annotation) for p in params if p.annotation is not inspect.Parameter.empty
        },
        var_keyword=var_kw,
        names=names,
    )


def _as_float(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


@dataclass
class Capabilities:
    """What a wrapped constructor can express: defaults, features, refusals, keyword arguments.

    ``overrides`` are the spec's ``?key=value`` arguments. ``group_lr`` / ``group_wd`` say
    whether parameter groups may set their own lr / weight decay (``"mask"``: only 0, a decay
    mask); ``features`` is the table of :attr:`AdapterInfo.features`.
    """

    name: str
    signature: Signature
    profile: str
    overrides: Mapping[str, Any]
    features: dict[str, Support] = field(default_factory=dict)
    group_lr: bool = False
    group_wd: bool | str = False
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        sig = self.signature
        unknown = [k for k in self.overrides if k not in sig.arguments]
        if unknown and not sig.var_keyword:
            raise AdapterError(
                f"adapter spec {self.name!r}: the constructor of {sig.target} takes no argument "
                f"{unknown[0]!r}; it takes {list(sig.arguments)}"
            )
        self.profile_config = get_profile(self.profile).config
        self.pinned, self.defaults = self._read_defaults()

    # -- defaults -----------------------------------------------------------------------------
    def _read_defaults(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(values pinned by overrides, the native value of every hyperparameter field)."""
        sig, prof = self.signature, self.profile_config
        pinned: dict[str, Any] = {}
        native: dict[str, Any] = {}
        for fname in (*FLOAT_FIELDS, *BOOL_FIELDS):
            arg = sig.names.get(fname)
            if arg is None:
                fixed = {"weight_decay": 0.0, "amsgrad": False, "maximize": False, "nesterov": False}
                native[fname] = fixed.get(fname, getattr(prof, fname))
                continue
            raw = (
                self.overrides[arg]
                if arg in self.overrides
                else sig.defaults.get(arg, inspect.Parameter.empty)
            )
            if arg == "betas" and raw is not inspect.Parameter.empty and raw is not None:
                try:
                    raw = raw[0] if fname == "beta1" else raw[1]
                except (TypeError, IndexError, KeyError):
                    raise AdapterError(f"adapter spec {self.name!r}: betas={raw!r} is not a pair") from None
            value = self._value(fname, arg, raw)
            native[fname] = value
            if arg in self.overrides:
                pinned[fname] = value
        return pinned, native

    def _value(self, fname: str, arg: str, raw: Any) -> Any:
        prof = self.profile_config
        if raw is inspect.Parameter.empty or raw is None:
            if raw is None and fname == "weight_decay":
                return 0.0  # keras: weight_decay=None means no decay
            if raw is inspect.Parameter.empty:
                self.notes.append(f"{arg} has no default: native_defaults uses the {self.profile} profile's")
            return getattr(prof, fname)
        if fname in BOOL_FIELDS:
            if not isinstance(raw, bool):
                raise AdapterError(f"adapter spec {self.name!r}: {arg}={raw!r} is not a bool")
            return raw
        x = _as_float(raw)
        if x is None:
            if arg in self.overrides:
                raise AdapterError(f"adapter spec {self.name!r}: {arg}={raw!r} is not a finite number")
            self.notes.append(f"{arg} default {raw!r} is not a number: native_defaults uses the profile's")
            return getattr(prof, fname)
        return x

    def native_defaults(self) -> AdamWConfig:
        """The claimed profile's config with the constructor's (or the spec's) hyperparameters."""
        return self.profile_config.replace(**self.defaults)

    # -- refusals -----------------------------------------------------------------------------
    def check(self, config: AdamWConfig) -> None:
        """Raise UnsupportedConfig for the first thing ``config`` needs that cannot be given."""
        if not isinstance(config, AdamWConfig):
            raise AdapterError(f"{self.name}: config must be an AdamWConfig, got {config!r}")
        self._check_knobs(config)
        self._check_features(config)
        values = self.effective(config)
        for fname, value in values.items():
            arg = self.signature.names.get(fname)
            if fname in self.pinned and value != self.pinned[fname]:
                raise UnsupportedConfig(
                    self.name, fname, value, f"the spec pins {arg}={self.pinned[fname]!r}"
                )
            if arg is None and value != self.defaults[fname]:
                if fname == "maximize" and self.features.get("maximize") is E:
                    continue
                raise UnsupportedConfig(
                    self.name,
                    fname,
                    value,
                    f"the constructor of {self.signature.target} takes no {fname} argument "
                    f"(fixed at {self.defaults[fname]!r})",
                )
        self._check_groups(config)

    def _check_knobs(self, config: AdamWConfig) -> None:
        for name in relevant_knobs(config):
            value = knob_value(getattr(config, name))
            own = knob_value(getattr(self.profile_config, name))
            if value != own:
                raise UnsupportedConfig(
                    self.name,
                    name,
                    value,
                    f"a generic wrapper only sets hyperparameters; {self.signature.target} is "
                    f"claimed to compute the {self.profile} profile ({name}={own})",
                )

    def _check_features(self, config: AdamWConfig) -> None:
        used = {
            "amsgrad": config.amsgrad,
            "maximize": config.maximize,
            "nesterov": config.nesterov,
            "eps_root": config.eps_root != self.defaults["eps_root"],
            "lr_schedule": not isinstance(config.lr_schedule, Constant),
            "wd_schedule": not isinstance(config.wd_schedule, Constant) and decay_active(config),
            "groups": self._groups_used(config),
        }
        for feat, on in used.items():
            if on and self.features.get(feat, U) is U:
                value = getattr(config, feat) if feat != "groups" else config.groups
                if feat in ("lr_schedule", "wd_schedule"):
                    value = getattr(config, feat).to_json().get("kind", "user")
                raise UnsupportedConfig(self.name, feat, value, self.feature_reason(feat))

    @staticmethod
    def _groups_used(config: AdamWConfig) -> bool:
        """Whether a group changes a parameter's lr, or its weight decay while decay is on."""
        for group in config.groups:
            for n in group.names:
                lr, wd = config.group_for(n)
                if lr != config.lr or (wd != config.weight_decay and decay_active(config)):
                    return True
        return False

    def feature_reason(self, feat: str) -> str:
        """Why ``feat`` is unsupported (from the notes, else the missing argument)."""
        for note in self.notes:
            if note.startswith(f"{feat}:"):
                return note
        return f"the constructor of {self.signature.target} takes no {feat} argument"

    def _check_groups(self, config: AdamWConfig) -> None:
        for group in config.groups:
            for n in group.names:
                lr, wd = config.group_for(n)
                if lr != config.lr and not self.group_lr:
                    raise UnsupportedConfig(self.name, "groups.lr", lr, "no per-group learning rate here")
                masked_ok = self.group_wd is True or (self.group_wd == "mask" and wd == 0.0)
                if wd != config.weight_decay and decay_active(config) and not masked_ok:
                    raise UnsupportedConfig(
                        self.name, "groups.weight_decay", wd, "no per-group weight decay here (0 masks)"
                    )

    # -- keyword arguments --------------------------------------------------------------------
    def effective(self, config: AdamWConfig) -> dict[str, Any]:
        """The hyperparameter values the constructor must see for ``config`` (constant
        schedules folded in; a scheduled lr/weight decay gives the base value)."""
        lr = config.lr
        if isinstance(config.lr_schedule, Constant):
            lr = lr * config.lr_schedule.value
        wd = config.weight_decay if decay_active(config) else 0.0
        if decay_active(config) and isinstance(config.wd_schedule, Constant):
            wd = wd * config.wd_schedule.value
        return {
            "lr": lr,
            "beta1": config.beta1,
            "beta2": config.beta2,
            "eps": config.eps,
            "weight_decay": wd,
            "amsgrad": config.amsgrad,
            "maximize": config.maximize,
            "nesterov": config.nesterov,
            "eps_root": config.eps_root,
        }

    def kwargs(
        self,
        config: AdamWConfig,
        *,
        lr: Any = None,
        weight_decay: Any = None,
    ) -> dict[str, Any]:
        """Constructor keyword arguments for ``config`` (call :meth:`check` first).

        ``lr`` / ``weight_decay`` replace the config's values (a group's value, a schedule
        callable); the spec's overrides are added last (pinned values equal the config's).
        """
        values = self.effective(config)
        if lr is not None:
            values["lr"] = lr
        if weight_decay is not None:
            values["weight_decay"] = weight_decay
        names = self.signature.names
        out: dict[str, Any] = {}
        for fname, value in values.items():
            arg = names.get(fname)
            if arg is None or arg == "betas":
                continue
            out[arg] = value
        if self.signature.betas_tuple:
            out["betas"] = (values["beta1"], values["beta2"])
        mapped = set(names.values())
        for key, value in self.overrides.items():
            if key not in mapped:  # a mapped argument's override is pinned: equal to the config's
                out[key] = value
        return out

    def native_maximize(self) -> bool:
        return "maximize" in self.signature.names


def feature_table(caps: Capabilities, extra: Mapping[str, Support]) -> dict[str, Support]:
    """The hyperparameter features from the mapping (maximize emulated by negating the
    gradient where the constructor has no ``maximize``), completed by the kind's ``extra``."""
    names = caps.signature.names
    out: dict[str, Support] = {
        "amsgrad": N if "amsgrad" in names else U,
        "maximize": N if "maximize" in names else E,
        "nesterov": N if "nesterov" in names else U,
        "eps_root": N if "eps_root" in names else U,
    }
    out.update(extra)
    for feat in FEATURE_NAMES:
        out.setdefault(feat, U)
    return out


def fold_constant_lr(config: AdamWConfig) -> AdamWConfig:
    """``config`` with a Constant lr schedule folded into ``lr`` and the groups' lr (the
    schedule becomes ``Constant(1)``): ``fl(lr * value)``, the reference's product."""
    sched = config.lr_schedule
    if not isinstance(sched, Constant) or sched.value == 1.0:
        return config
    v = sched.value
    groups = tuple(
        g.__class__(g.names, None if g.lr is None else g.lr * v, g.weight_decay) for g in config.groups
    )
    return config.replace(lr=config.lr * v, groups=groups, lr_schedule=Constant())


def schedule_table(values: Callable[[int], float], base: float, horizon: int) -> list[float]:
    """``base * values(c)`` for ``c < horizon`` (Python floats: one binary64 rounding each)."""
    return [base * float(values(c)) for c in range(horizon)]
