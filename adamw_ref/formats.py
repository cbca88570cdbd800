r"""Rounding of binary64 values to narrower IEEE-754 binary formats (round to nearest, ties to even).

:func:`round_to_format` is exact for every finite binary64 input: it scales by a power of two
(exact), rounds the integer part with Python's ties-to-even ``round`` (exact on floats) and scales
back. Subnormals use the format's fixed quantum :math:`2^{e_{min}-p+1}`; values at or beyond the
overflow threshold :math:`2^{e_{max}}(2-2^{-p})` become :math:`\pm\infty`.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class BinaryFormat:
    """An IEEE-754 binary format: ``precision`` bits (with the hidden bit), exponent range."""

    name: str
    precision: int
    emin: int
    emax: int

    @property
    def max_finite(self) -> float:
        return math.ldexp(2.0 - math.ldexp(1.0, 1 - self.precision), self.emax)

    @property
    def min_normal(self) -> float:
        return math.ldexp(1.0, self.emin)

    @property
    def min_subnormal(self) -> float:
        return math.ldexp(1.0, self.emin - self.precision + 1)

    @property
    def unit_roundoff(self) -> float:
        """:math:`u=2^{-p}`: the relative error bound of one rounding to nearest."""
        return math.ldexp(1.0, -self.precision)


BINARY64 = BinaryFormat("binary64", 53, -1022, 1023)
BINARY32 = BinaryFormat("binary32", 24, -126, 127)
BINARY16 = BinaryFormat("binary16", 11, -14, 15)
BFLOAT16 = BinaryFormat("bfloat16", 8, -126, 127)

FORMATS: dict[str, BinaryFormat] = {
    "float64": BINARY64,
    "float32": BINARY32,
    "float16": BINARY16,
    "bfloat16": BFLOAT16,
}


def round_to_format(x: float, fmt: BinaryFormat) -> float:
    """``x`` rounded to nearest-even in ``fmt``, returned as a binary64 float."""
    if fmt.precision >= 53 or x == 0.0 or not math.isfinite(x):
        return x
    _, e = math.frexp(x)  # x = f * 2**e, 0.5 <= |f| < 1, so the leading bit has weight 2**(e-1)
    q = max(e - fmt.precision, fmt.emin - fmt.precision + 1)
    try:
        r = math.ldexp(float(round(math.ldexp(x, -q))), q)
    except OverflowError:  # rounded up to 2**1024: far beyond any narrower format's range
        return math.copysign(math.inf, x)
    if abs(r) > fmt.max_finite:
        return math.copysign(math.inf, x)
    return r if r != 0.0 else math.copysign(0.0, x)  # round() loses the sign of -0


def round_binary32(xs: Iterable[float]) -> list[float]:
    """Round each value to binary32 (a C ``(float)`` cast: IEEE round to nearest even)."""
    return array("f", xs).tolist()


def round_all(xs: Iterable[float], fmt: BinaryFormat) -> list[float]:
    """Round each value to ``fmt``."""
    if fmt.precision >= 53:
        return list(xs)
    if fmt is BINARY32:
        return round_binary32(xs)
    return [round_to_format(x, fmt) for x in xs]


def ulp(x: float, fmt: BinaryFormat) -> float:
    """The spacing of ``fmt`` at ``|x|``: :math:`2^{\\max(e,e_{min})-p+1}` for :math:`2^e\\le|x|<2^{e+1}`."""
    if not math.isfinite(x):
        return math.nan
    if x == 0.0:
        return fmt.min_subnormal
    _, e = math.frexp(x)
    return math.ldexp(1.0, max(e - 1, fmt.emin) - fmt.precision + 1)
