"""The reference's numpy executor: :func:`adamw_ref.step` on numpy arrays of any shape.

:class:`NumpyArithmetic` implements :class:`adamw_ref.Arithmetic` with numpy float64/float32/
float16 vectors. Each ``+ - * / sqrt`` of a numpy array of that dtype is the correctly rounded
IEEE operation (numpy's float16 goes through float32, an innocuous double rounding: 24 >= 2*11+2),
so it computes exactly what :class:`adamw_ref.FloatArithmetic` emulates, only vectorised.
``const`` and ``s_pow`` round the binary64 value once, as ``FloatArithmetic`` does. bfloat16 uses
``FloatArithmetic(BFLOAT16)`` itself (pure Python, small tensors only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from adamw_ref import (
    BINARY64_ARITHMETIC,
    AdamWConfig,
    Arithmetic,
    FloatArithmetic,
    State,
    init,
    step,
)
from adamw_ref.formats import FORMATS

F64 = NDArray[np.float64]
Vec = Any


class NumpyArithmetic(Arithmetic[Any]):
    """Vectorised IEEE arithmetic in numpy ``dtype`` (float64, float32 or float16)."""

    def __init__(self, dtype: str) -> None:
        if dtype not in ("float64", "float32", "float16"):
            raise ValueError(f"dtype {dtype!r}: NumpyArithmetic supports float64/32/16")
        self.dt = np.dtype(dtype)
        self.name = dtype

    @property
    def scalars(self) -> Arithmetic[Any]:
        """Scalars are computed in binary64 and rounded once, as FloatArithmetic does."""
        return BINARY64_ARITHMETIC

    def lift(self, x: Any) -> Any:
        return self.dt.type(float(x))

    def const(self, x: float) -> Any:
        return self.dt.type(float(x))

    def vec(self, xs: Iterable[Any]) -> Vec:
        return np.asarray(list(xs) if not isinstance(xs, np.ndarray) else xs, dtype=self.dt)

    def to_float(self, x: Any) -> float:
        return float(x)

    def _a(self, xs: Any) -> Vec:
        return xs if isinstance(xs, np.ndarray) and xs.dtype == self.dt else self.vec(xs)

    def add(self, xs: Sequence[Any], ys: Sequence[Any]) -> Vec:
        with np.errstate(all="ignore"):
            return self._a(xs) + self._a(ys)

    def sub(self, xs: Sequence[Any], ys: Sequence[Any]) -> Vec:
        with np.errstate(all="ignore"):
            return self._a(xs) - self._a(ys)

    def mul(self, xs: Sequence[Any], ys: Sequence[Any]) -> Vec:
        with np.errstate(all="ignore"):
            return self._a(xs) * self._a(ys)

    def div(self, xs: Sequence[Any], ys: Sequence[Any]) -> Vec:
        with np.errstate(all="ignore"):
            return self._a(xs) / self._a(ys)

    def sqrt(self, xs: Sequence[Any]) -> Vec:
        with np.errstate(all="ignore"):
            return np.sqrt(self._a(xs))

    def maximum(self, xs: Sequence[Any], ys: Sequence[Any]) -> Vec:
        return np.maximum(self._a(xs), self._a(ys))

    def neg(self, xs: Sequence[Any]) -> Vec:
        return -self._a(xs)

    def add_s(self, xs: Sequence[Any], c: Any) -> Vec:
        with np.errstate(all="ignore"):
            return self._a(xs) + self.dt.type(c)

    def mul_s(self, xs: Sequence[Any], c: Any) -> Vec:
        with np.errstate(all="ignore"):
            return self._a(xs) * self.dt.type(c)

    def div_s(self, xs: Sequence[Any], c: Any) -> Vec:
        with np.errstate(all="ignore"):
            return self._a(xs) / self.dt.type(c)

    def s_add(self, a: Any, b: Any) -> Any:
        with np.errstate(all="ignore"):
            return self.dt.type(a) + self.dt.type(b)

    def s_sub(self, a: Any, b: Any) -> Any:
        with np.errstate(all="ignore"):
            return self.dt.type(a) - self.dt.type(b)

    def s_mul(self, a: Any, b: Any) -> Any:
        with np.errstate(all="ignore"):
            return self.dt.type(a) * self.dt.type(b)

    def s_div(self, a: Any, b: Any) -> Any:
        with np.errstate(all="ignore"):
            return self.dt.type(a) / self.dt.type(b)

    def s_sqrt(self, a: Any) -> Any:
        with np.errstate(all="ignore"):
            return np.sqrt(self.dt.type(a))

    def s_pow(self, base: Any, k: int) -> Any:
        with np.errstate(all="ignore"):
            return self.dt.type(float(base) ** k)


def arithmetic(dtype: str) -> Arithmetic[Any]:
    """The arithmetic that computes the spec *in* ``dtype`` (every operation rounded to it)."""
    if dtype == "bfloat16":
        return FloatArithmetic(FORMATS["bfloat16"])
    return NumpyArithmetic(dtype)


def round_to(x: Any, dtype: str) -> F64:
    """``x`` rounded to ``dtype`` and returned as float64 (the suite's exchange format)."""
    a = np.asarray(x, dtype=np.float64)
    if dtype == "bfloat16":
        import ml_dtypes

        return (
            np.asarray(a.astype(np.float32).astype(ml_dtypes.bfloat16), np.float64)
            if _bf16_safe(a)
            else _round_py(a, dtype)
        )
    return np.asarray(a.astype(dtype), dtype=np.float64)


def _bf16_safe(a: F64) -> bool:
    # float64 -> float32 -> bfloat16 double rounding is innocuous only if the first step is exact.
    return bool(np.all(a.astype(np.float32).astype(np.float64) == a))


def _round_py(a: F64, dtype: str) -> F64:
    from adamw_ref.formats import round_to_format

    fmt = FORMATS[dtype]
    return np.array([round_to_format(float(x), fmt) for x in a.ravel()]).reshape(a.shape)


def _flat(d: Mapping[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {k: tuple(np.asarray(v, dtype=np.float64).ravel().tolist()) for k, v in d.items()}


class RefStepper:
    """A live reference optimizer over shaped float64 arrays, computing in ``arith``."""

    def __init__(self, config: AdamWConfig, params: Mapping[str, Any], arith: Arithmetic[Any]):
        self.config = config
        self.arith = arith
        self.shapes = {k: np.shape(v) for k, v in params.items()}
        flat = _flat(params)
        self.state: State[Any] = init(flat, config, arith)
        self.flat: dict[str, Any] = {k: tuple(arith.vec(v)) for k, v in flat.items()}

    def step(self, grads: Mapping[str, Any]) -> None:
        g = {
            k: (None if v is None else tuple(np.asarray(v, np.float64).ravel().tolist()))
            for k, v in grads.items()
        }
        self.flat, self.state = step(self.flat, g, self.state, self.config, self.arith)

    def _shape(self, name: str, xs: Sequence[Any]) -> F64:
        return np.array([float(x) for x in xs], dtype=np.float64).reshape(self.shapes[name])

    def params(self) -> dict[str, F64]:
        return {k: self._shape(k, v) for k, v in self.flat.items()}

    def moments(self) -> tuple[dict[str, F64], dict[str, F64], dict[str, F64] | None]:
        s = self.state
        m = {k: self._shape(k, v) for k, v in s.m.items()}
        v = {k: self._shape(k, x) for k, x in s.v.items()}
        vm = None if s.v_max is None else {k: self._shape(k, x) for k, x in s.v_max.items()}
        return m, v, vm

    def set_state(
        self,
        params: Mapping[str, Any],
        step_count: int,
        m: Mapping[str, Any],
        v: Mapping[str, Any],
        v_max: Mapping[str, Any] | None,
        param_steps: Mapping[str, int] | None = None,
    ) -> None:
        A = self.arith
        self.flat = {k: tuple(A.vec(x)) for k, x in _flat(params).items()}
        ps = (
            dict(param_steps)
            if param_steps is not None
            else (
                dict(self.state.param_steps)
                if self.state.step == step_count
                else dict.fromkeys(self.flat, step_count)
            )
        )
        self.state = State(
            step=step_count,
            param_steps=ps,
            m={k: tuple(A.vec(x)) for k, x in _flat(m).items()},
            v={k: tuple(A.vec(x)) for k, x in _flat(v).items()},
            v_max=None if v_max is None else {k: tuple(A.vec(x)) for k, x in _flat(v_max).items()},
        )
