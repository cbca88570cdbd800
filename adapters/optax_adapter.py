r"""Optax ``optax.adamw`` and the Optax chains that realise other AdamW profiles.

``optax.adamw`` is (``optax/_src/alias.py``, optax 0.2.8)::

    chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
          add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate))

so with count :math:`c` (0 at the first update) and :math:`k=c+1`:
:math:`u=\hat m/(\sqrt{\hat v+\epsilon_{root}}+\epsilon)`, :math:`\theta\leftarrow\theta+
(-\alpha_c)(u+\lambda_c\theta)`: the ``optax`` profile (eps after bias correction, decay *added to
the update*, scaled by the scheduled lr, one global count, schedules at the pre-increment count).

Which config runs how (:data:`KNOBS`): the native ``optax.adamw`` where it can; otherwise an
*emulated* chain of Optax pieces: ``scale_by_amsgrad`` for AMSGrad (``optax.amsgrad`` maxes the
bias-corrected :math:`\hat v`), ``scale(alpha)`` + ``add_decayed_weights`` +
``scale_by_schedule(-eta)`` for decay scaled by the schedule only (the paper's Algorithm 2 in
its added-to-update form), ``add_decayed_weights(-lambda)`` after the lr for unscaled decay,
``add_decayed_weights`` *before* ``scale_by_adam`` for coupled L2, and a small custom
``scale_by_adam`` variant (:mod:`adapters._optax_run`) for eps before bias correction
("epsilon hat"), no bias correction and a bias-correction offset. ``decay_form=multiplicative``
is refused: ``apply_updates`` adds the update to the parameter, so
:math:`(1-s)\theta-\alpha u` cannot be rounded as the reference rounds it.

Groups with their own lr / weight decay: ``optax.multi_transform`` over one transform per
``(lr, weight_decay)`` label (:func:`partition`). Implementations ``jit``/``nojit`` and
``jit-mu-bfloat16``/``jit-mu-float16`` (``mu_dtype``: the first moment stored in that format).

Schedules are ``table[count]`` lookups (``jnp`` arrays, so they work under ``jit``) with
``table[c] = fl(fl(lr)*fl(eta(c)))`` in the parameter dtype. float64 needs
``jax_enable_x64``: :meth:`OptaxAdamW.create` turns it on for ``dtype="float64"`` (do that before
creating other JAX arrays in the process).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from adamw_ref import AdamWConfig, get_profile
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
from adapters.errors import FrameworkUnavailable, UnsupportedConfig
from adapters.protocol import AdapterInfo, Array, OptimizerRun, Support

NAME = "optax"
N, E, U = Support.NATIVE, Support.EMULATED, Support.UNSUPPORTED

KNOBS: dict[str, dict[str, Support]] = {
    "eps_placement": {"after_bias_correction": N, "before_bias_correction": E},
    "decay_scaling": {"lr": N, "schedule_multiplier": E, "unscaled": E},
    "decay_form": {"added_to_update": N, "none": N, "coupled_l2": E, "multiplicative": U,
                   "proximal": U},
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
#: (``optax.adamw(mu_dtype=...)``; AdamWConfig has no such field, so it is an implementation).
IMPL_MODES: dict[str, tuple[bool, str | None]] = {
    "jit": (True, None), "nojit": (False, None),
    "jit-mu-bfloat16": (True, "bfloat16"), "jit-mu-float16": (True, "float16"),
}
IMPLEMENTATIONS: tuple[str, ...] = tuple(IMPL_MODES)

#: Constructor arguments without a default, filled from the ``optax`` profile by native_defaults.
REQUIRED_FILLED = ("lr",)


def check_config(config: AdamWConfig) -> None:
    """Raise UnsupportedConfig for the first knob or feature no Optax chain here expresses."""
    c = config
    if c.decay_form in (DecayForm.MULTIPLICATIVE, DecayForm.PROXIMAL):
        raise UnsupportedConfig(
            NAME, "decay_form", c.decay_form.value,
            "optax adds the decay to the update (use decay_form='added_to_update': same algebra, "
            "different rounding); a multiplicative shrink cannot be rounded the reference's way",
        )
    if c.decay_timing is not DecayTiming.BEFORE_STEP:
        raise UnsupportedConfig(NAME, "decay_timing", c.decay_timing.value,
                                "optax decays the parameter the update is computed at")
    if c.amsgrad and c.amsgrad_mode is not AmsgradMode.BIAS_CORRECTED_V:
        raise UnsupportedConfig(NAME, "amsgrad_mode", c.amsgrad_mode.value,
                                "optax.scale_by_amsgrad maxes the bias-corrected nu")
    if c.amsgrad and (c.eps_placement is not EpsPlacement.AFTER_BIAS_CORRECTION
                      or not c.bias_correction or c.bias_correction_offset):
        raise UnsupportedConfig(NAME, "amsgrad", True,
                                "AMSGrad only with the standard eps placement and corrections")
    if c.step_count_scope is not StepCountScope.GLOBAL:
        raise UnsupportedConfig(NAME, "step_count_scope", c.step_count_scope.value,
                                "optax has one count in the optimizer state")
    if c.nesterov and (c.eps_placement is not EpsPlacement.AFTER_BIAS_CORRECTION
                       or not c.bias_correction or c.bias_correction_offset):
        raise UnsupportedConfig(NAME, "nesterov", True,
                                "nesterov only with optax's own scale_by_adam")


def needs_partition(config: AdamWConfig) -> bool:
    """True when a group has its own lr or a weight decay other than 0 / the global one."""
    c = config
    return any((g.lr is not None and g.lr != c.lr)
               or g.weight_decay not in (None, 0.0, c.weight_decay) for g in c.groups)


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
    custom = (c.eps_placement is EpsPlacement.BEFORE_BIAS_CORRECTION or not c.bias_correction
              or c.bias_correction_offset != 0)
    decay = c.decay_form is not DecayForm.NONE and c.weight_decay != 0.0
    native = (not custom and not c.amsgrad and c.decay_scaling is DecayScaling.LR
              and c.decay_form in (DecayForm.ADDED_TO_UPDATE, DecayForm.NONE))
    kind = "adamw" if native else ("amsgrad" if c.amsgrad else "chain")
    return {
        "kind": kind,
        "partition": needs_partition(c),
        "adam": "custom" if custom else ("amsgrad" if c.amsgrad else "scale_by_adam"),
        "decay": None if not decay else (
            "coupled_l2" if c.decay_form is DecayForm.COUPLED_L2 else c.decay_scaling.value),
        "lr_schedule": not _is_one(c.lr_schedule) or c.schedule_count.value == "post_increment",
        "wd_schedule": not _is_one(c.wd_schedule),
    }


def _is_one(schedule: object) -> bool:
    return isinstance(schedule, Constant) and schedule.value == 1.0


class OptaxAdamW:
    """Factory for ``optax.adamw`` runs (``jit`` or ``nojit``) and the emulating chains."""

    info = AdapterInfo(
        name=NAME,
        framework="optax (jax)",
        profile="optax",
        implementations=IMPLEMENTATIONS,
        devices=("cpu", "cuda"),
        dtypes=("float32", "float64", "bfloat16", "float16"),
        knobs=KNOBS,
        features=FEATURES,
        notes="learning_rate has no default: native_defaults fills lr from the optax profile; "
        "float64 turns on jax_enable_x64 for the process",
    )

    def versions(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        out: dict[str, str] = {}
        for pkg in ("optax", "jax", "jaxlib"):
            try:
                out[pkg] = version(pkg)
            except PackageNotFoundError:
                out[pkg] = "not installed"
        return out

    def native_defaults(self) -> AdamWConfig:
        """``inspect.signature(optax.adamw)``; the required ``learning_rate`` is filled in."""
        optax = _import_optax()
        p = inspect.signature(optax.adamw).parameters
        lr = p["learning_rate"].default
        if lr is inspect.Parameter.empty:
            lr = get_profile("optax").config.lr  # REQUIRED_FILLED
        return AdamWConfig(
            lr=float(lr),
            beta1=float(p["b1"].default),
            beta2=float(p["b2"].default),
            eps=float(p["eps"].default),
            eps_root=float(p["eps_root"].default),
            weight_decay=float(p["weight_decay"].default),
            nesterov=bool(p["nesterov"].default),
            amsgrad=False,
            eps_placement=EpsPlacement.AFTER_BIAS_CORRECTION,
            decay_scaling=DecayScaling.LR,
            decay_form=DecayForm.ADDED_TO_UPDATE,
            decay_timing=DecayTiming.BEFORE_STEP,
            bias_correction=True,
            amsgrad_mode=AmsgradMode.BIAS_CORRECTED_V,
            schedule_count=ScheduleCount.PRE_INCREMENT,
            step_count_scope=StepCountScope.GLOBAL,
        )

    def to_native(self, config: AdamWConfig, implementation: str | None = None) -> dict[str, Any]:
        """``optax.adamw`` keyword arguments (schedules named, not built), or the chain plan."""
        mu = _check_impl(implementation, config)
        p = plan(config)
        if p["partition"]:
            return {"multi_transform": {
                label: self.to_native(sub, implementation)
                for label, (sub, _) in partition(config, _group_names(config)).items()}}
        if p["kind"] != "adamw":
            return {"chain": p, "b1": config.beta1, "b2": config.beta2, "eps": config.eps,
                    "eps_root": config.eps_root, "weight_decay": config.weight_decay}
        wd = 0.0 if p["decay"] is None else config.weight_decay
        return {
            "learning_rate": "table[count] = lr*eta(count)" if p["lr_schedule"] else config.lr,
            "b1": config.beta1,
            "b2": config.beta2,
            "eps": config.eps,
            "eps_root": config.eps_root,
            "weight_decay": "table[count] = wd*omega(count)" if p["wd_schedule"] else wd,
            "mask": "per-parameter bools" if config.groups else None,
            "nesterov": config.nesterov,
            "mu_dtype": mu,
        }

    def create(
        self,
        config: AdamWConfig,
        params: Mapping[str, Array],
        *,
        implementation: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> OptimizerRun:
        _check_impl(implementation, config)
        plan(config)
        if dtype not in self.info.dtypes:
            raise UnsupportedConfig(NAME, "dtype", dtype, f"expected one of {self.info.dtypes}")
        _import_optax(x64=dtype == "float64")
        from adapters._optax_run import OptaxRun

        return OptaxRun(config, params, implementation or "jit", device, dtype)


def _group_names(config: AdamWConfig) -> list[str]:
    """Parameter names the groups mention, plus one ungrouped placeholder (for to_native)."""
    names = [n for g in config.groups for n in g.names]
    return [*names, "\x00other"]


def _check_impl(implementation: str | None, config: AdamWConfig | None = None) -> str | None:
    """The implementation's ``mu_dtype`` (None: the parameter dtype); refuse unknown names."""
    if implementation is not None and implementation not in IMPL_MODES:
        raise UnsupportedConfig(NAME, "implementation", implementation,
                                f"expected one of {list(IMPL_MODES)}")
    mu = IMPL_MODES[implementation or "jit"][1]
    if mu is not None and config is not None:
        c = config
        if (c.amsgrad or c.eps_placement is EpsPlacement.BEFORE_BIAS_CORRECTION
                or not c.bias_correction or c.bias_correction_offset):
            raise UnsupportedConfig(NAME, "implementation", implementation,
                                    "mu_dtype only with optax's own scale_by_adam (no amsgrad, "
                                    "eps after bias correction, standard bias correction)")
    return mu


def _import_optax(x64: bool = False) -> Any:
    try:
        import jax
        import optax
    except ImportError as exc:
        raise FrameworkUnavailable(NAME, f"optax/jax not installed: {exc}") from None
    config: Any = jax.config
    config.update("jax_default_matmul_precision", "highest")
    if x64:
        config.update("jax_enable_x64", True)
    return optax
