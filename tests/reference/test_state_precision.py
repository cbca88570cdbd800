"""State precision: ``param_dtype``, ``m_dtype``, ``v_dtype`` (rounding points of the step).

The expected values are computed here from first principles (Fractions rounded by hand, the
canonical step with and without the fields), never from the code under test alone.
"""

from __future__ import annotations

import json
import math
import random
from decimal import Decimal, localcontext
from fractions import Fraction

import pytest

from adamw_ref import (
    BINARY32_ARITHMETIC,
    BINARY64_ARITHMETIC,
    AdamWConfig,
    ConfigError,
    HighPrecision,
    get_profile,
    init,
    run_trajectory,
    step,
)
from adamw_ref.config import PRECISION_FIELDS
from adamw_ref.storage import to_storage


def rn(x: Fraction, p: int, emin: int) -> Fraction:
    """``x`` rounded to nearest-even with ``p`` significant bits, exponent >= ``emin``."""
    if x == 0:
        return x
    a = abs(x)
    e = 0
    while Fraction(2) ** e > a:
        e -= 1
    while Fraction(2) ** (e + 1) <= a:
        e += 1
    q = Fraction(2) ** max(e - p + 1, emin - p + 1)
    n = a / q
    f = math.floor(n)
    if n - f > Fraction(1, 2) or (n - f == Fraction(1, 2) and f % 2):
        f += 1
    return (f * q) if x > 0 else -(f * q)


def bf16(x: float) -> float:
    return float(rn(Fraction(x), 8, -126))


def f16(x: float) -> float:
    return float(rn(Fraction(x), 11, -14))


def test_defaults_serialise_as_before() -> None:
    cfg = AdamWConfig()
    assert all(getattr(cfg, f) is None for f in PRECISION_FIELDS)
    assert not cfg.stores_narrow
    assert not set(PRECISION_FIELDS) & set(cfg.to_json())
    for name in ("torch", "optax", "keras3", "mlx"):
        assert not set(PRECISION_FIELDS) & set(get_profile(name).config.to_json())


def test_json_round_trip_when_set() -> None:
    cfg = AdamWConfig(m_dtype="bfloat16", v_dtype="float32", param_dtype="float16")
    data = json.loads(json.dumps(cfg.to_json()))
    assert data["m_dtype"] == "bfloat16" and data["param_dtype"] == "float16"
    assert AdamWConfig.from_json(data) == cfg
    assert AdamWConfig.from_json({"m_dtype": "bfloat16"}).m_dtype == "bfloat16"


@pytest.mark.parametrize("field", PRECISION_FIELDS)
@pytest.mark.parametrize("value", ["float8", "", 16, True, "Float32"])
def test_bad_values_are_one_line_config_errors(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field) as info:
        AdamWConfig(**{field: value})  # type: ignore[arg-type]
    assert "\n" not in str(info.value) and "bfloat16" in str(info.value)


def test_storage_rounding_exact_and_ties_to_even() -> None:
    one = 1.0
    assert to_storage([one + 2.0**-8], "bfloat16") == [1.0]  # tie -> even
    assert to_storage([one + 3 * 2.0**-8], "bfloat16") == [1.0 + 2.0**-6]  # tie -> even (up)
    assert to_storage([one + 2.0**-8 + 2.0**-40], "bfloat16") == [1.0 + 2.0**-7]
    assert to_storage([65520.0, 65519.0], "float16") == [math.inf, 65504.0]
    assert (
        to_storage([-1e-30], "float16") == [-0.0] and math.copysign(1, to_storage([-1e-30], "float16")[0]) < 0
    )
    assert to_storage([0.1], "float64") == [0.1] and to_storage([0.1], None) == [0.1]
    rng = random.Random(1)
    xs = [rng.uniform(-1, 1) * 2.0 ** rng.randint(-140, 120) for _ in range(2000)]
    assert to_storage(xs, "bfloat16") == [bf16(x) for x in xs]


def test_storage_rounding_of_decimals_has_no_double_rounding() -> None:
    # 1 + 2^-8 + 10^-30 is above the bfloat16 midpoint 1 + 2^-8, but rounds to it in binary64
    with localcontext() as ctx:
        ctx.prec = 60
        x = Decimal(1) + Decimal(2) ** -8 + Decimal("1e-30")
    assert to_storage([x], "bfloat16") == [Decimal(1 + 2.0**-7)]
    assert to_storage([float(x)], "bfloat16") == [1.0]  # the binary64 value ties to even
    assert to_storage([Decimal("-0"), Decimal("NaN")], "float32")[0].is_signed()


def _run(cfg: AdamWConfig, arith: object, steps: int = 40, n: int = 16, seed: int = 3) -> object:
    rng = random.Random(seed)
    params = {"w": [rng.uniform(-1, 1) for _ in range(n)], "b": [rng.uniform(-1, 1) for _ in range(3)]}
    grads = [
        {k: [rng.uniform(-1, 1) * 10.0 ** rng.uniform(-4, 2) for _ in v] for k, v in params.items()}
        for _ in range(steps)
    ]
    return run_trajectory(params, grads, cfg, arith)  # type: ignore[arg-type]


def test_float64_storage_under_binary32_changes_nothing() -> None:
    cfg = get_profile("torch").config.replace(amsgrad=True)
    wide = cfg.replace(param_dtype="float64", m_dtype="float64", v_dtype="float64")
    a, b = _run(cfg, BINARY32_ARITHMETIC), _run(wide, BINARY32_ARITHMETIC)
    assert a.params == b.params and a.states == b.states  # type: ignore[attr-defined]


