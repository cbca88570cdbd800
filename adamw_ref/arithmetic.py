r"""Arithmetics the reference can run in: binary64, exact binary32 (or any narrower IEEE format)
emulation, and a high-precision decimal oracle.

Every operation works elementwise on lists and follows IEEE-754 semantics, including the special
values: ``x/0`` is :math:`\pm\infty` (``0/0`` and ``nan/0`` are NaN), ``sqrt`` of a negative is NaN,
overflow gives :math:`\pm\infty`, and :meth:`Arithmetic.maximum` propagates NaN as
``torch.maximum`` does. Python would raise on the first two; these functions do not.

**Binary32 emulation.** :class:`FloatArithmetic` with :data:`~adamw_ref.formats.BINARY32` computes
each ``+ - * / sqrt`` in binary64 and rounds the result once to binary32. That double rounding is
innocuous: for :math:`p'\ge 2p+2` (here :math:`53\ge 50`) the binary64 result rounded to binary32
equals the correctly rounded binary32 result (S. A. Figueroa, *When is double rounding
innocuous?*, SIGNUM Newsletter 30(3), 1995; also Roux, *Innocuous double rounding of basic
arithmetic operations*, JFR 7(1), 2014). So each operation is exactly the binary32 operation.
Powers :math:`\beta^k` are evaluated in binary64 and rounded once (within one binary32 ulp of
the correctly rounded power).

**Scalars.** Quantities derived from hyperparameters and the step count
(:math:`1-\beta_i`, :math:`\alpha\eta(c)`, :math:`s_t`, :math:`1\pm s_t`, :math:`1-\beta_i^k`,
:math:`\sqrt{1-\beta_2^k}`) are computed in :attr:`Arithmetic.scalars` and converted once with
:meth:`Arithmetic.lift`. For the binary formats that is binary64 rounded once to the working
format, which is what PyTorch does with Python floats and what Keras and Optax do for
:math:`1-\beta` (their bias corrections, computed in binary32, may differ by an ulp).
Elementwise tensor operations are each rounded to the working format.

**High precision.** :class:`HighPrecision` uses :mod:`decimal` at ``digits`` significant digits,
with the *same* binary64 inputs converted exactly, so it measures the rounding error of the
binary64 reference itself.
"""

from __future__ import annotations

import decimal
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, Generic, TypeVar

from adamw_ref.formats import BINARY32, BINARY64, FORMATS, BinaryFormat, round_all, round_to_format

N = TypeVar("N")


def _ieee_div(a: float, b: float) -> float:
    try:
        return a / b
    except ZeroDivisionError:
        if a != a or a == 0.0:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _ieee_sqrt(a: float) -> float:
    return math.sqrt(a) if a >= 0.0 else (a if a != a else math.nan)


class Arithmetic(ABC, Generic[N]):
    """Elementwise IEEE-style operations on lists of numbers of type ``N``."""

    name: str

    @property
    def scalars(self) -> Arithmetic[Any]:
        """The arithmetic in which hyperparameter-derived scalars are computed."""
        return self

    def lift(self, x: Any) -> N:
        """A value of :attr:`scalars` converted into this arithmetic (rounded once)."""
        return x  # type: ignore[no-any-return]

    @abstractmethod
    def const(self, x: float) -> N:
        """A binary64 hyperparameter converted into this arithmetic (rounded once if narrower)."""

    @abstractmethod
    def vec(self, xs: Iterable[float | N]) -> list[N]:
        """Values converted into this arithmetic (binary64 values are converted exactly)."""

    @abstractmethod
    def to_float(self, x: N) -> float:
        """The nearest binary64 value."""

    @abstractmethod
    def add(self, xs: Sequence[N], ys: Sequence[N]) -> list[N]: ...

    @abstractmethod
    def sub(self, xs: Sequence[N], ys: Sequence[N]) -> list[N]: ...

    @abstractmethod
    def mul(self, xs: Sequence[N], ys: Sequence[N]) -> list[N]: ...

    @abstractmethod
    def div(self, xs: Sequence[N], ys: Sequence[N]) -> list[N]: ...

    @abstractmethod
    def sqrt(self, xs: Sequence[N]) -> list[N]: ...

    @abstractmethod
    def maximum(self, xs: Sequence[N], ys: Sequence[N]) -> list[N]: ...

    @abstractmethod
    def neg(self, xs: Sequence[N]) -> list[N]: ...

    @abstractmethod
    def add_s(self, xs: Sequence[N], c: N) -> list[N]: ...

    @abstractmethod
    def mul_s(self, xs: Sequence[N], c: N) -> list[N]: ...

    @abstractmethod
    def div_s(self, xs: Sequence[N], c: N) -> list[N]: ...

    @abstractmethod
    def s_add(self, a: N, b: N) -> N: ...

    @abstractmethod
    def s_sub(self, a: N, b: N) -> N: ...

    @abstractmethod
    def s_mul(self, a: N, b: N) -> N: ...

    @abstractmethod
    def s_div(self, a: N, b: N) -> N: ...

    @abstractmethod
    def s_sqrt(self, a: N) -> N: ...

    @abstractmethod
    def s_pow(self, base: N, k: int) -> N:
        """:math:`\\text{base}^k` for an integer ``k >= 0``."""

    def to_floats(self, xs: Iterable[N]) -> list[float]:
        return [self.to_float(x) for x in xs]


