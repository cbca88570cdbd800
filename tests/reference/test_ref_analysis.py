"""The seeds' analysis helpers, checked against simulations with the reference itself.

Each test states the convention (see adamw_ref.analysis and docs/spec.md) under which the seed
formula is claimed to hold.
"""

from __future__ import annotations

import math
from fractions import Fraction as F

import pytest

from adamw_ref import (
    ConfigError,
    DecayForm,
    DecayScaling,
    Delayed,
    LinearWarmup,
    State,
    get_profile,
    init,
    step,
)
from adamw_ref.analysis import (
    adam_direction_zero_grad,
    decay_strength,
    effective_l2,
    half_life,
    half_life_small_s,
    lambda_star,
    post_warmup_lambda,
    post_warmup_lambda_first_order,
    quadratic_fixed_point,
    scheduled_lrs,
)

U64 = 2.0**-53


def first_step_at_or_below_half(cfg, w0: float = 1.0, limit: int = 200_000) -> int:
    """Run the reference with zero gradient until the parameter is <= w0/2."""
    p = {"w": (w0,)}
    st = init(p, cfg)
    g = {"w": (0.0,)}
    for t in range(1, limit):
        p, st = step(p, g, st, cfg)
        if p["w"][0] <= w0 / 2:
            return t
    raise AssertionError("no crossing")


def test_seed_half_life_value() -> None:
    # Seed: eta = 1e-3, lambda = 1e-2 (PyTorch convention s = eta*lambda = 1e-5):
    # t_1/2 = -ln2/ln(1 - 1e-5) "approximately 69315 steps"; ln2/s = 69314.718...
    s = decay_strength(1e-3, 1e-2, DecayScaling.LR)
    assert s == pytest.approx(1e-5, rel=1e-15)
    t = half_life(s)
    assert abs(t - 69315) < 1
    # series: -ln(1-s) = s + s^2/2 + ..., so t = (ln2/s)(1 - s/2 + O(s^2)): the exact half-life
    # is shorter than ln2/s by ~ ln2/2 = 0.35 steps
    assert half_life_small_s(s) - t == pytest.approx(math.log(2) / 2, rel=1e-4)


def test_seed_half_life_simulated_torch() -> None:
    # The torch profile with zero gradient from rest: u = 0/(0 + eps) = 0, theta_t = (1-s)^t.
    # (1-s)^69314 = 0.5 (1-s)^-0.37 > 1/2 and (1-s)^69315 = 0.5 (1-s)^0.63 < 1/2, a margin of
    # ~3.7e-6 relative, far above the accumulated rounding (<= 69315 * 3u ~ 2.3e-11).
    cfg = get_profile("torch").config.replace(lr=1e-3, weight_decay=1e-2)
    crossing = first_step_at_or_below_half(cfg)
    assert crossing == math.ceil(half_life(1e-5)) == 69315


def test_half_life_proximal_simulated() -> None:
    # proximal (theta/(1+s)^t): t_1/2 = ln2/ln(1+s); with s = 1e-3: 693.49 -> crosses at 694,
    # while the multiplicative form (692.80) crosses at 693: the two differ by ~s*t/... steps.
    s = 1e-3
    tp, tm = half_life(s, DecayForm.PROXIMAL), half_life(s)
    assert math.ceil(tp) == 694 and math.ceil(tm) == 693
    prox = get_profile("proximal").config.replace(lr=1e-2, weight_decay=0.1)
    torch = get_profile("torch").config.replace(lr=1e-2, weight_decay=0.1)
    assert first_step_at_or_below_half(prox) == 694
    assert first_step_at_or_below_half(torch) == 693
    # small-s approximation: proximal exact is longer than ln2/s, multiplicative shorter
    assert tm < half_life_small_s(s) < tp


def sgd_fixed_point(a: float, w_star: float, lr: float, wd: float, scaling: DecayScaling) -> float:
    """Test-local SGD with decoupled decay on L = a/2 (w - w*)^2, iterated to convergence:
    w <- (1 - s) w - lr a (w - w*), s = lr*wd (PyTorch) or wd (unscaled)."""
    s = lr * wd if scaling is DecayScaling.LR else wd
    w = 0.0
    for _ in range(2000):
        w = (1 - s) * w - lr * a * (w - w_star)
    return w


