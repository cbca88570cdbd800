"""Shared by the Keras, Optax and MLX adapter tests: the recorded gradient stream and the
first-order rounding bound ``2 E_T`` between an implementation and the reference.

Rounding bound (used for every trajectory comparison; derived, not fitted). Two implementations
of the same algebra, each rounding every ``+ - * / sqrt`` to nearest (unit roundoff ``u``), differ
from the exact trajectory by at most ``E_t`` each, with, per element and to first order:

* moments: ``em_t = b1*em_{t-1} + 3u(b1|m_{t-1}| + (1-b1)|g|)`` (three roundings per update,
  old errors damped by ``b1``); ``ev_t`` likewise with ``b2`` and ``g^2``;
* update ``D = lr_t*c*m/(sqrt(v)+e')`` (``c = sqrt(bc2)/bc1``; ``e'`` = eps-hat, or
  ``eps*sqrt(bc2)`` for eps after bias correction): its error is at most
  ``lr_t*c*(em/d + |m|*min(ev/(2 sqrt v), sqrt(ev))/d^2) + K u |D| + C_t u |D|`` with
  ``d = sqrt(v)+e'`` and ``K = 12`` roundings in forming ``D``. ``C_t`` is the cancellation in
  ``1 - beta``/``1 - beta^k``: a relative error ``u`` in ``beta`` (rounding the hyperparameter to
  the working format, which one implementation may do and the other not) or ``P = 4`` ulps in
  ``beta^k`` (a library ``pow``) becomes ``u*beta/(1-beta)`` resp. ``P*u*beta^k/(1-beta^k)``
  relative in ``1 - beta^k``; ``D`` carries ``1/bc1`` and ``sqrt(bc2)``, so
  ``C_t = (b1/(1-b1) + b2/(2(1-b2))) + P*(b1^k/(1-b1^k) + b2^k/(2(1-b2^k)))``;
* parameter: ``E_t = E_{t-1} + 4u|theta_{t-1}| + err(D)``: two roundings at the parameter's scale
  (decay, then the step; the decay factor ``1 - s <= 1`` only damps ``E_{t-1}``).

The tolerance is ``2 E_T`` (both implementations), evaluated along the binary64 reference.

Options: ``u_scalar`` when an implementation rounds ``beta``/``beta^k`` at another precision
(MLX computes ``b**step`` in float32), ``mu_store`` when the first moment is stored in a coarser
format (Optax ``mu_dtype``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from adamw_ref import AdamWConfig, run_trajectory
from adamw_ref.knobs import (
    AmsgradMode,
    DecayScaling,
    EpsPlacement,
    ScheduleCount,
    StepCountScope,
)

SHAPES: dict[str, tuple[int, ...]] = {"w": (3, 4), "w.bias": (5,), "s": (), "z": (0,)}
# Gradient scales: "w" at 1e-6 makes eps placement matter (sqrt(v) ~ eps), "w.bias" at 1.
SCALES = {"w": 1e-6, "w.bias": 1.0, "s": 1e-3, "z": 1.0}


def make_data(seed: int, steps: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    params = {n: rng.standard_normal(s) for n, s in SHAPES.items()}
    grads = [{n: SCALES[n] * rng.standard_normal(s) for n, s in SHAPES.items()} for _ in range(steps)]
    return params, grads


def flat(d: dict[str, Any]) -> dict[str, Any]:
    return {n: None if a is None else np.asarray(a, dtype=np.float64).ravel().tolist() for n, a in d.items()}


def reference(
    cfg: AdamWConfig, params: dict[str, Any], grads: list[dict[str, Any]], arith: Any = None
) -> Any:
    gs = [flat(g) for g in grads]
    if arith is None:
        return run_trajectory(flat(params), gs, cfg)
    return run_trajectory(flat(params), gs, cfg, arith)


def rounding_bound(
    traj: Any,
    grads: list[dict[str, Any]],
    cfg: AdamWConfig,
    u: float,
    k_ops: int = 12,
    u_scalar: float | None = None,
    mu_store: tuple[float, float] = (0.0, 0.0),
) -> dict[str, np.ndarray]:
    """``2 E_T`` per element of every parameter (see the module docstring).

    ``u_scalar``: the unit roundoff at which ``beta``/``beta^k`` are rounded before the
    cancellation ``1 - beta^k`` (the ``C_t`` term; default ``u``).
    ``mu_store = (u_m, a_m)``: the first moment is stored in a coarser format, adding
    ``u_m|m_t| + a_m`` to ``em_t`` each step (relative rounding ``u_m``; ``a_m`` half the
    smallest subnormal, the absolute error where ``m`` is subnormal in that format).
    """
    u_c = u if u_scalar is None else u_scalar
    out: dict[str, np.ndarray] = {}
    b1, b2 = cfg.beta1, cfg.beta2
    for name in traj.params[0]:
        size = len(traj.params[0][name])
        e_th, em, ev = np.zeros(size), np.zeros(size), np.zeros(size)
        for t in range(1, len(traj.states)):
            g_raw = grads[t - 1][name]
            if g_raw is None:
                continue
            g = np.abs(np.asarray(g_raw, dtype=np.float64).ravel())
            st, prev = traj.states[t], traj.states[t - 1]
            m0, v0 = np.abs(np.array(prev.m[name])), np.array(prev.v[name])
            m1 = np.abs(np.array(st.m[name]))
            theta0 = np.abs(np.array(traj.params[t - 1][name]))
            em = b1 * em + 3 * u * (b1 * m0 + (1 - b1) * g)
            em = em + mu_store[0] * np.abs(np.array(st.m[name])) + mu_store[1]
            ev = b2 * ev + 3 * u * (b2 * v0 + (1 - b2) * g * g)
            k = st.param_steps[name] if cfg.step_count_scope is StepCountScope.PER_PARAMETER else t
            k += cfg.bias_correction_offset
            bc1, bc2 = ((1 - b1**k), (1 - b2**k)) if cfg.bias_correction else (1.0, 1.0)
            v_used = np.array(st.v[name])
            if cfg.amsgrad and st.v_max is not None:
                v_used = np.array(st.v_max[name])
                if cfg.amsgrad_mode is AmsgradMode.BIAS_CORRECTED_V:
                    v_used = v_used * bc2
            c = math.sqrt(bc2) / bc1
            e_p = (
                cfg.eps
                if cfg.eps_placement is EpsPlacement.BEFORE_BIAS_CORRECTION
                else (cfg.eps * math.sqrt(bc2))
            )
            count = t - 1 if cfg.schedule_count is ScheduleCount.PRE_INCREMENT else t
            lr_t = cfg.group_for(name)[0] * cfg.lr_schedule(count)
            sv = np.sqrt(v_used + cfg.eps_root)
            d = sv + e_p
            m_eff = m1 + ((1 - b1) * g if cfg.nesterov else 0.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                dv = np.where(sv > 0, np.minimum(ev / (2 * sv), np.sqrt(ev)), np.sqrt(ev))
            mag = lr_t * c * m_eff / d
            cancel = (b1 / (1 - b1) + b2 / (2 * (1 - b2))) + 4 * (
                b1**k / (1 - b1**k) + b2**k / (2 * (1 - b2**k))
            )
            err_d = lr_t * c * (em / d + m_eff * dv / d**2) + (k_ops * u + cancel * u_c) * mag
            if cfg.decay_scaling is DecayScaling.SCHEDULE_MULTIPLIER:
                err_d = err_d + 2 * u * mag
            e_th = e_th + 4 * u * theta0 + err_d
        out[name] = 2 * e_th
    return out


def within(
    got: dict[str, np.ndarray], ref_params: dict[str, Any], tol: dict[str, np.ndarray]
) -> tuple[bool, float]:
    """All elements within tolerance; also the worst ratio |diff|/tol."""
    worst = 0.0
    ok = True
    for n, arr in got.items():
        diff = np.abs(arr.ravel() - np.array(ref_params[n], dtype=np.float64))
        if diff.size == 0:
            continue
        ok = ok and bool(np.all(diff <= tol[n]))
        worst = max(worst, float(np.max(diff / np.maximum(tol[n], 1e-300))))
    return ok, worst


def frozen_grads(grads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stream with ``s`` frozen (``None``) every third step and every parameter at step 10."""
    out = []
    for t, g in enumerate(grads):
        g = dict(g)
        if t % 3 == 0:
            g["s"] = None
        if t == 10:
            g = dict.fromkeys(g)
        out.append(g)
    return out