def test_first_step_from_rest_stores_rounded_moments_and_uses_unrounded_ones() -> None:
    cfg = get_profile("optax").config.replace(lr=1e-2, weight_decay=0.0, m_dtype="bfloat16")
    theta, g = [0.5], [0.3]
    new, st = step({"w": theta}, {"w": g}, init({"w": theta}, cfg), cfg)
    F = Fraction
    m = F(float(F(1) - F(0.9))) * F(0.3)  # binary64: (1 - b1) rounded once, times g
    m = rn(m, 53, -1022)
    assert st.m["w"] == (bf16(float(m)),)
    # the direction used the binary64 m: the same step without m_dtype gives the same theta
    plain = cfg.replace(m_dtype=None)
    new2, st2 = step({"w": theta}, {"w": g}, init({"w": theta}, plain), plain)
    assert new == new2 and st2.m["w"] == (float(m),) != st.m["w"]


def test_narrow_moments_feed_the_next_step() -> None:
    # with m_dtype=bfloat16 step 2 starts from bf16(m_1): equal to running plain steps from a
    # state whose m was rounded by hand
    cfg = get_profile("torch").config.replace(m_dtype="bfloat16", v_dtype="float16")
    plain = cfg.replace(m_dtype=None, v_dtype=None)
    A = BINARY64_ARITHMETIC
    theta = {"w": [0.25, -1.5, 3.0]}
    g1, g2 = {"w": [0.1, -0.2, 7e-3]}, {"w": [-0.05, 0.3, 2.0]}
    p1, s1 = step(theta, g1, init(theta, cfg), cfg, A)
    q1, r1 = step(theta, g1, init(theta, plain), plain, A)
    assert p1 == q1
    assert s1.m["w"] == tuple(bf16(x) for x in r1.m["w"]) and s1.v["w"] == tuple(f16(x) for x in r1.v["w"])
    hand = type(r1)(
        step=r1.step,
        param_steps=r1.param_steps,
        m={"w": tuple(bf16(x) for x in r1.m["w"])},
        v={"w": tuple(f16(x) for x in r1.v["w"])},
        v_max=None,
    )
    p2, s2 = step(p1, g2, s1, cfg, A)
    q2, r2 = step(q1, g2, hand, plain, A)
    assert p2 == q2
    assert s2.m["w"] == tuple(bf16(x) for x in r2.m["w"])


def test_param_dtype_rounds_the_stored_parameters() -> None:
    cfg = get_profile("torch").config.replace(lr=1e-3, param_dtype="bfloat16")
    plain = cfg.replace(param_dtype=None)
    theta = {"w": [bf16(0.3), bf16(-2.0), bf16(1e-3)]}
    g = {"w": [0.5, -0.25, 1.0]}
    p1, _ = step(theta, g, init(theta, cfg), cfg)
    q1, _ = step(theta, g, init(theta, plain), plain)
    assert p1["w"] == tuple(bf16(x) for x in q1["w"])
    # a bfloat16 parameter cannot take a step below half its ulp (2^-10 at 0.3): steps of about
    # lr = 1e-4 never move it, while the float32 master copy of the same run does move
    slow = cfg.replace(lr=1e-4)
    tr = run_trajectory(theta, [g] * 50, slow)
    master = run_trajectory(theta, [g] * 50, slow.replace(param_dtype=None), BINARY32_ARITHMETIC)
    assert master.params[-1]["w"][0] < bf16(0.3) - 1e-3
    assert all(p["w"][0] == bf16(0.3) for p in tr.params)
    assert run_trajectory({"w": [0.3]}, [], slow).params[0]["w"] == (bf16(0.3),)


def test_amsgrad_maximum_is_stored_in_v_dtype() -> None:
    for mode in ("raw_v", "bias_corrected_v"):
        cfg = get_profile("torch").config.replace(amsgrad=True, amsgrad_mode=mode, v_dtype="bfloat16")
        tr = _run(cfg, BINARY64_ARITHMETIC, steps=15)
        for s in tr.states[1:]:  # type: ignore[attr-defined]
            for xs in (*s.v.values(), *s.v_max.values()):
                assert all(bf16(x) == x for x in xs)


def test_high_precision_arithmetic_stores_exact_roundings() -> None:
    cfg = get_profile("torch").config.replace(param_dtype="float32", m_dtype="float32", v_dtype="float32")
    tr = _run(cfg, HighPrecision(40), steps=5, n=4)
    for p, s in zip(tr.params[1:], tr.states[1:]):  # type: ignore[attr-defined]
        for xs in (*p.values(), *s.m.values(), *s.v.values()):
            for x in xs:
                assert isinstance(x, Decimal)
                assert float(rn(Fraction(x), 24, -126)) == float(x)


def test_without_the_fields_the_step_is_unchanged() -> None:
    cfg = get_profile("keras3").config
    tr = _run(cfg, BINARY32_ARITHMETIC)
    again = _run(cfg.replace(param_dtype=None), BINARY32_ARITHMETIC)
    assert tr.params == again.params  # type: ignore[attr-defined]
    const_state = init({"w": [1.0]}, cfg)
    assert step({"w": [1.0]}, {"w": [0.5]}, const_state, cfg) == step(
        {"w": [1.0]}, {"w": [0.5]}, const_state, AdamWConfig.from_json(cfg.to_json())
    )
