"""optax over 8 virtual CPU devices: NamedSharding and shard_map against the unsharded jit.

``named_sharding`` and ``shard_map_split`` are bit-identical to the unsharded jit. ``shard_map``
(the psum, its division by 8 and the update in one jitted function) is not, and the reason is
checked here with exact rationals: XLA:CPU contracts the second-moment update into a fused
multiply-add and keeps a different product unrounded once the division is fused in.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conformance.distributed import cases, problem
from conformance.distributed import jax_sharding as jx
from conformance.report import schema as rp

pytest.importorskip("jax")
pytest.importorskip("optax")


@pytest.fixture(autouse=True)
def _slow_needs_runslow(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("slow") and not (
        request.config.getoption("--runslow", default=False) or os.environ.get("ADAMW_RUNSLOW") == "1"
    ):
        pytest.skip("slow: run with --runslow")


@pytest.fixture(scope="module")
def run32(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    res = jx.run_in_subprocess(
        "dist_basic", "float32", 0, tmp_path_factory.mktemp("jax") / "r.npz", timeout=120
    )
    assert "error" not in res, res.get("error")
    return res


def _bitwise(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    return all(np.array_equal(x[k], y[k]) for x, y in zip(a, b, strict=True) for k in x)


def test_named_sharding_and_split_shard_map_are_bit_identical(run32: dict[str, Any]) -> None:
    base = run32["trajectories"]["unsharded"]
    assert len(base) == problem.get("dist_basic").steps
    assert _bitwise(run32["trajectories"]["named_sharding"], base)
    assert _bitwise(run32["trajectories"]["shard_map_split"], base)
    # w 16x4 over the (4, 2) mesh: 4x2 blocks; b 8 over the flattened mesh; c 5 replicated
    shards = run32["shardings"]["named_sharding"]
    assert shards["w"] == [[4, 2]] * 8 and shards["b"] == [[1]] * 8 and shards["c"] == [[5]] * 8


def _round32(q: Fraction) -> float:
    """``q`` rounded to the nearest binary32 (ties to even), exactly (no double rounding)."""
    if q == 0:
        return 0.0
    sign = -1 if q < 0 else 1
    a = abs(q)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    scale = Fraction(2) ** (e - 23)
    n = a / scale
    lo = n.numerator // n.denominator
    rem = n - lo
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and lo % 2 == 1):
        lo += 1
    return sign * float(lo * scale)


def test_fused_shard_map_differs_by_the_fma_xla_chooses(run32: dict[str, Any]) -> None:
    un, sm = run32["nu"]["unsharded"], run32["nu"]["shard_map"]
    assert np.array_equal(un[0], sm[0])  # step 1: v = (1-b2) g^2 exactly the same
    t = next(i for i in range(len(un)) if not np.array_equal(un[i], sm[i]))
    assert np.array_equal(un[t - 1], sm[t - 1])  # the same v before the step that differs
    sc = jx.scenario("dist_basic")
    gw = problem.rounded(sc.inputs(0)[1], "float32")[t]["w"]
    assert gw is not None
    g = gw.ravel()
    v1 = un[t - 1].ravel()
    b2, c = np.float32(0.999), np.float32(1 - 0.999)  # optax: decay and 1 - decay, as float32 constants
    diff = np.flatnonzero(un[t].ravel() != sm[t].ravel())
    assert diff.size > 0
    for i in diff:
        g2 = np.float32(np.float32(g[i]) * np.float32(g[i]))
        a = np.float32(b2 * np.float32(v1[i]))  # b2*v rounded
        bb = np.float32(c * g2)  # (1-b2)*g^2 rounded
        fma_unsharded = _round32(Fraction(float(c)) * Fraction(float(g2)) + Fraction(float(a)))
        fma_fused = _round32(Fraction(float(b2)) * Fraction(float(v1[i])) + Fraction(float(bb)))
        assert un[t].ravel()[i] == fma_unsharded
        assert sm[t].ravel()[i] == fma_fused
        assert abs(un[t].ravel()[i] - sm[t].ravel()[i]) <= np.spacing(np.float32(un[t].ravel()[i]))


def test_every_variant_is_within_the_reference_bound(run32: dict[str, Any]) -> None:
    rows = cases.grade_jax("dist_basic", "float32", 0, run32, 0.0)
    assert {r["implementation"] for r in rows} == set(jx.VARIANTS)
    for r in rows:
        assert r["verdict"] in rp.PASSING, (r["id"], r["bound"], r["diagnosis"])
        checks = r["distributed"]["checks"]
        assert checks["bitwise_vs_unsharded"] == jx.BITWISE[r["implementation"]]
        if not checks["bitwise_expected"]:
            assert "fused multiply-add" in checks["why_not_bitwise"]


def test_a_psum_without_the_division_is_flagged(tmp_path: Path) -> None:
    rows = cases.jax_cases(tmp_path, ["float32"], ["dist_eps"], 0, timeout=120, plant="psum_not_mean")
    by = {r["implementation"]: r for r in rows}
    assert by["named_sharding"]["verdict"] in rp.PASSING  # no reduction there: the plant cannot act
    for v in ("shard_map", "shard_map_split"):
        assert by[v]["verdict"] == "divergent" and by[v]["bound"]["max_ratio"] > 100, by[v]["id"]
        assert by[v]["first_divergence"]["step"] == 1


@pytest.mark.slow
def test_float64_is_bit_identical_too(tmp_path: Path) -> None:
    res = jx.run_in_subprocess("dist_basic", "float64", 0, tmp_path / "r.npz", timeout=120)
    base = res["trajectories"]["unsharded"]
    assert _bitwise(res["trajectories"]["named_sharding"], base)
    assert _bitwise(res["trajectories"]["shard_map_split"], base)
    for r in cases.grade_jax("dist_basic", "float64", 0, res, 0.0):
        assert r["verdict"] in rp.PASSING, r["id"]
