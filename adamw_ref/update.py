r"""The AdamW update of one parameter, phase by phase, in the order it happens.

:func:`update_parameter` composes the phases; each is a small function whose docstring states
its equation and the knobs that select it:

.. math::

   &\text{gradient:}\quad g \leftarrow -g \;(\text{maximize}),\quad
     g \leftarrow g + \lambda_t\theta \;(\text{coupled\_l2}) \\
   &\text{decay (before the step):}\quad \theta' = (1-s_t)\theta \mid \theta/(1+s_t) \\
   &\text{moments:}\quad m = \beta_1 m + (1-\beta_1) g,\quad v = \beta_2 v + (1-\beta_2) g^2 \\
   &\text{second moment used:}\quad v \mid \max(v_{max}, v) \mid \max(\hat v_{max}, v/bc_2) \\
   &\text{first moment:}\quad \hat m = m/bc_1 \;(\text{or Nesterov's}) \\
   &\text{direction:}\quad u = \hat m/(\sqrt{\hat v+\epsilon_{root}}+\epsilon) \mid
     \sqrt{bc_2}\,\hat m/(\sqrt{v+\epsilon_{root}}+\hat\epsilon) \\
   &\text{apply:}\quad \theta_t = \theta' - \Delta,\quad \Delta = \alpha_t u \;(\text{or with }
     \lambda_t\theta \text{ added}) \\
   &\text{decay (after the step):}\quad (1-s_t)\theta_t \mid \theta_t/(1+s_t) \\
   &\text{store:}\quad \theta_t, m_t, v_t, v^{max}_t \text{ rounded once to } \texttt{param\_dtype},
     \texttt{m\_dtype}, \texttt{v\_dtype} \text{ (when set)}

Every phase returns its result with the intermediates it formed, so :mod:`adamw_ref.explain` reads
the trace off the computation instead of being woven into it. ``A`` is the working arithmetic
(each elementwise operation rounded to its format); scalars derived from hyperparameters and
counts are formed in ``A.scalars`` (binary64 for the binary formats) and lifted into ``A`` once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from adamw_ref.arithmetic import Arithmetic
from adamw_ref.config import AdamWConfig
from adamw_ref.knobs import (
    AmsgradMode,
    DecayForm,
    DecayScaling,
    DecayTiming,
    EpsPlacement,
    ScheduleCount,
    StepCountScope,
)
from adamw_ref.storage import to_storage

N = TypeVar("N")
Vec = list[Any]


# ------------------------------------------------------------------------------------ scalars
@dataclass(frozen=True)
class StepConstants(Generic[N]):
    """What update :math:`t` shares across parameters (values in ``A`` unless marked ``_s``)."""

    t: int
    count: int
    eta: float
    omega: float
    b1: N
    b2: N
    one_minus_b1: N
    one_minus_b2: N
    eps: N
    eps_root: N
    eta_a: N
    one_s: Any
    b1_s: Any
    b2_s: Any
    eta_s: Any


def step_constants(previous_step: int, cfg: AdamWConfig, A: Arithmetic[N]) -> StepConstants[N]:
    r""":math:`t = \text{step}+1`; the schedule count :math:`c = t-1` (``schedule_count``
    ``pre_increment``) or :math:`t` (``post_increment``); :math:`\eta(c)`, :math:`\omega(c)`;
    :math:`\beta_i` and :math:`1-\beta_i` (formed in ``A.scalars``, rounded once), :math:`\epsilon`,
    :math:`\epsilon_{root}`."""
    S = A.scalars
    t = previous_step + 1
    count = previous_step if cfg.schedule_count is ScheduleCount.PRE_INCREMENT else t
    eta, omega = cfg.lr_schedule(count), cfg.wd_schedule(count)
    one_s, b1_s, b2_s, eta_s = S.const(1.0), S.const(cfg.beta1), S.const(cfg.beta2), S.const(eta)
    return StepConstants(
        t=t,
        count=count,
        eta=eta,
        omega=omega,
        b1=A.const(cfg.beta1),
        b2=A.const(cfg.beta2),
        one_minus_b1=A.lift(S.s_sub(one_s, b1_s)),
        one_minus_b2=A.lift(S.s_sub(one_s, b2_s)),
        eps=A.const(cfg.eps),
        eps_root=A.const(cfg.eps_root),
        eta_a=A.const(eta),
        one_s=one_s,
        b1_s=b1_s,
        b2_s=b2_s,
        eta_s=eta_s,
    )


@dataclass(frozen=True)
class Coefficients(Generic[N]):
    """One parameter's scalars for update :math:`t` (``_s``: the value in ``A.scalars``)."""

    k: int
    alpha: N
    lr_t: N
    lam_t: N
    s: N
    bc1: N
    bc2: N
    s_s: Any
    bc2_s: Any
    decays: bool


