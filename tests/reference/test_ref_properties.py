"""Properties of the specification (hypothesis): geometry of decay, SGD equivalence, proximal vs
multiplicative, and the Keras epsilon-hat identity. Every tolerance is derived in a comment
(u = 2^-53, one rounding to nearest has relative error <= u)."""

from __future__ import annotations

import math
from fractions import Fraction as F

from hypothesis import given
from hypothesis import strategies as st

from adamw_ref import (
    AdamWConfig,
    Constant,
    DecayForm,
    DecayScaling,
    DecayTiming,
    State,
    get_profile,
    init,
    step,
)

U = 2.0**-53

mag = st.floats(min_value=1e-3, max_value=1e3)
signed = st.builds(lambda x, s: x if s else -x, mag, st.booleans())
vecs = st.lists(signed, min_size=2, max_size=5)
grad = st.floats(min_value=-10.0, max_value=10.0)

DECOUPLED = [
    "torch",
    "keras3",
    "tf_keras",
    "tfa",
    "paper",
    "hf_legacy",
    "onnx",
    "mlx",
    "optax",
    "apex",
    "optimisers_jl",
    "optimisers_jl_decoupled",
    "proximal",
]


def state_with(v: list[float], m: list[float] | None = None, t: int = 5) -> State[float]:
    n = len(v)
    return State(step=t, param_steps={"w": t}, m={"w": tuple(m or [0.0] * n)}, v={"w": tuple(v)}, v_max=None)


@given(theta=vecs, data=st.data(), lr=st.floats(1e-4, 1e-1), wd=st.floats(1e-3, 1.0))
def test_decoupled_decay_keeps_direction(
    theta: list[float], data: st.DataObject, lr: float, wd: float
) -> None:
    # Zero gradient and zero momentum (arbitrary, unequal v): the Adam term is 0/denom = 0, so
    # every decoupled profile maps theta to c*theta with ONE scalar c (1-s, 1/(1+s), or
    # 1-lr*wd via theta - lr*(0 + wd*theta)): the direction is kept. Each element carries at most
    # 3 roundings, so theta1_i/theta0_i agree across i within 2*3u (second order ignored: *1.01).
    v = data.draw(st.lists(st.floats(1e-8, 1e2), min_size=len(theta), max_size=len(theta)))
    for name in DECOUPLED:
        cfg = get_profile(name).config.replace(lr=lr, weight_decay=wd * 0.5)
        new, _ = step({"w": theta}, {"w": [0.0] * len(theta)}, state_with(v), cfg)
        ratios = [y / x for x, y in zip(theta, new["w"])]
        assert max(ratios) - min(ratios) <= 6.06 * U * max(ratios), name
        assert 0 < min(ratios) < 1, name


@given(theta=vecs, lr=st.floats(1e-4, 1e-1), wd=st.floats(1e-3, 1.0))
def test_multiplicative_decay_is_the_same_rounded_product(theta: list[float], lr: float, wd: float) -> None:
    # torch from rest with zero gradient: theta1_i = fl(theta_i * fl(1 - fl(lr*wd))), exactly as
    # PyTorch writes param.mul_(1 - lr*weight_decay): parallel up to one rounding per element.
    cfg = get_profile("torch").config.replace(lr=lr, weight_decay=wd)
    p = {"w": theta}
    new, _ = step(p, {"w": [0.0] * len(theta)}, init(p, cfg), cfg)
    c = 1 - lr * wd
    assert list(new["w"]) == [x * c for x in theta]


@given(
    w=st.floats(0.1, 10.0), ratio=st.floats(10.0, 1e4), v2=st.floats(1e-6, 1e-2), lam=st.floats(1e-3, 1e-1)
)
def test_coupled_decay_with_unequal_v_rotates(w: float, ratio: float, v2: float, lam: float) -> None:
    # The seed's thought experiment: w1 = w2 = w, zero data gradient, v1 = ratio*v2 > v2.
    # adam_l2: g = lam*w, m = (1-b1) g, v_i' = b2 v_i + (1-b2) g^2,
    # shrink_i = lr (m/bc1)/(sqrt(v_i'/bc2) + eps): the "volatile" w1 (large v) shrinks LESS.
    # Decoupled (torch) shrinks both by the same factor.
    lr, t = 1e-2, 5
    theta = [w, w]
    v = [v2 * ratio, v2]
    cpl = get_profile("adam_l2").config.replace(lr=lr, weight_decay=lam)
    dec = get_profile("torch").config.replace(lr=lr, weight_decay=lam)
    g0 = {"w": [0.0, 0.0]}
    c_new, _ = step({"w": theta}, g0, state_with(v, t=t), cpl)
    d_new, _ = step({"w": theta}, g0, state_with(v, t=t), dec)
    assert d_new["w"][0] == d_new["w"][1]
    # hand formula (binary64, relative error ~1e-15):
    b1, b2, eps, k = 0.9, 0.999, 1e-8, t + 1
    g = lam * w
    m_hat = (1 - b1) * g / (1 - b1**k)
    shrink = [lr * m_hat / (math.sqrt((b2 * vi + (1 - b2) * g * g) / (1 - b2**k)) + eps) for vi in v]
    got = [w - x for x in c_new["w"]]
    for a, b in zip(got, shrink):
        assert abs(a - b) <= 1e-9 * b + 8 * U * w  # ~10 roundings on b; subtraction on w
    assert got[0] < got[1]  # anisotropic: w1 (large v) is shrunk less
    # rotation: the 2-D cross product theta0 x theta1 = w*(t1_1 - t1_0) is non-zero
    assert c_new["w"][1] - c_new["w"][0] < 0


