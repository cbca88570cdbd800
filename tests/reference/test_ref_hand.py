"""Single steps worked out by hand, one per profile and knob.

Most cases use dyadic hyperparameters so that every intermediate is exactly representable in
binary64 and the reference must reproduce the hand value *bit for bit*:

    beta1 = 1/2, beta2 = 3/4     -> 1-beta1 = 1/2, 1-beta2 = 1/4, bc1(1) = 1/2, bc2(1) = 1/4
    g = 3/4                      -> g^2 = 9/16
    from rest: m = (1/2) g = 3/8, v = (1/4)(9/16) = 9/64
               m_hat = m/bc1 = 3/4 = g, v_hat = v/bc2 = 9/16 = g^2, sqrt(v_hat) = 3/4 = |g|
    eps = 1/4                    -> denom = 1, u = m_hat/denom = 3/4
    lr = 1/8, weight_decay = 1/2 -> s = lr*wd = 1/16, lr*u = 3/32
    theta0 = 1

Where a square root is irrational the expected value is computed from the hand formula with
exact rationals and a 50-digit decimal square root, and the reference must agree within a
bound derived from its operation count (stated at each use).
"""

from __future__ import annotations

import math
from decimal import Decimal, getcontext
from fractions import Fraction as F

import pytest

from adamw_ref import (
    AdamWConfig,
    AmsgradMode,
    DecayForm,
    DecayScaling,
    DecayTiming,
    EpsPlacement,
    LinearWarmup,
    ScheduleCount,
    StepCountScope,
    get_profile,
    init,
    run_trajectory,
    step,
)

U64 = 2.0**-53
EXACT = {"lr": 0.125, "beta1": 0.5, "beta2": 0.75, "eps": 0.25, "weight_decay": 0.5}


def one_step(cfg: AdamWConfig, theta: float = 1.0, g: float = 0.75) -> float:
    params = {"w": [theta]}
    new, _ = step(params, {"w": [g]}, init(params, cfg), cfg)
    return new["w"][0]


def dsqrt(x: F) -> F:
    """sqrt of a rational to 50 significant digits (relative error < 1e-49)."""
    getcontext().prec = 50
    r = (Decimal(x.numerator) / Decimal(x.denominator)).sqrt()
    return F(r)


def assert_close(got: float, exact: F, rel_ulps: float, scale: F | None = None) -> None:
    """|got - exact| <= rel_ulps * u64 * scale (scale defaults to |exact|)."""
    s = abs(exact) if scale is None else scale
    assert abs(F(got) - exact) <= F(rel_ulps) * F(U64) * s, (got, float(exact))