def coefficients(
    name: str, own_step: int, const: StepConstants[N], cfg: AdamWConfig, A: Arithmetic[N]
) -> Coefficients[N]:
    r"""The bias-correction index :math:`k` = (the parameter's own count, ``step_count_scope``
    ``per_parameter``, or :math:`t`, ``global``) + ``bias_correction_offset``;
    :math:`\alpha_t=\alpha\eta(c)`, :math:`\lambda_t=\lambda\omega(c)` with the group's
    :math:`\alpha,\lambda`; the decay strength :math:`s_t = \alpha_t\lambda_t` (``decay_scaling``
    ``lr``), :math:`\eta(c)\lambda_t` (``schedule_multiplier``) or :math:`\lambda_t` (``unscaled``);
    :math:`bc_i = 1-\beta_i^k`, or 1 without ``bias_correction``."""
    S = A.scalars
    k = own_step if cfg.step_count_scope is StepCountScope.PER_PARAMETER else const.t
    k += cfg.bias_correction_offset
    lr_base, wd_base = cfg.group_for(name)
    lr_t_s = S.s_mul(S.const(lr_base), const.eta_s)
    lam_t_s = S.s_mul(S.const(wd_base), S.const(const.omega))
    if cfg.decay_scaling is DecayScaling.LR:
        s_s = S.s_mul(lr_t_s, lam_t_s)
    elif cfg.decay_scaling is DecayScaling.SCHEDULE_MULTIPLIER:
        s_s = S.s_mul(const.eta_s, lam_t_s)
    else:
        s_s = lam_t_s
    if cfg.bias_correction:
        bc1_s = S.s_sub(const.one_s, S.s_pow(const.b1_s, k))
        bc2_s = S.s_sub(const.one_s, S.s_pow(const.b2_s, k))
    else:
        bc1_s = bc2_s = const.one_s
    return Coefficients(
        k=k,
        alpha=A.const(lr_base),
        lr_t=A.lift(lr_t_s),
        lam_t=A.lift(lam_t_s),
        s=A.lift(s_s),
        bc1=A.lift(bc1_s),
        bc2=A.lift(bc2_s),
        s_s=s_s,
        bc2_s=bc2_s,
        decays=cfg.decay_form is not DecayForm.NONE and wd_base != 0.0,
    )


# ------------------------------------------------------------------------------------- phases
@dataclass(frozen=True)
class Gradient(Generic[N]):
    """The gradient as given, after negation (``maximize``) and after the L2 term; ``value``
    is the one the moments see."""

    given: Vec
    negated: Vec | None
    l2_term: Vec | None
    value: Vec


def effective_gradient(
    g: Vec, theta: Vec, c: Coefficients[N], cfg: AdamWConfig, A: Arithmetic[N]
) -> Gradient[N]:
    r""":math:`g \leftarrow -g` (``maximize``); then :math:`g \leftarrow g + \lambda_t\theta`
    (``decay_form`` ``coupled_l2``: Adam with L2 regularisation, not AdamW)."""
    value, negated, l2_term = g, None, None
    if cfg.maximize:
        value = negated = A.neg(value)
    if c.decays and cfg.decay_form is DecayForm.COUPLED_L2:
        l2_term = A.mul_s(theta, c.lam_t)
        value = A.add(value, l2_term)
    return Gradient(given=g, negated=negated, l2_term=l2_term, value=value)


@dataclass(frozen=True)
class Decay(Generic[N]):
    """A decoupled decay: the factor :math:`1\\mp s_t`, the parameter before and after."""

    factor: N
    before: Vec
    value: Vec