def sgd_reference_config(lr: float, wd: float, form: DecayForm) -> AdamWConfig:
    """SGD expressed in the reference: beta1 = 0 (m = g), no bias correction, eps = 1e30 so that
    sqrt(v) + eps == eps exactly (sqrt(v) <= 1e3 < ulp(1e30)/2), base rate 1e30 * lr and decay
    scaled by the schedule multiplier only (s = eta*lambda with eta = Constant(lr))."""
    return AdamWConfig(
        lr=1e30,
        beta1=0.0,
        eps=1e30,
        bias_correction=False,
        weight_decay=wd,
        decay_form=form,
        decay_scaling=DecayScaling.SCHEDULE_MULTIPLIER,
        lr_schedule=Constant(lr),
    )


def sgd_exact(theta: list[F], grads: list[list[F]], lr: F, wd: F, coupled: bool) -> list[F]:
    """Test-local exact SGD: coupled theta - lr (g + wd theta); decoupled (1 - lr wd) theta - lr g."""
    for g in grads:
        if coupled:
            theta = [x - lr * (gi + wd * x) for x, gi in zip(theta, g)]
        else:
            theta = [(1 - lr * wd) * x - lr * gi for x, gi in zip(theta, g)]
    return theta


@given(
    theta=st.lists(st.floats(-10, 10), min_size=1, max_size=3),
    steps=st.integers(1, 5),
    data=st.data(),
    lr=st.floats(1e-3, 0.5),
    wd=st.floats(0, 0.5),
)
def test_sgd_l2_equals_decoupled(
    theta: list[float], steps: int, data: st.DataObject, lr: float, wd: float
) -> None:
    # For SGD, coupled L2 and decoupled decay are the same map (exact rational check of the
    # test-local SGD), and the reference in its SGD configuration reproduces both within
    # rounding: per step each term carries <= 6 roundings (u = g/1e30, lr_t = 1e30*lr, product,
    # decay factor, products, subtraction), so per step |err| <= 8u (|theta| + lr|g| + s|theta|)
    # and the total over `steps` <= sum of those (|theta| <= 10 + 5*0.5*10 stays < 40).
    n = len(theta)
    grads = [data.draw(st.lists(grad, min_size=n, max_size=n)) for _ in range(steps)]
    fl = [F(x) for x in theta]
    fg = [[F(x) for x in g] for g in grads]
    exact_c = sgd_exact(fl, fg, F(lr), F(wd), coupled=True)
    exact_d = sgd_exact(fl, fg, F(lr), F(wd), coupled=False)
    assert exact_c == exact_d
    bound = steps * 8 * U * (40 + 0.5 * 10 + 0.5 * 40)
    for form in (DecayForm.COUPLED_L2, DecayForm.MULTIPLICATIVE):
        cfg = sgd_reference_config(lr, wd, form)
        p = {"w": theta}
        s = init(p, cfg)
        for g in grads:
            p, s = step(p, {"w": g}, s, cfg)
        for got, want in zip(p["w"], exact_d):
            assert abs(F(got) - want) <= F(bound), form


def test_adam_l2_differs_from_adamw() -> None:
    # ...whereas with adaptivity they differ: the same data, real eps, one step from rest with
    # zero data gradient: AdamW shrinks by lr*wd*theta = 1e-5, Adam+L2 steps by ~lr = 1e-3.
    p, g = {"w": [1.0]}, {"w": [0.0]}
    a = get_profile("torch").config.replace(lr=1e-3, weight_decay=1e-2)
    b = get_profile("adam_l2").config.replace(lr=1e-3, weight_decay=1e-2)
    da = 1.0 - step(p, g, init(p, a), a)[0]["w"][0]
    db = 1.0 - step(p, g, init(p, b), b)[0]["w"][0]
    assert abs(da - 1e-5) < 1e-12 and abs(db - 1e-3) < 1e-8


