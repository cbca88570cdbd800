"""Arithmetics against independent oracles.

* binary32 emulation vs numpy float32 evaluated in the same operation order: bit-exact
  (numpy's float32 scalar ops are an independent IEEE binary32 implementation);
* binary32 emulation vs the binary64 reference, one step from binary32 inputs: within a forward
  error bound derived from u32 = 2^-24 and the operation sequence;
* the binary64 reference vs HighPrecision(60) over 2000 steps: within a running error bound
  (Wilkinson-style, evaluated with the oracle's magnitudes).
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adamw_ref import (
    BINARY32_ARITHMETIC,
    BINARY64_ARITHMETIC,
    HighPrecision,
    State,
    get_profile,
    run_trajectory,
    step,
)
from adamw_ref.formats import round_binary32

U32 = 2.0**-24
U64 = 2.0**-53

np = pytest.importorskip("numpy")


def f32(x: float) -> float:
    return round_binary32([x])[0]


def numpy_torch_step(theta, g, m, v, k, lr, wd, b1, b2, eps):  # type: ignore[no-untyped-def]
    """The torch profile's operations, one element, in np.float32 (same order as the spec)."""
    t32 = np.float32
    # Scalars (1 - beta, lr*eta, s, 1 - s, 1 - beta^k) are evaluated in binary64 (Python floats)
    # and rounded once to binary32, as the spec says; tensor operations round at every step.
    lr_t = t32(lr * 1.0)
    theta = theta * t32(1.0 - (lr * 1.0) * (wd * 1.0))
    m = m * t32(b1) + g * t32(1.0 - b1)
    v = v * t32(b2) + (g * g) * t32(1.0 - b2)
    bc1 = t32(1.0 - b1**k)
    bc2 = t32(1.0 - b2**k)
    m_hat = m / bc1
    v_hat = v / bc2
    denom = np.sqrt(v_hat + t32(0.0)) + t32(eps)
    u = m_hat / denom
    theta = theta - u * lr_t
    return theta, m, v


def test_binary32_emulation_is_bit_exact_against_numpy_float32() -> None:
    rng = random.Random(1234)
    n, steps = 6, 60
    lr, wd, b1, b2, eps = 3e-3, 0.05, 0.9, 0.999, 1e-8
    cfg = get_profile("torch").config.replace(lr=lr, weight_decay=wd, eps=eps)
    theta0 = [f32(rng.uniform(-3, 3)) for _ in range(n)]
    grads = [[f32(rng.gauss(0, 1) * 10 ** rng.uniform(-4, 1)) for _ in range(n)] for _ in range(steps)]
    traj = run_trajectory({"w": theta0}, [{"w": g} for g in grads], cfg, BINARY32_ARITHMETIC)
    for i in range(n):
        th, m, v = np.float32(theta0[i]), np.float32(0), np.float32(0)
        for t, g in enumerate(grads, start=1):
            th, m, v = numpy_torch_step(th, np.float32(g[i]), m, v, t, lr, wd, b1, b2, eps)
            assert float(th) == traj.params[t]["w"][i], (i, t)
            assert float(m) == traj.states[t].m["w"][i] and float(v) == traj.states[t].v["w"][i]


f32s = st.floats(min_value=2.0**-20, max_value=2.0**10, width=32)
sf32 = st.one_of(st.just(0.0), f32s, f32s.map(lambda x: -x))


@given(
    theta=sf32,
    g=sf32,
    m0=sf32,
    v0=st.one_of(st.just(0.0), st.floats(2.0**-40, 2.0**7, width=32)),
    t=st.integers(0, 60),
)
def test_binary32_within_derived_bound_of_binary64(
    theta: float, g: float, m0: float, v0: float, t: int
) -> None:
    # Same inputs (binary32 values, binary32 hyperparameters) through the torch profile in
    # binary32 emulation and in binary64. First-order forward error of the binary32 result,
    # with uu = u32 + 2 u64 (covering binary64's own rounding and pow's <= 1 ulp):
    #   c = 1 - s:          e_c  = uu s + uu c
    #   theta' = theta c:   e_th' = |theta| e_c + uu |theta'|
    #   m = b1 m0 + c1 g:   e_m  = uu (|b1 m0| + |c1 g|) + uu |m|     (c1 = 1-b1 exact: Sterbenz)
    #   v (all >= 0):       e_v  = 3 uu v                              (g*g, two products, sum)
    #   bc = 1 - b^k:       e_bc = uu b^k + uu bc                     (rounded power, subtraction)
    #   m_hat = m/bc1:      e_mh = e_m/bc1 + |m_hat| e_bc1/bc1 + uu |m_hat|
    #   v_hat = v/bc2:      rel  = 3uu + e_bc2/bc2 + uu;  r = sqrt(v_hat): rel_r = rel/2 + uu
    #   d = r + eps:        e_d  = r rel_r + uu d
    #   u = m_hat/d:        e_u  = e_mh/d + |u| e_d/d + uu |u|
    #   theta1 = theta' - lr u: e = e_th' + lr e_u + uu lr |u| + uu |theta1|
    # Second-order terms are covered by a factor 1.01.
    lr, wd, b1, b2, eps = f32(1e-3), f32(1e-2), f32(0.9), f32(0.999), f32(1e-8)
    cfg = get_profile("torch").config.replace(lr=lr, weight_decay=wd, beta1=b1, beta2=b2, eps=eps)
    state = State(step=t, param_steps={"w": t}, m={"w": (m0,)}, v={"w": (v0,)}, v_max=None)
    p, gr = {"w": [theta]}, {"w": [g]}
    p32, s32 = step(p, gr, state, cfg, BINARY32_ARITHMETIC)
    p64, s64 = step(p, gr, state, cfg, BINARY64_ARITHMETIC)
    uu = U32 + 2 * U64
    k = t + 1
    s = lr * wd
    c = 1 - s
    e_c = uu * s + uu * c
    th_ = theta * c
    e_th = abs(theta) * e_c + uu * abs(th_)
    c1 = 1 - b1
    m = s64.m["w"][0]
    v = s64.v["w"][0]
    e_m = uu * (abs(b1 * m0) + abs(c1 * g)) + uu * abs(m)
    e_v = 3 * uu * v
    p1, p2 = b1**k, b2**k
    bc1, bc2 = 1 - p1, 1 - p2
    e_bc1, e_bc2 = uu * p1 + uu * bc1, uu * p2 + uu * bc2
    m_hat = m / bc1
    e_mh = e_m / bc1 + abs(m_hat) * e_bc1 / bc1 + uu * abs(m_hat)
    v_hat = v / bc2
    r = math.sqrt(v_hat)
    rel_r = (3 * uu + e_bc2 / bc2 + uu) / 2 + uu
    d = r + eps
    e_d = r * rel_r + uu * d
    u = m_hat / d
    e_u = e_mh / d + abs(u) * e_d / d + uu * abs(u)
    theta1 = p64["w"][0]
    e_theta1 = e_th + lr * e_u + uu * lr * abs(u) + uu * abs(theta1)
    assert abs(p32["w"][0] - theta1) <= 1.01 * e_theta1
    assert abs(s32.m["w"][0] - m) <= 1.01 * e_m
    assert abs(s32.v["w"][0] - v) <= 1.01 * e_v
    # the bound is not vacuous: a few hundred u32 relative to the scale of the step
    assert e_theta1 <= 1e-3 * (abs(theta1) + lr * abs(u) + 1e-30)