@pytest.mark.parametrize(
    ("profile", "overrides", "expected"),
    [
        # torch: theta1 = theta0 (1 - lr wd) - lr u = 15/16 - 3/32 = 27/32
        ("torch", {}, F(27, 32)),
        # keras3 (eps hat = 1/8): sqrt(v) = 3/8, denom = 3/8 + 1/8 = 1/2, m_hat/denom = 3/2,
        # u = 3/2 * sqrt(bc2) = 3/2 * 1/2 = 3/4 (= torch with eps = eps_hat/sqrt(1-b2) = 1/4)
        ("keras3", {"eps": 0.125}, F(27, 32)),
        ("tf_keras", {"eps": 0.125}, F(27, 32)),
        # tfa: unscaled decay s = wd = 1/2: theta1 = 1/2 - 3/32 = 13/32
        ("tfa", {"eps": 0.125}, F(13, 32)),
        # hf_legacy: decay after the step, on the updated parameter:
        # (theta0 - lr u)(1 - lr wd) = (29/32)(15/16) = 435/512
        ("hf_legacy", {"eps": 0.125}, F(435, 512)),
        # onnx: after the step, unscaled: (29/32)(1 - 1/2) = 29/64
        ("onnx", {"eps": 0.125}, F(29, 64)),
        # mlx (no bias correction, eps 5/8): m = 3/8, sqrt(v) = 3/8, denom = 1, u = 3/8:
        # theta1 = 15/16 - (1/8)(3/8) = 57/64
        ("mlx", {"eps": 0.625}, F(57, 64)),
        # optax/apex/optimisers_jl: theta0 - lr (u + wd theta0) = 1 - (1/8)(3/4 + 1/2) = 27/32
        ("optax", {}, F(27, 32)),
        ("apex", {}, F(27, 32)),
        ("optimisers_jl", {}, F(27, 32)),
        # optimisers_jl couple=false: theta0 - (lr u + wd theta0) = 1 - 3/32 - 1/2 = 13/32
        ("optimisers_jl_decoupled", {}, F(13, 32)),
        # proximal (after the step): (theta0 - lr u)/(1 + s) = (29/32)/(17/16) = 29/34, one
        # correctly rounded division of exact operands
        ("proximal", {}, F(29, 34)),
        # adam_l2 (eps 3/4): g' = g + wd theta0 = 5/4, m_hat = 5/4, sqrt(v_hat) = 5/4,
        # denom = 2, u = 5/8: theta1 = 1 - (1/8)(5/8) = 59/64 (no separate shrink)
        ("adam_l2", {"eps": 0.75}, F(59, 64)),
        # paper, post-increment with eta = LinearWarmup(2): first update at c = 1, eta = 1/2:
        # lr_t = alpha eta = 1/16, s = eta wd = 1/4: theta1 = 3/4 - (1/16)(3/4) = 45/64
        ("paper", {"lr_schedule": LinearWarmup(2)}, F(45, 64)),
    ],
)
def test_first_step_from_rest_exact(profile: str, overrides: dict[str, object], expected: F) -> None:
    cfg = get_profile(profile).config.replace(**{**EXACT, **overrides})
    got = one_step(cfg)
    assert got == float(expected)  # float(Fraction) is correctly rounded


def test_paper_pre_increment_sees_eta0() -> None:
    # The same paper update with the pre-increment count sees eta(0) = 0: no step and no decay,
    # though m and v are updated.
    cfg = get_profile("paper").config.replace(
        **EXACT, lr_schedule=LinearWarmup(2), schedule_count=ScheduleCount.PRE_INCREMENT
    )
    params = {"w": [1.0]}
    new, st = step(params, {"w": [0.75]}, init(params, cfg), cfg)
    assert new["w"] == (1.0,)
    assert st.m["w"] == (0.375,) and st.v["w"] == (9 / 64,)


def test_maximize_flips_the_gradient() -> None:
    # g -> -3/4: u = -3/4, theta1 = 15/16 + 3/32 = 33/32
    cfg = get_profile("torch").config.replace(**EXACT, maximize=True)
    assert one_step(cfg) == float(F(33, 32))


def test_nesterov_optax_form() -> None:
    # NAdamW: m_hat = b1 m/(1 - b1^2) + (1 - b1) g/(1 - b1) = (1/2)(3/8)/(3/4) + 3/4 = 1/4 + 3/4 = 1
    # denom = 3/4 + 1/4 = 1, u = 1; optax form: theta1 = 1 - (1/8)(1 + 1/2) = 13/16
    cfg = get_profile("optax").config.replace(**EXACT, nesterov=True)
    assert one_step(cfg) == float(F(13, 16))


def test_second_step_torch() -> None:
    # step 2 with g2 = -1/4 from m1 = 3/8, v1 = 9/64, theta1 = 27/32:
    # m2 = (3/8)/2 + (-1/4)/2 = 1/16;  v2 = (3/4)(9/64) + (1/4)(1/16) = 31/256
    # bc1 = 3/4, bc2 = 7/16: m_hat = 1/12, v_hat = 31/112
    # theta2 = (27/32)(15/16) - (1/8) (1/12)/(sqrt(31/112) + 1/4)
    cfg = get_profile("torch").config.replace(**EXACT)
    traj = run_trajectory({"w": [1.0]}, [{"w": [0.75]}, {"w": [-0.25]}], cfg)
    st = traj.states[2]
    assert st.m["w"] == (1 / 16,) and st.v["w"] == (31 / 256,)  # exact dyadics
    shrunk = F(27, 32) * F(15, 16)
    upd = F(1, 8) * F(1, 12) / (dsqrt(F(31, 112)) + F(1, 4))
    # Bound: shrunk is exact (27/32*15/16 = 405/512); the Adam term passes through 6 roundings
    # (m/bc1, v/bc2, sqrt, +eps, /, *lr) -> relative <= 6u (plus 1e-49 from the decimal sqrt);
    # the final subtraction adds u|theta2|. So |err| <= 6u*upd + u*|theta2| <= 7u*(shrunk+upd).
    assert_close(traj.params[2]["w"][0], shrunk - upd, 7, scale=shrunk + upd)


