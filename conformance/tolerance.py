r"""The tolerance model: how far an implementation may lie from the reference (data + bounds).

Derivation: docs/conformance/tolerance.md. In short, with :math:`u` the unit roundoff of the
dtype, per element and step :math:`t` the *local* error (one step from an exact state) obeys

.. math::

   \ell_t = c\,u\,\bigl(|\theta_{t-1}| + |\theta_t| + a_t(1+\kappa_t)\bigr)
   + c\,\mu\,\bigl(1 + \tfrac{\alpha_t}{b_1(\sqrt{\hat v_t}+\epsilon_{\text{eff}})}\bigr),\qquad
   a_t = \alpha_t\,\frac{\hat M_t}{\sqrt{\hat v_t}+\epsilon_{\text{eff}}},

where :math:`\hat M_t` is the bias-corrected moving average of :math:`|g|` (it bounds
:math:`|\hat m_t|` and the rounding errors of the sum forming :math:`m_t`), :math:`\kappa_t =
\tfrac{\beta_1}{1-\beta_1}+\tfrac12\tfrac{\beta_2}{1-\beta_2} +
(k+1)\bigl(\tfrac{\beta_1^k}{1-\beta_1^k}+\tfrac12\tfrac{\beta_2^k}{1-\beta_2^k}\bigr)` is the
condition number of :math:`1-\beta` and of the bias corrections with respect to the rounding of
:math:`\beta` and :math:`\beta^k` to the working precision, :math:`\mu` the smallest
subnormal, and :math:`c` (``c_step``) a count of roundings (data below). Teacher-forced cases
are graded against :math:`\ell_t`. Free-running cases add the
persistent error carried by :math:`m` and :math:`v` (contractive, at most
:math:`\min(t,1/(1-\beta))` local roundings each) and accumulate over steps, since
:math:`\partial\theta_t/\partial\theta_{t-1}=1-s_t\le1` with recorded gradients:
:math:`B_t=\sum_{\tau\le t}\ell^{\text{free}}_\tau`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from adamw_ref import AdamWConfig, DecayForm, EpsPlacement, ScheduleCount, StepCountScope
from adamw_ref.formats import FORMATS

F64 = NDArray[np.float64]
KINDS = ("ref_vs_impl", "cpu_vs_gpu", "impl_vs_impl")


@dataclass(frozen=True)
class ToleranceSpec:
    """``c_step``: roundings per step that may differ; see docs/conformance/tolerance.md."""

    dtype: str
    device: str
    kind: str
    c_step: float
    note: str = ""

    @property
    def unit_roundoff(self) -> float:
        return FORMATS[self.dtype].unit_roundoff

    @property
    def min_subnormal(self) -> float:
        return FORMATS[self.dtype].min_subnormal


# c_step: ~3 roundings scale |theta| (1-s, the product, the final subtraction) and ~10 scale the
# update (m: 3, v: 4 of which half count through the sqrt, sqrt, +eps, /, *lr); rounded up to 12.
# Against the binary64 reference only the implementation rounds (the reference's own error is
# 2^-29 times smaller for float32); comparing two rounding implementations doubles it.
# On CUDA the same operations are correctly rounded, but FMA contraction and fused kernels may
# reassociate: no extra roundings, so the same counts apply.
_C_ONE_SIDED = 12.0
_C_TWO_SIDED = 24.0

TOLERANCES: dict[tuple[str, str, str], ToleranceSpec] = {}
for _dt in ("float64", "float32", "float16", "bfloat16"):
    for _dev in ("cpu", "cuda"):
        # float64 vs binary64: both sides round in the same precision -> two-sided.
        _c = _C_TWO_SIDED if _dt == "float64" else _C_ONE_SIDED
        TOLERANCES[(_dt, _dev, "ref_vs_impl")] = ToleranceSpec(_dt, _dev, "ref_vs_impl", _c)
        TOLERANCES[(_dt, _dev, "cpu_vs_gpu")] = ToleranceSpec(_dt, _dev, "cpu_vs_gpu", _C_TWO_SIDED)
        TOLERANCES[(_dt, _dev, "impl_vs_impl")] = ToleranceSpec(_dt, _dev, "impl_vs_impl", _C_TWO_SIDED)


def spec_for(dtype: str, device: str = "cpu", kind: str = "ref_vs_impl") -> ToleranceSpec:
    try:
        return TOLERANCES[(dtype, device, kind)]
    except KeyError:
        raise ValueError(
            f"no tolerance for dtype={dtype!r}, device={device!r}, kind={kind!r}; "
            f"known dtypes {sorted({k[0] for k in TOLERANCES})}, devices "
            f"['cpu', 'cuda'], kinds {list(KINDS)}"
        ) from None


@dataclass
class RefPoint:
    """The binary64 reference after a step: parameters and moments (float64, shaped)."""

    params: dict[str, F64]
    m: dict[str, F64]
    v: dict[str, F64]
    v_max: dict[str, F64] | None
    param_steps: dict[str, int] | None = None  # each parameter's own update count


def step_bounds(
    config: AdamWConfig,
    ref: Sequence[RefPoint],
    grads: Sequence[Mapping[str, Any]],
    spec: ToleranceSpec,
    mode: str,
) -> list[dict[str, F64]]:
    """Per-step, per-element bounds ``[B_1, ..., B_T]`` (``mode``: free or teacher_forced).

    ``ref[0]`` is the initial point; ``ref[t]`` the reference after step ``t``.
    """
    cfg = config
    u, mu, c = spec.unit_roundoff, spec.min_subnormal, spec.c_step
    b1, b2 = cfg.beta1, cfg.beta2
    names = list(ref[0].params)
    mabs = {n: np.zeros_like(ref[0].params[n]) for n in names}
    own = dict.fromkeys(names, 0)
    acc = {n: np.zeros_like(ref[0].params[n]) for n in names}
    out: list[dict[str, F64]] = []
    for t in range(1, len(ref)):
        count = t - 1 if cfg.schedule_count is ScheduleCount.PRE_INCREMENT else t
        eta = cfg.lr_schedule(count)
        omega = cfg.wd_schedule(count)
        bounds: dict[str, F64] = {}
        for n in names:
            g = grads[t - 1][n]
            th0, th1 = np.abs(ref[t - 1].params[n]), np.abs(ref[t].params[n])
            if g is None:
                # Frozen: nothing is computed. Free-running adds no error; teacher-forced, the
                # forced state itself is the binary64 reference rounded to the dtype (<= u|theta|).
                local = np.zeros_like(th0) if mode == "free" else c * u * th1 + c * mu
            else:
                own[n] += 1
                lr_b, wd_b = cfg.group_for(n)
                ga = np.abs(np.asarray(g, np.float64))
                if cfg.decay_form is DecayForm.COUPLED_L2:
                    ga = ga + wd_b * omega * th0
                mabs[n] = b1 * mabs[n] + (1 - b1) * ga
                k = own[n] if cfg.step_count_scope is StepCountScope.PER_PARAMETER else t
                k += cfg.bias_correction_offset
                # 1-beta computed in the working precision from a rounded beta: relative error
                # u*beta/(1-beta) (999u for beta2=0.999), half of it through the square root.
                kappa = b1 / (1 - b1) + 0.5 * b2 / (1 - b2)
                if cfg.bias_correction:
                    p1, p2 = b1**k, b2**k
                    bc1, bc2 = 1 - p1, 1 - p2
                    if bc1 > 0 and bc2 > 0:
                        kappa += (k + 1) * (p1 / bc1 + 0.5 * p2 / bc2)
                else:
                    bc1 = bc2 = 1.0
                vmax = ref[t].v_max
                vv = vmax[n] if (cfg.amsgrad and vmax is not None) else ref[t].v[n]
                vhat = np.maximum(vv, 0.0) / bc2 if bc2 > 0 else np.abs(vv)
                eps_eff = (
                    cfg.eps / math.sqrt(bc2)
                    if cfg.eps_placement is EpsPlacement.BEFORE_BIAS_CORRECTION and bc2 > 0
                    else cfg.eps
                )
                with np.errstate(all="ignore"):
                    a = lr_b * eta * (mabs[n] / bc1) / (np.sqrt(vhat + cfg.eps_root) + eps_eff)
                    if cfg.nesterov:
                        a = a * 2.0
                a = np.where(np.isfinite(a), a, 0.0)
                carried = 0.0
                if mode == "free":
                    carried = min(t, 1 / (1 - b1)) + 0.5 * min(t, 1 / (1 - b2)) if b2 < 1 else t
                # A subnormal m is rounded with an *absolute* error up to mu/2, not u|m|; it
                # reaches theta through d(theta)/dm = lr_t/(bc1 d), which is ~lr/eps when v
                # underflows (v ~ g^2 = 0): an absolute term the relative model above misses.
                with np.errstate(all="ignore"):
                    sens = lr_b * eta / (bc1 * (np.sqrt(vhat + cfg.eps_root) + eps_eff))
                sens = np.where(np.isfinite(sens), sens, 0.0)
                local = c * u * (th0 + th1 + a * (1.0 + kappa + carried)) + c * mu * (
                    1.0 + sens * (1.0 + carried)
                )
            if mode == "free":
                acc[n] = acc[n] + local
                bounds[n] = acc[n].copy()
            else:
                bounds[n] = local
        out.append(bounds)
    return out
