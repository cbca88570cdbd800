"""MLX ``mlx.optimizers.AdamW`` adapter (CPU) against the reference.

Rounding bound: ``2 E_T`` from :mod:`tests.adapters.trajectory_bounds`, where it is derived
(first order, derived, not fitted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adamw_ref import (
    BINARY32_ARITHMETIC,
    AdamWConfig,
    EpsPlacement,
    ParamGroup,
    WarmupCosine,
    arithmetic_for,
    get_profile,
)
from adamw_ref.knobs import ScheduleCount
from adapters.errors import FrameworkUnavailable, UnsupportedConfig
from adapters.mlx.adapter import MLXAdamW
from adapters.protocol import CanonicalState
from tests.adapters.trajectory_bounds import (
    SHAPES,
    flat,
    frozen_grads,
    make_data,
    reference,
    rounding_bound,
    within,
)

pytest.importorskip("mlx.core", reason="mlx is not installed")

U64, U32 = 2.0**-53, 2.0**-24
T_MAIN, T_FEAT = 200, 60


def max_ulps(got: dict[str, np.ndarray], ref_params: dict[str, Any], dtype: Any) -> float:
    worst = 0.0
    for n, arr in got.items():
        r = np.array(ref_params[n], dtype=np.float64)
        if r.size:
            ulp = np.spacing(np.abs(r).astype(dtype)).astype(np.float64)
            worst = max(worst, float(np.max(np.abs(arr.ravel() - r) / ulp)))
    return worst


def flat_grads(grads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [flat(g) for g in grads]


# ---------------------------------------------------------------------------------------------
ADAPTER = MLXAdamW()
BASE = get_profile("mlx").config.replace(lr=1e-2, weight_decay=0.1)
BC = BASE.replace(bias_correction=True)
SCHED = WarmupCosine(warmup_steps=10, total_steps=T_FEAT, final=0.1)
FEATURES: dict[str, AdamWConfig] = {
    "schedule": BASE.replace(lr_schedule=SCHED),
    "schedule_post_increment": BC.replace(lr_schedule=SCHED, schedule_count=ScheduleCount.POST_INCREMENT),
    "mask": BC.exclude_from_decay(["w"]),
    "group_lr": BASE.replace(groups=(ParamGroup(names=("s", "w"), lr=0.05),)),
    "maximize": BC.replace(maximize=True),
    "frozen": BC,
    "no_decay": BASE.replace(decay_form="none"),
}
KNOWN_FLOAT64_DEVIATION = (
    "mlx stores learning_rate as a float32 array (0.01 -> 0.009999999776482582) and computes "
    "b**step in float32 (uint64 step), so float64 parameters get a float32 lr and float32 bias "
    "corrections"
)


def drive(
    cfg: AdamWConfig, params: dict[str, Any], grads: list[dict[str, Any]], dtype: str
) -> list[dict[str, np.ndarray]]:
    run = ADAPTER.create(cfg, params, dtype=dtype)
    out = []
    for g in grads:
        run.step(g)
        out.append(run.params())
    return out


@pytest.fixture(scope="module")
def main_data() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return make_data(0, T_MAIN)


@pytest.fixture(scope="module")
def feat_data() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return make_data(1, T_FEAT)


def test_native_defaults_equal_mlx_profile() -> None:
    assert ADAPTER.native_defaults() == get_profile("mlx").config


@pytest.mark.parametrize("cfg", [BASE, BC], ids=["no_bias_correction", "bias_correction"])
def test_float32_trajectory_matches_profile(main_data: Any, cfg: AdamWConfig) -> None:
    params, grads = main_data
    got = drive(cfg, params, grads, "float32")[-1]
    ref64 = reference(cfg, params, grads)
    tol = rounding_bound(ref64, flat_grads(grads), cfg, U32)
    for ref in (reference(cfg, params, grads, BINARY32_ARITHMETIC), ref64):
        ok, worst = within(got, ref.params[-1], tol)
        assert ok, f"worst |diff|/bound = {worst:.3g}"


@pytest.mark.parametrize("cfg", [BASE, BC], ids=["no_bias_correction", "bias_correction"])
def test_float64_trajectory_known_deviation(main_data: Any, cfg: AdamWConfig) -> None:
    params, grads = main_data
    got = drive(cfg, params, grads, "float64")[-1]
    ref = reference(cfg, params, grads)
    ok, worst = within(got, ref.params[-1], rounding_bound(ref, flat_grads(grads), cfg, U64))
    # A finding: the deviation must still be there (drop this once mlx keeps float64 lr).
    assert not ok, "mlx float64 now matches the reference: drop the known deviation"
    # ... and it is exactly a float32-precision effect: within the float32 bound.
    ok32, _ = within(got, ref.params[-1], rounding_bound(ref, flat_grads(grads), cfg, U32))
    assert ok32
    pytest.xfail(
        f"{KNOWN_FLOAT64_DEVIATION}: worst |diff|/bound = {worst:.3g}, "
        f"{max_ulps(got, ref.params[-1], np.float64):.3g} ulps"
    )


def test_float64_with_float64_lr_table_matches(main_data: Any) -> None:
    """With an lr schedule the adapter's table is float64, so float64 runs match to the bound:
    the deviation above is the float32 ``learning_rate`` state alone (bias_correction=False)."""
    params, grads = main_data
    cfg = BASE.replace(lr_schedule=WarmupCosine(warmup_steps=10, total_steps=T_MAIN, final=0.1))
    ref = reference(cfg, params, grads)
    got = drive(cfg, params, grads, "float64")[-1]
    ok, worst = within(got, ref.params[-1], rounding_bound(ref, flat_grads(grads), cfg, U64))
    assert ok, f"worst |diff|/bound = {worst:.3g}"


def test_other_profile_does_not_match(main_data: Any) -> None:
    """The default (no bias correction) is told apart from the same run with bias correction."""
    params, grads = main_data
    ref = reference(BC, params, grads)
    tol = rounding_bound(ref, flat_grads(grads), BC, U32)
    ok, worst = within(drive(BASE, params, grads, "float32")[-1], ref.params[-1], tol)
    assert not ok and worst > 10, worst


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_feature_trajectories_match(feat_data: Any, feature: str) -> None:
    params, grads = feat_data
    cfg = FEATURES[feature]
    if feature == "frozen":
        grads = frozen_grads(grads)
    ref64 = reference(cfg, params, grads)
    tol = rounding_bound(ref64, flat_grads(grads), cfg, U32)
    traj = drive(cfg, params, grads, "float32")
    for ref in (reference(cfg, params, grads, BINARY32_ARITHMETIC), ref64):
        ok, worst = within(traj[-1], ref.params[-1], tol)
        assert ok, f"{feature}: worst |diff|/bound = {worst:.3g}"
    if feature == "frozen":
        assert np.array_equal(traj[3]["s"], traj[2]["s"])
        assert all(np.array_equal(traj[10][n], traj[9][n]) for n in SHAPES)


def test_state_reads_step_and_moments(feat_data: Any) -> None:
    params, grads = feat_data
    run = ADAPTER.create(BC, params, dtype="float32")
    for g in grads:
        run.step(g)
    st = run.state()
    ref = reference(BC, params, grads, BINARY32_ARITHMETIC).states[-1]
    assert st.step == T_FEAT and st.v_max is None
    traj = reference(BC, params, grads)
    for n in SHAPES:
        # Moment bound per implementation: em_t = b1 em + 3u(b1|m| + (1-b1)|g|) + u b1 |g|
        # (three roundings; the last term is 1 - b1 formed from a rounded or unrounded b1).
        em, ev = np.zeros(len(ref.m[n])), np.zeros(len(ref.v[n]))
        for t in range(1, T_FEAT + 1):
            g = np.abs(np.asarray(grads[t - 1][n], dtype=np.float64).ravel())
            m0, v0 = np.abs(traj.states[t - 1].m[n]), np.array(traj.states[t - 1].v[n])
            em = BC.beta1 * em + 3 * U32 * (BC.beta1 * m0 + (1 - BC.beta1) * g) + U32 * g
            ev = BC.beta2 * ev + 3 * U32 * (BC.beta2 * v0 + (1 - BC.beta2) * g * g) + U32 * g * g
        assert np.all(np.abs(st.m[n].ravel() - ref.m[n]) <= 2 * em), n
        assert np.all(np.abs(st.v[n].ravel() - ref.v[n]) <= 2 * ev), n


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_save_load_continues_bit_exactly(tmp_path: Path, feat_data: Any, dtype: str) -> None:
    params, grads = feat_data
    cfg = FEATURES["schedule_post_increment"]
    straight = drive(cfg, params, grads, dtype)
    run = ADAPTER.create(cfg, params, dtype=dtype)
    for g in grads[:25]:
        run.step(g)
    run.save(tmp_path / "s.npz")
    fresh = ADAPTER.create(cfg, params, dtype=dtype)
    fresh.load(tmp_path / "s.npz")
    assert fresh.state().step == 25
    for i, g in enumerate(grads[25:]):
        fresh.step(g)
        for n in SHAPES:
            assert np.array_equal(fresh.params()[n], straight[25 + i][n])


def test_set_state_teacher_forcing(feat_data: Any) -> None:
    params, grads = feat_data
    ref = reference(BC, params, grads, BINARY32_ARITHMETIC)
    k = 30
    st = ref.states[k]
    canon = CanonicalState(
        step=st.step,
        m={n: np.reshape(st.m[n], SHAPES[n]) for n in SHAPES},
        v={n: np.reshape(st.v[n], SHAPES[n]) for n in SHAPES},
        v_max=None,
    )
    run = ADAPTER.create(BC, params, dtype="float32")
    run.set_state({n: np.reshape(ref.params[k][n], SHAPES[n]) for n in SHAPES}, canon)
    assert run.state().step == k
    run.step(grads[k])
    b1, b2 = BC.beta1, BC.beta2
    cancel = (
        b1 / (1 - b1)
        + b2 / (2 * (1 - b2))
        + 4 * (b1 ** (k + 1) / (1 - b1 ** (k + 1)) + b2 ** (k + 1) / (2 * (1 - b2 ** (k + 1))))
    )
    for n in SHAPES:
        want = np.array(ref.params[k + 1][n])
        prev = np.abs(np.array(ref.params[k][n]))
        step = np.abs(want - prev) + BC.lr * BC.weight_decay * prev  # |D| upper bound
        # one step of the module bound: 2 * (4u|theta| + (K + C)u|D|)
        tol = 2 * (4 * U32 * prev + (12 + cancel) * U32 * step)
        assert np.all(np.abs(run.params()[n].ravel() - want) <= tol), n


def test_bfloat16_runs(feat_data: Any) -> None:
    params, grads = feat_data
    final = drive(BASE, params, grads, "bfloat16")[-1]
    assert all(np.all(np.isfinite(a)) for a in final.values())


REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"bias_correction": True, "eps_placement": "before_bias_correction"}, "eps_placement"),
    ({"decay_scaling": "unscaled"}, "decay_scaling"),
    ({"decay_form": "added_to_update"}, "decay_form"),
    ({"decay_timing": "after_step"}, "decay_timing"),
    ({"amsgrad": True}, "amsgrad"),
    ({"step_count_scope": "per_parameter"}, "step_count_scope"),
    ({"bias_correction_offset": 1}, "bias_correction_offset"),
    ({"nesterov": True}, "nesterov"),
    ({"eps_root": 1e-8}, "eps_root"),
    ({"wd_schedule": WarmupCosine(warmup_steps=2, total_steps=5)}, "wd_schedule"),
]


@pytest.mark.parametrize(("change", "knob"), REFUSED, ids=[k for _, k in REFUSED])
def test_unsupported_knobs_are_refused(change: dict[str, Any], knob: str) -> None:
    cfg = get_profile("mlx").config.replace(**change)
    with pytest.raises(UnsupportedConfig) as info:
        ADAPTER.to_native(cfg)
    assert info.value.field == knob and knob in str(info.value)


def test_eps_placement_is_free_without_bias_correction() -> None:
    """With bc2 = 1 both placements are the same formula, so neither is refused."""
    cfg = get_profile("mlx").config.replace(eps_placement=EpsPlacement.BEFORE_BIAS_CORRECTION)
    assert ADAPTER.to_native(cfg)["bias_correction"] is False


def test_cuda_is_refused() -> None:
    with pytest.raises(FrameworkUnavailable, match="device"):
        ADAPTER.create(BASE, {"w": np.zeros(2)}, device="cuda")


# --- 16-bit parameters ----------------------------------------------------------------------
# MLX keeps parameters and moments in the parameter dtype (storage rounded to bfloat16, u=2^-8,
# or float16, u=2^-11, every step); intermediates mix in its float32 learning rate, so some
# ops round to binary32 instead. The reference in arithmetic_for(dtype) rounds *every* op to the
# 16-bit format (scalars from binary64, rounded once). Both therefore lie within E_T (module
# bound, evaluated with the 16-bit u; an op rounded to binary32 only has a smaller error) of the
# exact trajectory, so |mlx - emulated| <= 2 E_T = rounding_bound(ref64, ..., u16). The
# cancellation term C_t (beta rounded before 1 - beta^k) is taken at u32, not u16: MLX computes
# b**step in float32 from the binary64 beta, the reference 1 - beta^k in binary64 (both round
# the result once to the working format, one of the K ops). With C_t at u16 the first-order
# bound is vacuous (C_t*2^-8 > 1 for beta2 = 0.999: larger than the update itself).
U16 = {"bfloat16": 2.0**-8, "float16": 2.0**-11}


@pytest.mark.parametrize("cfg_name", ["no_bias_correction", "bias_correction"])
@pytest.mark.parametrize("dtype", sorted(U16))
def test_16bit_matches_emulated_reference(feat_data: Any, dtype: str, cfg_name: str) -> None:
    params, grads = feat_data
    cfg = BASE if cfg_name == "no_bias_correction" else BC
    got = drive(cfg, params, grads, dtype)[-1]
    ref = reference(cfg, params, grads, arithmetic_for(dtype))
    ref64 = reference(cfg, params, grads)
    tol = rounding_bound(ref64, flat_grads(grads), cfg, U16[dtype], u_scalar=U32)
    finite: dict[str, np.ndarray] = {}
    for n in SHAPES:
        a, r = got[n].ravel(), np.array(ref.params[-1][n], dtype=np.float64)
        # float16: eps=1e-8 rounds to 0 and g^2 of "w" (1e-6) and "s" (1e-3) underflows, so
        # m/(sqrt(0)+0) is +-inf/NaN in both: the same elements must be non-finite.
        assert np.array_equal(np.isnan(a), np.isnan(r)), n
        assert np.array_equal(np.isfinite(a), np.isfinite(r)), n
        finite[n] = np.isfinite(r)
    assert dtype == "float16" or all(np.all(f) for f in finite.values())
    ok, worst = within(
        {n: np.where(finite[n], got[n].ravel(), 0.0) for n in SHAPES},
        {n: np.where(finite[n], ref.params[-1][n], 0.0).tolist() for n in SHAPES},
        tol,
    )
    assert ok, f"{dtype}/{cfg_name}: worst |diff|/bound = {worst:.3g}"
    # Able to fail: the emulated reference with the gradient's sign flipped (maximize) is far
    # outside the bound. (Finding: at bfloat16 this worst-case bound is too wide to separate
    # bias correction on/off or a 2x lr over 60 steps; float16 separates 2x lr. The observed
    # MLX-vs-emulation deviation is < 0.01 of the bound.)
    oref = reference(cfg.replace(maximize=True), params, grads, arithmetic_for(dtype))
    bad, worst_other = within({"w.bias": got["w.bias"]}, oref.params[-1], tol)
    assert not bad and worst_other > 1, worst_other