def test_amsgrad_raw_v_vs_bias_corrected() -> None:
    # g1 = 1, g2 = 0 (theta irrelevant: wd = 0). v1 = 1/4, v2 = (3/4)(1/4) = 3/16; m2 = 1/4.
    # bc1(2) = 3/4 -> m_hat = 1/3; bc2(1) = 1/4, bc2(2) = 7/16.
    # raw_v (PyTorch): v_max = max(1/4, 3/16) = 1/4, v_hat = (1/4)/(7/16) = 4/7
    #   u = (1/3)/(sqrt(4/7) + 1/4)
    # bias_corrected_v (optax.amsgrad): max(v1/bc2(1), v2/bc2(2)) = max(1, 3/7) = 1
    #   u = (1/3)/(1 + 1/4) = 4/15
    base = AdamWConfig(**{**EXACT, "weight_decay": 0.0}, amsgrad=True)
    grads = [{"w": [1.0]}, {"w": [0.0]}]
    for mode, u in [
        (AmsgradMode.RAW_V, F(1, 3) / (dsqrt(F(4, 7)) + F(1, 4))),
        (AmsgradMode.BIAS_CORRECTED_V, F(4, 15)),
    ]:
        cfg = base.replace(amsgrad_mode=mode)
        traj = run_trajectory({"w": [0.0]}, grads, cfg)
        theta1 = F(traj.params[1]["w"][0])
        # theta2 = theta1 - lr u; the Adam term has <= 6 roundings, the subtraction one more.
        assert_close(traj.params[2]["w"][0], theta1 - F(1, 8) * u, 8, scale=abs(theta1) + u / 8)
    raw = run_trajectory({"w": [0.0]}, grads, base).states[2].v_max
    cor = (
        run_trajectory({"w": [0.0]}, grads, base.replace(amsgrad_mode=AmsgradMode.BIAS_CORRECTED_V))
        .states[2]
        .v_max
    )
    assert raw == {"w": (0.25,)} and cor == {"w": (1.0,)}


def test_bias_correction_offset_one() -> None:
    # offset 1: the first update uses k = 2: bc1 = 3/4, bc2 = 7/16;
    # m_hat = (3/8)/(3/4) = 1/2, v_hat = (9/64)/(7/16) = 9/28
    # theta1 = 15/16 - (1/8)(1/2)/(sqrt(9/28) + 1/4)
    cfg = get_profile("torch").config.replace(**EXACT, bias_correction_offset=1)
    exact = F(15, 16) - F(1, 8) * F(1, 2) / (dsqrt(F(9, 28)) + F(1, 4))
    assert_close(one_step(cfg), exact, 8, scale=F(2))


@pytest.mark.parametrize("scope", list(StepCountScope))
def test_frozen_parameter_and_step_scope(scope: StepCountScope) -> None:
    # Parameter b is frozen (None) at step 1: it must not change at all (no decay either).
    # At step 2 it gets its first gradient 3/4:
    #   per_parameter: k = 1 -> u = 3/4 -> theta_b = 27/32 exactly
    #   global:        k = 2 -> m_hat = 1/2, v_hat = 9/28 -> 15/16 - (1/8)(1/2)/(sqrt(9/28)+1/4)
    cfg = get_profile("torch").config.replace(**EXACT, step_count_scope=scope)
    traj = run_trajectory(
        {"a": [1.0], "b": [1.0]},
        [{"a": [0.75], "b": None}, {"a": [0.75], "b": [0.75]}],
        cfg,
    )
    assert traj.params[1]["b"] == (1.0,)
    assert traj.states[1].m["b"] == (0.0,) and traj.states[1].param_steps["b"] == 0
    if scope is StepCountScope.PER_PARAMETER:
        assert traj.params[2]["b"][0] == float(F(27, 32))
    else:
        exact = F(15, 16) - F(1, 8) * F(1, 2) / (dsqrt(F(9, 28)) + F(1, 4))
        assert_close(traj.params[2]["b"][0], exact, 8, scale=F(2))