@given(
    theta=st.floats(-100, 100).filter(lambda x: abs(x) > 1e-3),
    g=grad,
    lr=st.floats(1e-4, 0.5),
    wd=st.floats(1e-4, 1.0),
)
def test_proximal_and_multiplicative_agree_to_first_order(
    theta: float, g: float, lr: float, wd: float
) -> None:
    # From the same pre-decay point x (decay after the step; decay_form none gives x itself):
    #   mult = (1-s) x, prox = x/(1+s), and exactly (1-s) - 1/(1+s) = -s^2/(1+s), so
    #   mult - prox = -s^2 x/(1+s): equal to first order in s, O(s^2) apart.
    # Rounding: mult has <= 2 roundings (1-s, product), prox <= 2 (1+s, quotient):
    # |computed (mult - prox) - exact| <= 4.02 u |x|.
    base = get_profile("torch").config.replace(lr=lr, weight_decay=wd, decay_timing=DecayTiming.AFTER_STEP)
    p, gr = {"w": [theta]}, {"w": [g]}
    s0 = init(p, base)
    x = step(p, gr, s0, base.replace(decay_form=DecayForm.NONE))[0]["w"][0]
    mult = step(p, gr, s0, base)[0]["w"][0]
    prox = step(p, gr, s0, base.replace(decay_form=DecayForm.PROXIMAL))[0]["w"][0]
    s = F(lr * wd)  # the reference's s = fl(lr*wd), exactly
    fx = F(x)
    assert (1 - s) * fx - fx / (1 + s) == -(s * s) * fx / (1 + s)
    diff = F(mult) - F(prox)
    assert abs(diff + s * s * fx / (1 + s)) <= F(4.02) * F(U) * abs(fx)
    assert abs(diff) <= s * s * abs(fx) / (1 + s) + F(4.02) * F(U) * abs(fx)


@given(data=st.data(), steps=st.integers(1, 25), eps_hat=st.floats(1e-8, 1e-1), wd=st.floats(0.0, 0.1))
def test_keras_equals_torch_with_step_dependent_eps(
    data: st.DataObject, steps: int, eps_hat: float, wd: float
) -> None:
    # Keras: u = m_hat sqrt(bc2)/(sqrt(v) + eps_hat) = m_hat/(sqrt(v/bc2) + eps_hat/sqrt(bc2)),
    # i.e. torch with eps_t = eps_hat/sqrt(1 - b2^t). Drive the torch profile with that eps at
    # each step. m and v are computed by the same operations (bit-identical); only u differs:
    # keras u: sqrt, +, /, sqrt(bc2), * -> <= 5u relative; torch u: /bc2, sqrt (1.5u), eps_t
    # (2 roundings), +, / -> <= 5.5u; so |u_k - u_t| <= 10.5u|u|, and lr_t*u adds u each.
    # Parameters: D_t <= D_{t-1} + 12.5u*lr|u_t| + 4u|theta_t| (the two decays and two
    # subtractions round differently once values differ). The bound below sums that along the
    # torch run, with |lr u_t| measured as |theta'_t - theta_t| (x1.01 for second order).
    n = 3
    theta = data.draw(st.lists(signed, min_size=n, max_size=n))
    grads = [data.draw(st.lists(grad, min_size=n, max_size=n)) for _ in range(steps)]
    lr, b2 = 1e-2, 0.999
    keras = get_profile("keras3").config.replace(lr=lr, eps=eps_hat, weight_decay=wd)
    torch = get_profile("torch").config.replace(lr=lr, weight_decay=wd)
    pk = pt = {"w": theta}
    sk, stt = init(pk, keras), init(pt, torch)
    bound = [0.0] * n
    for t, g in enumerate(grads, start=1):
        pk, sk = step(pk, {"w": g}, sk, keras)
        eps_t = eps_hat / math.sqrt(1 - b2**t)
        prev = pt["w"]
        pt, stt = step(pt, {"w": g}, stt, torch.replace(eps=eps_t))
        assert sk.m == stt.m and sk.v == stt.v
        c = 1 - lr * wd
        for i in range(n):
            adam = abs(prev[i] * c - pt["w"][i])
            bound[i] += 1.01 * (12.5 * U * adam + 4 * U * abs(pt["w"][i]))
    for i in range(n):
        assert abs(pk["w"][i] - pt["w"][i]) <= bound[i]
