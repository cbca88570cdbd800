r"""One parameter's AdamW update in one pass over memory: the kernel of the fast oracle.

:func:`make_kernel` returns :func:`adamw_ref.update.update_parameter` written element by element,
every operation in the order the phases of ``adamw_ref/update.py`` form it (the right-hand
comments name the phase). It reads :math:`\theta, g, m, v` (and :math:`v_{max}`) once and writes
:math:`\theta, m, v` (and :math:`v_{max}`) once, in place. Compiled by numba (:func:`compiled`)
it is the oracle's fast path; :func:`numpy_update` is the same sequence of operations as
whole-array numpy operations (the fallback when numba is absent), and the kernel run as plain
Python is a third, slow, executor of the same source.

**Why it is bit-identical to the specification.** Every ``+ - * / sqrt`` here is one IEEE-754
operation rounded to the working format, as in :mod:`adamw_ref.arithmetic` (binary32 through
binary64 rounded once is the correctly rounded binary32 result). So the result is the
specification's if and only if the operations, their operands and their order are the same, and
the scalars are the same values. The scalars are not formed here: the caller forms them with the
specification's own functions (:func:`adamw_ref.update.step_constants`,
:func:`~adamw_ref.update.coefficients`) in binary64 and passes them rounded once to the working
format (:class:`Scalars`). numba compiles with IEEE semantics:

* no ``fastmath`` (no reassociation, no reciprocal for ``x/c``, NaN and infinities honoured);
* no FMA contraction: numba emits separate ``fmul``/``fadd`` without the ``contract`` flag, which
  LLVM's default (``-fp-contract`` off for such instructions) never fuses;
  :func:`ieee_evidence` counts ``vfmadd``-family instructions in the machine code (zero);
* flush-to-zero and denormals-are-zero stay off (numba never sets MXCSR);
  :func:`ieee_evidence` runs the compiled kernel on subnormal inputs and checks they survive;
* ``error_model='numpy'``: ``x/0`` is :math:`\pm\infty` or NaN as IEEE says, not an exception;
* float32 stays float32: every scalar is passed in the working dtype and the kernel has no Python
  float literal that would promote an operation to float64 (:func:`ieee_evidence` checks the
  float32 LLVM IR has no ``fpext``/``double``).

**One kernel per structure.** The knobs that change which divisions, square roots and memory
accesses happen (the decoupled decay's form and timing, AMSGrad's mode, Nesterov, the epsilon
placement: :meth:`Modes.structure`, 40 combinations) are constants of the kernel
:func:`make_kernel` builds, so each compiled variant is straight-line code that LLVM vectorises.
Left as runtime flags, LLVM if-converts them instead: every variant's divisions are computed and
the AMSGrad maximum is read with masked loads, which cost a microcode assist per vector when
they touch unmapped memory (measured: 28 ns per element at :math:`10^7` float32 elements, against
0.5 ns specialised). The cheap ones (``maximize``, the coupled L2 term, the three ways of adding
the decay to the update: a negation, a product, a sum) stay runtime flags (:meth:`Modes.flags`).
numba compiles a variant the first time it is used and caches it on disk (about 0.3 s, then a
few ms to load).
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# decay modes (a shrinking decoupled decay, before or after the step)
NO_DECAY, MULTIPLY, DIVIDE = 0, 1, 2
# AMSGrad: off, maximum of the raw v, maximum of the bias-corrected v
NO_AMSGRAD, AMS_RAW, AMS_CORRECTED = 0, 1, 2
# decay added to the update: off, decay_scaling lr, schedule_multiplier, unscaled
NOT_ADDED, ADDED_LR, ADDED_SCHEDULE, ADDED_UNSCALED = 0, 1, 2, 3

#: numba compiles only these working dtypes; numpy_update takes float16 as well.
NUMBA_DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class Scalars:
    """The scalars of one parameter's update, each a numpy scalar of the working dtype, formed by
    the specification (names as in :mod:`adamw_ref.update`): :math:`\\beta_i`, :math:`1-\\beta_i`,
    :math:`\\epsilon`, :math:`\\epsilon_{root}`, :math:`\\alpha_t` (``lr_t``), :math:`\\lambda_t`
    (``lam_t``), :math:`\\alpha`, :math:`\\eta(c)` (``eta_a``), :math:`bc_1`, :math:`bc_2`, the decay
    ``factor`` (:math:`1-s_t` or :math:`1+s_t`), :math:`1-\\beta_1^{k+1}` (``bc1_next``, Nesterov)
    and :math:`\\sqrt{bc_2}` (``sqrt_bc2``, epsilon hat); unused ones are 1."""

    b1: Any
    one_minus_b1: Any
    b2: Any
    one_minus_b2: Any
    eps: Any
    eps_root: Any
    lr_t: Any
    lam_t: Any
    alpha: Any
    eta_a: Any
    bc1: Any
    bc2: Any
    factor: Any
    bc1_next: Any
    sqrt_bc2: Any

    def values(self) -> tuple[Any, ...]:
        return (
            self.b1,
            self.one_minus_b1,
            self.b2,
            self.one_minus_b2,
            self.eps,
            self.eps_root,
            self.lr_t,
            self.lam_t,
            self.alpha,
            self.eta_a,
            self.bc1,
            self.bc2,
            self.factor,
            self.bc1_next,
            self.sqrt_bc2,
        )

    def array(self, dtype: Any) -> Any:
        """The kernel's ``sc`` argument."""
        return np.array(self.values(), dtype=dtype)