def test_group_lr_and_decay_mask() -> None:
    # exclude_from_decay: s = 0 for "bias": theta1 = 1 - 3/32 = 29/32; group lr 1/4 for "w":
    # theta1 = 15/16... with lr 1/4: s = 1/8, theta1 = 7/8 - (1/4)(3/4) = 11/16
    from adamw_ref import ParamGroup

    cfg = get_profile("torch").config.replace(**EXACT).exclude_from_decay(["bias"])
    cfg = cfg.replace(groups=(*cfg.groups, ParamGroup(names=("w",), lr=0.25)))
    params = {"w": [1.0], "bias": [1.0]}
    new, _ = step(params, {"w": [0.75], "bias": [0.75]}, init(params, cfg), cfg)
    assert new == {"w": (float(F(11, 16)),), "bias": (float(F(29, 32)),)}


def test_eps_root_inside_sqrt() -> None:
    # optax eps_root: denom = sqrt(v_hat + eps_root) + eps; with eps = 0, eps_root = 7/16:
    # sqrt(9/16 + 7/16) = 1, u = 3/4 -> optax theta1 = 1 - (1/8)(3/4 + 1/2) = 27/32
    cfg = get_profile("optax").config.replace(**{**EXACT, "eps": 0.0}, eps_root=0.4375)
    assert one_step(cfg) == float(F(27, 32))


def test_decay_forms_and_timings_grid() -> None:
    # The four decoupled combinations from the same x = theta0 - lr u = 29/32 (after) or
    # theta0 (before), with s = 1/16:
    #   multiplicative/before: 15/16 - 3/32 = 27/32      multiplicative/after: (29/32)(15/16)
    #   proximal/before: 16/17 - 3/32 (two roundings)   proximal/after: (29/32)/(17/16) = 29/34
    base = get_profile("torch").config.replace(**EXACT)
    mb = one_step(base)
    ma = one_step(base.replace(decay_timing=DecayTiming.AFTER_STEP))
    pb = one_step(base.replace(decay_form=DecayForm.PROXIMAL))
    pa = one_step(base.replace(decay_form=DecayForm.PROXIMAL, decay_timing=DecayTiming.AFTER_STEP))
    nd = one_step(base.replace(decay_form=DecayForm.NONE))
    assert mb == float(F(27, 32)) and ma == float(F(435, 512)) and pa == float(F(29, 34))
    assert_close(pb, F(16, 17) - F(3, 32), 2, scale=F(1))
    assert nd == float(F(29, 32))


def test_seed_zero_gradient_adamw_is_pure_shrink() -> None:
    # Seed: one step from rest with zero data gradient: m = v = 0, u = 0/(0 + eps) = 0, so
    # AdamW gives theta1 = (1 - eta lambda) theta0, computed as PyTorch writes it:
    # param.mul_(1 - lr * weight_decay) with the factor in binary64.
    lr, wd = 1e-3, 1e-2
    cfg = get_profile("torch").config.replace(lr=lr, weight_decay=wd)
    w0 = [1.0, -3.0, 0.25, 1e-300]
    new, _ = step({"w": w0}, {"w": [0.0] * 4}, init({"w": w0}, cfg), cfg)
    assert list(new["w"]) == [x * (1 - lr * wd) for x in w0]
    for x, y in zip(w0, new["w"]):  # and within 2 roundings of the exact (1 - s) theta0
        assert abs(F(y) - F(x) * (1 - F(lr) * F(wd))) <= 3 * F(U64) * abs(F(x))


