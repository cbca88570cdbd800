"""Grade a distributed trajectory against the reference, as the suite grades every case.

The expected trajectory is the reference (:class:`adapters.reference.oracle.RefStepper`) in
binary64 on the dtype-rounded inputs; ``exact`` is bitwise equality with the reference evaluated
*in* the dtype; otherwise the derived bound of :mod:`conformance.tolerance` (free-running) decides
``within_bound`` or ``divergent``, and a divergent trajectory is diagnosed
(:func:`conformance.diagnose.diagnose`): the same metrics, bound, first divergence and diagnosis
as a single-process case. :func:`checks_verdict` then folds in the distributed checks (bitwise
equality with the single-process run, ranks agreeing, step counts): a failed check makes the
case ``divergent`` even inside the bound, with the check named in the diagnosis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from adamw_ref import AdamWConfig
from conformance import compare as cmp
from conformance import diagnose as dg
from conformance import tolerance
from conformance.distributed.problem import F64


def expected(
    cfg: AdamWConfig, p0: Mapping[str, F64], grads: Sequence[Mapping[str, Any]], dtype: str
) -> tuple[list[tolerance.RefPoint], list[dict[str, F64]]]:
    """The binary64 reference points (initial point first) and the in-dtype parameters."""
    ref = dg.reference_points(cfg, p0, grads, dtype)
    emulated = [p.params for p in dg.reference_points(cfg, p0, grads, dtype, True)[1:]]
    return ref, emulated


def grade(
    cfg: AdamWConfig,
    p0: Mapping[str, F64],
    grads: Sequence[Mapping[str, Any]],
    got: Sequence[Mapping[str, F64]],
    dtype: str,
    *,
    device: str = "cpu",
    diagnose: bool = True,
) -> dict[str, Any]:
    """Case fields (verdict, metrics, bound, first_divergence, series, diagnosis) for ``got``
    (the parameters after steps 1..T) against the reference."""
    spec = tolerance.spec_for(dtype, device, "ref_vs_impl")
    ref, emulated = expected(cfg, p0, grads, dtype)
    bounds = tolerance.step_bounds(cfg, ref, grads, spec, "free")
    res = cmp.compare([p.params for p in ref[1:]], list(got), bounds, dtype, emulated)
    verdict = "exact" if res.exact else ("within_bound" if res.max_ratio <= 1 else "divergent")
    out: dict[str, Any] = {
        "verdict": verdict,
        "metrics": res.metrics,
        "first_divergence": res.first_divergence,
        "series": {"step": res.series_step, "err": res.series_err},
        "bound": {
            "kind": spec.kind,
            "dtype": dtype,
            "device": device,
            "c_step": spec.c_step,
            "unit_roundoff": spec.unit_roundoff,
            "max_ratio": res.max_ratio,
        },
        "diagnosis": None,
        "ref_steps": dict(ref[-1].param_steps or {}),
    }
    if verdict == "divergent" and diagnose:
        out["diagnosis"] = dg.diagnose(cfg, p0, grads, [dict(g) for g in got], dtype, spec)
    return out


def bitwise_equal(a: Sequence[Mapping[str, F64]], b: Sequence[Mapping[str, F64]]) -> int | None:
    """The first step (1-based) where ``a`` and ``b`` differ in a bit, else None."""
    if len(a) != len(b):
        return min(len(a), len(b)) + 1
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if set(x) != set(y) or any(not np.array_equal(x[n], y[n], equal_nan=True) for n in x):
            return i + 1
    return None


def steps_mismatch(got: Mapping[str, float], want: Mapping[str, int]) -> dict[str, tuple[float | None, int]]:
    """Parameters whose framework step count differs from the reference's own count (a
    parameter the reference never stepped must have no state: count 0 or absent)."""
    out: dict[str, tuple[float | None, int]] = {}
    for n, k in want.items():
        g = got.get(n)
        if (g is None and k != 0) or (g is not None and int(g) != k):
            out[n] = (g, k)
    for n, g in got.items():
        if n not in want:
            out[n] = (g, 0)
    return out


def checks_verdict(fields: dict[str, Any], failed: Sequence[str]) -> None:
    """Make ``fields`` divergent when a distributed check failed (``failed``: one line each)."""
    if not failed:
        return
    fields["verdict"] = "divergent"
    detail = "; ".join(failed)
    diag = fields.get("diagnosis")
    if isinstance(diag, dict):
        diag["detail"] = f"{detail}. {diag.get('detail', '')}".strip()
    else:
        fields["diagnosis"] = {"explained_by": None, "kind": None, "detail": detail, "candidates": []}


def ref_counts(
    cfg: AdamWConfig, p0: Mapping[str, F64], grads: Sequence[Mapping[str, Any]], dtype: str, k: int
) -> dict[str, int]:
    """The reference's per-parameter counts after step ``k``."""
    pts = dg.reference_points(cfg, p0, grads[:k], dtype)
    return dict(pts[-1].param_steps or {})
