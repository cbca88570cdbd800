r"""Rounding stored values to a storage format (the state-precision fields of the config).

:func:`to_storage` rounds values of any of the reference's arithmetics to a binary format, to
nearest with ties to even, exactly: binary floats with :func:`adamw_ref.formats.round_all`
(exact for every binary64 input), :class:`~decimal.Decimal` values (the high-precision oracle)
through their exact rational value, so that no double rounding occurs. A format at least as
wide as the values' own leaves them unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

from adamw_ref.formats import FORMATS, BinaryFormat, round_all


def _round_exact(x: Fraction, fmt: BinaryFormat) -> float:
    """The rational ``x`` rounded to ``fmt`` (nearest, ties to even), as a binary64 float."""
    a = abs(x)
    e = a.numerator.bit_length() - a.denominator.bit_length()  # 2**e <= a < 2**(e+2)
    if Fraction(2) ** e > a:
        e -= 1
    q = max(e - fmt.precision + 1, fmt.emin - fmt.precision + 1)
    n = round(a / Fraction(2) ** q)  # round() on a Fraction rounds half to even
    r = Fraction(n) * Fraction(2) ** q
    if r > Fraction(fmt.max_finite):
        return float("inf") if x > 0 else float("-inf")
    out = float(r)
    return -out if x < 0 else out


def _decimal(x: Decimal, fmt: BinaryFormat) -> Decimal:
    if not x.is_finite() or x.is_zero():
        return x
    r = _round_exact(Fraction(x), fmt)
    if r == 0.0:
        return Decimal("-0") if x.is_signed() else Decimal(0)
    return Decimal(r)


def to_storage(xs: Sequence[Any], dtype: str | None) -> list[Any]:
    """``xs`` rounded to the storage format named ``dtype`` (``None``: unchanged)."""
    if dtype is None:
        return list(xs)
    fmt = FORMATS[dtype]
    if all(isinstance(x, float) for x in xs):
        return round_all(xs, fmt)
    return [_decimal(x, fmt) if isinstance(x, Decimal) else round_all([float(x)], fmt)[0] for x in xs]