@pytest.mark.parametrize("scaling", [DecayScaling.LR, DecayScaling.UNSCALED])
def test_effective_l2_fixed_point(scaling: DecayScaling) -> None:
    # Fixed point of w <- (1-s)w - lr a (w - w*):  s w = -lr a (w - w*)
    #   => a (w - w*) + (s/lr) w = 0  => minimiser of L + (alpha/2) w^2, alpha = s/lr.
    # PyTorch (s = lr wd): alpha = wd, w = a w*/(a + wd);
    # unscaled (s = wd): alpha = wd/lr (the seed's "alpha = lambda/eta").
    a, w_star, lr, wd = 2.0, 3.0, 0.1, 0.05
    alpha = effective_l2(lr, wd, scaling)
    assert alpha == (wd if scaling is DecayScaling.LR else wd / lr)
    expected = quadratic_fixed_point(a, w_star, alpha)
    assert sgd_fixed_point(a, w_star, lr, wd, scaling) == pytest.approx(expected, rel=1e-12)


def test_seed_alpha_over_eta_does_not_hold_for_torch_convention() -> None:
    # The seed's alpha = lambda/eta with PyTorch-style decay would predict a w*/(a + wd/lr) = 2.4
    # for a = 2, w* = 3, lr = 0.1, wd = 0.05; the actual fixed point is a w*/(a + wd) = 2.926...
    got = sgd_fixed_point(2.0, 3.0, 0.1, 0.05, DecayScaling.LR)
    assert got == pytest.approx(6 / 2.05, rel=1e-12)
    assert abs(got - 2.4) > 0.5


def test_effective_l2_with_preconditioner() -> None:
    # fixed preconditioner P (step -lr P grad): alpha_eff = lambda/P (PyTorch convention)
    assert effective_l2(0.1, 0.05, DecayScaling.LR, preconditioner=4.0) == 0.05 / 4
    assert effective_l2(0.1, 0.05, DecayScaling.UNSCALED, preconditioner=4.0) == 0.05 / 0.4


def residual_state(m: float, v: float, t: int) -> State[float]:
    return State(step=t, param_steps={"w": t}, m={"w": (m,)}, v={"w": (v,)}, v_max=None)


@pytest.mark.parametrize("scaling", [DecayScaling.LR, DecayScaling.UNSCALED])
def test_lambda_star_cancels_residual_momentum(scaling: DecayScaling) -> None:
    # Zero data gradient, m_{t-1} = -0.05 pushes theta = 2 away from the origin (u < 0).
    # Torch convention: theta_t = theta (1 - lr lam) - lr u = theta  <=>  lam = -u/theta.
    # Unscaled: theta (1 - lam) - lr u = theta <=> lam = -lr u/theta.
    theta, m, v, t, lr = 2.0, -0.05, 0.01, 10, 1e-2
    u = adam_direction_zero_grad(m, v, t + 1)
    lam = lambda_star(theta, u, lr, scaling)
    cfg = get_profile("torch").config.replace(lr=lr, decay_scaling=scaling)
    for factor, sign in [(1.0, 0), (2.0, -1), (0.5, 1)]:
        new, _ = step(
            {"w": (theta,)}, {"w": (0.0,)}, residual_state(m, v, t), cfg.replace(weight_decay=lam * factor)
        )
        d = new["w"][0] - theta
        if sign == 0:
            # theta(1 - s) - lr u with s*theta = -lr u: ~8 roundings each of size <= u*theta
            assert abs(d) <= 8 * U64 * theta
        else:
            assert math.copysign(1, d) == sign and abs(d) > 1e-6
    # and adam_direction_zero_grad is the reference's own u: with wd = 0, theta1 = theta - lr u
    new, _ = step({"w": (theta,)}, {"w": (0.0,)}, residual_state(m, v, t), cfg.replace(weight_decay=0.0))
    assert (theta - new["w"][0]) / lr == pytest.approx(u, rel=1e-12)


def test_lambda_star_hand_value() -> None:
    # m_{t-1} = -0.05, v_{t-1} = 0.01, t = 1 step taken before (this is step 2), b = (1/2, 3/4):
    # m = -1/40, v = 3/400, m_hat = (-1/40)/(3/4) = -1/30, v_hat = (3/400)/(7/16) = 3/175
    # eps = 0: u = -(1/30)/sqrt(3/175); lambda* = -u/theta with theta = 1/2
    u = adam_direction_zero_grad(-0.05, 0.01, 2, beta1=0.5, beta2=0.75, eps=0.0)
    exact_u = -(1 / 30) / math.sqrt(3 / 175)
    assert u == pytest.approx(exact_u, rel=4 * U64 * 8)
    assert lambda_star(0.5, u, 1e-3) == pytest.approx(-exact_u / 0.5, rel=1e-14)


