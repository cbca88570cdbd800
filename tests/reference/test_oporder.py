"""The operation-order emulation on its own: exact values from Fractions, values measured once on
the hardware (recorded here), and hand-derived steps of each implementation's order.

The framework comparisons (the profiles predicting real runs bit for bit) are
``tests/adapters/test_bit_exact_*.py``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import platform
import random
from fractions import Fraction

import pytest

from adamw_ref import AdamWConfig, ConfigError, InputError, get_profile
from adamw_ref import elementary as E
from adamw_ref.oporder import IMPLEMENTATIONS, PLATFORMS, check_supported, predict_trajectory

F32_MAX = Fraction(2) ** 128 - Fraction(2) ** 104


def rn32(x: Fraction) -> float:
    """The exact rational ``x`` rounded to binary32, nearest-even, from first principles."""
    if x == 0:
        return 0.0
    a = abs(x)
    e = 0
    while Fraction(2) ** e > a:
        e -= 1
    while Fraction(2) ** (e + 1) <= a:
        e += 1
    q = max(e - 23, -149)
    scaled = a / Fraction(2) ** q
    n = math.floor(scaled)
    rem = scaled - n
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and n % 2 == 1):
        n += 1
    r = Fraction(n) * Fraction(2) ** q
    if r > F32_MAX:
        return math.copysign(math.inf, x)
    return float(r) if x > 0 else -float(r)


def rand32(rng: random.Random, lo: int = -30, hi: int = 30) -> float:
    return E.f32(rng.choice((-1.0, 1.0)) * (1.0 + rng.random()) * 2.0 ** rng.randint(lo, hi))


# ------------------------------------------------------------------------------------ fma
def test_fma_is_one_rounding_of_the_exact_value() -> None:
    rng = random.Random(7)
    xs = [rand32(rng) for _ in range(3000)]
    ys = [rand32(rng) for _ in range(3000)]
    zs = [rand32(rng, -60, 60) for _ in range(3000)]
    zs[:500] = [E.f32(-x * y) for x, y in zip(xs[:500], ys[:500])]  # near-total cancellation
    got = E.fma(xs, ys, zs)
    want = [rn32(Fraction(x) * Fraction(y) + Fraction(z)) for x, y, z in zip(xs, ys, zs)]
    assert got == want


def test_fma_where_rounding_the_binary64_sum_would_be_wrong() -> None:
    # a*b = 2^-24 (1 - 2^-46) exactly; c = 1 + 2^-23 (odd last bit). The binary64 sum rounds to
    # the binary32 midpoint 1 + 2^-23 + 2^-24, which ties to the even 1 + 2^-22; the exact sum
    # lies just below the midpoint, so the fused result is c.
    a, b, c = 2.0**-24 * (1 + 2.0**-23), 1 - 2.0**-23, 1 + 2.0**-23
    assert E.f32(a * b + c) == 1 + 2.0**-22  # the double rounding
    assert E.fma([a], [b], [c]) == [c] == [rn32(Fraction(a) * Fraction(b) + Fraction(c))]
    assert E.fma([-a], [b], [-c]) == [-c]


def test_fma_special_values() -> None:
    inf, nan = math.inf, math.nan
    got = E.fma([inf, 0.0, 1.0, 3.0e38], [0.0, 5.0, inf, 3.0e38], [1.0, -0.0, -inf, 0.0])
    assert math.isnan(got[0]) and got[1] == 0.0 and math.isnan(got[2]) and got[3] == inf
    assert math.isnan(E.fma([nan], [1.0], [1.0])[0])


# ------------------------------------------------------------------------------------ sqrt
#: ``torch.sqrt`` of float32 CPU tensors as measured on the AMD EPYC (Zen 5) of the committed
#: results (MKL vsSqrt, EX kernel): (x, result); the correctly rounded results differ by 1 ulp.
MEASURED_MKL_SQRT = [
    ("0x1.341c300000000p+53", "0x1.8d2e360000000p+26"),
    ("0x1.f1d8ca0000000p-65", "0x1.f8dfb40000000p-33"),
    ("0x1.f268cc0000000p-11", "0x1.f928b40000000p-6"),
    ("0x1.367fb20000000p-24", "0x1.19ef860000000p-12"),
]


def test_mkl_sqrt_reproduces_measured_results() -> None:
    xs = [float.fromhex(x) for x, _ in MEASURED_MKL_SQRT]
    want = [float.fromhex(r) for _, r in MEASURED_MKL_SQRT]
    assert E.sqrt_mkl_ex(xs) == want
    assert all(c != w for c, w in zip(E.sqrt(xs), want))  # none of them is correctly rounded


def test_mkl_sqrt_is_within_one_ulp_and_often_off() -> None:
    rng = random.Random(3)
    xs = [abs(rand32(rng, -120, 120)) for _ in range(20000)]
    got, cr = E.sqrt_mkl_ex(xs), E.sqrt(xs)
    off = 0
    for g, c in zip(got, cr):
        if g != c:
            off += 1
            assert abs(g - c) <= math.ulp(c) * 2 ** (53 - 24) * 1.0000001
    assert 0.10 < off / len(xs) < 0.25  # about 17 %: not a correctly rounded sqrt


def test_mkl_sqrt_special_inputs_take_the_exact_path() -> None:
    xs = [0.0, -0.0, 1e-45, 1e-40, math.inf, -1.0, math.nan, 3.4028234663852886e38]
    got = E.sqrt_mkl_ex(xs)
    cr = E.sqrt(xs)
    assert got[:5] == cr[:5] and got[7] == cr[7]
    assert math.copysign(1.0, got[1]) == -1.0
    assert math.isnan(got[5]) and math.isnan(got[6])


def test_rsqrt_table_is_an_approximation_of_the_documented_accuracy() -> None:
    # rsqrtps: relative error below 1.5 * 2^-12 (Intel SDM); the table here is 2.58e-4 at worst
    worst = 0.0
    for par in (0, 1):
        for top in range(0, 4096, 7):
            for low in (0, 2047):
                x = (1.0 + (top * 2048 + low) / 2.0**23) * 2.0**par
                y = E.rsqrtps_zen5(x)
                assert y == E.f32(y) and 0.5 <= y <= 1.0
                worst = max(worst, abs(y * math.sqrt(x) - 1.0))
    assert worst < 1.5 * 2.0**-12
    assert E.rsqrtps_zen5(4.0) == E.rsqrtps_zen5(1.0) / 2 and E.rsqrtps_zen5(
        2.0**-20
    ) == 2.0**10 * E.rsqrtps_zen5(1.0)


# ------------------------------------------------------------------------------------ powf
def test_powf_glibc_exact_cases() -> None:
    assert E.powf_glibc(0.5, 3.0) == 0.125
    b = E.f32(0.9)
    assert E.powf_glibc(b, 1.0) == b
    assert E.powf_glibc(b, 2.0) == rn32(Fraction(b) ** 2)  # 0.80999994
    assert E.powf_glibc(0.0, 5.0) == 0.0 and E.powf_glibc(0.7, 0.0) == 1.0 and E.powf_glibc(1.0, 7.5) == 1.0
    assert E.powf_glibc(b, 2000.0) == 0.0  # underflows below the smallest subnormal


def test_powf_glibc_is_not_correctly_rounded() -> None:
    # glibc 2.36 powf(0.999f, k), measured: one ulp above the correctly rounded value
    b = E.f32(0.999)
    for k, measured in (
        (873, "0x1.ab8a120000000p-2"),
        (2359, "0x1.82aff20000000p-4"),
        (2958, "0x1.a8bcd2p-5"),
    ):
        assert E.powf_glibc(b, float(k)) == float.fromhex(measured)
        assert E.powf_correctly_rounded(b, float(k)) == rn32(Fraction(b) ** k) != float.fromhex(measured)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="compares with the host's glibc powf")
def test_powf_glibc_matches_the_host_libm() -> None:
    name = ctypes.util.find_library("m")
    if name is None:
        pytest.skip("no libm")
    libm = ctypes.CDLL(name)
    libm.powf.restype = ctypes.c_float
    libm.powf.argtypes = [ctypes.c_float, ctypes.c_float]
    rng = random.Random(11)
    cases = [(E.f32(b), float(k)) for b in (0.9, 0.99, 0.999, 0.95) for k in range(1, 3000, 7)]
    cases += [(E.f32(rng.random()), float(rng.randint(1, 1 << 20))) for _ in range(3000)]
    cases += [(E.f32(rng.random() * 1e-39), float(rng.randint(1, 3))) for _ in range(50)]
    cases += [(E.f32(rng.random()), E.f32(rng.uniform(-30, 300))) for _ in range(2000)]
    bad = [(x, y) for x, y in cases if E.powf_glibc(x, y) != libm.powf(x, y)]
    assert bad == []


# --------------------------------------------------------------------- implementation orders
def _one_step(impl: str, cfg: AdamWConfig, theta: list[float], g: list[float]) -> tuple[list[float], ...]:
    tr = predict_trajectory(impl, cfg, {"w": theta}, [{"w": g}], platform="ieee")
    s = tr.states[1]
    return list(tr.params[1]["w"]), list(s.m["w"]), list(s.v["w"])


def test_torch_forloop_first_step_by_hand() -> None:
    cfg = get_profile("torch").config.replace(lr=1e-2, weight_decay=0.1)
    theta, g = [E.f32(0.75), E.f32(-3.0e-3)], [E.f32(1.5e-2), E.f32(-2.5)]
    p, m, v = _one_step("torch:forloop", cfg, theta, g)
    w, c2 = Fraction(E.f32(1 - 0.9)), Fraction(E.f32(1 - 0.999))
    want_m = [rn32(w * Fraction(rn32(Fraction(x)))) for x in g]  # lerp from 0: fma(w, g - 0, 0)
    want_v = [rn32(Fraction(rn32(c2 * Fraction(x))) * Fraction(x)) for x in g]  # fma(fl(c2 g), g, 0)
    assert (m, v) == (want_m, want_v)
    decay = Fraction(E.f32(1 - 1e-2 * 0.1))
    bc2s = Fraction(E.f32((1 - 0.999) ** 0.5))
    step = Fraction(E.f32(-(1e-2 / (1 - 0.9))))
    eps = Fraction(E.f32(1e-8))
    for i in range(2):
        th = rn32(Fraction(theta[i]) * decay)
        den = rn32(Fraction(rn32(Fraction(E.sqrt([v[i]])[0]) / bc2s)) + eps)
        upd = rn32(Fraction(rn32(step * Fraction(m[i]))) / Fraction(den))
        assert p[i] == rn32(Fraction(th) + Fraction(upd))


def test_torch_lerp_takes_the_other_formula_from_weight_one_half() -> None:
    # beta1 = 0.3: w = fl(0.7) >= 1/2, lerp = fma(w - 1, g - m, g)
    cfg = get_profile("torch").config.replace(beta1=0.3, weight_decay=0.0)
    rng = random.Random(5)
    m0 = [rand32(rng, -3, 3) for _ in range(64)]
    g1 = [rand32(rng, -3, 3) for _ in range(64)]
    tr = predict_trajectory("torch:forloop", cfg, {"w": [0.0] * 64}, [{"w": m0}, {"w": g1}], platform="ieee")
    m1, m2 = list(tr.states[1].m["w"]), list(tr.states[2].m["w"])
    w = Fraction(E.f32(0.7))
    assert m1 == [rn32(Fraction(g) + (w - 1) * Fraction(g)) for g in m0]  # m = 0: g - m = g exactly
    want = [rn32(Fraction(g) + (w - 1) * Fraction(rn32(Fraction(g) - Fraction(m)))) for g, m in zip(g1, m1)]
    assert m2 == want
    naive = [
        rn32(Fraction(m) + Fraction(E.f32(0.7)) * Fraction(rn32(Fraction(g) - Fraction(m))))
        for g, m in zip(g1, m1)
    ]
    assert naive != want  # the branch matters for these inputs


def test_torch_fused_contracts_the_remainder_the_other_way() -> None:
    cfg = get_profile("torch").config.replace(weight_decay=0.0)
    rng = random.Random(9)
    n = 21  # one 16-wide AVX-512 iteration, then the scalar remainder: 21 % 8 = 5 elements
    g0 = [rand32(rng, -3, 3) for _ in range(n)]
    g1 = [rand32(rng, -2, 2) for _ in range(n)]
    tr = predict_trajectory("torch:fused", cfg, {"w": [0.0] * n}, [{"w": g0}, {"w": g1}], platform="ieee")
    v1, v2 = list(tr.states[1].v["w"]), list(tr.states[2].v["w"])
    b2, c2 = Fraction(E.f32(0.999)), Fraction(E.f32(1 - 0.999))
    head = [
        rn32(Fraction(rn32(c2 * Fraction(g))) * Fraction(g) + Fraction(rn32(b2 * Fraction(v))))
        for g, v in zip(g1, v1)
    ]
    tail = [
        rn32(Fraction(v) * b2 + Fraction(rn32(Fraction(rn32(c2 * Fraction(g))) * Fraction(g))))
        for g, v in zip(g1, v1)
    ]
    assert v2[:16] == head[:16] and v2[16:] == tail[16:]
    assert head[16:] != tail[16:]  # the two contractions differ on these inputs


def test_optax_jit_multiplies_by_reciprocal_bias_corrections() -> None:
    cfg = get_profile("optax").config.replace(lr=1e-2, weight_decay=0.1)
    theta, g = [E.f32(0.3)], [E.f32(-7.0e-3)]
    p = predict_trajectory("optax:jit", cfg, {"w": theta}, [{"w": g}], platform="ieee").params[1]["w"]
    F = Fraction
    c1, c2 = F(E.f32(1 - 0.9)), F(E.f32(1 - 0.999))
    m = rn32(F(g[0]) * c1)  # fma(g, c1, fl(0 * b1))
    v = rn32(F(rn32(F(g[0]) ** 2)) * c2)
    r1 = rn32(1 / F(rn32(1 - F(E.f32(0.9)))))
    r2 = rn32(1 / F(rn32(1 - F(E.f32(0.999)))))
    u = rn32(F(rn32(F(m) * F(r1))) / F(rn32(F(E.sqrt([rn32(F(v) * F(r2))])[0]) + F(E.f32(1e-8)))))
    upd = rn32(F(theta[0]) * F(E.f32(0.1)) + F(u))
    assert p == (rn32(F(upd) * F(E.f32(-1e-2)) + F(theta[0])),)


def test_keras_uses_powf_and_the_epsilon_hat_order() -> None:
    # powf(0.999f, k) is one ulp off at k = 873, 2359, 2958, 3606, ...; Keras's step size
    # fl(fl(lr sqrt(fl(1 - p2))) / fl(1 - p1)) first changes at k = 3606 (0.9f**k is below
    # 2^-25 whenever it is off), so the two platforms agree exactly until step 3606
    cfg = get_profile("keras3").config.replace(lr=1e-3, weight_decay=0.0)
    rng = random.Random(4)
    grads = [{"w": [rand32(rng, -8, 2) for _ in range(16)]} for _ in range(3606)]
    theta = {"w": [rand32(rng, -14, -12) for _ in range(16)]}  # steps of about lr move them
    tr = predict_trajectory("keras-jax:default", cfg, theta, grads)
    plain = predict_trajectory("keras-jax:default", cfg, theta, grads, platform="ieee")
    assert tr.params[3605] == plain.params[3605]
    assert tr.params[3606] != plain.params[3606]


def test_frozen_parameters_and_counts() -> None:
    torch_cfg = get_profile("torch").config
    grads = [{"a": [0.5], "b": None}, {"a": [0.5], "b": [0.25]}]
    tr = predict_trajectory("torch:forloop", torch_cfg, {"a": [1.0], "b": [1.0]}, grads)
    assert tr.states[2].param_steps == {"a": 2, "b": 1}
    assert tr.params[1]["b"] == (1.0,) and tr.states[1].m["b"] == (0.0,)
    first = predict_trajectory("torch:forloop", torch_cfg, {"b": [1.0]}, [{"b": [0.25]}])
    assert tr.params[2]["b"] == first.params[1]["b"]  # b's first update is its own step 1
    with pytest.raises(InputError, match="step_count_scope"):
        predict_trajectory(
            "keras-jax:default",
            get_profile("keras3").config.replace(step_count_scope="per_parameter"),
            {"a": [1.0]},
            [{"a": None}],
        )


def test_refusals_are_one_line() -> None:
    torch_cfg = get_profile("torch").config
    cases = [
        ("torch:nope", torch_cfg, "implementation"),
        ("torch:forloop", torch_cfg.replace(eps_placement="before_bias_correction"), "eps_placement"),
        ("optax:jit", get_profile("optax").config.replace(amsgrad=True, amsgrad_mode="raw_v"), "amsgrad"),
        ("torch:fused", torch_cfg.replace(m_dtype="bfloat16"), "m_dtype"),
        ("keras-jax:default", get_profile("keras3").config.replace(nesterov=True), "nesterov"),
    ]
    for impl, cfg, field in cases:
        with pytest.raises(ConfigError, match=field) as info:
            check_supported(impl, cfg)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="platform"):
        predict_trajectory("torch:forloop", torch_cfg, {"w": [1.0]}, [], platform="vax")
    with pytest.raises(InputError, match="binary32"):
        predict_trajectory("torch:forloop", torch_cfg, {"w": [0.1]}, [])


def test_registry_and_platforms() -> None:
    assert set(IMPLEMENTATIONS) == {
        "torch:forloop",
        "torch:foreach",
        "torch:fused",
        "optax:jit",
        "optax:nojit",
        "keras-jax:default",
        "keras-tensorflow:default",
        "keras-torch:default",
        "mlx:default",
    }
    for impl in IMPLEMENTATIONS.values():
        assert "\\mathrm{f" in impl.formula  # every order is written out
    assert set(PLATFORMS) == {"x86_64-amd-mkl-glibc", "ieee"}


def test_flush_to_zero_detects_tininess_before_rounding() -> None:
    ftz = E.FLUSH_TO_ZERO
    mn = 2.0**-126
    # (1 - 2^-24) * 2^-126 rounds to the normal 2^-126, but is tiny before rounding: flushed
    assert E.mul([1 - 2.0**-24], [mn]) == [mn]
    assert ftz.mul([1 - 2.0**-24], [mn]) == [0.0]
    assert ftz.mul([2.0**-100], [2.0**-27]) == [0.0] and E.mul([2.0**-100], [2.0**-27]) == [2.0**-127]
    assert math.copysign(1.0, ftz.mul([-(2.0**-100)], [2.0**-27])[0]) == -1.0  # signed zero
    assert ftz.mul([1.5 * mn], [1.0]) == [1.5 * mn]  # normal results are untouched
    # DAZ: a subnormal input reads as zero
    assert ftz.add([2.0**-130], [0.0]) == [0.0] and E.add([2.0**-130], [0.0]) == [2.0**-130]
    assert ftz.sqrt([2.0**-140]) == [0.0]
    # FMA: tiny before its single rounding (normal inputs, cancellation below 2^-126)
    a, b, c = 1 + 2.0**-23, 2.0**-125, -3 * 2.0**-127  # a*b + c = 2^-127 + 2^-148
    want = rn32(Fraction(a) * Fraction(b) + Fraction(c))
    assert E.fma([a], [b], [c]) == [want] == [2.0**-127 + 2.0**-148]
    assert ftz.fma([a], [b], [c]) == [0.0]
    assert ftz.fma([a], [b], [-(2.0**-130)]) == E.mul([a], [b])  # DAZ: the subnormal c reads as 0
    rng = random.Random(8)
    xs = [rand32(rng, -60, 60) for _ in range(2000)]
    ys = [rand32(rng, -60, 60) for _ in range(2000)]
    got = ftz.mul(xs, ys)
    for x, y, r in zip(xs, ys, got):
        exact = Fraction(x) * Fraction(y)
        assert r == (0.0 if abs(exact) < Fraction(mn) else rn32(exact))
