"""Keras 2 ``tf_keras.optimizers.AdamW`` adapter (TensorFlow, CPU) against the reference.

Rounding bound: ``2 E_T`` from :mod:`tests.adapters.trajectory_bounds`, where it is derived
(first order, derived, not fitted). Expected values come from the reference
(:func:`adamw_ref.run_trajectory`) and hand-derived numbers, never from the adapter.
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
from tests.adapters.trajectory_bounds import (
    SHAPES,
    flat,
    frozen_grads,
    make_data,
    reference,
    rounding_bound,
    within,
)

pytest.importorskip("tf_keras", reason="tf_keras is not installed")

from adapters.tf_keras.adapter import TfKerasAdamW

U64, U32 = 2.0**-53, 2.0**-24
T_MAIN, T_FEAT = 120, 40
ADAPTER = TfKerasAdamW()
BASE = get_profile("tf_keras").config.replace(lr=1e-2, weight_decay=0.1)
SCHED = WarmupCosine(warmup_steps=10, total_steps=T_FEAT, final=0.1)
FEATURES: dict[str, AdamWConfig] = {
    "schedule": BASE.replace(lr_schedule=SCHED),
    "schedule_post_increment": BASE.replace(lr_schedule=SCHED, schedule_count=ScheduleCount.POST_INCREMENT),
    "mask": BASE.exclude_from_decay(["w"]),
    "maximize": BASE.replace(maximize=True),
    "amsgrad": BASE.replace(amsgrad=True),
    "frozen": BASE,
    "no_decay": BASE.replace(decay_form="none"),
}


def drive(cfg: AdamWConfig, params: dict[str, Any], grads: list[dict[str, Any]], dtype: str) -> list[Any]:
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


def test_native_defaults_equal_tf_keras_profile() -> None:
    """Read from the installed signature: lr 1e-3, wd 0.004, eps-hat 1e-7 (tf_keras/src/
    optimizers/adamw.py AdamW.__init__)."""
    got = ADAPTER.native_defaults()
    assert got == get_profile("tf_keras").config
    assert (got.lr, got.weight_decay, got.eps) == (1e-3, 0.004, 1e-7)


def test_registered_as_builtin() -> None:
    from adapters.registry import BUILTIN_ADAPTERS, load_adapter

    assert BUILTIN_ADAPTERS["tf-keras"] == "adapters.tf_keras.adapter:TfKerasAdamW"
    assert load_adapter("tf-keras").info.profile == "tf_keras"


def test_float32_trajectory_matches_profile(main_data: Any) -> None:
    params, grads = main_data
    got = drive(BASE, params, grads, "float32")[-1]
    ref64 = reference(BASE, params, grads)
    tol = rounding_bound(ref64, [flat(g) for g in grads], BASE, U32)
    for ref in (reference(BASE, params, grads, BINARY32_ARITHMETIC), ref64):
        ok, worst = within(got, ref.params[-1], tol)
        assert ok, f"worst |diff|/bound = {worst:.3g}"


def test_other_profile_does_not_match(main_data: Any) -> None:
    """Able to fail: the same run against the torch-style eps placement is far outside."""
    params, grads = main_data
    other = BASE.replace(eps_placement="after_bias_correction")
    ref = reference(other, params, grads)
    got = drive(BASE, params, grads, "float32")[-1]
    ok, worst = within(got, ref.params[-1], rounding_bound(ref, [flat(g) for g in grads], other, U32))
    assert not ok and worst > 10, worst


def test_float64_known_deviation(main_data: Any) -> None:
    """A finding: tf.cast(0.004, float64) is fl32(0.004) (the Python float goes through a float32
    constant), so weight_decay and the betas inside beta**t are binary32 in float64 runs."""
    import tensorflow as tf

    assert float(tf.cast(0.004, tf.float64).numpy()) == float(np.float32(0.004)) != 0.004
    params, grads = main_data
    got = drive(BASE, params, grads, "float64")[-1]
    ref = reference(BASE, params, grads)
    gs = [flat(g) for g in grads]
    ok, worst = within(got, ref.params[-1], rounding_bound(ref, gs, BASE, U64))
    assert not ok, "tf_keras float64 now matches the reference: drop the known finding"
    # ... and it is a float32-precision effect: within the float32 bound.
    assert within(got, ref.params[-1], rounding_bound(ref, gs, BASE, U32))[0]
    pytest.xfail(f"tf_keras float64: binary32 weight_decay and beta powers; worst |diff|/bound {worst:.3g}")


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_feature_trajectories_match(feat_data: Any, feature: str) -> None:
    params, grads = feat_data
    cfg = FEATURES[feature]
    if feature == "frozen":
        grads = frozen_grads(grads)
    ref64 = reference(cfg, params, grads)
    tol = rounding_bound(ref64, [flat(g) for g in grads], cfg, U32)
    traj = drive(cfg, params, grads, "float32")
    for ref in (reference(cfg, params, grads, BINARY32_ARITHMETIC), ref64):
        ok, worst = within(traj[-1], ref.params[-1], tol)
        assert ok, f"{feature}: worst |diff|/bound = {worst:.3g}"
    if feature == "frozen":
        assert np.array_equal(traj[3]["s"], traj[2]["s"])
        assert all(np.array_equal(traj[10][n], traj[9][n]) for n in SHAPES)


def test_first_step_by_hand() -> None:
    """One step from theta=1, g=0.5 (float64 lr, wd): theta*(1 - lr*wd) then, with m=0.05,
    v=0.00025*..., the update lr*sqrt(1-b2)/(1-b1) * m/(sqrt(v)+eps) = lr*0.5/(0.5+eps/sqrt(1-b2))."""
    cfg = BASE.replace(weight_decay=0.0, eps=1e-7)
    run = ADAPTER.create(cfg, {"w": np.array([1.0])}, dtype="float64")
    run.step({"w": np.array([0.5])})
    b1, b2, lr, eps = cfg.beta1, cfg.beta2, cfg.lr, cfg.eps
    m, v = (1 - b1) * 0.5, (1 - b2) * 0.25
    want = 1.0 - lr * np.sqrt(1 - b2) / (1 - b1) * m / (np.sqrt(v) + eps)
    # binary32 betas in beta**t only: relative error of sqrt(1-b2^1)/(1-b1^1) <= ~(b/(1-b)) u32
    assert abs(run.params()["w"][0] - want) <= lr * (0.9 / 0.1 + 0.999 / 0.002) * U32 * 2


def test_state_reads_step_and_moments(feat_data: Any) -> None:
    params, grads = feat_data
    run = ADAPTER.create(BASE, params, dtype="float32")
    for g in grads:
        run.step(g)
    st = run.state()
    assert st.step == T_FEAT and st.v_max is None
    ref = reference(BASE, params, grads)
    for n in SHAPES:
        # m: each update rounds 3 times (<= 3u*gmax, |m| <= gmax), damped by b1, plus u*g from a
        # rounded 1 - b1: em <= 4u*gmax/(1 - b1). v: <= 4u*gmax^2 per step, T steps (no damping
        # assumed). Two implementations: 2x.
        m_ref, v_ref = np.array(ref.states[-1].m[n]), np.array(ref.states[-1].v[n])
        scale_m = max(float(np.max(np.abs(np.asarray(g[n])))) for g in grads) if m_ref.size else 0.0
        assert np.all(np.abs(st.m[n].ravel() - m_ref) <= 2 * 4 * U32 * scale_m * (1 / (1 - BASE.beta1))), n
        assert np.all(np.abs(st.v[n].ravel() - v_ref) <= 2 * 4 * U32 * scale_m**2 * T_FEAT), n


def test_save_load_continues_bit_exactly(tmp_path: Path, feat_data: Any) -> None:
    params, grads = feat_data
    cfg = FEATURES["schedule_post_increment"]
    straight = drive(cfg, params, grads, "float32")
    run = ADAPTER.create(cfg, params, dtype="float32")
    for g in grads[:25]:
        run.step(g)
    run.save(tmp_path / "s.npz")
    fresh = ADAPTER.create(cfg, params, dtype="float32")
    fresh.load(tmp_path / "s.npz")
    assert fresh.state().step == 25
    for i, g in enumerate(grads[25:]):
        fresh.step(g)
        for n in SHAPES:
            assert np.array_equal(fresh.params()[n], straight[25 + i][n])


def test_set_state_teacher_forcing(feat_data: Any) -> None:
    params, grads = feat_data
    ref = reference(BASE, params, grads, BINARY32_ARITHMETIC)
    k = 30
    st = ref.states[k]
    canon = CanonicalState(
        step=st.step,
        m={n: np.reshape(st.m[n], SHAPES[n]) for n in SHAPES},
        v={n: np.reshape(st.v[n], SHAPES[n]) for n in SHAPES},
        v_max=None,
    )
    run = ADAPTER.create(BASE, params, dtype="float32")
    run.set_state({n: np.reshape(ref.params[k][n], SHAPES[n]) for n in SHAPES}, canon)
    assert run.state().step == k
    run.step(grads[k])
    b1, b2 = BASE.beta1, BASE.beta2
    cancel = b1 / (1 - b1) + b2 / (2 * (1 - b2)) + 4 * (b1 ** (k + 1) / (1 - b1 ** (k + 1)))
    cancel += 4 * b2 ** (k + 1) / (2 * (1 - b2 ** (k + 1)))
    for n in SHAPES:
        want = np.array(ref.params[k + 1][n])
        prev = np.abs(np.array(ref.params[k][n]))
        step = np.abs(want - prev) + BASE.lr * BASE.weight_decay * prev
        tol = 2 * (4 * U32 * prev + (12 + cancel) * U32 * step)
        assert np.all(np.abs(run.params()[n].ravel() - want) <= tol), n


REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"eps_placement": "after_bias_correction"}, "eps_placement"),
    ({"decay_scaling": "unscaled"}, "decay_scaling"),
    ({"decay_form": "added_to_update"}, "decay_form"),
    ({"decay_timing": "after_step"}, "decay_timing"),
    ({"bias_correction": False}, "bias_correction"),
    ({"amsgrad": True, "amsgrad_mode": "bias_corrected_v"}, "amsgrad_mode"),
    ({"step_count_scope": "per_parameter"}, "step_count_scope"),
    ({"nesterov": True}, "nesterov"),
    ({"eps_root": 1e-8}, "eps_root"),
    ({"wd_schedule": WarmupCosine(warmup_steps=2, total_steps=5)}, "wd_schedule"),
    ({"groups": (ParamGroup(names=("w",), lr=0.5),)}, "groups.lr"),
]


@pytest.mark.parametrize(("change", "knob"), REFUSED, ids=[k for _, k in REFUSED])
def test_unsupported_knobs_are_refused(change: dict[str, Any], knob: str) -> None:
    with pytest.raises(UnsupportedConfig) as info:
        ADAPTER.to_native(BASE.replace(**change))
    assert info.value.field == knob


def test_cuda_is_refused() -> None:
    with pytest.raises(FrameworkUnavailable, match="device"):
        ADAPTER.create(BASE, {"w": np.zeros(2)}, device="cuda")