def decays_at(timing: DecayTiming, c: Coefficients[Any], cfg: AdamWConfig) -> bool:
    """Whether a shrinking decay (``multiplicative`` or ``proximal``) happens at ``timing``."""
    return (
        c.decays
        and cfg.decay_timing is timing
        and cfg.decay_form in (DecayForm.MULTIPLICATIVE, DecayForm.PROXIMAL)
    )


def decoupled_decay(
    theta: Vec, c: Coefficients[N], const: StepConstants[N], cfg: AdamWConfig, A: Arithmetic[N]
) -> Decay[N]:
    r""":math:`\theta \leftarrow (1-s_t)\,\theta` (``decay_form`` ``multiplicative``) or
    :math:`\theta/(1+s_t)` (``proximal``: the exact minimiser of
    :math:`\tfrac{1}{2}\|\theta-x\|^2+\tfrac{s_t}{2}\|\theta\|^2`), the factor formed in
    ``A.scalars`` and rounded once; before or after the step by ``decay_timing``."""
    S = A.scalars
    if cfg.decay_form is DecayForm.MULTIPLICATIVE:
        factor = A.lift(S.s_sub(const.one_s, c.s_s))
        return Decay(factor=factor, before=theta, value=A.mul_s(theta, factor))
    factor = A.lift(S.s_add(const.one_s, c.s_s))
    return Decay(factor=factor, before=theta, value=A.div_s(theta, factor))


@dataclass(frozen=True)
class Moments(Generic[N]):
    """The moving averages before and after the update, and :math:`g^2`."""

    m_prev: Vec
    v_prev: Vec
    m: Vec
    g2: Vec
    v: Vec


def moments(m_prev: Vec, v_prev: Vec, g: Vec, const: StepConstants[N], A: Arithmetic[N]) -> Moments[N]:
    r""":math:`m = \beta_1 m_{t-1} + (1-\beta_1)\,g` and
    :math:`v = \beta_2 v_{t-1} + (1-\beta_2)\,g\cdot g` (no knob changes these)."""
    m = A.add(A.mul_s(m_prev, const.b1), A.mul_s(g, const.one_minus_b1))
    g2 = A.mul(g, g)
    v = A.add(A.mul_s(v_prev, const.b2), A.mul_s(g2, const.one_minus_b2))
    return Moments(m_prev=m_prev, v_prev=v_prev, m=m, g2=g2, v=v)


@dataclass(frozen=True)
class SecondMoment(Generic[N]):
    """The second moment the direction uses: ``raw`` (not yet bias-corrected) or ``corrected``
    (exactly one is set); ``v_max`` is the AMSGrad maximum to keep, ``None`` without AMSGrad."""

    raw: Vec | None
    corrected: Vec | None
    v_max: Vec | None


def second_moment(
    v: Vec, v_max_prev: Sequence[Any] | None, c: Coefficients[N], cfg: AdamWConfig, A: Arithmetic[N]
) -> SecondMoment[N]:
    r""":math:`v` itself; with ``amsgrad``, the running maximum of the raw :math:`v`
    (``amsgrad_mode`` ``raw_v``: :math:`v_{max} = \max(v_{max}, v)`) or of the bias-corrected
    :math:`\hat v` (``bias_corrected_v``: :math:`\hat v_{max}=\max(\hat v_{max}, v/bc_2)`).
    NaN propagates through the maximum."""
    if not cfg.amsgrad or v_max_prev is None:
        return SecondMoment(raw=v, corrected=None, v_max=None)
    if cfg.amsgrad_mode is AmsgradMode.RAW_V:
        v_max = A.maximum(list(v_max_prev), v)
        return SecondMoment(raw=v_max, corrected=None, v_max=v_max)
    v_max = A.maximum(list(v_max_prev), A.div_s(v, c.bc2))
    return SecondMoment(raw=None, corrected=v_max, v_max=v_max)