@dataclass(frozen=True)
class Modes:
    """Which phases run for this parameter (from the config and the parameter's group)."""

    maximize: bool
    coupled_l2: bool
    decay_before: int
    decay_after: int
    amsgrad: int
    nesterov: bool
    eps_after: bool
    added: int

    def values(self) -> tuple[Any, ...]:
        return (
            self.maximize,
            self.coupled_l2,
            self.decay_before,
            self.decay_after,
            self.amsgrad,
            self.nesterov,
            self.eps_after,
            self.added,
        )

    def structure(self) -> tuple[int, int, int, bool, bool]:
        """What :func:`make_kernel` compiles in: decay before, decay after, AMSGrad, Nesterov,
        epsilon after bias correction."""
        return (self.decay_before, self.decay_after, self.amsgrad, self.nesterov, self.eps_after)

    def flags(self) -> Any:
        """The kernel's runtime ``flags`` argument: maximize, coupled L2, added (int64; cached)."""
        key = (bool(self.maximize), bool(self.coupled_l2), int(self.added))
        a = _FLAG_ARRAYS.get(key)
        if a is None:
            a = _FLAG_ARRAYS[key] = np.array([int(x) for x in key], dtype=np.int64)
            a.setflags(write=False)
        return a


_FLAG_ARRAYS: dict[tuple[bool, bool, int], Any] = {}


def make_kernel(
    decay_before: int, decay_after: int, amsgrad: int, nesterov: bool, eps_after: bool
) -> Callable[..., None]:
    """The update of one parameter for one structure (:meth:`Modes.structure`), as a function
    ``kernel(p, g, m, v, vmax, sc, flags)`` that updates ``p, m, v`` (and ``vmax``) in place with
    gradient ``g``, one element at a time, in the order of
    :func:`adamw_ref.update.update_parameter`. Arrays 1-D, of one dtype; ``sc`` the 15 scalars of
    :class:`Scalars` in that dtype; ``flags`` :meth:`Modes.flags`. Plain Python until numba
    compiles it (:func:`compiled`)."""

    def kernel(p: Any, g: Any, m: Any, v: Any, vmax: Any, sc: Any, flags: Any) -> None:
        b1, omb1, b2, omb2, eps, eps_root = sc[0], sc[1], sc[2], sc[3], sc[4], sc[5]
        lr_t, lam_t, alpha, eta_a, bc1, bc2 = sc[6], sc[7], sc[8], sc[9], sc[10], sc[11]
        factor, bc1_next, sqrt_bc2 = sc[12], sc[13], sc[14]
        maximize, coupled_l2, added = flags[0], flags[1], flags[2]
        for i in range(p.shape[0]):
            theta = p[i]
            gv = g[i]
            if maximize != 0:  # effective_gradient
                gv = -gv
            if coupled_l2 != 0:
                gv = gv + theta * lam_t
            if decay_before == MULTIPLY:  # decoupled_decay (before the step)
                theta = theta * factor
            elif decay_before == DIVIDE:
                theta = theta / factor
            mt = m[i] * b1 + gv * omb1  # moments
            vt = v[i] * b2 + (gv * gv) * omb2
            m[i] = mt
            v[i] = vt
            if amsgrad == AMS_RAW:  # second_moment: max(v_max, v), NaN first
                x = vmax[i]
                second = x if x != x else (vt if vt != vt else (x if x >= vt else vt))
                vmax[i] = second
            elif amsgrad == AMS_CORRECTED:  # max(v_hat_max, v / bc2)
                x = vmax[i]
                y = vt / bc2
                second = x if x != x else (y if y != y else (x if x >= y else y))
                vmax[i] = second
            else:
                second = vt
            # first_moment_hat: m / bc1, or Nesterov's (m * b1) / bc1_next + (g * (1 - b1)) / bc1
            mh = ((mt * b1) / bc1_next + (gv * omb1) / bc1) if nesterov else mt / bc1
            if eps_after:  # direction
                vh = second if amsgrad == AMS_CORRECTED else second / bc2
                u = mh / (np.sqrt(vh + eps_root) + eps)
            else:
                vr = second * bc2 if amsgrad == AMS_CORRECTED else second
                u = (mh / (np.sqrt(vr + eps_root) + eps)) * sqrt_bc2
            if added == NOT_ADDED:  # apply_update
                new = theta - u * lr_t
            elif added == ADDED_LR:
                new = theta - (u + theta * lam_t) * lr_t
            elif added == ADDED_SCHEDULE:
                new = theta - (u * alpha + theta * lam_t) * eta_a
            else:
                new = theta - (u * lr_t + theta * lam_t)
            if decay_after == MULTIPLY:  # decoupled_decay (after the step)
                new = new * factor
            elif decay_after == DIVIDE:
                new = new / factor
            p[i] = new

    return kernel


