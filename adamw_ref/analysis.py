r"""Analysis helpers from the seeds, each with the convention under which it holds.

Notation: :math:`\eta` the (scheduled) learning rate, :math:`\lambda` the ``weight_decay``,
:math:`s` the per-step decay strength. Under the PyTorch convention (``decay_scaling=lr``,
profiles ``torch``, ``keras3``, ``optax``, ``mlx``, ...) :math:`s=\eta\lambda`; under the
``unscaled`` convention (``tfa``, ``optimisers_jl_decoupled``, ``onnx``) :math:`s=\lambda`; under
the paper's ``schedule_multiplier`` convention :math:`s=\eta(c)\lambda` with :math:`\eta(c)` the
schedule multiplier only. Every function takes ``s`` (or the knob) explicitly, so the caller states
the convention; the docstrings say which seed formula each reproduces.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from adamw_ref.errors import ConfigError
from adamw_ref.knobs import DecayForm, DecayScaling

LN2 = math.log(2.0)


def _strength(s: float) -> float:
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
        raise ConfigError("s", s, "must be a finite real number")
    if not 0.0 < s < 1.0:
        raise ConfigError("s", s, "the per-step decay strength must lie in (0, 1)")
    return float(s)


def decay_strength(
    lr: float, weight_decay: float, scaling: DecayScaling = DecayScaling.LR, multiplier: float = 1.0
) -> float:
    r"""The per-step decay strength :math:`s` for a decay-scaling convention.

    ``lr`` is the base learning rate :math:`\alpha`, ``multiplier`` the schedule value
    :math:`\eta(c)`: :math:`s=\alpha\eta(c)\lambda` (``lr``), :math:`\eta(c)\lambda`
    (``schedule_multiplier``), :math:`\lambda` (``unscaled``).
    """
    scaling = DecayScaling(scaling)
    if scaling is DecayScaling.LR:
        return lr * multiplier * weight_decay
    if scaling is DecayScaling.SCHEDULE_MULTIPLIER:
        return multiplier * weight_decay
    return weight_decay


def half_life(s: float, form: DecayForm = DecayForm.MULTIPLICATIVE) -> float:
    r"""Steps for pure decay (zero gradient, no momentum) to halve a parameter.

    * multiplicative, :math:`\theta_t=(1-s)^t\theta_0`:
      :math:`t_{1/2}=-\ln 2/\ln(1-s)` (the seed's formula with :math:`s=\eta\lambda`, i.e. the
      ``lr`` scaling of PyTorch/Keras/Optax; the ``added_to_update`` form is the same map);
    * proximal, :math:`\theta_t=\theta_0/(1+s)^t`: :math:`t_{1/2}=\ln 2/\ln(1+s)`.

    The parameter first drops to or below half at step :math:`\lceil t_{1/2}\rceil`.
    ``log1p`` keeps the result accurate for tiny ``s``.
    """
    s = _strength(s)
    form = DecayForm(form)
    if form in (DecayForm.MULTIPLICATIVE, DecayForm.ADDED_TO_UPDATE):
        return -LN2 / math.log1p(-s)
    if form is DecayForm.PROXIMAL:
        return LN2 / math.log1p(s)
    raise ConfigError("form", form.value, "half-life is defined for decoupled decay forms only")


def half_life_small_s(s: float) -> float:
    r"""The small-:math:`s` approximation :math:`t_{1/2}\approx\ln 2/s`, common to both forms.

    Relative error: :math:`-\ln(1-s)/s-1=s/2+O(s^2)` (multiplicative; the exact half-life is
    *shorter*), :math:`1-\ln(1+s)/s=s/2+O(s^2)` (proximal; the exact one is *longer*).
    """
    return LN2 / _strength(s)


def effective_l2(
    lr: float, weight_decay: float, scaling: DecayScaling = DecayScaling.LR, preconditioner: float = 1.0
) -> float:
    r"""The L2 strength :math:`\alpha_{\text{eff}}` whose penalty :math:`\tfrac{\alpha}{2}w^2` the
    decoupled-decay fixed point minimises, for a step :math:`-\eta P\nabla L` with a *fixed*
    positive preconditioner :math:`P` (SGD: :math:`P=1`).

    Fixed point of :math:`w\leftarrow w-\eta P\nabla L(w)-s\,w`:
    :math:`\nabla L(w)+\tfrac{s}{\eta P}w=0`, so :math:`\alpha_{\text{eff}}=s/(\eta P)`:

    * ``lr`` (PyTorch, decay step :math:`-\eta\lambda w`): :math:`\alpha_{\text{eff}}=\lambda/P`;
      for SGD simply :math:`\lambda` (L2 and decoupled decay coincide);
    * ``unscaled`` (TF-Addons, decay step :math:`-\lambda w`): :math:`\alpha_{\text{eff}}
      =\lambda/(\eta P)`: the seed's :math:`\alpha=\lambda/\eta` holds here (with :math:`P=1`);
    * ``schedule_multiplier`` (paper, step :math:`-\eta_t(\alpha P\nabla L+\lambda w)`):
      :math:`\alpha_{\text{eff}}=\lambda/(\alpha P)` with ``lr`` the base rate :math:`\alpha`:
      the seed's formula again, with :math:`\eta` read as the base rate.

    The fixed point is unchanged by ``decay_timing``/``decay_form`` to first order in :math:`s`.
    """
    if not (lr > 0 and preconditioner > 0):
        raise ConfigError("lr", lr, "lr and preconditioner must be > 0")
    scaling = DecayScaling(scaling)
    if scaling is DecayScaling.LR:
        return weight_decay / preconditioner
    return weight_decay / (lr * preconditioner)


def quadratic_fixed_point(a: float, w_star: float, alpha_eff: float) -> float:
    r"""Minimiser of :math:`\tfrac a2(w-w^\star)^2+\tfrac{\alpha}{2}w^2`: :math:`w=a w^\star/(a+\alpha)`.

    With :func:`effective_l2` this is where decoupled decay on :math:`L(w)=\tfrac a2(w-w^\star)^2`
    settles, e.g. :math:`w=a w^\star/(a+\lambda)` for PyTorch-style SGD with decay
    :math:`(1-\eta\lambda)w-\eta\nabla L`.
    """
    if a + alpha_eff <= 0:
        raise ConfigError("a", a, "a + alpha_eff must be > 0")
    return a * w_star / (a + alpha_eff)


def adam_direction_zero_grad(
    m_prev: float, v_prev: float, step: int, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
) -> float:
    r"""The Adam direction :math:`u_t` of step :math:`t` when the data gradient is zero.

    PyTorch convention (epsilon after bias correction):
    :math:`m_t=\beta_1 m_{t-1}`, :math:`v_t=\beta_2 v_{t-1}`,
    :math:`u_t=\dfrac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)}+\epsilon}`.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ConfigError("step", step, "must be an integer >= 1 (the step being taken)")
    m = beta1 * m_prev
    v = beta2 * v_prev
    m_hat = m / (1.0 - beta1**step)
    v_hat = v / (1.0 - beta2**step)
    return m_hat / (math.sqrt(v_hat) + eps)