def test_binary64_within_running_bound_of_high_precision_oracle() -> None:
    # 2000 steps of the torch profile, 4 elements, gradients N(0,1) (+ a bias so that m does not
    # always cancel). The oracle (60 digits, same binary64 inputs) is exact to ~1e-58.
    # Running first-order bound for the binary64 run (u = u64; uu = 2u for the rounded power):
    #   e_m(t) = b1 e_m(t-1) + u (b1|m_{t-1}| + c1|g|) + u |m_t|
    #   e_v(t) = b2 e_v(t-1) + 3u v_t                              (all terms >= 0)
    #   e_bc = uu b^t + u bc;  e_mh = e_m/bc1 + |m_hat| e_bc1/bc1 + u|m_hat|
    #   rel_vhat = e_v/v + e_bc2/bc2 + u; e_r = r (rel_vhat/2 + u); e_d = e_r + u d
    #   e_u = e_mh/d + |u| e_d/d + u|u|
    #   e_c = u s + u c;  e_th(t) = c e_th(t-1) + |theta_{t-1}| e_c + u|theta'| + lr e_u
    #         + u lr|u| + u|theta_t|
    # i.e. about e_th(T) ~ T * (3|theta| + lr*|u|*(4 + 2 cond)) * u: for T = 2000, |theta| ~ 1
    # this is ~1e-12, and the observed error must lie below it at every step.
    rng = random.Random(99)
    n, T = 4, 2000
    lr, wd, b1, b2, eps = 1e-3, 1e-2, 0.9, 0.999, 1e-8
    cfg = get_profile("torch").config.replace(lr=lr, weight_decay=wd)
    theta0 = [rng.uniform(-2, 2) for _ in range(n)]
    grads = [{"w": [rng.gauss(0.3, 1.0) for _ in range(n)]} for _ in range(T)]
    t64 = run_trajectory({"w": theta0}, grads, cfg, BINARY64_ARITHMETIC)
    thp = run_trajectory({"w": theta0}, grads, cfg, HighPrecision(60))
    u, uu = U64, 2 * U64
    c1 = 1 - b1
    s = lr * wd
    c = 1 - s
    e_c = u * s + u * c
    worst = 0.0
    for i in range(n):
        e_m = e_v = e_th = 0.0
        for t in range(1, T + 1):
            g = grads[t - 1]["w"][i]
            m_prev = float(thp.states[t - 1].m["w"][i])
            m = float(thp.states[t].m["w"][i])
            v = float(thp.states[t].v["w"][i])
            th_prev = float(thp.params[t - 1]["w"][i])
            th = float(thp.params[t]["w"][i])
            e_m = b1 * e_m + u * (b1 * abs(m_prev) + c1 * abs(g)) + u * abs(m)
            e_v = b2 * e_v + 3 * u * v
            p1, p2 = b1**t, b2**t
            bc1, bc2 = 1 - p1, 1 - p2
            e_bc1, e_bc2 = uu * p1 + u * bc1, uu * p2 + u * bc2
            m_hat = m / bc1
            e_mh = e_m / bc1 + abs(m_hat) * e_bc1 / bc1 + u * abs(m_hat)
            r = math.sqrt(v / bc2)
            e_r = r * ((e_v / v + e_bc2 / bc2 + u) / 2 + u)
            d = r + eps
            e_d = e_r + u * d
            uu_t = m_hat / d
            e_u = e_mh / d + abs(uu_t) * e_d / d + u * abs(uu_t)
            e_th = (
                c * e_th
                + abs(th_prev) * e_c
                + u * abs(th_prev * c)
                + lr * e_u
                + u * lr * abs(uu_t)
                + u * abs(th)
            )
            err = abs(t64.params[t]["w"][i] - th)
            assert err <= 1.01 * e_th, (i, t, err, e_th)
            worst = max(worst, err)
        assert e_th < 1e-11  # the stated scale: T * c * u * |theta|, c of order 10
    assert worst > 0  # the binary64 run does round (the oracle sees it)