def numpy_update(
    p: Any, g: Any, m: Any, v: Any, vmax: Any, s: Scalars, mo: Modes, work: Any | None = None
) -> None:
    """The kernel's operations on whole arrays (the fallback without numba): the same operations
    on the same operands in the same order, so the same bits. ``g`` is read only; ``p, m, v,
    vmax`` are updated in place. ``work``: four scratch arrays like ``p`` (``np.empty((4, n))``),
    reused across steps so that no step allocates (fresh temporaries of a large array cost a
    page fault per page); allocated here when not given."""
    w = np.empty((4, p.shape[0]), p.dtype) if work is None else work
    w0, w1, w2, w3 = w[0], w[1], w[2], w[3]  # w0: the gradient used, w1: theta', w2: scratch, w3: m_hat
    with np.errstate(all="ignore"):
        gv = g  # effective_gradient
        if mo.maximize:
            np.negative(g, out=w0)
            gv = w0
        if mo.coupled_l2:
            np.multiply(p, s.lam_t, out=w2)
            np.add(gv, w2, out=w0)
            gv = w0
        theta = p  # decoupled_decay (before the step)
        if mo.decay_before == MULTIPLY:
            np.multiply(p, s.factor, out=w1)
            theta = w1
        elif mo.decay_before == DIVIDE:
            np.divide(p, s.factor, out=w1)
            theta = w1
        np.multiply(m, s.b1, out=m)  # moments: m = m b1 + g (1 - b1)
        np.multiply(gv, s.one_minus_b1, out=w2)
        np.add(m, w2, out=m)
        np.multiply(gv, gv, out=w2)  # v = v b2 + (g g) (1 - b2)
        np.multiply(w2, s.one_minus_b2, out=w2)
        np.multiply(v, s.b2, out=v)
        np.add(v, w2, out=v)
        second = v  # second_moment
        if mo.amsgrad == AMS_RAW:
            _spec_maximum(vmax, v)
            second = vmax
        elif mo.amsgrad == AMS_CORRECTED:
            np.divide(v, s.bc2, out=w2)
            _spec_maximum(vmax, w2)
            second = vmax
        if mo.nesterov:  # first_moment_hat: (m b1) / bc1_next + (g (1 - b1)) / bc1
            np.multiply(m, s.b1, out=w3)
            np.divide(w3, s.bc1_next, out=w3)
            np.multiply(gv, s.one_minus_b1, out=w2)
            np.divide(w2, s.bc1, out=w2)
            np.add(w3, w2, out=w3)
        else:  # m / bc1
            np.divide(m, s.bc1, out=w3)
        if mo.eps_after:  # direction: u = m_hat / (sqrt(v_hat + eps_root) + eps)
            if mo.amsgrad == AMS_CORRECTED:
                np.add(second, s.eps_root, out=w2)
            else:
                np.divide(second, s.bc2, out=w2)
                np.add(w2, s.eps_root, out=w2)
            np.sqrt(w2, out=w2)
            np.add(w2, s.eps, out=w2)
            np.divide(w3, w2, out=w2)
        else:  # u = (m_hat / (sqrt(v + eps_root) + eps_hat)) sqrt(bc2)
            if mo.amsgrad == AMS_CORRECTED:
                np.multiply(second, s.bc2, out=w2)
                np.add(w2, s.eps_root, out=w2)
            else:
                np.add(second, s.eps_root, out=w2)
            np.sqrt(w2, out=w2)
            np.add(w2, s.eps, out=w2)
            np.divide(w3, w2, out=w2)
            np.multiply(w2, s.sqrt_bc2, out=w2)
        u = w2  # apply_update: the new parameter in w3 (m_hat is no longer needed)
        if mo.added == NOT_ADDED:  # theta' - u lr_t
            np.multiply(u, s.lr_t, out=w2)
        elif mo.added == ADDED_LR:  # theta - (u + theta lam_t) lr_t
            np.multiply(theta, s.lam_t, out=w3)
            np.add(u, w3, out=w2)
            np.multiply(w2, s.lr_t, out=w2)
        elif mo.added == ADDED_SCHEDULE:  # theta - (u alpha + theta lam_t) eta
            np.multiply(u, s.alpha, out=w2)
            np.multiply(theta, s.lam_t, out=w3)
            np.add(w2, w3, out=w2)
            np.multiply(w2, s.eta_a, out=w2)
        else:  # theta - (u lr_t + theta lam_t)
            np.multiply(u, s.lr_t, out=w2)
            np.multiply(theta, s.lam_t, out=w3)
            np.add(w2, w3, out=w2)
        np.subtract(theta, w2, out=w3)
        if mo.decay_after == MULTIPLY:  # decoupled_decay (after the step)
            np.multiply(w3, s.factor, out=w3)
        elif mo.decay_after == DIVIDE:
            np.divide(w3, s.factor, out=w3)
        np.copyto(p, w3)


