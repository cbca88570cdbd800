"""The reference's numpy executor: :func:`adamw_ref.step` on numpy arrays of any shape.

:class:`RefStepper` is a live reference optimizer over shaped arrays. It has three executors of
one specification, chosen per stepper (:func:`choose_backend`; ``backend=`` or the environment
variable ``ADAMW_REF_ORACLE`` = ``auto`` | ``numba`` | ``numpy`` | ``spec``):

* ``numba``: :mod:`adapters.reference.fused`'s kernel compiled by numba: one pass over memory per
  parameter and step, the arrays updated in place (float64 and float32);
* ``numpy``: the same operations as whole-array numpy operations (float64, float32, float16), the
  fallback without numba;
* ``spec``: :func:`adamw_ref.step` itself over tuples, for every other arithmetic (bfloat16,
  :class:`adamw_ref.HighPrecision`, an arithmetic with its own elementwise operations).

The first two form every scalar with the specification's own functions
(:func:`adamw_ref.update.step_constants`, :func:`~adamw_ref.update.coefficients`, in
``arith.scalars`` and lifted once) and apply the operations of
:func:`adamw_ref.update.update_parameter` in its order, so all three give the same bits
(``tests/adapters/test_oracle.py`` checks it). ``auto`` takes numba for float64/float32 problems
of at least :data:`NUMBA_MIN_ELEMENTS` elements when numba is installed (below that numba's
import and call overhead cost more than they save), else numpy, else the specification.

:class:`NumpyArithmetic` implements :class:`adamw_ref.Arithmetic` with numpy float64/float32/
float16 vectors. Each ``+ - * / sqrt`` of a numpy array of that dtype is the correctly rounded
IEEE operation (numpy's float16 goes through float32, an innocuous double rounding: 24 >= 2*11+2),
so it computes exactly what :class:`adamw_ref.FloatArithmetic` emulates, only vectorised.
``const`` and ``s_pow`` round the binary64 value once, as ``FloatArithmetic`` does. bfloat16 uses
``FloatArithmetic(BFLOAT16)`` itself (pure Python, small tensors only).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from adamw_ref import (
    BINARY64_ARITHMETIC,
    AdamWConfig,
    Arithmetic,
    FloatArithmetic,
    InputError,
    State,
    init,
    step,
)
from adamw_ref.formats import BINARY16, BINARY32, BINARY64, FORMATS
from adamw_ref.knobs import AmsgradMode, DecayForm, DecayScaling, DecayTiming, EpsPlacement
from adamw_ref.update import Coefficients, StepConstants, coefficients, decays_at, step_constants
from adapters.reference import fused

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


# -------------------------------------------------------------------------------- backends
#: The executors of :class:`RefStepper`; ``auto`` picks one (:func:`choose_backend`).
BACKENDS = ("auto", "numba", "numpy", "spec")

#: The environment variable that picks the backend when the caller does not.
BACKEND_ENV = "ADAMW_REF_ORACLE"

#: ``auto`` takes numba from this many elements (all parameters together) on; below it the numpy
#: path is as fast per step and numba's import (~0.3 s) and kernel load would dominate a short
#: run (benchmarks/README.md has the measurement).
NUMBA_MIN_ELEMENTS = 1 << 16

# The elementwise operations whose numpy definitions the array executors reproduce: a subclass of
# NumpyArithmetic that overrides none of them (it may form its scalars differently, as
# conformance.diagnose.ScalarPrecision does) runs on the array path too.
_ELEMENTWISE = ("vec", "add", "sub", "mul", "div", "sqrt", "maximum", "neg", "add_s", "mul_s", "div_s")
_FLOAT_FORMATS = {BINARY64.name: "float64", BINARY32.name: "float32", BINARY16.name: "float16"}


def array_dtype(arith: Arithmetic[Any]) -> str | None:
    """The numpy dtype in which the array executors compute exactly what ``arith`` computes, or
    None (then only the specification itself can run it)."""
    if isinstance(arith, NumpyArithmetic):
        if arith.name not in ("float64", "float32", "float16"):
            return None
        cls = type(arith)
        same = all(getattr(cls, op) is getattr(NumpyArithmetic, op) for op in _ELEMENTWISE)
        return arith.name if same else None
    if type(arith) is FloatArithmetic:
        return _FLOAT_FORMATS.get(arith.fmt.name)
    return None


def choose_backend(requested: str | None, arith: Arithmetic[Any], elements: int) -> str:
    """The executor for ``arith`` and a problem of ``elements`` elements: ``requested`` (else the
    environment's :data:`BACKEND_ENV`, else ``auto``) where it can run, else the next one down
    (numba -> numpy -> spec)."""
    want = (requested or os.environ.get(BACKEND_ENV) or "auto").strip().lower()
    if want not in BACKENDS:
        raise ValueError(f"oracle backend {want!r}: expected one of {BACKENDS}")
    dtype = array_dtype(arith)
    if want == "spec" or dtype is None:
        return "spec"
    if want == "numpy" or dtype not in fused.NUMBA_DTYPES:
        return "numpy"
    if want == "auto" and elements < NUMBA_MIN_ELEMENTS:
        return "numpy"
    return "numba" if fused.numba_available() else "numpy"


class RefStepper:
    """A live reference optimizer over shaped arrays (float64 in and out), computing in ``arith``.

    ``params()``, ``moments()`` return float64 copies in the parameters' shapes; ``step(grads)``
    takes a mapping of arrays (``None``: frozen); ``set_state`` forces a state (teacher forcing);
    ``state`` is the :class:`adamw_ref.State` (``flat`` the flat parameters), readable and
    assignable. ``backend`` (see :func:`choose_backend`) is the executor actually used."""

    def __init__(
        self,
        config: AdamWConfig,
        params: Mapping[str, Any],
        arith: Arithmetic[Any],
        *,
        backend: str | None = None,
    ) -> None:
        self.config = config
        self.arith = arith
        self.shapes = {k: np.shape(v) for k, v in params.items()}
        elements = sum(int(np.prod(s, dtype=np.int64)) for s in self.shapes.values())
        chosen = choose_backend(backend, arith, elements)
        dtype = array_dtype(arith)
        self._impl: _SpecEngine | _ArrayEngine
        # Narrow state storage (param/m/v_dtype) is a rounding point the array executors do not
        # model: the spec path computes it.
        if chosen == "spec" or dtype is None or config.stores_narrow:
            self._impl = _SpecEngine(config, params, arith)
        else:
            self._impl = _ArrayEngine(config, params, arith, dtype, numba=chosen == "numba")
        self.backend: str = self._impl.backend

    def step(self, grads: Mapping[str, Any]) -> None:
        self._impl.step(grads)

    def params(self) -> dict[str, F64]:
        return {k: self._shape(k, a) for k, a in self._impl.flat_arrays().items()}

    def moments(self) -> tuple[dict[str, F64], dict[str, F64], dict[str, F64] | None]:
        m, v, vm = self._impl.moment_arrays()
        return (
            {k: self._shape(k, a) for k, a in m.items()},
            {k: self._shape(k, a) for k, a in v.items()},
            None if vm is None else {k: self._shape(k, a) for k, a in vm.items()},
        )

    def set_state(
        self,
        params: Mapping[str, Any],
        step_count: int,
        m: Mapping[str, Any],
        v: Mapping[str, Any],
        v_max: Mapping[str, Any] | None,
        param_steps: Mapping[str, int] | None = None,
    ) -> None:
        self._impl.set_state(params, step_count, m, v, v_max, param_steps)

    @property
    def state(self) -> State[Any]:
        return self._impl.get_state()

    @state.setter
    def state(self, value: State[Any]) -> None:
        self._impl.put_state(value)

    @property
    def flat(self) -> dict[str, Any]:
        return self._impl.get_flat()

    @flat.setter
    def flat(self, value: Mapping[str, Any]) -> None:
        self._impl.put_flat(value)

    def _shape(self, name: str, a: Any) -> F64:
        return np.array(a, dtype=np.float64).reshape(self.shapes[name])


class _SpecEngine:
    """:func:`adamw_ref.step` itself over tuples of ``arith``'s numbers (any arithmetic)."""

    backend = "spec"

    def __init__(self, config: AdamWConfig, params: Mapping[str, Any], arith: Arithmetic[Any]) -> None:
        self.config = config
        self.arith = arith
        flat = _flat(params)
        self.state: State[Any] = init(flat, config, arith)
        self.flat: dict[str, Any] = {k: tuple(arith.vec(v)) for k, v in flat.items()}

    def step(self, grads: Mapping[str, Any]) -> None:
        g = {
            k: (None if v is None else tuple(np.asarray(v, np.float64).ravel().tolist()))
            for k, v in grads.items()
        }
        self.flat, self.state = step(self.flat, g, self.state, self.config, self.arith)

    def _floats(self, xs: Sequence[Any]) -> F64:
        return np.array([float(x) for x in xs], dtype=np.float64)

    def flat_arrays(self) -> dict[str, F64]:
        return {k: self._floats(v) for k, v in self.flat.items()}

    def moment_arrays(self) -> tuple[dict[str, F64], dict[str, F64], dict[str, F64] | None]:
        s = self.state
        m = {k: self._floats(x) for k, x in s.m.items()}
        v = {k: self._floats(x) for k, x in s.v.items()}
        vm = None if s.v_max is None else {k: self._floats(x) for k, x in s.v_max.items()}
        return m, v, vm

    def set_state(
        self,
        params: Mapping[str, Any],
        step_count: int,
        m: Mapping[str, Any],
        v: Mapping[str, Any],
        v_max: Mapping[str, Any] | None,
        param_steps: Mapping[str, int] | None,
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

    def get_state(self) -> State[Any]:
        return self.state

    def put_state(self, value: State[Any]) -> None:
        self.state = value

    def get_flat(self) -> dict[str, Any]:
        return self.flat

    def put_flat(self, value: Mapping[str, Any]) -> None:
        self.flat = dict(value)


class _Tuples(Mapping[str, tuple[Any, ...]]):
    """A snapshot of arrays read as tuples of floats (converted on access: a State read for its
    counts does not pay for converting every element)."""

    def __init__(self, arrays: Mapping[str, Any]) -> None:
        self._a = {k: np.array(a) for k, a in arrays.items()}

    def __getitem__(self, key: str) -> tuple[Any, ...]:
        return tuple(self._a[key].tolist())

    def __iter__(self) -> Iterator[str]:
        return iter(self._a)

    def __len__(self) -> int:
        return len(self._a)


class _ArrayEngine:
    """The specification on flat arrays of ``dtype``, updated in place: scalars formed by
    :mod:`adamw_ref.update` in ``arith``, the elementwise update by :mod:`adapters.reference.fused`
    (compiled by numba, or as numpy array operations)."""

    def __init__(
        self,
        config: AdamWConfig,
        params: Mapping[str, Any],
        arith: Arithmetic[Any],
        dtype: str,
        *,
        numba: bool,
    ) -> None:
        if not isinstance(config, AdamWConfig):
            raise InputError("config", config, "must be an AdamWConfig")
        self.config = config
        self.arith = arith
        self.dt = np.dtype(dtype)
        self._empty = np.zeros(0, self.dt)
        self._work: dict[str, Any] = {}
        # numba: each kernel variant compiles on its first use
        self.backend = "numba" if numba and fused.numba_available() else "numpy"
        f64 = _f64_arrays(params, "params")
        _check_initial(f64, config)
        self.p = {k: self._own(a) for k, a in f64.items()}
        self.m = {k: self._zeros(a.size) for k, a in f64.items()}
        self.v = {k: self._zeros(a.size) for k, a in f64.items()}
        self.v_max: dict[str, Any] | None = (
            {k: self._zeros(a.size) for k, a in f64.items()} if config.amsgrad else None
        )
        self.step_count = 0
        self.param_steps = dict.fromkeys(self.p, 0)

    # -- arrays ---------------------------------------------------------------------------------
    def _zeros(self, n: int) -> Any:
        a = np.empty(n, self.dt)
        a.fill(0)  # written here, so every page is mapped before the first step
        return a

    def _own(self, a: F64) -> Any:
        """A fresh contiguous array of the working dtype (binary64 values rounded once)."""
        out = np.empty(a.size, self.dt)
        with np.errstate(over="ignore"):  # out of range: +-inf, as the specification rounds
            out[...] = a.ravel()
        return out

    def _working(self, x: Any) -> Any:
        """A gradient in the working dtype: read as binary64 (as the specification's inputs
        are), then rounded once; already in the working dtype, taken as it is (read only)."""
        a = np.asarray(x)
        if a.dtype == self.dt:
            return np.ascontiguousarray(a).ravel()
        with np.errstate(over="ignore"):
            return np.ascontiguousarray(np.asarray(a, dtype=np.float64).ravel(), dtype=self.dt)

    def _scratch(self, name: str, n: int) -> Any:
        """The numpy path's four scratch arrays for parameter ``name`` (kept: no step allocates)."""
        w = self._work.get(name)
        if w is None or w.shape[1] != n:
            w = self._work[name] = np.empty((4, n), self.dt)
            w.fill(0)
        return w

    # -- the step -------------------------------------------------------------------------------
    def step(self, grads: Mapping[str, Any]) -> None:
        if not isinstance(grads, Mapping):
            raise InputError("grads", grads, "must be a mapping of name -> values or None")
        g = {k: None if v is None else self._working(v) for k, v in grads.items()}
        self._check(g)
        cfg, A = self.config, self.arith
        const = step_constants(self.step_count, cfg, A)
        work = []
        for name, p in self.p.items():  # scalars first: an error leaves the state as it was
            gw = g[name]
            if gw is None:
                continue
            c = coefficients(name, self.param_steps[name] + 1, const, cfg, A)
            vm = self.v_max[name] if (cfg.amsgrad and self.v_max is not None) else None
            work.append((name, p, gw, vm, *self._operands(c, const, vm is not None)))
        for name, p, gw, vm, s, mo in work:
            vmax = self._empty if vm is None else vm
            if self.backend == "numba":
                fused.numba_update(p, gw, self.m[name], self.v[name], vmax, s, mo)
            else:
                fused.numpy_update(
                    p, gw, self.m[name], self.v[name], vmax, s, mo, self._scratch(name, p.size)
                )
            self.param_steps[name] += 1
            if not cfg.amsgrad and self.v_max is not None:
                self.v_max.pop(name, None)  # as adamw_ref.step: an updated parameter keeps none
        self.step_count = const.t

    def _operands(
        self, c: Coefficients[Any], const: StepConstants[Any], amsgrad: bool
    ) -> tuple[fused.Scalars, fused.Modes]:
        """The kernel's scalars and modes for one parameter, formed as :mod:`adamw_ref.update`
        forms them (the same calls, in ``arith.scalars``, lifted once)."""
        cfg, A = self.config, self.arith
        S = A.scalars
        t = self.dt.type
        one = t(1)
        before = decays_at(DecayTiming.BEFORE_STEP, c, cfg)
        after = decays_at(DecayTiming.AFTER_STEP, c, cfg)
        shrink = fused.MULTIPLY if cfg.decay_form is DecayForm.MULTIPLICATIVE else fused.DIVIDE
        factor = one
        if before or after:  # decoupled_decay
            f = S.s_sub(const.one_s, c.s_s) if shrink == fused.MULTIPLY else S.s_add(const.one_s, c.s_s)
            factor = t(A.lift(f))
        bc1_next = one
        if cfg.nesterov:  # first_moment_hat
            bc1_next = t(
                A.lift(S.s_sub(const.one_s, S.s_pow(const.b1_s, c.k + 1)))
                if cfg.bias_correction
                else A.lift(const.one_s)
            )
        eps_after = cfg.eps_placement is EpsPlacement.AFTER_BIAS_CORRECTION
        sqrt_bc2 = one if eps_after else t(A.lift(S.s_sqrt(c.bc2_s)))  # direction
        added = fused.NOT_ADDED
        if c.decays and cfg.decay_form is DecayForm.ADDED_TO_UPDATE:  # apply_update
            added = {
                DecayScaling.LR: fused.ADDED_LR,
                DecayScaling.SCHEDULE_MULTIPLIER: fused.ADDED_SCHEDULE,
                DecayScaling.UNSCALED: fused.ADDED_UNSCALED,
            }[cfg.decay_scaling]
        ams = fused.NO_AMSGRAD
        if amsgrad:  # second_moment
            ams = fused.AMS_RAW if cfg.amsgrad_mode is AmsgradMode.RAW_V else fused.AMS_CORRECTED
        scalars = fused.Scalars(
            b1=t(const.b1),
            one_minus_b1=t(const.one_minus_b1),
            b2=t(const.b2),
            one_minus_b2=t(const.one_minus_b2),
            eps=t(const.eps),
            eps_root=t(const.eps_root),
            lr_t=t(c.lr_t),
            lam_t=t(c.lam_t),
            alpha=t(c.alpha),
            eta_a=t(const.eta_a),
            bc1=t(c.bc1),
            bc2=t(c.bc2),
            factor=factor,
            bc1_next=bc1_next,
            sqrt_bc2=sqrt_bc2,
        )
        modes = fused.Modes(
            maximize=cfg.maximize,
            coupled_l2=c.decays and cfg.decay_form is DecayForm.COUPLED_L2,
            decay_before=shrink if before else fused.NO_DECAY,
            decay_after=shrink if after else fused.NO_DECAY,
            amsgrad=ams,
            nesterov=cfg.nesterov,
            eps_after=eps_after,
            added=added,
        )
        return scalars, modes

    def _check(self, g: Mapping[str, Any]) -> None:
        """:func:`adamw_ref.step`'s checks of the gradients and the state, by name and length."""
        missing = [n for n in self.p if n not in g]
        extra = [n for n in g if n not in self.p]
        if missing:
            raise InputError("grads", sorted(g), f"missing gradients for {missing} (use None to freeze)")
        if extra:
            raise InputError("grads", sorted(g), f"gradients for unknown parameters {extra}")
        for name, gw in g.items():
            if gw is not None and gw.size != self.p[name].size:
                raise InputError(
                    f"grads[{name!r}]", f"length {gw.size}", f"parameter has length {self.p[name].size}"
                )
        if set(self.m) != set(self.p) or set(self.v) != set(self.p):
            raise InputError("state", sorted(self.m), f"names differ from params {sorted(self.p)}")
        if self.config.amsgrad and self.v_max is None:
            raise InputError("state.v_max", None, "amsgrad=True needs a state made with amsgrad")
        for name, p in self.p.items():
            if self.m[name].size != p.size or self.v[name].size != p.size:
                raise InputError(f"state.m[{name!r}]", self.m[name].size, f"params have {p.size}")
            if self.config.amsgrad and self.v_max is not None and self.v_max[name].size != p.size:
                raise InputError(f"state.v_max[{name!r}]", self.v_max[name].size, f"params have {p.size}")

    # -- reading and forcing the state ----------------------------------------------------------
    def flat_arrays(self) -> dict[str, Any]:
        return self.p

    def moment_arrays(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
        return self.m, self.v, self.v_max

    def _arrays(self, d: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self._own(a) for k, a in _f64_arrays(d, "state").items()}

    def set_state(
        self,
        params: Mapping[str, Any],
        step_count: int,
        m: Mapping[str, Any],
        v: Mapping[str, Any],
        v_max: Mapping[str, Any] | None,
        param_steps: Mapping[str, int] | None,
    ) -> None:
        new_p = self._arrays(params)
        if param_steps is not None:
            ps = dict(param_steps)
        elif self.step_count == step_count:
            ps = dict(self.param_steps)
        else:
            ps = dict.fromkeys(new_p, step_count)
        self.p = new_p
        self.m, self.v = self._arrays(m), self._arrays(v)
        self.v_max = None if v_max is None else self._arrays(v_max)
        self.step_count, self.param_steps = step_count, ps

    def get_state(self) -> State[Any]:
        return State(
            step=self.step_count,
            param_steps=dict(self.param_steps),
            m=_Tuples(self.m),
            v=_Tuples(self.v),
            v_max=None if self.v_max is None else _Tuples(self.v_max),
        )

    def put_state(self, value: State[Any]) -> None:
        self.m = {k: self._own(_floats(x)) for k, x in value.m.items()}
        self.v = {k: self._own(_floats(x)) for k, x in value.v.items()}
        self.v_max = (
            None if value.v_max is None else {k: self._own(_floats(x)) for k, x in value.v_max.items()}
        )
        self.step_count, self.param_steps = value.step, dict(value.param_steps)

    def get_flat(self) -> dict[str, Any]:
        return dict(_Tuples(self.p))

    def put_flat(self, value: Mapping[str, Any]) -> None:
        self.p = {k: self._own(_floats(x)) for k, x in value.items()}


def _floats(xs: Any) -> F64:
    """Values (an array, or a sequence of numbers of any arithmetic) as a flat float64 array."""
    if isinstance(xs, np.ndarray):
        return np.asarray(xs, dtype=np.float64).ravel()
    return np.array([float(x) for x in xs], dtype=np.float64)


def _f64_arrays(d: Mapping[str, Any], what: str) -> dict[str, F64]:
    if not isinstance(d, Mapping):
        raise InputError(what, d, "must be a mapping of name -> values")
    return {k: np.asarray(v, dtype=np.float64).ravel() for k, v in d.items()}


def _check_initial(params: Mapping[str, F64], config: AdamWConfig) -> None:
    """:func:`adamw_ref.init`'s checks on arrays: a non-empty mapping, string names, finite
    values, groups naming existing parameters."""
    if len(params) == 0:
        raise InputError("params", params, "must be a non-empty mapping of name -> values")
    for name, a in params.items():
        if not isinstance(name, str):
            raise InputError("params name", name, "must be a string")
        bad = np.flatnonzero(~np.isfinite(a))
        if bad.size:
            i = int(bad[0])
            raise InputError(f"params[{name!r}][{i}]", float(a[i]), "initial parameters must be finite")
    for gi, group in enumerate(config.groups):
        for n in group.names:
            if n not in params:
                raise InputError(
                    f"groups[{gi}].names", n, f"names no parameter; parameters: {sorted(params)}"
                )