def lambda_star(theta: float, u: float, lr: float, scaling: DecayScaling = DecayScaling.LR) -> float:
    r"""The :math:`\lambda_\star` at which decoupled decay exactly cancels the Adam step :math:`u`.

    Multiplicative decay before the step: the step is
    :math:`\theta_t-\theta_{t-1}=-s\theta_{t-1}-\eta u`, zero when :math:`s=-\eta u/\theta`:

    * ``lr`` (PyTorch): :math:`\eta\lambda\theta=-\eta u\Rightarrow\lambda_\star=-u/\theta`
      (independent of :math:`\eta`);
    * ``unscaled``: :math:`\lambda_\star=-\eta u/\theta`;
    * ``schedule_multiplier`` with a constant multiplier: :math:`\lambda_\star=-\alpha u/\theta`.

    With zero data gradient, ``u`` is :func:`adam_direction_zero_grad`. A positive
    :math:`\lambda_\star` exists only when the residual momentum pushes *away* from the origin
    (:math:`u\theta<0`); otherwise ConfigError.
    """
    if theta == 0.0:
        raise ConfigError("theta", theta, "must be non-zero (decay cannot act on 0)")
    scaling = DecayScaling(scaling)
    lam = -u / theta if scaling is DecayScaling.LR else -lr * u / theta
    if not lam > 0.0:
        raise ConfigError(
            "u",
            u,
            "the Adam step does not push away from the origin (u*theta >= 0): no positive lambda cancels it",
        )
    return lam