def _spec_maximum(x: Any, y: Any) -> None:
    """``x <- max(x, y)`` as :meth:`adamw_ref.FloatArithmetic.maximum`: ``x`` if ``x`` is NaN, else
    ``y`` if ``y`` is NaN, else ``x`` if ``x >= y`` else ``y`` (so ``max(+0, -0)`` keeps ``x``;
    ``np.maximum`` may not)."""
    take_y = ~np.isnan(x) & (np.isnan(y) | (x < y))
    np.copyto(x, y, where=take_y)


# ------------------------------------------------------------------------------------- numba
_COMPILED: dict[tuple[int, int, int, bool, bool], Any] = {}
_NUMBA_ERROR: str | None = None

#: Options of the numba compilation; each is part of the IEEE argument in the module docstring.
JIT_OPTIONS: dict[str, Any] = {
    "fastmath": False,
    "error_model": "numpy",
    "boundscheck": False,
    "nogil": True,
    "cache": True,
}


def numba_disabled() -> bool:
    """``ADAMW_REF_ORACLE=numpy`` (or ``spec``) keeps numba out: the fallback paths are forced."""
    return os.environ.get("ADAMW_REF_ORACLE", "").strip().lower() in ("numpy", "spec")


def numba_module() -> Any | None:
    """numba if it is installed and importable (imported on first use only), else None."""
    global _NUMBA_ERROR
    if _NUMBA_ERROR is not None:
        return None
    try:
        return importlib.import_module("numba")
    except Exception as exc:  # ImportError, or a numba that cannot load its LLVM
        _NUMBA_ERROR = f"{type(exc).__name__}: {exc}"
        return None


def numba_available() -> bool:
    return numba_module() is not None


def compiled(structure: tuple[int, int, int, bool, bool]) -> Any:
    """The kernel of ``structure`` compiled by numba (:data:`JIT_OPTIONS`; cached on disk after
    the first compilation). Raises ImportError without numba."""
    fn = _COMPILED.get(structure)
    if fn is None:
        numba = numba_module()
        if numba is None:
            raise ImportError(f"numba is not available ({_NUMBA_ERROR})")
        fn = _COMPILED[structure] = numba.njit(**JIT_OPTIONS)(make_kernel(*structure))
    return fn


def numba_update(p: Any, g: Any, m: Any, v: Any, vmax: Any, s: Scalars, mo: Modes) -> None:
    """The compiled kernel, on 1-D contiguous arrays of one dtype (float64 or float32)."""
    compiled(mo.structure())(p, g, m, v, vmax, s.array(p.dtype), mo.flags())


