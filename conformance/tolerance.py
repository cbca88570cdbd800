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
from adamw_ref.formats import FORMATS, round_to_format

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
    #: with ``param_dtype``: the parameters before their rounding to it (the stored ``params``
    #: are those rounded); None where not known (the bound then adds a rounding per step)
    params_unrounded: dict[str, F64] | None = None


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
    narrow = StoredGap(cfg, u, c) if cfg.stores_narrow else None
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
                if narrow is not None:
                    local = local + narrow.term(n, t, ref, g, mode, sens, a, vhat, bc2, eps_eff, wd_b * omega)
                    if cfg.param_dtype is not None:
                        # the stored parameter: the carried difference and this step's error
                        # before the rounding to param_dtype, then the rounding (one-sided)
                        stored = narrow.param_gap(n, ref[t], (acc[n] if mode == "free" else 0.0) + local)
                        if mode == "free":
                            acc[n] = stored
                            bounds[n] = acc[n].copy()
                        else:
                            bounds[n] = stored
                        continue
            if mode == "free":
                acc[n] = acc[n] + local
                bounds[n] = acc[n].copy()
            else:
                bounds[n] = local
        out.append(bounds)
    return out


class StoredGap:
    r"""The state-precision term of the bound (``param_dtype``, ``m_dtype``, ``v_dtype``).

    Where the state is stored in a narrower format than the working precision, the
    implementation and the reference round values that differ by the working precision's
    errors to that format. Both results lie in :math:`[\mathrm{fl}_s(x-\delta),
    \mathrm{fl}_s(x+\delta)]` for the reference's unrounded value :math:`x` and a bound
    :math:`\delta` on the difference before rounding (rounding is monotone), so the stored values
    differ by at most the width of that interval: zero unless :math:`x` lies within
    :math:`\delta` of a rounding boundary of the storage format, one storage ulp when it does. The
    difference of the stored :math:`m` (:math:`v`) is carried (times :math:`\beta_1`,
    :math:`\beta_2`) into the next step free-running; teacher forcing resets it. It reaches
    :math:`\theta` through :math:`\partial\theta/\partial m` (``sens``) and through the square
    root: :math:`a\,\Delta s/\max(\sqrt{\hat v}-\Delta s+\epsilon, \epsilon)` with
    :math:`\Delta s\le\min(\sqrt{\Delta v/b_2}, \Delta v/(2b_2\sqrt{\hat v}))`. Stored parameters
    (:meth:`param_gap`) are bounded the same way, around the reference's unrounded parameter,
    with the carried difference and the step's own error as :math:`\delta`. The reference's
    stored value is :math:`\mathrm{fl}_s(x)` itself, so the gap is one-sided: the larger of
    :math:`\mathrm{fl}_s(x+\delta)-\mathrm{fl}_s(x)` and :math:`\mathrm{fl}_s(x)-\mathrm{fl}_s(x-\delta)`
    (the width of the whole interval, used before 2026-11-26, let a one-ulp difference double
    every step: a bound of 4e10 after 60 bfloat16 steps). None of this is present without
    state-precision fields, so it widens no other bound."""

    def __init__(self, cfg: AdamWConfig, u: float, c: float) -> None:
        self.cfg, self.u, self.c = cfg, u, c
        self.dm: dict[str, F64] = {}
        self.dv: dict[str, F64] = {}

    def _gap(self, pre: F64, delta: F64, stored: F64, dtype: str) -> F64:
        r"""How far the implementation's stored value can lie from the reference's ``stored``
        (:math:`\mathrm{fl}_s(x)`): it is :math:`\mathrm{fl}_s` of a value within ``delta`` of
        :math:`x\approx` ``pre``, so at most
        :math:`\max(\mathrm{fl}_s(x+\delta)-\mathrm{fl}_s(x),\ \mathrm{fl}_s(x)-\mathrm{fl}_s(x-\delta))`."""
        fmt = FORMATS[dtype]

        def rounded(x: F64) -> F64:
            flat = [round_to_format(float(v), fmt) for v in np.ravel(x)]
            return np.asarray(flat, np.float64).reshape(np.shape(x))

        up, down = np.abs(rounded(pre + delta) - stored), np.abs(stored - rounded(pre - delta))
        return np.asarray(np.maximum(up, down), np.float64)

    def term(
        self,
        n: str,
        t: int,
        ref: Sequence[RefPoint],
        g: Any,
        mode: str,
        sens: F64,
        a: F64,
        vhat: F64,
        bc2: float,
        eps_eff: float,
        wd: float,
    ) -> F64:
        cfg, u, c = self.cfg, self.u, self.c
        b1, b2 = cfg.beta1, cfg.beta2
        prev = ref[t - 1]
        gs = np.asarray(g, np.float64) * (-1.0 if cfg.maximize else 1.0)
        if cfg.decay_form is DecayForm.COUPLED_L2:
            gs = gs + wd * prev.params[n]
        out = np.zeros_like(prev.params[n])
        with np.errstate(all="ignore"):
            if cfg.m_dtype is not None:
                carry = b1 * self.dm.get(n, 0.0) if mode == "free" else 0.0
                pre = b1 * prev.m[n] + (1 - b1) * gs
                delta = carry + c * u * (np.abs(b1 * prev.m[n]) + np.abs((1 - b1) * gs) / (1 - b1))
                self.dm[n] = dm = self._gap(pre, delta, ref[t].m[n], cfg.m_dtype)
                out = out + np.where(np.isfinite(sens), sens, 0.0) * dm
            if cfg.v_dtype is not None:
                carry = b2 * self.dv.get(n, 0.0) if mode == "free" else 0.0
                pre = b2 * prev.v[n] + (1 - b2) * gs * gs
                delta = carry + c * u * (np.abs(b2 * prev.v[n]) + (1 - b2) * gs * gs / (1 - b2))
                self.dv[n] = dv = self._gap(pre, delta, ref[t].v[n], cfg.v_dtype)
                bc = bc2 if bc2 > 0 else 1.0
                root = np.sqrt(vhat)
                ds = np.minimum(np.sqrt(dv / bc), np.where(root > 0, dv / (2 * bc * root), np.inf))
                ds = np.where(dv > 0, ds, 0.0)
                den = np.maximum(root - ds + eps_eff, eps_eff) if eps_eff > 0 else root - ds
                vterm = np.where(den > 0, a * ds / den, np.where(ds > 0, np.inf, 0.0))
                out = out + vterm
        return np.asarray(np.where(np.isnan(out), np.inf, out), np.float64)

    def param_gap(self, n: str, point: RefPoint, delta: F64) -> F64:
        r"""Bound on the stored parameters' difference: the implementation stores
        :math:`\mathrm{fl}_s` of a value within ``delta`` of the reference's unrounded
        :math:`x` (``point.params_unrounded``), the reference :math:`\mathrm{fl}_s(x)`. Where
        :math:`x` is not known: ``delta`` plus one rounding on each side (:math:`2u_s|\theta_t|`)."""
        dtype = self.cfg.param_dtype
        assert dtype is not None
        stored = point.params[n]
        x = None if point.params_unrounded is None else point.params_unrounded.get(n)
        if x is None:
            return np.asarray(delta + 2 * FORMATS[dtype].unit_roundoff * np.abs(stored), np.float64)
        with np.errstate(all="ignore"):
            out = self._gap(np.asarray(x, np.float64), np.asarray(delta, np.float64), stored, dtype)
        return np.asarray(np.where(np.isnan(out), np.inf, out), np.float64)


