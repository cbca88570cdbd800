r"""The canonical AdamW step: :func:`init`, :func:`step`, :func:`run_trajectory`.

For update number :math:`t` (``state.step = t-1`` before it) and each parameter with a gradient:

.. math::

   c &= t-1 \text{ (pre\_increment) or } t \text{ (post\_increment)};\quad
   k = t_{\text{scope}} + \text{offset} \\
   \alpha_t &= \alpha\,\eta(c),\quad \lambda_t=\lambda\,\omega(c),\quad
   s_t = \alpha_t\lambda_t \mid \eta(c)\lambda_t \mid \lambda_t \\
   g &\leftarrow \pm g \;(\text{maximize});\quad g \leftarrow g+\lambda_t\theta \;(\text{coupled\_l2}) \\
   \theta' &= (1-s_t)\theta \mid \theta/(1+s_t) \mid \theta \quad(\text{decay before the step}) \\
   m &= \beta_1 m + (1-\beta_1) g,\quad v = \beta_2 v + (1-\beta_2) g^2 \\
   \hat m &= m/(1-\beta_1^k),\quad \hat v = v/(1-\beta_2^k) \quad(\text{or } m, v \text{ without
   bias correction}) \\
   u &= \hat m/(\sqrt{\hat v+\epsilon_{root}}+\epsilon) \;\text{ or }\;
   \hat m\sqrt{1-\beta_2^k}/(\sqrt{v+\epsilon_{root}}+\hat\epsilon) \;(\text{epsilon hat}) \\
   \theta_t &= \theta' - \alpha_t u, \text{ then } (1-s_t)\theta_t \text{ or } \theta_t/(1+s_t)
   \text{ if the decay comes after the step.}

With ``added_to_update`` the last line is :math:`\theta-\alpha_t(u+\lambda_t\theta)` (``lr``
scaling), :math:`\theta-\eta(\alpha u+\lambda_t\theta)` (``schedule_multiplier``), or
:math:`\theta-(\alpha_t u+\lambda_t\theta)` (``unscaled``). AMSGrad replaces :math:`v` by its
running maximum (``raw_v``) or :math:`\hat v` by the maximum of :math:`\hat v` (``bias_corrected_v``).
Nesterov (Optax's NAdamW): :math:`\hat m=\beta_1 m/(1-\beta_1^{k+1})+(1-\beta_1)g/(1-\beta_1^k)`.

A parameter whose gradient is ``None`` is frozen for that step: nothing about it changes (no
decay, no moment update, its own ``param_steps`` stays). NaN and infinite gradients are not
skipped: they propagate by IEEE-754 rules, as in PyTorch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from adamw_ref.arithmetic import BINARY64_ARITHMETIC, Arithmetic
from adamw_ref.config import AdamWConfig
from adamw_ref.errors import InputError
from adamw_ref.knobs import (
    AmsgradMode,
    DecayForm,
    DecayScaling,
    DecayTiming,
    EpsPlacement,
    ScheduleCount,
    StepCountScope,
)
from adamw_ref.state import State

N = TypeVar("N")

Params = Mapping[str, Sequence[Any]]
Grads = Mapping[str, Sequence[Any] | None]


def _check_params(params: Params) -> None:
    if not isinstance(params, Mapping) or len(params) == 0:
        raise InputError("params", params, "must be a non-empty mapping of name -> values")
    for name, values in params.items():
        if not isinstance(name, str):
            raise InputError("params name", name, "must be a string")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise InputError(f"params[{name!r}]", values, "must be a sequence of numbers")
        for i, x in enumerate(values):
            if isinstance(x, bool) or not hasattr(x, "__float__"):
                raise InputError(f"params[{name!r}][{i}]", x, "must be a real number")
            if not math.isfinite(float(x)):
                raise InputError(f"params[{name!r}][{i}]", x, "initial parameters must be finite")


def _check_grads(params: Params, grads: Grads) -> None:
    if not isinstance(grads, Mapping):
        raise InputError("grads", grads, "must be a mapping of name -> values or None")
    missing = [n for n in params if n not in grads]
    extra = [n for n in grads if n not in params]
    if missing:
        raise InputError("grads", sorted(grads), f"missing gradients for {missing} (use None to freeze)")
    if extra:
        raise InputError("grads", sorted(grads), f"gradients for unknown parameters {extra}")
    for name, g in grads.items():
        if g is None:
            continue
        if isinstance(g, (str, bytes)) or not isinstance(g, Sequence):
            raise InputError(f"grads[{name!r}]", g, "must be a sequence of numbers or None")
        if len(g) != len(params[name]):
            raise InputError(
                f"grads[{name!r}]", f"length {len(g)}", f"parameter has length {len(params[name])}"
            )
        for i, x in enumerate(g):
            if isinstance(x, bool) or not hasattr(x, "__float__"):
                raise InputError(f"grads[{name!r}][{i}]", x, "must be a real number")


def init(
    params: Params, config: AdamWConfig, arithmetic: Arithmetic[N] = BINARY64_ARITHMETIC  # type: ignore[assignment]
) -> State[N]:
    """The state before the first step: zero moments (and ``v_max`` when ``amsgrad``), step 0."""
    if not isinstance(config, AdamWConfig):
        raise InputError("config", config, "must be an AdamWConfig")
    _check_params(params)
    zero = arithmetic.const(0.0)
    zeros = {name: tuple(zero for _ in values) for name, values in params.items()}
    return State(
        step=0,
        param_steps={name: 0 for name in params},
        m=dict(zeros),
        v=dict(zeros),
        v_max=dict(zeros) if config.amsgrad else None,
    )


def _check_state(params: Params, state: State[Any], config: AdamWConfig) -> None:
    if not isinstance(state, State):
        raise InputError("state", state, "must be a State (from init)")
    if set(state.m) != set(params) or set(state.v) != set(params):
        raise InputError("state", sorted(state.m), f"names differ from params {sorted(params)}")
    if config.amsgrad and state.v_max is None:
        raise InputError("state.v_max", None, "amsgrad=True needs a state made with amsgrad")
    for name, values in params.items():
        if len(state.m[name]) != len(values) or len(state.v[name]) != len(values):
            raise InputError(f"state.m[{name!r}]", len(state.m[name]), f"params have {len(values)}")


class Recorder(Protocol):
    """Receives every intermediate of a step (used by ``adamw-ref explain``)."""

    def begin(self, name: str, k: int, scalars: Mapping[str, Any]) -> None: ...

    def add(self, key: str, label: str, values: Sequence[Any]) -> None: ...


class _Silent:
    def begin(self, name: str, k: int, scalars: Mapping[str, Any]) -> None:
        pass

    def add(self, key: str, label: str, values: Sequence[Any]) -> None:
        pass


def step(
    params: Params,
    grads: Grads,
    state: State[N],
    config: AdamWConfig,
    arithmetic: Arithmetic[N] = BINARY64_ARITHMETIC,  # type: ignore[assignment]
    recorder: Recorder | None = None,
) -> tuple[dict[str, tuple[N, ...]], State[N]]:
    """One AdamW update. Returns the new parameters and the new state; inputs are not modified.

    ``recorder`` (optional) is told every intermediate, in the order computed.
    """
    if not isinstance(config, AdamWConfig):
        raise InputError("config", config, "must be an AdamWConfig")
    if not isinstance(params, Mapping) or len(params) == 0:
        raise InputError("params", params, "must be a non-empty mapping of name -> values")
    _check_grads(params, grads)
    _check_state(params, state, config)
    A = arithmetic
    S = A.scalars  # hyperparameter-derived scalars: computed here, lifted into A once
    rec: Recorder = recorder if recorder is not None else _Silent()
    cfg = config
    t = state.step + 1
    count = state.step if cfg.schedule_count is ScheduleCount.PRE_INCREMENT else t
    eta_f = cfg.lr_schedule(count)
    omega_f = cfg.wd_schedule(count)
    one_s = S.const(1.0)
    b1_s, b2_s = S.const(cfg.beta1), S.const(cfg.beta2)
    eta_s = S.const(eta_f)
    b1, b2 = A.const(cfg.beta1), A.const(cfg.beta2)
    one_m_b1, one_m_b2 = A.lift(S.s_sub(one_s, b1_s)), A.lift(S.s_sub(one_s, b2_s))
    eps, eps_root = A.const(cfg.eps), A.const(cfg.eps_root)
    eta = A.const(eta_f)

    new_params: dict[str, tuple[N, ...]] = {}
    new_m: dict[str, tuple[N, ...]] = {}
    new_v: dict[str, tuple[N, ...]] = {}
    new_vmax: dict[str, tuple[N, ...]] | None = None if state.v_max is None else {}
    new_ps: dict[str, int] = {}

    for name, raw in params.items():
        theta = A.vec(raw)
        g_raw = grads[name]
        old_vmax = None if state.v_max is None else state.v_max[name]
        if g_raw is None:
            new_params[name] = tuple(theta)
            new_m[name], new_v[name] = state.m[name], state.v[name]
            if new_vmax is not None and old_vmax is not None:
                new_vmax[name] = old_vmax
            new_ps[name] = state.param_steps[name]
            continue
        g = A.vec(g_raw)
        own = state.param_steps[name] + 1
        new_ps[name] = own
        k = own if cfg.step_count_scope is StepCountScope.PER_PARAMETER else t
        k += cfg.bias_correction_offset

        lr_base, wd_base = cfg.group_for(name)
        lr_t_s = S.s_mul(S.const(lr_base), eta_s)
        lam_t_s = S.s_mul(S.const(wd_base), S.const(omega_f))
        if cfg.decay_scaling is DecayScaling.LR:
            s_s = S.s_mul(lr_t_s, lam_t_s)
        elif cfg.decay_scaling is DecayScaling.SCHEDULE_MULTIPLIER:
            s_s = S.s_mul(eta_s, lam_t_s)
        else:
            s_s = lam_t_s
        alpha, lr_t, lam_t, s = A.const(lr_base), A.lift(lr_t_s), A.lift(lam_t_s), A.lift(s_s)
        if cfg.bias_correction:
            bc1_s = S.s_sub(one_s, S.s_pow(b1_s, k))
            bc2_s = S.s_sub(one_s, S.s_pow(b2_s, k))
        else:
            bc1_s = bc2_s = one_s
        bc1, bc2 = A.lift(bc1_s), A.lift(bc2_s)
        form = cfg.decay_form
        active = form is not DecayForm.NONE and wd_base != 0.0
        before = cfg.decay_timing is DecayTiming.BEFORE_STEP
        rec.begin(name, k, {"lr_t": lr_t, "lam_t": lam_t, "s": s, "bc1": bc1, "bc2": bc2})
        rec.add("theta_prev", "theta_{t-1}", theta)
        rec.add("g_in", "g (given)", g)

        if cfg.maximize:
            g = A.neg(g)
            rec.add("g_max", "g <- -g (maximize)", g)
        if active and form is DecayForm.COUPLED_L2:
            l2 = A.mul_s(theta, lam_t)
            g = A.add(g, l2)
            rec.add("l2_term", "lambda_t*theta (coupled L2)", l2)
            rec.add("g_l2", "g <- g + lambda_t*theta", g)
        if active and before and form in (DecayForm.MULTIPLICATIVE, DecayForm.PROXIMAL):
            theta_prev = theta
            if form is DecayForm.MULTIPLICATIVE:
                factor = A.lift(S.s_sub(one_s, s_s))
                theta = A.mul_s(theta, factor)
                rec.add("decay_factor", "1 - s", [factor])
                rec.add("theta_decayed", "theta' = (1 - s)*theta_{t-1}", theta)
            else:
                factor = A.lift(S.s_add(one_s, s_s))
                theta = A.div_s(theta, factor)
                rec.add("decay_factor", "1 + s", [factor])
                rec.add("theta_decayed", "theta' = theta_{t-1}/(1 + s)", theta)
            if recorder is not None:
                rec.add("decay_term", "decay term theta_{t-1} - theta' (shown)",
                        A.sub(theta_prev, theta))

        m_prev, v_prev = list(state.m[name]), list(state.v[name])
        rec.add("m_prev", "m_{t-1}", m_prev)
        rec.add("v_prev", "v_{t-1}", v_prev)
        m = A.add(A.mul_s(m_prev, b1), A.mul_s(g, one_m_b1))
        gg = A.mul(g, g)
        v = A.add(A.mul_s(v_prev, b2), A.mul_s(gg, one_m_b2))
        rec.add("m", "m = beta1*m_{t-1} + (1-beta1)*g", m)
        rec.add("g2", "g*g", gg)
        rec.add("v", "v = beta2*v_{t-1} + (1-beta2)*g*g", v)

        # Second moment actually used: raw (v or its running max) or already bias-corrected.
        v_raw: list[N] | None = v
        v_hat: list[N] | None = None
        if cfg.amsgrad and old_vmax is not None and new_vmax is not None:
            if cfg.amsgrad_mode is AmsgradMode.RAW_V:
                vmax = A.maximum(list(old_vmax), v)
                v_raw = vmax
                rec.add("v_max", "v_max = max(v_max_{t-1}, v)", vmax)
            else:
                vmax = A.maximum(list(old_vmax), A.div_s(v, bc2))
                v_hat, v_raw = vmax, None
                rec.add("v_max", "v_hat_max = max(v_hat_max_{t-1}, v/bc2)", vmax)
            new_vmax[name] = tuple(vmax)

        if cfg.nesterov:
            bc1_next = (A.lift(S.s_sub(one_s, S.s_pow(b1_s, k + 1)))
                        if cfg.bias_correction else A.lift(one_s))
            m_hat = A.add(
                A.div_s(A.mul_s(m, b1), bc1_next), A.div_s(A.mul_s(g, one_m_b1), bc1)
            )
            rec.add("m_hat", "m_hat = beta1*m/(1-beta1^(k+1)) + (1-beta1)*g/(1-beta1^k)", m_hat)
        else:
            m_hat = A.div_s(m, bc1)
            rec.add("m_hat", "m_hat = m/bc1", m_hat)

        if cfg.eps_placement is EpsPlacement.AFTER_BIAS_CORRECTION:
            if v_hat is None:
                assert v_raw is not None
                v_hat = A.div_s(v_raw, bc2)
                rec.add("v_hat", "v_hat = v/bc2", v_hat)
            else:
                rec.add("v_hat", "v_hat = v_hat_max", v_hat)
            root = A.sqrt(A.add_s(v_hat, eps_root))
            denom = A.add_s(root, eps)
            u = A.div(m_hat, denom)
            rec.add("sqrt", "sqrt(v_hat + eps_root)", root)
            rec.add("denom", "denom = sqrt(v_hat + eps_root) + eps", denom)
            rec.add("u", "u = m_hat/denom", u)
        else:
            if v_raw is None:
                assert v_hat is not None
                v_raw = A.mul_s(v_hat, bc2)
                rec.add("v_used", "v = v_hat_max*bc2", v_raw)
            root = A.sqrt(A.add_s(v_raw, eps_root))
            denom = A.add_s(root, eps)
            ratio = A.div(m_hat, denom)
            sqrt_bc2 = A.lift(S.s_sqrt(bc2_s))
            u = A.mul_s(ratio, sqrt_bc2)
            rec.add("sqrt", "sqrt(v + eps_root)", root)
            rec.add("denom", "denom = sqrt(v + eps_root) + eps_hat", denom)
            rec.add("ratio", "m_hat/denom", ratio)
            rec.add("sqrt_bc2", "sqrt(bc2)", [sqrt_bc2])
            rec.add("u", "u = (m_hat/denom)*sqrt(bc2)", u)

        if active and form is DecayForm.ADDED_TO_UPDATE:
            dterm = A.mul_s(theta, lam_t)
            rec.add("decay_term", "lambda_t*theta_{t-1}", dterm)
            if cfg.decay_scaling is DecayScaling.LR:
                total = A.add(u, dterm)
                delta = A.mul_s(total, lr_t)
                rec.add("update", "u + lambda_t*theta", total)
                rec.add("delta", "delta = lr_t*(u + lambda_t*theta)", delta)
            elif cfg.decay_scaling is DecayScaling.SCHEDULE_MULTIPLIER:
                total = A.add(A.mul_s(u, alpha), dterm)
                delta = A.mul_s(total, eta)
                rec.add("update", "alpha*u + lambda_t*theta", total)
                rec.add("delta", "delta = eta*(alpha*u + lambda_t*theta)", delta)
            else:
                delta = A.add(A.mul_s(u, lr_t), dterm)
                rec.add("delta", "delta = lr_t*u + lambda_t*theta", delta)
        else:
            delta = A.mul_s(u, lr_t)
            rec.add("delta", "delta = lr_t*u", delta)
        theta = A.sub(theta, delta)

        if active and not before and form in (DecayForm.MULTIPLICATIVE, DecayForm.PROXIMAL):
            theta_step = theta
            rec.add("theta_step", "theta_step = theta_{t-1} - delta", theta)
            if form is DecayForm.MULTIPLICATIVE:
                factor = A.lift(S.s_sub(one_s, s_s))
                theta = A.mul_s(theta, factor)
                rec.add("decay_factor", "1 - s", [factor])
            else:
                factor = A.lift(S.s_add(one_s, s_s))
                theta = A.div_s(theta, factor)
                rec.add("decay_factor", "1 + s", [factor])
            if recorder is not None:
                rec.add("decay_term", "decay term theta_step - theta_t (shown)",
                        A.sub(theta_step, theta))
        rec.add("theta", "theta_t", theta)

        new_params[name] = tuple(theta)
        new_m[name], new_v[name] = tuple(m), tuple(v)

    return new_params, State(step=t, param_steps=new_ps, m=new_m, v=new_v, v_max=new_vmax)


@dataclass(frozen=True)
class Trajectory:
    """Parameters and state after every step; index 0 is the initial point."""

    params: list[dict[str, tuple[Any, ...]]]
    states: list[State[Any]]

    def __len__(self) -> int:
        return len(self.states) - 1


def run_trajectory(
    params: Params,
    grads: Iterable[Grads],
    config: AdamWConfig,
    arithmetic: Arithmetic[Any] = BINARY64_ARITHMETIC,
) -> Trajectory:
    """Run :func:`step` over a gradient stream, keeping every intermediate point."""
    state: State[Any] = init(params, config, arithmetic)
    current = {k: tuple(arithmetic.vec(v)) for k, v in params.items()}
    out_p = [current]
    out_s = [state]
    for g in grads:
        current, state = step(current, g, state, config, arithmetic)
        out_p.append(current)
        out_s.append(state)
    return Trajectory(params=out_p, states=out_s)
