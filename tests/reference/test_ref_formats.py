"""Rounding to narrower IEEE formats: hand values, and agreement with independent converters
(numpy float32/float16 casts, ml_dtypes bfloat16) on random binary64 inputs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adamw_ref import BFLOAT16, BINARY16, BINARY32, BINARY64
from adamw_ref.arithmetic import arithmetic_for
from adamw_ref.formats import round_all, round_binary32, round_to_format, ulp


def test_format_constants() -> None:
    # binary32: max (2 - 2^-23) 2^127, min normal 2^-126, min subnormal 2^-149, u = 2^-24
    assert BINARY32.max_finite == float.fromhex("0x1.fffffep+127")
    assert BINARY32.min_normal == 2.0**-126 and BINARY32.min_subnormal == 2.0**-149
    assert BINARY32.unit_roundoff == 2.0**-24 and BINARY64.unit_roundoff == 2.0**-53
    assert BINARY16.max_finite == 65504.0 and BINARY16.min_subnormal == 2.0**-24
    assert BFLOAT16.max_finite == float.fromhex("0x1.fep+127")


def test_hand_values() -> None:
    # 0.1 in binary32 is 0x1.99999ap-4 (mantissa 0x99999a after rounding the 0x999999|99.. tail up)
    assert round_to_format(0.1, BINARY32) == float.fromhex("0x1.99999ap-4")
    # ties to even: 1 + 2^-24 is halfway between 1 and 1 + 2^-23 -> 1 (even);
    # 1 + 3*2^-24 is halfway between 1 + 2^-23 and 1 + 2^-22 -> 1 + 2^-22 (even)
    assert round_to_format(1 + 2.0**-24, BINARY32) == 1.0
    assert round_to_format(1 + 3 * 2.0**-24, BINARY32) == 1 + 2.0**-22
    # just above the tie rounds up
    assert round_to_format(1 + 2.0**-24 + 2.0**-40, BINARY32) == 1 + 2.0**-23
    # subnormals: quantum 2^-149; 2^-150 is a tie between 0 and 2^-149 -> 0 (even);
    # 3*2^-150 -> 2*2^-149 (even)
    assert round_to_format(2.0**-150, BINARY32) == 0.0
    assert round_to_format(3 * 2.0**-150, BINARY32) == 2.0**-148
    assert math.copysign(1, round_to_format(-(2.0**-151), BINARY32)) == -1  # -0.0 keeps sign
    # overflow: max + half ulp (tie) rounds to even = 2^128 -> inf; just below stays max
    big = float.fromhex("0x1.ffffffp+127")  # max + half an ulp (a tie)
    assert round_to_format(big, BINARY32) == math.inf
    assert round_to_format(float.fromhex("0x1.fffffe7p+127"), BINARY32) == BINARY32.max_finite
    # binary16: 65519 -> 65504, 65520 (tie) -> inf; bfloat16: 1 + 2^-8 -> 1 (tie to even)
    assert round_to_format(65519.0, BINARY16) == 65504.0
    assert round_to_format(65520.0, BINARY16) == math.inf
    assert round_to_format(1 + 2.0**-8, BFLOAT16) == 1.0
    assert round_to_format(1 + 3 * 2.0**-8, BFLOAT16) == 1 + 2.0**-6
    for x in (math.inf, -math.inf, 0.0, -0.0):
        assert round_to_format(x, BINARY16) == x
    assert math.isnan(round_to_format(math.nan, BINARY32))


def test_ulp_hand_values() -> None:
    assert ulp(1.0, BINARY32) == 2.0**-23 and ulp(1.5, BINARY32) == 2.0**-23
    assert ulp(2.0, BINARY32) == 2.0**-22 and ulp(0.75, BINARY64) == 2.0**-53
    assert ulp(0.0, BINARY32) == 2.0**-149 and ulp(1e-45, BINARY32) == 2.0**-149
    assert ulp(1.0, BINARY16) == 2.0**-10 and math.isnan(ulp(math.inf, BINARY32))


np = pytest.importorskip("numpy")

finite64 = st.floats(allow_nan=False, allow_infinity=False)
ranged = st.one_of(
    finite64,
    st.floats(min_value=-1e-36, max_value=1e-36),  # binary32 subnormal range
    st.floats(min_value=-7e4, max_value=7e4),  # binary16 range
)


@given(ranged)
def test_binary32_matches_numpy(x: float) -> None:
    with np.errstate(over="ignore"):
        want = float(np.float32(x))
    assert round_to_format(x, BINARY32) == want
    assert round_binary32([x]) == [want]


@given(ranged)
def test_binary16_matches_numpy(x: float) -> None:
    # numpy converts float64 -> float16 directly (one correct rounding), an independent path
    with np.errstate(over="ignore"):
        want = float(np.float64(x).astype(np.float16))
    got = round_to_format(x, BINARY16)
    assert got == want and math.copysign(1, got) == math.copysign(1, want)


@given(ranged)
def test_bfloat16_matches_ml_dtypes(x: float) -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    with np.errstate(over="ignore"):
        want = float(np.array([x], dtype=np.float64).astype(ml_dtypes.bfloat16)[0])
    assert round_to_format(x, BFLOAT16) == want


def test_round_all_and_arithmetic_ops_round_once() -> None:
    xs = [0.1, 1 / 3, 2.0**-140, 1e39]
    assert round_all(xs, BINARY32) == [float(np.float32(x)) for x in xs[:3]] + [math.inf]
    a32 = arithmetic_for("float32")
    # 1/3 in binary32 then * 3 rounded once: numpy float32 product
    third = a32.const(1 / 3)
    assert a32.s_mul(third, a32.const(3.0)) == float(np.float32(1 / 3) * np.float32(3.0))
    assert a32.s_sqrt(a32.const(2.0)) == float(np.sqrt(np.float32(2.0)))
    assert a32.s_div(1.0, 0.0) == math.inf and math.isnan(a32.s_div(0.0, 0.0))
    assert math.isnan(a32.s_sqrt(-1.0))
    a16 = arithmetic_for("float16")
    assert a16.s_add(a16.const(2048.0), a16.const(1.0)) == 2048.0  # 2049 ties to even 2048