def test_seed_zero_gradient_adam_l2_steps_by_about_lr() -> None:
    # Seed: Adam+L2 with zero data gradient: g = lambda w0, m_hat = g, v_hat = g^2,
    # u = g/(|g| + eps) = sign(w0) * lambda|w0|/(lambda|w0| + eps): a step of ~ lr*sign(w0),
    # not proportional to w0.
    lr, wd, eps = 1e-3, 1e-2, 1e-8
    cfg = get_profile("adam_l2").config.replace(lr=lr, weight_decay=wd, eps=eps)
    w0 = [1.0, -3.0, 0.25]
    new, _ = step({"w": w0}, {"w": [0.0] * 3}, init({"w": w0}, cfg), cfg)
    for x, y in zip(w0, new["w"]):
        g = F(wd) * F(x)
        exact = F(x) - F(lr) * g / (abs(g) + F(eps))
        # ~10 roundings in the Adam term, one in the subtraction: bound 12u(|x| + lr)
        assert_close(y, exact, 12, scale=abs(F(x)) + F(lr))
        step_size = abs(F(x) - F(y))
        assert abs(step_size - F(lr)) <= F(lr) * F(1, 10**5)  # |step| = lr (1 - O(eps/(lam|w|)))
        assert math.copysign(1.0, x - y) == math.copysign(1.0, x)


def test_realistic_first_step_torch_defaults() -> None:
    # torch defaults lr = 1e-3, wd = 1e-2, eps = 1e-8, g = 0.1, theta0 = 1 (the binary64 values of
    # those literals). From rest m_hat = g and v_hat = g^2 in exact arithmetic, so
    # theta1 = theta0 (1 - lr wd) - lr g/(|g| + eps).
    # Roundings: decay term 3 (lr*wd, 1-s, *theta), Adam term ~9 (m: 2, v: 3, bc: 2, /, /, sqrt,
    # +eps, /, *lr); so |err| <= 12u (theta0 (1 - s) + lr |u|) + u|theta1|.
    lr, wd, eps, g = 1e-3, 1e-2, 1e-8, 0.1
    cfg = get_profile("torch").config.replace(lr=lr, weight_decay=wd, eps=eps)
    got = one_step(cfg, theta=1.0, g=g)
    Fl, Fw, Fe, Fg = F(lr), F(wd), F(eps), F(g)
    exact = (1 - Fl * Fw) - Fl * Fg / (Fg + Fe)
    assert_close(got, exact, 13, scale=F(2))


def test_unscaled_and_schedule_multiplier_decay_with_lr_schedule() -> None:
    # lr schedule Constant-like LinearWarmup(4, start=1/2) at c = 0 gives eta = 1/2.
    # lr scaling: s = lr eta wd = (1/8)(1/2)(1/2) = 1/32; schedule_multiplier: s = eta wd = 1/4;
    # unscaled: s = wd = 1/2. lr_t = 1/16, lr_t u = 3/64.
    base = get_profile("torch").config.replace(**EXACT, lr_schedule=LinearWarmup(4, start=0.5))
    expect = {
        DecayScaling.LR: F(31, 32) - F(3, 64),
        DecayScaling.SCHEDULE_MULTIPLIER: F(3, 4) - F(3, 64),
        DecayScaling.UNSCALED: F(1, 2) - F(3, 64),
    }
    for scaling, exact in expect.items():
        assert one_step(base.replace(decay_scaling=scaling)) == float(exact)


def test_eps_hat_equals_torch_with_scaled_eps_exact() -> None:
    # eps_hat = 1/8 <-> eps = eps_hat/sqrt(bc2) = 1/4 at k = 1 (exact dyadic case)
    keras = AdamWConfig(**{**EXACT, "eps": 0.125}, eps_placement=EpsPlacement.BEFORE_BIAS_CORRECTION)
    torch = AdamWConfig(**EXACT)
    assert one_step(keras, g=-0.75) == one_step(torch, g=-0.75) == float(F(15, 16) + F(3, 32))