def first_moment_hat(
    m: Vec, g: Vec, c: Coefficients[N], const: StepConstants[N], cfg: AdamWConfig, A: Arithmetic[N]
) -> Vec:
    r""":math:`\hat m = m/bc_1`; ``nesterov`` (Optax's NAdamW):
    :math:`\hat m = \beta_1 m/(1-\beta_1^{k+1}) + (1-\beta_1)\,g/bc_1`."""
    if not cfg.nesterov:
        return A.div_s(m, c.bc1)
    S = A.scalars
    bc1_next = (
        A.lift(S.s_sub(const.one_s, S.s_pow(const.b1_s, c.k + 1)))
        if cfg.bias_correction
        else A.lift(const.one_s)
    )
    return A.add(A.div_s(A.mul_s(m, const.b1), bc1_next), A.div_s(A.mul_s(g, const.one_minus_b1), c.bc1))


@dataclass(frozen=True)
class Direction(Generic[N]):
    """The update direction :math:`u` and what formed it. ``second`` is the moment under the
    root (:math:`\\hat v` or :math:`v`); ``derived`` says it was converted here from the other
    form (AMSGrad kept the other one)."""

    second: Vec
    derived: bool
    root: Vec
    denom: Vec
    ratio: Vec | None
    sqrt_bc2: N | None
    u: Vec


def _given(xs: Vec | None) -> Vec:
    assert xs is not None  # SecondMoment sets exactly one of raw and corrected
    return xs


def direction(
    m_hat: Vec,
    sm: SecondMoment[N],
    c: Coefficients[N],
    const: StepConstants[N],
    cfg: AdamWConfig,
    A: Arithmetic[N],
) -> Direction[N]:
    r"""``eps_placement`` ``after_bias_correction``:
    :math:`u = \hat m/(\sqrt{\hat v+\epsilon_{root}}+\epsilon)`, :math:`\hat v = v/bc_2`;
    ``before_bias_correction`` (:math:`\hat\epsilon`):
    :math:`u = \sqrt{bc_2}\cdot \hat m/(\sqrt{v+\epsilon_{root}}+\hat\epsilon)`, with
    :math:`\sqrt{bc_2}` formed in ``A.scalars`` and rounded once."""
    if cfg.eps_placement is EpsPlacement.AFTER_BIAS_CORRECTION:
        derived = sm.corrected is None
        v_hat = sm.corrected if sm.corrected is not None else A.div_s(_given(sm.raw), c.bc2)
        root = A.sqrt(A.add_s(v_hat, const.eps_root))
        denom = A.add_s(root, const.eps)
        return Direction(
            second=v_hat,
            derived=derived,
            root=root,
            denom=denom,
            ratio=None,
            sqrt_bc2=None,
            u=A.div(m_hat, denom),
        )
    derived = sm.raw is None
    v = sm.raw if sm.raw is not None else A.mul_s(_given(sm.corrected), c.bc2)
    root = A.sqrt(A.add_s(v, const.eps_root))
    denom = A.add_s(root, const.eps)
    ratio = A.div(m_hat, denom)
    sqrt_bc2 = A.lift(A.scalars.s_sqrt(c.bc2_s))
    return Direction(
        second=v,
        derived=derived,
        root=root,
        denom=denom,
        ratio=ratio,
        sqrt_bc2=sqrt_bc2,
        u=A.mul_s(ratio, sqrt_bc2),
    )


@dataclass(frozen=True)
class Applied(Generic[N]):
    """The step :math:`\\Delta` and the parameter after it; ``decay_term`` (:math:`\\lambda_t
    \\theta`) and ``update`` (the bracket scaled by the learning rate) exist with
    ``added_to_update``."""

    decay_term: Vec | None
    update: Vec | None
    delta: Vec
    value: Vec


def apply_update(
    theta: Vec, u: Vec, c: Coefficients[N], const: StepConstants[N], cfg: AdamWConfig, A: Arithmetic[N]
) -> Applied[N]:
    r""":math:`\theta \leftarrow \theta - \Delta` with :math:`\Delta = \alpha_t u`; with
    ``decay_form`` ``added_to_update`` the decay joins the update:
    :math:`\Delta = \alpha_t(u+\lambda_t\theta)` (``decay_scaling`` ``lr``),
    :math:`\eta(c)(\alpha u+\lambda_t\theta)` (``schedule_multiplier``) or
    :math:`\alpha_t u+\lambda_t\theta` (``unscaled``)."""
    if not (c.decays and cfg.decay_form is DecayForm.ADDED_TO_UPDATE):
        delta = A.mul_s(u, c.lr_t)
        return Applied(decay_term=None, update=None, delta=delta, value=A.sub(theta, delta))
    dterm = A.mul_s(theta, c.lam_t)
    update: Vec | None = None
    if cfg.decay_scaling is DecayScaling.LR:
        update = A.add(u, dterm)
        delta = A.mul_s(update, c.lr_t)
    elif cfg.decay_scaling is DecayScaling.SCHEDULE_MULTIPLIER:
        update = A.add(A.mul_s(u, c.alpha), dterm)
        delta = A.mul_s(update, const.eta_a)
    else:
        delta = A.add(A.mul_s(u, c.lr_t), dterm)
    return Applied(decay_term=dterm, update=update, delta=delta, value=A.sub(theta, delta))


