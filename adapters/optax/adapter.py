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
``scale_by_adam`` variant (:mod:`adapters.optax.run`) for eps before bias correction
("epsilon hat"), no bias correction and a bias-correction offset. ``decay_form=multiplicative``
is refused: ``apply_updates`` adds the update to the parameter, so
:math:`(1-s)\theta-\alpha u` cannot be rounded as the reference rounds it.

Groups with their own lr / weight decay: ``optax.multi_transform`` over one transform per
``(lr, weight_decay)`` label (:func:`partition`). Implementations ``jit``/``nojit`` and
``jit-mu-bfloat16``/``jit-mu-float16`` (``mu_dtype``: the first moment stored in that format;
:meth:`OptaxAdamW.expected_config` names the reference's ``m_dtype`` for them).

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
from adapters.errors import FrameworkUnavailable, UnsupportedConfig
from adapters.optax.capabilities import (
    FEATURES,
    IMPL_MODES,
    IMPLEMENTATIONS,
    KNOBS,
    NAME,
    partition,
    plan,
)
from adapters.protocol import AdapterInfo, Array, OptimizerRun


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

    def expected_config(self, config: AdamWConfig, implementation: str | None = None) -> AdamWConfig:
        """The reference's config for ``implementation`` run with ``config``: the ``jit-mu-*``
        implementations keep the first moment in that format (``mu_dtype``), which the reference
        computes as ``m_dtype`` (``m`` rounded once when stored). Optax also forms
        :math:`\beta_1 m` in that format with :math:`\beta_1` rounded to it, which the reference
        does not (docs/bitexact/findings.md#optaxs-mu_dtype-rounds-beta1-too)."""
        mu = IMPL_MODES.get(implementation or "jit", (True, None))[1]
        if mu is None or config.m_dtype is not None:
            return config
        return config.replace(m_dtype=mu)

    def to_native(self, config: AdamWConfig, implementation: str | None = None) -> dict[str, Any]:
        """``optax.adamw`` keyword arguments (schedules named, not built), or the chain plan."""
        mu = _check_impl(implementation, config)
        p = plan(config)
        if p["partition"]:
            return {
                "multi_transform": {
                    label: self.to_native(sub, implementation)
                    for label, (sub, _) in partition(config, _group_names(config)).items()
                }
            }
        if p["kind"] != "adamw":
            return {
                "chain": p,
                "b1": config.beta1,
                "b2": config.beta2,
                "eps": config.eps,
                "eps_root": config.eps_root,
                "weight_decay": config.weight_decay,
            }
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
        from adapters.optax.run import OptaxRun

        return OptaxRun(config, params, implementation or "jit", device, dtype)


def _group_names(config: AdamWConfig) -> list[str]:
    """Parameter names the groups mention, plus one ungrouped placeholder (for to_native)."""
    names = [n for g in config.groups for n in g.names]
    return [*names, "\x00other"]


def _check_impl(implementation: str | None, config: AdamWConfig | None = None) -> str | None:
    """The implementation's ``mu_dtype`` (None: the parameter dtype); refuse unknown names."""
    if implementation is not None and implementation not in IMPL_MODES:
        raise UnsupportedConfig(NAME, "implementation", implementation, f"expected one of {list(IMPL_MODES)}")
    mu = IMPL_MODES[implementation or "jit"][1]
    if mu is not None and config is not None:
        c = config
        if (
            c.amsgrad
            or c.eps_placement is EpsPlacement.BEFORE_BIAS_CORRECTION
            or not c.bias_correction
            or c.bias_correction_offset
        ):
            raise UnsupportedConfig(
                NAME,
                "implementation",
                implementation,
                "mu_dtype only with optax's own scale_by_adam (no amsgrad, "
                "eps after bias correction, standard bias correction)",
            )
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
