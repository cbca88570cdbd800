"""The tolerance model and the metrics, checked against independent sources.

* Validity of the bound: the spec evaluated *exactly in binary32* (adamw_ref's own
  FloatArithmetic(BINARY32), a legitimate float32 implementation by definition) must lie within
  the bound of the binary64 reference, over many seeds and every short scenario.
* Power: a perturbation of 10x the bound at one element must be flagged at that element.
* ulp/abs_err against numpy.spacing and IEEE rules.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adamw_ref import BINARY32_ARITHMETIC, get_profile, run_trajectory
from adapters.reference.oracle import round_to
from conformance import compare as cmp
from conformance import tolerance
from conformance.diagnose import reference_points
from conformance.scenarios import SCENARIOS, get

SHORT = [s for s in SCENARIOS if "long" not in s.tags and "float32" in s.dtypes]


def _binary32_trajectory(sc_id: str, seed: int) -> tuple[list[dict[str, np.ndarray]], ...]:
    """The spec in exact binary32 through the *pure-Python* adamw_ref (not adapters.reference.oracle)."""
    sc = get(sc_id)
    cfg = sc.config(get_profile("torch").config)
    p0, grads = sc.inputs(seed)
    flat = {k: [float(x) for x in round_to(v, "float32").ravel()] for k, v in p0.items()}
    gs = [
        {k: None if v is None else [float(x) for x in round_to(v, "float32").ravel()] for k, v in g.items()}
        for g in grads
    ]
    tr = run_trajectory(flat, gs, cfg, BINARY32_ARITHMETIC)
    got = [
        {k: np.array(v, dtype=np.float64).reshape(np.shape(p0[k])) for k, v in p.items()}
        for p in tr.params[1:]
    ]
    ref = reference_points(cfg, p0, grads, "float32")
    spec = tolerance.spec_for("float32")
    bounds = tolerance.step_bounds(cfg, ref, grads, spec, "free")
    return got, [p.params for p in ref[1:]], bounds


@given(seed=st.integers(0, 2**16), sc=st.sampled_from([s.id for s in SHORT]))
def test_binary32_spec_lies_within_free_bound(seed: int, sc: str) -> None:
    got, expected, bounds = _binary32_trajectory(sc, seed)
    res = cmp.compare(expected, got, bounds, "float32")
    assert res.max_ratio <= 1.0, (sc, seed, res.first_divergence)


def test_perturbation_of_ten_bounds_is_flagged_at_its_element() -> None:
    got, expected, bounds = _binary32_trajectory("basic", 3)
    got = [{k: v.copy() for k, v in p.items()} for p in got]
    t, idx = 7, (2, 1)
    got[t]["w"][idx] = expected[t]["w"][idx] + 10 * bounds[t]["w"][idx]
    res = cmp.compare(expected, got, bounds, "float32")
    assert res.first_divergence is not None
    assert res.first_divergence["step"] == t + 1 and res.first_divergence["param"] == "w"
    assert res.first_divergence["index"] == list(idx)
    assert res.max_ratio == pytest.approx(10.0, rel=1e-6)


def test_teacher_forced_bound_is_local_and_smaller_than_free() -> None:
    sc = get("basic")
    cfg = sc.config(get_profile("torch").config)
    p0, grads = sc.inputs(0)
    ref = reference_points(cfg, p0, grads, "float32")
    spec = tolerance.spec_for("float32")
    free = tolerance.step_bounds(cfg, ref, grads, spec, "free")
    local = tolerance.step_bounds(cfg, ref, grads, spec, "teacher_forced")
    # free bounds are cumulative: non-decreasing in t and >= the local bound at every step
    for t in range(1, len(free)):
        assert np.all(free[t]["w"] >= free[t - 1]["w"])
        assert np.all(free[t]["w"] >= local[t]["w"])


def test_tolerance_table_is_keyed_and_errors_name_the_key() -> None:
    for dt in ("float64", "float32", "float16", "bfloat16"):
        for dev in ("cpu", "cuda"):
            for kind in tolerance.KINDS:
                assert tolerance.spec_for(dt, dev, kind).c_step > 0
    assert tolerance.spec_for("float32").unit_roundoff == 2.0**-24
    with pytest.raises(ValueError, match="float8"):
        tolerance.spec_for("float8")


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
def test_ulp_of_matches_numpy_spacing(dtype: str) -> None:
    rng = np.random.default_rng(0)
    with np.errstate(over="ignore"):
        x = (rng.standard_normal(200) * 10.0 ** rng.integers(-30, 30, 200)).astype(dtype)
    x = x[np.isfinite(x) & (x != 0)]
    np.testing.assert_array_equal(
        cmp.ulp_of(x.astype(np.float64), dtype), np.abs(np.spacing(x)).astype(np.float64)
    )


def test_abs_err_ieee_special_values() -> None:
    e = np.array([math.nan, math.inf, 1.0, -math.inf, 0.0])
    g = np.array([math.nan, math.inf, math.nan, math.inf, -0.0])
    np.testing.assert_array_equal(cmp.abs_err(e, g), [0.0, 0.0, math.inf, math.inf, 0.0])


_SPECIAL = st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-300, 3.0e38, math.inf, -math.inf, math.nan])


@given(
    st.integers(1, 6),
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3)), min_size=1, max_size=3),
    st.data(),
)
def test_max_ratio_is_compares_max_ratio(
    steps: int, shapes: list[tuple[int, int]], data: st.DataObject
) -> None:
    """The diagnosis's stacked ratio is ``compare``'s step-by-step one (NaN, inf, empty tensors)."""
    floats = st.one_of(st.floats(-1e3, 1e3), _SPECIAL)

    def traj(positive: bool = False) -> list[dict[str, np.ndarray]]:
        out = []
        for _ in range(steps):
            point = {}
            for k, (n, _) in enumerate(shapes):
                vals = data.draw(
                    st.lists(st.floats(1e-12, 1e3) if positive else floats, min_size=n, max_size=n)
                )
                point[f"p{k}"] = np.array(vals, np.float64)
            out.append(point)
        return out

    expected, got, bounds = traj(), traj(), traj(positive=True)
    if data.draw(st.booleans()):
        got = [dict(p) for p in expected]  # equal trajectories: ratio 0
    want = cmp.compare(expected, got, bounds, "float32").max_ratio
    have = cmp.max_ratio(expected, got, bounds)
    assert have == want or (math.isnan(have) and math.isnan(want))