# ---------------------------------------------------------------------------------- bit_exact
# The tolerance ``bit_exact`` is 0 ulp: where :mod:`adamw_ref.oporder` transcribes an
# implementation's own sequence of binary32 operations (CPU, float32), the case's trajectory is
# also compared with that profile's prediction, element for element and bit for bit
# (docs/conformance/tolerance.md, "bit_exact"). It is graded beside the verdict, not instead of
# it: the verdict keeps grading against the binary64 reference and its derived bound.
TOLERANCES[("float32", "cpu", "bit_exact")] = ToleranceSpec(
    "float32", "cpu", "bit_exact", 0.0, note="0 ulp against the implementation's operation-order profile"
)

#: Adapter name -> {adapter implementation: ``adamw_ref.oporder`` implementation}.
OPORDER_PROFILES: dict[str, dict[str, str]] = {
    "torch": {"forloop": "torch:forloop", "foreach": "torch:foreach", "fused": "torch:fused"},
    "optax": {"jit": "optax:jit", "nojit": "optax:nojit"},
    "keras-jax": {"default": "keras-jax:default"},
    "keras-tensorflow": {"default": "keras-tensorflow:default"},
    "keras-torch": {"default": "keras-torch:default"},
    "mlx": {"default": "mlx:default"},
}
#: Element-steps above which a case is not predicted (the prediction is pure Python, 2 to 7 us
#: per element-step; the ``large`` scenario has 2.2e7).
MAX_PREDICTED_VALUES = 2_000_000
#: Slots compared, in this order: parameters, then the moments where the adapter exposes them.
BIT_EXACT_SLOTS = ("params", "m", "v", "v_max")


def oporder_profile(adapter: str, implementation: str, device: str, dtype: str) -> str | None:
    """The :mod:`adamw_ref.oporder` implementation that predicts this case bit for bit, or None
    (no profile: another framework, device or dtype)."""
    if device != "cpu" or dtype != "float32":
        return None
    return OPORDER_PROFILES.get(adapter, {}).get(implementation)


