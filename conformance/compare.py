"""Metrics and grading of one trajectory against the reference.

Errors are elementwise :math:`|x_{impl}-x_{ref}|` (NaN vs NaN and equal infinities count 0, one
NaN or a mismatched infinity counts :math:`\\infty`). Per tensor: ``max_abs``, ``max_rel``
(:math:`|x_{impl}-x_{ref}|/|x_{ref}|`, 0/0 = 0) and ``max_ulp`` (in ulps of the dtype at
:math:`x_{ref}`). The bound ratio :math:`r=\\max \\text{err}/B` over steps and elements decides the
grade: ``exact`` when bitwise equal to the reference computed *in* the dtype, ``within_bound``
when :math:`r\\le1`, else ``divergent`` (``acceptable`` is decided by the worker, see
:mod:`conformance.diagnose`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from adamw_ref.formats import FORMATS

F64 = NDArray[np.float64]
Traj = Sequence[Mapping[str, F64]]


def abs_err(expected: F64, got: F64) -> F64:
    e = np.asarray(expected, np.float64)
    g = np.asarray(got, np.float64)
    with np.errstate(all="ignore"):
        d = np.abs(g - e)
    both_nan = np.isnan(e) & np.isnan(g)
    same_inf = np.isinf(e) & (e == g)
    d = np.where(both_nan | same_inf, 0.0, d)
    return np.where(np.isnan(d), np.inf, d)


def bound_ratio(err: F64, bound: Any) -> F64:
    r""":math:`\text{err}/B` elementwise: 0 where the error is 0 (even against a zero bound),
    :math:`\infty` where it is undefined (NaN)."""
    with np.errstate(all="ignore"):
        ratio = np.where(err == 0, 0.0, err / np.asarray(bound, np.float64))
    return np.where(np.isnan(ratio), np.inf, ratio)


def ulp_of(x: F64, dtype: str) -> F64:
    """Spacing of ``dtype`` at ``|x|`` (elementwise, float64)."""
    fmt = FORMATS[dtype]
    ax = np.abs(np.asarray(x, np.float64))
    with np.errstate(all="ignore"):
        e = np.floor(np.log2(np.where(ax > 0, ax, 1.0)))
    e = np.maximum(e, fmt.emin)
    return np.where(np.isfinite(ax), np.exp2(e - fmt.precision + 1), np.nan)


@dataclass
class Comparison:
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    series_step: list[int] = field(default_factory=list)
    series_err: list[float] = field(default_factory=list)
    max_ratio: float = 0.0
    first_divergence: dict[str, Any] | None = None
    exact: bool = False


def _finite(x: float) -> float:
    """A metric value as a float; NaN and infinities are kept (the report writes them as
    ``"nan"``/``"inf"``, losslessly)."""
    return float(x)


def _worse(a: float, b: float) -> float:
    """The larger error, NaN counting as the worst (``max`` would drop a NaN)."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return max(a, b)


def compare(expected: Traj, got: Traj, bounds: Traj, dtype: str, emulated: Traj | None = None) -> Comparison:
    """Compare step-aligned trajectories (index ``i`` is after step ``i+1``)."""
    if len(expected) != len(got) or len(expected) != len(bounds):
        raise ValueError(
            f"trajectory lengths differ: expected {len(expected)}, got {len(got)}, bounds {len(bounds)}"
        )
    res = Comparison()
    exact = emulated is not None
    for i, (ex, gt, bd) in enumerate(zip(expected, got, bounds)):
        worst = 0.0
        for name in ex:
            e, g = np.asarray(ex[name], np.float64), np.asarray(gt[name], np.float64)
            if e.shape != g.shape:
                raise ValueError(f"step {i + 1}, param {name!r}: shape {g.shape} != {e.shape}")
            if exact and emulated is not None:
                em = np.asarray(emulated[i][name], np.float64)
                if not np.array_equal(em, g, equal_nan=True):
                    exact = False
            if e.size == 0:
                res.metrics.setdefault(name, {"max_abs": 0.0, "max_rel": 0.0, "max_ulp": 0.0})
                continue
            d = abs_err(e, g)
            with np.errstate(all="ignore"):
                rel = np.where(d == 0, 0.0, d / np.abs(e))
                ulps = d / ulp_of(e, dtype)
            ratio = bound_ratio(d, bd[name])
            mt = res.metrics.setdefault(name, {"max_abs": 0.0, "max_rel": 0.0, "max_ulp": 0.0})
            mt["max_abs"] = _worse(mt["max_abs"], float(np.max(d)))
            mt["max_rel"] = _worse(
                mt["max_rel"], float(np.nanmax(rel)) if np.any(~np.isnan(rel)) else math.nan
            )
            mt["max_ulp"] = _worse(
                mt["max_ulp"], float(np.nanmax(ulps)) if np.any(~np.isnan(ulps)) else math.nan
            )
            r = float(np.max(ratio))
            worst = max(worst, r)
            if r > 1.0 and res.first_divergence is None:
                j = int(np.argmax(ratio))
                idx = [int(x) for x in np.unravel_index(j, e.shape)] if e.ndim else []
                res.first_divergence = {
                    "step": i + 1,
                    "param": name,
                    "index": idx,
                    "expected": _finite(float(e.flat[j])),
                    "got": _finite(float(g.flat[j])),
                    "abs_err": _finite(float(d.flat[j])),
                    "ulp": _finite(float(ulps.flat[j])),
                }
        res.series_step.append(i + 1)
        res.series_err.append(_finite(worst))
        res.max_ratio = max(res.max_ratio, worst)
    res.exact = exact and len(expected) > 0
    res.max_ratio = _finite(res.max_ratio)
    return res


def max_ratio(expected: Traj, got: Traj, bounds: Traj) -> float:
    r"""``compare(expected, got, bounds, dtype).max_ratio`` alone: :math:`\max_{t,i}
    |x_{impl}-x_{ref}|/B` (0 where equal, :math:`\infty` for NaN), over each parameter's steps
    stacked into one array (the diagnosis scores hundreds of candidate trajectories)."""
    if len(expected) != len(got) or len(expected) != len(bounds):
        raise ValueError(
            f"trajectory lengths differ: expected {len(expected)}, got {len(got)}, bounds {len(bounds)}"
        )
    worst = 0.0
    if not expected:
        return worst
    for name in expected[0]:
        e = np.stack([np.asarray(x[name], np.float64) for x in expected])
        g = np.stack([np.asarray(x[name], np.float64) for x in got])
        if e.shape != g.shape:
            raise ValueError(f"param {name!r}: shape {g.shape[1:]} != {e.shape[1:]}")
        if e.size == 0:
            continue
        ratio = bound_ratio(abs_err(e, g), np.stack([np.asarray(b[name], np.float64) for b in bounds]))
        worst = max(worst, float(np.max(ratio)))
    return worst