def python_update(p: Any, g: Any, m: Any, v: Any, vmax: Any, s: Scalars, mo: Modes) -> None:
    """The same kernel as plain Python (slow; for the tests: one source, three executors)."""
    with np.errstate(all="ignore"):
        make_kernel(*mo.structure())(p, g, m, v, vmax, s.array(p.dtype), mo.flags())


DEFAULT_MODES = Modes(False, False, MULTIPLY, NO_DECAY, NO_AMSGRAD, False, True, NOT_ADDED)


def _example_args(dtype: str, n: int, modes: Modes = DEFAULT_MODES) -> tuple[Any, ...]:
    arrays = [np.zeros(n, dtype) for _ in range(5)]
    scalars = (0.9, 0.1, 0.999, 0.001, 1e-8, 0.0, 1e-3, 1e-5, 1e-3, 1.0, 0.1, 1e-3, 1.0, 0.19, 0.03)
    return (*arrays, np.array(scalars, dtype=dtype), modes.flags())


_FMA = re.compile(r"\bv?f(?:n)?m(?:add|sub)(?:132|213|231)?[ps][sd]\b|\bvfmaddsub|\bvfmsubadd")


def ieee_evidence(dtype: str = "float32", modes: Modes = DEFAULT_MODES) -> dict[str, Any]:
    """Evidence that the compiled kernel computes IEEE arithmetic in ``dtype``: FMA instructions
    in its machine code (must be 0), ``fpext``/``double`` in a float32 kernel's LLVM IR (must be
    0), vector divisions (it was vectorised), the fast-math flags in the IR (must be none), and
    whether a subnormal survives a step (FTZ/DAZ off). Compiles the kernel for ``dtype``."""
    numba = numba_module()
    if numba is None:
        raise ImportError(f"numba is not available ({_NUMBA_ERROR})")
    # The same options without the disk cache: code loaded from the cache cannot be inspected.
    fresh = numba.njit(**{**JIT_OPTIONS, "cache": False})(make_kernel(*modes.structure()))
    fresh(*_example_args(dtype, 16, modes))
    sig = fresh.signatures[0]
    asm: str = fresh.inspect_asm(sig)
    ir: str = fresh.inspect_llvm(sig)
    # the subnormal check needs m = b1 m + (1 - b1) g: no negation, no L2 term
    plain = Modes(False, False, *modes.structure()[:3], modes.nesterov, modes.eps_after, modes.added)
    fn = compiled(plain.structure())
    body = "\n".join(line for line in ir.splitlines() if not line.startswith(("declare", "!", "attributes")))
    kernel_ir = _kernel_function_ir(body)
    # subnormals: m = 0.9 * m + 0.1 * g with g the smallest subnormal stays subnormal, nonzero
    dt = np.dtype(dtype)
    tiny = np.finfo(dt).smallest_subnormal
    p, g, m, v, vmax = (np.zeros(4, dt) for _ in range(5))
    g[:] = tiny * dt.type(16)
    m[:] = tiny * dt.type(64)
    fn(p, g, m, v, vmax, *_example_args(dtype, 0, plain)[5:])
    expected = (tiny * dt.type(64)) * dt.type(0.9) + (tiny * dt.type(16)) * dt.type(0.1)
    return {
        "dtype": dtype,
        "fma_instructions": len(_FMA.findall(asm)),
        "fpext_or_double_in_ir": (
            len(re.findall(r"\bfpext\b|\bdouble\b", kernel_ir)) if dtype == "float32" else None
        ),
        "fast_math_flags_in_ir": len(
            re.findall(r"\b(?:fast|reassoc|contract|nnan|ninf|arcp|afn)\b", kernel_ir)
        ),
        "vector_divisions": len(re.findall(r"vdivp[sd]\s+%[xyz]mm", asm)),
        "vector_sqrts": len(re.findall(r"vsqrtp[sd]\s+%[xyz]mm", asm)),
        "subnormal_m": [float(x) for x in m],
        "subnormal_expected": float(expected),
        "subnormals_survive": bool(
            np.all(m == expected) and expected != 0 and abs(expected) < np.finfo(dt).tiny
        ),
    }


def _kernel_function_ir(ir: str) -> str:
    """The compiled kernel's own function in the LLVM IR (numba also emits a wrapper)."""
    parts = re.split(r"(?m)^define ", ir)
    for part in parts:
        if "kernel" in part.split("(", 1)[0] and "cpython" not in part.split("(", 1)[0]:
            return part
    return ir