def _log_shrink(lrs: Sequence[float], lam: float) -> float:
    return math.fsum(math.log1p(-lr * lam) for lr in lrs)


def post_warmup_lambda(
    lrs: Sequence[float], warmup_steps: int, weight_decay: float, tol: float = 1e-15
) -> float:
    r"""The :math:`\lambda_{\text{post}}` that, applied only after the first ``warmup_steps``
    updates, gives the same cumulative shrinkage as ``weight_decay`` applied from step 1.

    Convention: PyTorch (``lr`` scaling, multiplicative), per-step rate ``lrs[t-1]`` for update
    :math:`t`; solves

    .. math:: \prod_{t=1}^{T}(1-\eta_t\lambda)=\prod_{t=W+1}^{T}(1-\eta_t\lambda_{\text{post}})

    by bisection on the (monotone) logarithm, over :math:`[0,1/\max_{t>W}\eta_t)` where every
    factor stays positive. See :func:`post_warmup_lambda_first_order` for the closed form.
    """
    lrs = [float(x) for x in lrs]
    if isinstance(warmup_steps, bool) or not 0 <= warmup_steps < len(lrs):
        raise ConfigError("warmup_steps", warmup_steps, f"must lie in [0, {len(lrs)})")
    if any(not (math.isfinite(x) and x >= 0) for x in lrs):
        raise ConfigError("lrs", lrs, "learning rates must be finite and >= 0")
    post = lrs[warmup_steps:]
    top = max(post)
    if top == 0.0:
        raise ConfigError("lrs", post, "the post-warmup learning rates are all zero")
    if any(lr * weight_decay >= 1.0 for lr in lrs):
        raise ConfigError("weight_decay", weight_decay, "lr_t * weight_decay must stay < 1")
    target = _log_shrink(lrs, weight_decay)
    lo, hi = 0.0, 1.0 / top
    if _log_shrink(post, hi * (1.0 - 1e-16)) > target:
        raise ConfigError("weight_decay", weight_decay, "no post-warmup lambda reaches it")
    while hi - lo > tol * max(hi, 1e-300):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if _log_shrink(post, mid) > target:  # not enough shrinkage yet
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def post_warmup_lambda_first_order(lrs: Sequence[float], warmup_steps: int, weight_decay: float) -> float:
    r"""First-order closed form :math:`\lambda_{\text{post}}\approx\lambda\sum_t\eta_t/
    \sum_{t>W}\eta_t` (from :math:`\ln(1-x)\approx -x`; relative error :math:`O(\eta\lambda)`)."""
    if isinstance(warmup_steps, bool) or not 0 <= warmup_steps < len(lrs):
        raise ConfigError("warmup_steps", warmup_steps, f"must lie in [0, {len(lrs)})")
    post = math.fsum(lrs[warmup_steps:])
    if post <= 0.0:
        raise ConfigError("lrs", list(lrs[warmup_steps:]), "post-warmup rates sum to zero")
    return weight_decay * math.fsum(lrs) / post


def scheduled_lrs(
    lr: float, schedule: Callable[[int], float], steps: int, post_increment: bool = False
) -> list[float]:
    r"""Per-update learning rates :math:`\eta_t=\alpha\,\eta(c_t)` for updates :math:`t=1..T`, with
    :math:`c_t=t-1` (``pre_increment``, Keras/Optax/PyTorch schedulers) or :math:`t`
    (``post_increment``, the paper)."""
    off = 1 if post_increment else 0
    return [lr * schedule(t - 1 + off) for t in range(1, steps + 1)]