class FloatArithmetic(Arithmetic[float]):
    """Binary64, or binary64 operations rounded once to a narrower IEEE format ``fmt``."""

    def __init__(self, fmt: BinaryFormat = BINARY64) -> None:
        self.fmt = fmt
        self.name = fmt.name
        self._exact = fmt.precision >= 53

    @property
    def scalars(self) -> Arithmetic[Any]:
        return self if self._exact else _BINARY64

    def lift(self, x: Any) -> float:
        return self._r1(float(x))

    def _r(self, xs: list[float]) -> list[float]:
        return xs if self._exact else round_all(xs, self.fmt)

    def _r1(self, x: float) -> float:
        return x if self._exact else round_to_format(x, self.fmt)

    def const(self, x: float) -> float:
        return self._r1(float(x))

    def vec(self, xs: Iterable[float]) -> list[float]:
        return self._r([float(x) for x in xs])

    def to_float(self, x: float) -> float:
        return x

    def add(self, xs: Sequence[float], ys: Sequence[float]) -> list[float]:
        return self._r([x + y for x, y in zip(xs, ys)])

    def sub(self, xs: Sequence[float], ys: Sequence[float]) -> list[float]:
        return self._r([x - y for x, y in zip(xs, ys)])

    def mul(self, xs: Sequence[float], ys: Sequence[float]) -> list[float]:
        return self._r([x * y for x, y in zip(xs, ys)])

    def div(self, xs: Sequence[float], ys: Sequence[float]) -> list[float]:
        if 0.0 in ys:
            return self._r([_ieee_div(x, y) for x, y in zip(xs, ys)])
        return self._r([x / y for x, y in zip(xs, ys)])

    def sqrt(self, xs: Sequence[float]) -> list[float]:
        return self._r([_ieee_sqrt(x) for x in xs])

    def maximum(self, xs: Sequence[float], ys: Sequence[float]) -> list[float]:
        return [x if x != x else (y if y != y else (x if x >= y else y)) for x, y in zip(xs, ys)]

    def neg(self, xs: Sequence[float]) -> list[float]:
        return [-x for x in xs]

    def add_s(self, xs: Sequence[float], c: float) -> list[float]:
        return self._r([x + c for x in xs])

    def mul_s(self, xs: Sequence[float], c: float) -> list[float]:
        return self._r([x * c for x in xs])

    def div_s(self, xs: Sequence[float], c: float) -> list[float]:
        if c == 0.0:
            return self._r([_ieee_div(x, c) for x in xs])
        return self._r([x / c for x in xs])

    def s_add(self, a: float, b: float) -> float:
        return self._r1(a + b)

    def s_sub(self, a: float, b: float) -> float:
        return self._r1(a - b)

    def s_mul(self, a: float, b: float) -> float:
        return self._r1(a * b)

    def s_div(self, a: float, b: float) -> float:
        return self._r1(_ieee_div(a, b))

    def s_sqrt(self, a: float) -> float:
        return self._r1(_ieee_sqrt(a))

    def s_pow(self, base: float, k: int) -> float:
        return self._r1(base**k)