def _ordered(a: NDArray[np.float32]) -> NDArray[np.int64]:
    """binary32 values as integers that count ulps: consecutive floats differ by 1, -0 == +0."""
    bits = a.view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def ulp_distance(predicted: Any, got: Any) -> NDArray[np.float64]:
    """Per element, the number of binary32 steps between ``predicted`` and ``got`` (0 for equal
    values, 0 for two NaNs, inf for a NaN against a number). Both are rounded to binary32 first,
    which is exact for float32 trajectories held as float64."""
    p = np.asarray(predicted, np.float64).astype(np.float32).ravel()
    g = np.asarray(got, np.float64).astype(np.float32).ravel()
    d: NDArray[np.float64] = np.abs(_ordered(p) - _ordered(g)).astype(np.float64)
    pn, gn = np.isnan(p), np.isnan(g)
    d[pn & gn] = 0.0
    d[pn ^ gn] = np.inf
    return d


def _same_bits(predicted: Any, got: Any) -> NDArray[np.bool_]:
    """Bitwise equality of binary32 values (any NaN equals any NaN; -0 and +0 differ)."""
    p = np.asarray(predicted, np.float64).astype(np.float32).ravel()
    g = np.asarray(got, np.float64).astype(np.float32).ravel()
    return np.asarray((p.view(np.int32) == g.view(np.int32)) | (np.isnan(p) & np.isnan(g)))


#: Upper ends of the ulp-distance histogram's buckets (the last is open).
ULP_BUCKETS: tuple[tuple[str, float], ...] = (
    ("1", 1.0),
    ("2-15", 15.0),
    ("16-255", 255.0),
    ("256-65535", 65535.0),
    (">=65536", math.inf),
)

Point = Mapping[str, Mapping[str, Any]]  # slot -> parameter name -> array


def grade_bit_exact(
    profile: str, predicted: Sequence[Point], got: Sequence[Point], platform: str = ""
) -> dict[str, Any]:
    """Compare ``got`` with ``predicted`` after every step (slot -> name -> array each; a slot
    or name missing on either side is not compared): the ``bit_exact`` record of a case.

    ``verdict`` is ``bit_exact`` when every compared element is bit-identical, else
    ``not_bit_exact``; ``fraction`` = ``exact`` / ``elements``; ``slots`` the same counts per
    slot; ``max_ulp`` and ``ulp_histogram`` (:data:`ULP_BUCKETS`) describe the mismatches;
    ``first_mismatch`` the first one (step from 1, slot, parameter, index, both values)."""
    counts = {s: [0, 0] for s in BIT_EXACT_SLOTS}
    hist = dict.fromkeys((name for name, _ in ULP_BUCKETS), 0)
    max_ulp = 0.0
    first: dict[str, Any] | None = None
    for t, (want, have) in enumerate(zip(predicted, got, strict=False), start=1):
        for slot in BIT_EXACT_SLOTS:
            w, h = want.get(slot), have.get(slot)
            if w is None or h is None:
                continue
            for name in w:
                if name not in h:
                    continue
                same = _same_bits(w[name], h[name])
                counts[slot][0] += int(same.sum())
                counts[slot][1] += int(same.size)
                if same.all():
                    continue
                d = ulp_distance(w[name], h[name])[~same]
                max_ulp = max(max_ulp, float(d.max()))
                lo = 0.0
                for bucket, hi in ULP_BUCKETS:
                    hist[bucket] += int(((d > lo) & (d <= hi)).sum())
                    lo = hi
                if first is None:
                    i = int(np.flatnonzero(~same)[0])
                    shape = np.shape(h[name])
                    first = {
                        "step": t,
                        "slot": slot,
                        "param": name,
                        "index": [int(x) for x in np.unravel_index(i, shape)] if shape else [],
                        "predicted": float(np.asarray(w[name], np.float64).ravel()[i]),
                        "got": float(np.asarray(h[name], np.float64).ravel()[i]),
                        "ulp": float(ulp_distance(w[name], h[name])[i]),
                    }
    exact = sum(n for n, _ in counts.values())
    total = sum(n for _, n in counts.values())
    return {
        "profile": profile,
        "platform": platform,
        "verdict": "bit_exact" if exact == total else "not_bit_exact",
        "reason": None,
        "elements": total,
        "exact": exact,
        "fraction": exact / total if total else 1.0,
        "slots": {s: {"exact": n, "elements": k} for s, (n, k) in counts.items() if k},
        "max_ulp": max_ulp,
        "ulp_histogram": {k: n for k, n in hist.items() if n},
        "first_mismatch": first,
    }


def not_predicted(profile: str, reason: str, platform: str = "") -> dict[str, Any]:
    """The ``bit_exact`` record of a case its profile does not cover (verdict ``not_covered``)."""
    return {
        "profile": profile,
        "platform": platform,
        "verdict": "not_covered",
        "reason": reason,
        "elements": 0,
        "exact": 0,
        "fraction": None,
        "slots": {},
        "max_ulp": None,
        "ulp_histogram": {},
        "first_mismatch": None,
    }