def test_lambda_star_without_outward_push_raises() -> None:
    with pytest.raises(ConfigError) as info:
        lambda_star(1.0, 0.3, 1e-3)
    assert info.value.field == "u"
    with pytest.raises(ConfigError) as info:
        lambda_star(0.0, -0.3, 1e-3)
    assert info.value.field == "theta"


def test_post_warmup_lambda_matches_reference_simulation() -> None:
    # Warmup W = 100 of T = 600 updates, lr 1e-2 * LinearWarmup(100), lambda = 0.5 from step 1,
    # versus lambda_post only after warmup (wd_schedule Delayed(100): updates 101.. decay, as
    # the pre-increment count c = t-1 >= 100). Zero gradient -> pure shrinkage.
    # Bound: each update rounds lr_t, s, 1-s and the product: 4 roundings -> 4Tu relative per
    # run, 8Tu between the two runs (bisection tolerance 1e-15 adds << that).
    W, T, lr, lam = 100, 600, 1e-2, 0.5
    sched = LinearWarmup(W)
    lrs = scheduled_lrs(lr, sched, T)
    lam_post = post_warmup_lambda(lrs, W, lam)
    base = get_profile("torch").config.replace(lr=lr, lr_schedule=sched)
    a = base.replace(weight_decay=lam)
    b = base.replace(weight_decay=lam_post, wd_schedule=Delayed(W))
    pa, pb = {"w": (1.0,)}, {"w": (1.0,)}
    sa, sb = init(pa, a), init(pb, b)
    g = {"w": (0.0,)}
    for _ in range(T):
        pa, sa = step(pa, g, sa, a)
        pb, sb = step(pb, g, sb, b)
    assert abs(pa["w"][0] / pb["w"][0] - 1) <= 8 * T * U64 + 1e-14
    assert pa["w"][0] < 0.2  # a meaningful amount of shrinkage happened
    # exact-rational check of the defining identity with the solved value (log form, 1e-13)
    lhs = math.fsum(math.log1p(-x * lam) for x in lrs)
    rhs = math.fsum(math.log1p(-x * lam_post) for x in lrs[W:])
    assert abs(lhs - rhs) <= 1e-13 * abs(lhs)


def test_post_warmup_first_order_closed_form() -> None:
    # lambda_post ~ lambda * sum(lr_t) / sum_{t>W} lr_t; with linear warmup over W the warmup sum
    # is lr*W/2 (c = 0..W-1: lr*(W-1)/2 exactly), so for W = 100, T = 600:
    # sum = lr*(99/2 + 500), post = 500 lr -> ratio = (1099/2)/500 = 1.099
    W, T, lr, lam = 100, 600, 1e-2, 0.5
    lrs = scheduled_lrs(lr, LinearWarmup(W), T)
    first = post_warmup_lambda_first_order(lrs, W, lam)
    assert first == pytest.approx(lam * float(F(1099, 1000)), rel=1e-13)
    exact = post_warmup_lambda(lrs, W, lam)
    # ln(1-x) = -x - x^2/2 - ...: relative gap O(max lr_t * lambda) = O(5e-3)
    assert abs(first / exact - 1) <= 2 * lr * exact
    assert first != exact


def test_post_warmup_zero_warmup_is_identity() -> None:
    lrs = [1e-3] * 50
    assert post_warmup_lambda(lrs, 0, 0.1) == pytest.approx(0.1, rel=1e-14)


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -1e-3, math.nan, math.inf])
def test_half_life_rejects_bad_strength(bad: float) -> None:
    with pytest.raises(ConfigError) as info:
        half_life(bad)
    assert info.value.field == "s"


def test_half_life_rejects_coupled_form() -> None:
    with pytest.raises(ConfigError) as info:
        half_life(1e-3, DecayForm.COUPLED_L2)
    assert info.value.field == "form"


def test_post_warmup_validation() -> None:
    with pytest.raises(ConfigError) as info:
        post_warmup_lambda([1e-3] * 10, 10, 0.1)
    assert info.value.field == "warmup_steps"
    with pytest.raises(ConfigError) as info:
        post_warmup_lambda([1e-3, math.nan], 0, 0.1)
    assert info.value.field == "lrs"