class HighPrecision(Arithmetic[Decimal]):
    """Decimal arithmetic at ``digits`` significant digits: the oracle for the binary64 reference.

    Traps are off, so division by zero gives ``Infinity`` and invalid operations ``NaN``.
    """

    #: The largest precision accepted: each operation costs about digits^1.6, so a bound keeps a
    #: typo like ``decimal:100000000`` from running for hours.
    MAX_DIGITS = 1000

    def __init__(self, digits: int = 60) -> None:
        if isinstance(digits, bool) or not isinstance(digits, int) or not 20 <= digits <= self.MAX_DIGITS:
            from adamw_ref.errors import ConfigError

            raise ConfigError("digits", digits, f"must be an integer between 20 and {self.MAX_DIGITS}")
        self.digits = digits
        self.name = f"decimal{digits}"
        self.ctx = decimal.Context(prec=digits, traps=[], Emin=-999999, Emax=999999)

    def const(self, x: float) -> Decimal:
        return Decimal(float(x))

    def vec(self, xs: Iterable[float | Decimal]) -> list[Decimal]:
        return [x if isinstance(x, Decimal) else Decimal(float(x)) for x in xs]

    def to_float(self, x: Decimal) -> float:
        return float(x)

    def add(self, xs: Sequence[Decimal], ys: Sequence[Decimal]) -> list[Decimal]:
        c = self.ctx
        return [c.add(x, y) for x, y in zip(xs, ys)]

    def sub(self, xs: Sequence[Decimal], ys: Sequence[Decimal]) -> list[Decimal]:
        c = self.ctx
        return [c.subtract(x, y) for x, y in zip(xs, ys)]

    def mul(self, xs: Sequence[Decimal], ys: Sequence[Decimal]) -> list[Decimal]:
        c = self.ctx
        return [c.multiply(x, y) for x, y in zip(xs, ys)]

    def div(self, xs: Sequence[Decimal], ys: Sequence[Decimal]) -> list[Decimal]:
        return [self.s_div(x, y) for x, y in zip(xs, ys)]

    def sqrt(self, xs: Sequence[Decimal]) -> list[Decimal]:
        return [self.s_sqrt(x) for x in xs]

    def maximum(self, xs: Sequence[Decimal], ys: Sequence[Decimal]) -> list[Decimal]:
        return [x if x.is_nan() else (y if y.is_nan() else max(x, y)) for x, y in zip(xs, ys)]

    def neg(self, xs: Sequence[Decimal]) -> list[Decimal]:
        return [x.copy_negate() for x in xs]

    def add_s(self, xs: Sequence[Decimal], c: Decimal) -> list[Decimal]:
        return [self.ctx.add(x, c) for x in xs]

    def mul_s(self, xs: Sequence[Decimal], c: Decimal) -> list[Decimal]:
        return [self.ctx.multiply(x, c) for x in xs]

    def div_s(self, xs: Sequence[Decimal], c: Decimal) -> list[Decimal]:
        return [self.s_div(x, c) for x in xs]

    def s_add(self, a: Decimal, b: Decimal) -> Decimal:
        return self.ctx.add(a, b)

    def s_sub(self, a: Decimal, b: Decimal) -> Decimal:
        return self.ctx.subtract(a, b)

    def s_mul(self, a: Decimal, b: Decimal) -> Decimal:
        return self.ctx.multiply(a, b)

    def s_div(self, a: Decimal, b: Decimal) -> Decimal:
        if b.is_zero() and not a.is_nan() and not a.is_zero():
            sign = -1 if a.is_signed() != b.is_signed() else 1
            return Decimal(sign) * Decimal("Infinity")
        if b.is_zero():
            return Decimal("NaN")
        return self.ctx.divide(a, b)

    def s_sqrt(self, a: Decimal) -> Decimal:
        if a.is_nan() or (a < 0 and not a.is_zero()):
            return Decimal("NaN")
        return self.ctx.sqrt(a)

    def s_pow(self, base: Decimal, k: int) -> Decimal:
        return self.ctx.power(base, k)


def arithmetic_for(dtype: str) -> FloatArithmetic:
    """The float arithmetic emulating ``dtype`` (``float64``, ``float32``, ``float16``, ``bfloat16``)."""
    fmt = FORMATS.get(dtype)
    if fmt is None:
        from adamw_ref.errors import ConfigError

        raise ConfigError("dtype", dtype, f"unknown; expected one of {sorted(FORMATS)}")
    return FloatArithmetic(fmt)


_BINARY64 = FloatArithmetic(BINARY64)
BINARY64_ARITHMETIC = _BINARY64
BINARY32_ARITHMETIC = FloatArithmetic(BINARY32)