@dataclass(frozen=True)
class Stored(Generic[N]):
    r"""What the step keeps: :math:`\theta_t`, :math:`m_t`, :math:`v_t`, :math:`v^{max}_t`, each
    rounded to its storage format."""

    theta: Vec
    m: Vec
    v: Vec
    v_max: Vec | None


def store(theta: Vec, moved: Moments[N], second: SecondMoment[N], cfg: AdamWConfig) -> Stored[N] | None:
    r"""State precision, the last rounding points of the step: :math:`\theta_t` rounded once to
    ``param_dtype``, :math:`m_t` to ``m_dtype``, :math:`v_t` and AMSGrad's :math:`v^{max}_t` to
    ``v_dtype``. The step itself used the values before this rounding (as Optax's ``mu_dtype``
    and PyTorch's fused kernels, which compute in float32 and store narrow); the next step reads
    the stored ones. ``None`` when no state-precision field is set."""
    if not cfg.stores_narrow:
        return None
    v_max = None if second.v_max is None else to_storage(second.v_max, cfg.v_dtype)
    return Stored(
        theta=to_storage(theta, cfg.param_dtype),
        m=to_storage(moved.m, cfg.m_dtype),
        v=to_storage(moved.v, cfg.v_dtype),
        v_max=v_max,
    )


# ---------------------------------------------------------------------------------- composition
@dataclass(frozen=True)
class ParamUpdate(Generic[N]):
    """Every phase of one parameter's update, in order; ``theta`` is the result (as stored);
    ``stored`` is set when the config has a state-precision field."""

    theta_prev: Vec
    coefficients: Coefficients[N]
    gradient: Gradient[N]
    decay_before: Decay[N] | None
    moments: Moments[N]
    second: SecondMoment[N]
    m_hat: Vec
    direction: Direction[N]
    applied: Applied[N]
    decay_after: Decay[N] | None
    theta: Vec
    stored: Stored[N] | None = None


def update_parameter(
    theta: Vec,
    g: Vec,
    m_prev: Vec,
    v_prev: Vec,
    v_max_prev: Sequence[Any] | None,
    c: Coefficients[N],
    const: StepConstants[N],
    cfg: AdamWConfig,
    A: Arithmetic[N],
) -> ParamUpdate[N]:
    """One parameter's AdamW update: the phases above, composed in the order they happen."""
    grad = effective_gradient(g, theta, c, cfg, A)
    before = decoupled_decay(theta, c, const, cfg, A) if decays_at(DecayTiming.BEFORE_STEP, c, cfg) else None
    moved = moments(m_prev, v_prev, grad.value, const, A)
    second = second_moment(moved.v, v_max_prev, c, cfg, A)
    m_hat = first_moment_hat(moved.m, grad.value, c, const, cfg, A)
    u = direction(m_hat, second, c, const, cfg, A)
    applied = apply_update(before.value if before else theta, u.u, c, const, cfg, A)
    after = (
        decoupled_decay(applied.value, c, const, cfg, A)
        if decays_at(DecayTiming.AFTER_STEP, c, cfg)
        else None
    )
    kept = store(after.value if after else applied.value, moved, second, cfg)
    return ParamUpdate(
        theta_prev=theta,
        coefficients=c,
        gradient=grad,
        decay_before=before,
        moments=moved,
        second=second,
        m_hat=m_hat,
        direction=u,
        applied=applied,
        decay_after=after,
        theta=kept.theta if kept else (after.value if after else applied.value),
        stored=kept,
    )
