"""The canonical state serialises to JSON losslessly: bit-exact for every binary64 value
(signed zeros, subnormals, infinities, NaNs with their sign and payload) and exact for Decimals."""

from __future__ import annotations

import json
import math
import struct
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from adamw_ref import (
    BINARY32_ARITHMETIC,
    HighPrecision,
    State,
    get_profile,
    run_trajectory,
    state_from_json,
    state_to_json,
)
from adamw_ref.state import decode_number, encode_number


def bits(x: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", x))[0])


def from_bits(b: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", b))[0])


SPECIAL = [
    0.0,
    -0.0,
    5e-324,
    -5e-324,
    2.2250738585072009e-308,
    1.7976931348623157e308,
    math.inf,
    -math.inf,
    math.nan,
    -math.nan,
    from_bits(0x7FF0000000000001),
    from_bits(0xFFF8000000000123),
    0.1,
    -1 / 3,
]


def roundtrip(state: State[object]) -> State[object]:
    return state_from_json(json.loads(json.dumps(state_to_json(state))))


def assert_same_bits(a: State[object], b: State[object]) -> None:
    assert a.step == b.step and dict(a.param_steps) == dict(b.param_steps)
    for name in ("m", "v", "v_max"):
        da, db = getattr(a, name), getattr(b, name)
        if da is None:
            assert db is None
            continue
        assert set(da) == set(db)
        for k in da:
            for x, y in zip(da[k], db[k], strict=True):
                if isinstance(x, Decimal):
                    assert isinstance(y, Decimal) and x.as_tuple() == y.as_tuple()
                else:
                    assert bits(x) == bits(y), (x, y)


def test_special_values_roundtrip_bit_exact() -> None:
    st_ = State(
        step=7,
        param_steps={"a": 7, "b": 3},
        m={"a": tuple(SPECIAL), "b": (1.0,)},
        v={"a": tuple(abs(x) for x in SPECIAL), "b": (0.0,)},
        v_max={"a": tuple(SPECIAL), "b": (-0.0,)},
    )
    assert_same_bits(st_, roundtrip(st_))


def test_nan_sign_and_payload_encoding() -> None:
    # the canonical quiet NaN is spelled "nan"; any other NaN carries its IEEE bits
    assert encode_number(from_bits(0x7FF8000000000000)) == "nan"
    assert encode_number(from_bits(0xFFF8000000000000)) == "nan:0xfff8000000000000"
    neg = decode_number("nan:0xfff8000000000000")
    assert isinstance(neg, float) and bits(neg) == 0xFFF8000000000000
    assert encode_number(-0.0) == "-0x0.0p+0" and encode_number(5e-324) == "0x0.0000000000001p-1022"


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=20))
def test_any_binary64_roundtrips(xs: list[float]) -> None:
    st_ = State(step=1, param_steps={"w": 1}, m={"w": tuple(xs)}, v={"w": tuple(xs)}, v_max=None)
    assert_same_bits(st_, roundtrip(st_))


def test_trajectory_states_roundtrip_binary64_binary32_decimal() -> None:
    cfg = get_profile("torch").config.replace(lr=0.1, amsgrad=True)
    grads = [{"w": [0.3, -1e-30, 0.0]}, {"w": [1e-310, 2.0, -0.0]}, {"w": None}]
    for arith in (None, BINARY32_ARITHMETIC, HighPrecision(40)):
        traj = (
            run_trajectory({"w": [1.0, -2.0, 5e-324]}, grads, cfg)
            if arith is None
            else run_trajectory({"w": [1.0, -2.0, 5e-324]}, grads, cfg, arith)
        )
        for s in traj.states:
            assert_same_bits(s, roundtrip(s))


def test_decimal_state_keeps_every_digit() -> None:
    d = Decimal("0.1000000000000000000000000000000000000001")
    st_ = State(
        step=1,
        param_steps={"w": 1},
        m={"w": (d, Decimal("-0"), Decimal("NaN"))},
        v={"w": (Decimal("1E-400"), Decimal("Infinity"), Decimal(0))},
        v_max=None,
    )
    back = roundtrip(st_)
    assert_same_bits(st_, back)
    assert str(back.m["w"][0]) == str(d)


def test_json_is_plain_text() -> None:
    doc = state_to_json(State(step=0, param_steps={"w": 0}, m={"w": (0.0,)}, v={"w": (0.0,)}, v_max=None))
    assert doc["format"] == "adamw-ref/state" and doc["version"] == 1
    assert all(isinstance(x, str) for x in doc["m"]["w"])
