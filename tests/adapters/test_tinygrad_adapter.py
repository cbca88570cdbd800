"""tinygrad ``tinygrad.nn.optim.AdamW`` adapter (CPU device) against the reference.

Rounding bound: ``2 E_T`` from :mod:`tests.adapters.trajectory_bounds`, where it is derived
(first order, derived, not fitted). Expected values come from the reference
(:func:`adamw_ref.run_trajectory`) and hand-derived numbers, never from the adapter.
The non-fused implementation cannot update a 0-d parameter (a finding), so its trajectories
leave out the scalar ``s`` of the shared data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adamw_ref import BINARY32_ARITHMETIC, AdamWConfig, ParamGroup, WarmupCosine, get_profile
from adamw_ref.knobs import ScheduleCount
from adapters.errors import FrameworkUnavailable, UnsupportedConfig
from adapters.protocol import CanonicalState
from tests.adapters.trajectory_bounds import flat, make_data, reference, rounding_bound, within

pytest.importorskip("tinygrad", reason="tinygrad is not installed")

from adapters.tinygrad.adapter import TinygradAdamW, _bfloat16_unavailable, _import

try:
    _import()
except FrameworkUnavailable as exc:  # no C compiler for the CPU device
    pytest.skip(str(exc), allow_module_level=True)

U64, U32 = 2.0**-53, 2.0**-24
T_MAIN, T_FEAT = 120, 40
IMPLS = ("default", "fused")
ADAPTER = TinygradAdamW()
BASE = get_profile("tinygrad").config.replace(lr=1e-2, weight_decay=0.1)
SCHED = WarmupCosine(warmup_steps=10, total_steps=T_FEAT, final=0.1)
FEATURES: dict[str, AdamWConfig] = {
    "schedule": BASE.replace(lr_schedule=SCHED),
    "schedule_post_increment": BASE.replace(lr_schedule=SCHED, schedule_count=ScheduleCount.POST_INCREMENT),
    "mask": BASE.exclude_from_decay(["w"]),
    "maximize": BASE.replace(maximize=True),
    "group_lr": BASE.replace(groups=(ParamGroup(names=("z", "w"), lr=0.05),)),
    "no_decay": BASE.replace(decay_form="none"),
}


def for_impl(impl: str, data: tuple[dict[str, Any], list[dict[str, Any]]]) -> tuple[Any, Any]:
    """The shared data, without the 0-d ``s`` for the non-fused implementation."""
    params, grads = data
    if impl == "fused":
        return params, grads
    return {n: a for n, a in params.items() if n != "s"}, [
        {n: a for n, a in g.items() if n != "s"} for g in grads
    ]


def drive(
    cfg: AdamWConfig, params: dict[str, Any], grads: list[dict[str, Any]], dtype: str, impl: str = "fused"
) -> list[Any]:
    run = ADAPTER.create(cfg, params, dtype=dtype, implementation=impl)
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


def test_native_defaults_equal_tinygrad_profile() -> None:
    """Read from the installed signature: lr 1e-3, b1 0.9, b2 0.999, eps 1e-8, weight_decay 0.01
    (tinygrad/nn/optim.py AdamW); the decay is added to the Adam direction (LAMB._step)."""
    got = ADAPTER.native_defaults()
    assert got == get_profile("tinygrad").config
    assert (got.lr, got.weight_decay, got.eps, got.decay_form.value) == (1e-3, 0.01, 1e-8, "added_to_update")


def test_registered_as_builtin() -> None:
    from adapters.registry import BUILTIN_ADAPTERS, load_adapter

    assert BUILTIN_ADAPTERS["tinygrad"] == "adapters.tinygrad.adapter:TinygradAdamW"
    assert load_adapter("tinygrad").info.profile == "tinygrad"


@pytest.mark.parametrize("impl", IMPLS)
def test_float32_trajectory_matches_profile(main_data: Any, impl: str) -> None:
    params, grads = for_impl(impl, main_data)
    got = drive(BASE, params, grads, "float32", impl)[-1]
    ref64 = reference(BASE, params, grads)
    tol = rounding_bound(ref64, [flat(g) for g in grads], BASE, U32)
    for ref in (reference(BASE, params, grads, BINARY32_ARITHMETIC), ref64):
        ok, worst = within(got, ref.params[-1], tol)
        assert ok, f"{impl}: worst |diff|/bound = {worst:.3g}"


def test_other_profile_does_not_match(main_data: Any) -> None:
    """Able to fail: eps before the bias correction is far outside the bound."""
    params, grads = main_data
    other = BASE.replace(eps_placement="before_bias_correction")
    ref = reference(other, params, grads)
    got = drive(BASE, params, grads, "float32")[-1]
    ok, worst = within(got, ref.params[-1], rounding_bound(ref, [flat(g) for g in grads], other, U32))
    assert not ok and worst > 10, worst


def test_zero_d_parameter_fails_without_fusion() -> None:
    """A finding: lr is a shape-(1,) tensor, so lr * up of a 0-d parameter is (1,) and the
    assignment back to the () parameter fails in tinygrad 0.14.0 (the fused path flattens)."""
    run = ADAPTER.create(BASE, {"s": np.array(1.0)}, dtype="float32", implementation="default")
    with pytest.raises(ValueError, match="broadcast"):
        run.step({"s": np.array(0.5)})
    fused = ADAPTER.create(BASE, {"s": np.array(1.0)}, dtype="float32", implementation="fused")
    fused.step({"s": np.array(0.5)})
    assert fused.params()["s"].shape == ()


@pytest.mark.parametrize("impl", IMPLS)
def test_float64_known_deviation(main_data: Any, impl: str) -> None:
    """A finding: m, v (OPTIM_DTYPE), lr and b1_t/b2_t are float32 whatever the parameter dtype."""
    params, grads = for_impl(impl, main_data)
    run = ADAPTER.create(BASE, params, dtype="float64", implementation=impl)
    for g in grads:
        run.step(g)
    got, st = run.params(), run.state()
    # the moments read back are binary32 numbers
    assert all(np.array_equal(st.m[n], st.m[n].astype(np.float32)) for n in params)
    ref = reference(BASE, params, grads)
    gs = [flat(g) for g in grads]
    ok, worst = within(got, ref.params[-1], rounding_bound(ref, gs, BASE, U64))
    assert not ok, "tinygrad float64 now matches the reference: drop the known finding"
    assert within(got, ref.params[-1], rounding_bound(ref, gs, BASE, U32))[0]
    pytest.xfail(f"tinygrad float64: float32 m, v, lr, beta powers; worst |diff|/bound {worst:.3g}")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_feature_trajectories_match(feat_data: Any, feature: str, impl: str) -> None:
    params, grads = for_impl(impl, feat_data)
    cfg = FEATURES[feature]
    ref64 = reference(cfg, params, grads)
    tol = rounding_bound(ref64, [flat(g) for g in grads], cfg, U32)
    traj = drive(cfg, params, grads, "float32", impl)
    for ref in (reference(cfg, params, grads, BINARY32_ARITHMETIC), ref64):
        ok, worst = within(traj[-1], ref.params[-1], tol)
        assert ok, f"{feature}/{impl}: worst |diff|/bound = {worst:.3g}"


def test_first_step_by_hand() -> None:
    """theta=1, g=0.5: m_hat = 0.5, v_hat = 0.25, up = 0.5/(0.5 + eps) + wd*1,
    theta = 1 - lr*up (float32: a few roundings of numbers near 1)."""
    run = ADAPTER.create(BASE, {"w": np.array([1.0])}, dtype="float32", implementation="default")
    run.step({"w": np.array([0.5])})
    want = 1.0 - BASE.lr * (0.5 / (0.5 + BASE.eps) + BASE.weight_decay)
    # m, v, 1 - b_t each within a few u32 relative: the update within ~(12 + 10 + 500) u32 * lr
    assert abs(run.params()["w"][0] - want) <= 4 * U32 + 600 * U32 * BASE.lr


def test_frozen_parameter_is_refused() -> None:
    run = ADAPTER.create(BASE, {"w": np.zeros(2), "b": np.zeros(1)}, dtype="float32")
    with pytest.raises(UnsupportedConfig, match="frozen"):
        run.step({"w": np.ones(2), "b": None})


@pytest.mark.parametrize("impl", IMPLS)
def test_state_reads_step_and_moments(feat_data: Any, impl: str) -> None:
    params, grads = for_impl(impl, feat_data)
    run = ADAPTER.create(BASE, params, dtype="float32", implementation=impl)
    for g in grads:
        run.step(g)
    st = run.state()
    assert st.step == T_FEAT and st.v_max is None
    ref = reference(BASE, params, grads)
    for n in params:
        # m: <= 4u*gmax/(1 - b1) (3 roundings per update, damped by b1, and a rounded 1 - b1);
        # v: <= 4u*gmax^2 per step over T steps. Two implementations: 2x.
        m_ref, v_ref = np.array(ref.states[-1].m[n]), np.array(ref.states[-1].v[n])
        if not m_ref.size:
            continue
        gmax = max(float(np.max(np.abs(np.asarray(g[n])))) for g in grads)
        assert np.all(np.abs(st.m[n].ravel() - m_ref) <= 2 * 4 * U32 * gmax / (1 - BASE.beta1)), n
        assert np.all(np.abs(st.v[n].ravel() - v_ref) <= 2 * 4 * U32 * gmax**2 * T_FEAT), n


@pytest.mark.parametrize("impl", IMPLS)
def test_save_load_continues_bit_exactly(tmp_path: Path, feat_data: Any, impl: str) -> None:
    params, grads = for_impl(impl, feat_data)
    cfg = FEATURES["schedule_post_increment"]
    straight = drive(cfg, params, grads, "float32", impl)
    run = ADAPTER.create(cfg, params, dtype="float32", implementation=impl)
    for g in grads[:25]:
        run.step(g)
    run.save(tmp_path / "s.npz")
    fresh = ADAPTER.create(cfg, params, dtype="float32", implementation=impl)
    fresh.load(tmp_path / "s.npz")
    assert fresh.state().step == 25
    for i, g in enumerate(grads[25:]):
        fresh.step(g)
        for n in params:
            assert np.array_equal(fresh.params()[n], straight[25 + i][n])


@pytest.mark.parametrize("impl", IMPLS)
def test_set_state_teacher_forcing(feat_data: Any, impl: str) -> None:
    params, grads = for_impl(impl, feat_data)
    shapes = {n: np.shape(a) for n, a in params.items()}
    ref = reference(BASE, params, grads, BINARY32_ARITHMETIC)
    k = 30
    st = ref.states[k]
    canon = CanonicalState(
        step=st.step,
        m={n: np.reshape(st.m[n], shapes[n]) for n in shapes},
        v={n: np.reshape(st.v[n], shapes[n]) for n in shapes},
        v_max=None,
    )
    run = ADAPTER.create(BASE, params, dtype="float32", implementation=impl)
    run.set_state({n: np.reshape(ref.params[k][n], shapes[n]) for n in shapes}, canon)
    assert run.state().step == k
    run.step(grads[k])
    b1, b2 = BASE.beta1, BASE.beta2
    cancel = b1 / (1 - b1) + b2 / (2 * (1 - b2)) + 4 * (b1 ** (k + 1) / (1 - b1 ** (k + 1)))
    cancel += 4 * b2 ** (k + 1) / (2 * (1 - b2 ** (k + 1)))
    for n in shapes:
        want = np.array(ref.params[k + 1][n])
        prev = np.abs(np.array(ref.params[k][n]))
        step = np.abs(want - prev) + BASE.lr * BASE.weight_decay * prev
        tol = 2 * (4 * U32 * prev + (12 + cancel) * U32 * step)
        assert np.all(np.abs(run.params()[n].ravel() - want) <= tol), n


def test_float16_runs_with_float32_moments(feat_data: Any) -> None:
    params, grads = feat_data
    run = ADAPTER.create(BASE, params, dtype="float16", implementation="fused")
    for g in grads:
        run.step(g)
    got = run.params()
    assert all(np.all(np.isfinite(a)) for a in got.values())
    assert all(np.array_equal(a, a.astype(np.float16)) for a in got.values())  # float16 storage
    # float32 moments (OPTIM_DTYPE): not representable in float16 in general
    assert not np.array_equal(run.state().m["w.bias"], run.state().m["w.bias"].astype(np.float16))


def test_bfloat16_needs_a_compiler_with_bf16() -> None:
    why = _bfloat16_unavailable()
    if not why:
        ADAPTER.create(BASE, {"w": np.zeros(2)}, dtype="bfloat16").step({"w": np.ones(2)})
        return
    with pytest.raises(FrameworkUnavailable, match=r"bf16|bfloat16"):
        ADAPTER.create(BASE, {"w": np.zeros(2)}, dtype="bfloat16")


REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"eps_placement": "before_bias_correction"}, "eps_placement"),
    ({"decay_scaling": "unscaled"}, "decay_scaling"),
    ({"decay_form": "multiplicative"}, "decay_form"),
    ({"bias_correction": False}, "bias_correction"),
    ({"amsgrad": True}, "amsgrad"),
    ({"step_count_scope": "per_parameter"}, "step_count_scope"),
    ({"nesterov": True}, "nesterov"),
    ({"eps_root": 1e-8}, "eps_root"),
    ({"wd_schedule": WarmupCosine(warmup_steps=2, total_steps=5)}, "wd_schedule"),
]


@pytest.mark.parametrize(("change", "knob"), REFUSED, ids=[k for _, k in REFUSED])
def test_unsupported_knobs_are_refused(change: dict[str, Any], knob: str) -> None:
    with pytest.raises(UnsupportedConfig) as info:
        ADAPTER.to_native(BASE.replace(**change))
    assert info.value.field == knob


def test_cuda_is_refused() -> None:
    with pytest.raises(FrameworkUnavailable, match="device"):
        ADAPTER.create(BASE, {"w": np.zeros(2)}, device="cuda")
