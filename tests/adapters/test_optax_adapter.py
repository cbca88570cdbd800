"""Optax adapter (``optax.adamw`` and the emulating chains), jit and no-jit, against the reference.

The module enables ``jax_enable_x64`` (float64 runs need it) and restores the previous setting
afterwards. float32 runs therefore compute Optax's ``1 - b**count`` in binary64 before casting
(in a process without x64 it is computed in binary32); both are inside the bound below.

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
    LinearWarmup,
    ParamGroup,
    WarmupCosine,
    arithmetic_for,
    get_profile,
)
from adamw_ref.knobs import DecayScaling, ScheduleCount
from adapters.errors import UnsupportedConfig
from adapters.optax.adapter import OptaxAdamW
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

pytest.importorskip("optax", reason="optax is not installed")

U64, U32 = 2.0**-53, 2.0**-24
T_MAIN, T_FEAT, SAVE_AT = 200, 60, 120


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
@pytest.fixture(scope="module", autouse=True)
def x64() -> Any:
    import jax

    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)


ADAPTER = OptaxAdamW()
BASE = get_profile("optax").config.replace(lr=1e-2, weight_decay=0.1)
SCHED = WarmupCosine(warmup_steps=10, total_steps=T_FEAT, final=0.1)
ADDED = {"decay_form": "added_to_update", "lr": 1e-2, "weight_decay": 0.1}
FEATURES: dict[str, AdamWConfig] = {
    "lr_and_wd_schedule": BASE.replace(lr_schedule=SCHED, wd_schedule=LinearWarmup(20, 0.5)),
    "schedule_post_increment": BASE.replace(lr_schedule=SCHED, schedule_count=ScheduleCount.POST_INCREMENT),
    "mask": BASE.exclude_from_decay(["w"]),
    "amsgrad": BASE.replace(amsgrad=True),
    "nesterov": BASE.replace(nesterov=True),
    "eps_root": BASE.replace(eps_root=1e-14),
    "maximize": BASE.replace(maximize=True),
    "frozen": BASE,
    "paper_chain": get_profile("paper").config.replace(**ADDED, lr_schedule=SCHED),
    "eps_hat_chain": get_profile("keras3").config.replace(**ADDED),
    "no_bias_correction": get_profile("mlx").config.replace(**ADDED),
    "bias_correction_offset": BASE.replace(bias_correction_offset=1),
    "unscaled_chain": BASE.replace(decay_scaling=DecayScaling.UNSCALED, weight_decay=1e-3),
    "coupled_l2_chain": BASE.replace(decay_form="coupled_l2"),
    # optax.multi_transform: one adamw per (lr, weight_decay) label; "z" stays ungrouped.
    "groups_multi_transform": BASE.replace(
        groups=(
            ParamGroup(names=("w",), lr=0.05),
            ParamGroup(names=("w.bias",), weight_decay=0.5),
            ParamGroup(names=("s",), lr=1e-3, weight_decay=0.0),
        )
    ),
    "groups_multi_transform_chain": get_profile("paper").config.replace(
        **ADDED, lr_schedule=SCHED, groups=(ParamGroup(names=("w",), lr=0.05),)
    ),
}


def drive(
    cfg: AdamWConfig, params: dict[str, Any], grads: list[dict[str, Any]], dtype: str, impl: str
) -> list[dict[str, np.ndarray]]:
    run = ADAPTER.create(cfg, params, dtype=dtype, implementation=impl)
    out = []
    for g in grads:
        run.step(g)
        out.append(run.params())
    return out


@pytest.fixture(scope="module")
def main_data() -> tuple[dict[str, Any], list[dict[str, Any]], Any, Any]:
    params, grads = make_data(0, T_MAIN)
    return params, grads, reference(BASE, params, grads), reference(BASE, params, grads, BINARY32_ARITHMETIC)


@pytest.fixture(scope="module")
def feat_data() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return make_data(1, T_FEAT)


def test_native_defaults_equal_optax_profile() -> None:
    assert ADAPTER.native_defaults() == get_profile("optax").config


@pytest.mark.parametrize("impl", ["jit", "nojit"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_trajectory_matches_optax_profile(main_data: Any, dtype: str, impl: str) -> None:
    params, grads, ref64, ref32 = main_data
    got = drive(BASE, params, grads, dtype, impl)[-1]
    tol = rounding_bound(ref64, flat_grads(grads), BASE, U64 if dtype == "float64" else U32)
    for ref in (ref64,) if dtype == "float64" else (ref32, ref64):
        ok, worst = within(got, ref.params[-1], tol)
        assert ok, f"worst |diff|/bound = {worst:.3g}"


def test_nojit_float64_is_bit_identical_to_reference(main_data: Any) -> None:
    """Same operations in the same order as the reference's added_to_update form: 0 ulps."""
    params, grads, ref64, _ = main_data
    got = drive(BASE, params, grads, "float64", "nojit")[-1]
    for n, arr in got.items():
        assert arr.ravel().tolist() == list(ref64.params[-1][n]), n


def test_other_profile_does_not_match(main_data: Any) -> None:
    """keras3's eps placement (same hyperparameters otherwise) is told apart from optax."""
    params, grads, _, _ = main_data
    other = BASE.replace(eps_placement=EpsPlacement.BEFORE_BIAS_CORRECTION)
    ref = reference(other, params, grads)
    tol = rounding_bound(ref, flat_grads(grads), other, U32)
    ok, worst = within(drive(BASE, params, grads, "float32", "jit")[-1], ref.params[-1], tol)
    assert not ok and worst > 10, worst


@pytest.mark.parametrize(("dtype", "impl"), [("float32", "jit"), ("float64", "nojit")])
@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_feature_trajectories_match(feat_data: Any, feature: str, dtype: str, impl: str) -> None:
    params, grads = feat_data
    cfg = FEATURES[feature]
    if feature == "frozen":
        grads = frozen_grads(grads)
    ref64 = reference(cfg, params, grads)
    ref = ref64 if dtype == "float64" else reference(cfg, params, grads, BINARY32_ARITHMETIC)
    tol = rounding_bound(ref64, flat_grads(grads), cfg, U64 if dtype == "float64" else U32)
    traj = drive(cfg, params, grads, dtype, impl)
    ok, worst = within(traj[-1], ref.params[-1], tol)
    assert ok, f"{feature}: worst |diff|/bound = {worst:.3g}"
    if feature == "frozen":
        assert np.array_equal(traj[3]["s"], traj[2]["s"])
        assert all(np.array_equal(traj[10][n], traj[9][n]) for n in SHAPES)


def test_state_reads_count_and_moments(feat_data: Any) -> None:
    params, grads = feat_data
    cfg = FEATURES["amsgrad"]
    run = ADAPTER.create(cfg, params, dtype="float64", implementation="nojit")
    for g in grads:
        run.step(g)
    st = run.state()
    traj = reference(cfg, params, grads)
    ref = traj.states[-1]
    assert st.step == T_FEAT and st.v_max is not None
    b1 = cfg.beta1
    for n in SHAPES:
        # Moment bound per implementation: em_t = b1 em + 3u(b1|m| + (1-b1)|g|) (three
        # roundings per update, old errors damped by b1); two implementations.
        em = np.zeros(len(ref.m[n]))
        for t in range(1, T_FEAT + 1):
            g = np.abs(np.asarray(grads[t - 1][n], dtype=np.float64).ravel())
            em = b1 * em + 3 * U64 * (b1 * np.abs(traj.states[t - 1].m[n]) + (1 - b1) * g)
        assert np.all(np.abs(st.m[n].ravel() - ref.m[n]) <= 2 * em), n
        # nu_max is a running max of nu/bc2 (max is 1-Lipschitz): compare relative to the
        # bias-corrected value with the same K + C_t budget as the update (module doc).
        np.testing.assert_allclose(st.v_max[n].ravel(), ref.v_max[n], rtol=2000 * U64, atol=0)


@pytest.mark.parametrize("impl", ["jit", "nojit"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_continues_bit_exactly(tmp_path: Path, feat_data: Any, dtype: str, impl: str) -> None:
    params, grads = feat_data
    cfg = FEATURES["lr_and_wd_schedule"].replace(amsgrad=True)
    straight = drive(cfg, params, grads, dtype, impl)
    run = ADAPTER.create(cfg, params, dtype=dtype, implementation=impl)
    for g in grads[:25]:
        run.step(g)
    run.save(tmp_path / "s.npz")
    fresh = ADAPTER.create(cfg, params, dtype=dtype, implementation=impl)
    fresh.load(tmp_path / "s.npz")
    assert fresh.state().step == 25
    for i, g in enumerate(grads[25:]):
        fresh.step(g)
        for n in SHAPES:
            assert np.array_equal(fresh.params()[n], straight[25 + i][n])


def test_set_state_teacher_forcing(feat_data: Any) -> None:
    """Load the reference's state after step k; one step lands within one step's bound."""
    params, grads = feat_data
    ref = reference(BASE, params, grads)
    k = 30
    st = ref.states[k]
    canon = CanonicalState(
        step=st.step,
        m={n: np.reshape(st.m[n], SHAPES[n]) for n in SHAPES},
        v={n: np.reshape(st.v[n], SHAPES[n]) for n in SHAPES},
        v_max=None,
    )
    run = ADAPTER.create(BASE, params, dtype="float64", implementation="jit")
    run.set_state({n: np.reshape(ref.params[k][n], SHAPES[n]) for n in SHAPES}, canon)
    assert run.state().step == k
    run.step(grads[k])
    b1, b2 = BASE.beta1, BASE.beta2
    cancel = (
        b1 / (1 - b1)
        + b2 / (2 * (1 - b2))
        + 4 * (b1 ** (k + 1) / (1 - b1 ** (k + 1)) + b2 ** (k + 1) / (2 * (1 - b2 ** (k + 1))))
    )
    for n in SHAPES:
        want = np.array(ref.params[k + 1][n])
        prev = np.abs(np.array(ref.params[k][n]))
        step = np.abs(want - prev) + BASE.lr * BASE.weight_decay * prev  # |D| upper bound
        # one step of the module bound: 2 * (4u|theta| + (K + C)u|D|)
        tol = 2 * (4 * U64 * prev + (12 + cancel) * U64 * step)
        assert np.all(np.abs(run.params()[n].ravel() - want) <= tol), n


REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"decay_form": "multiplicative"}, "decay_form"),
    ({"decay_form": "proximal"}, "decay_form"),
    ({"decay_timing": "after_step", "decay_form": "multiplicative"}, "decay_form"),
    ({"amsgrad": True, "amsgrad_mode": "raw_v"}, "amsgrad_mode"),
    ({"step_count_scope": "per_parameter"}, "step_count_scope"),
    ({"amsgrad": True}, "implementation"),  # with implementation="jit-mu-bfloat16"
]


@pytest.mark.parametrize(("change", "knob"), REFUSED, ids=[k for _, k in REFUSED])
def test_unsupported_knobs_are_refused(change: dict[str, Any], knob: str) -> None:
    cfg = get_profile("optax").config.replace(**change)
    impl = "jit-mu-bfloat16" if knob == "implementation" else None
    with pytest.raises(UnsupportedConfig) as info:
        ADAPTER.to_native(cfg, impl)
    assert info.value.field == knob and knob in str(info.value)
    with pytest.raises(UnsupportedConfig):
        ADAPTER.create(cfg, {"w": np.zeros(2)}, implementation=impl)


def test_torch_profile_is_refused_naming_decay_form() -> None:
    with pytest.raises(UnsupportedConfig, match="decay_form"):
        ADAPTER.to_native(get_profile("torch").config)


def test_to_native_native_and_chain() -> None:
    native = ADAPTER.to_native(BASE)
    assert native == {
        "learning_rate": 1e-2,
        "b1": 0.9,
        "b2": 0.999,
        "eps": 1e-8,
        "eps_root": 0.0,
        "weight_decay": 0.1,
        "mask": None,
        "nesterov": False,
        "mu_dtype": None,
    }
    assert ADAPTER.to_native(BASE, "jit-mu-bfloat16")["mu_dtype"] == "bfloat16"
    chain = ADAPTER.to_native(FEATURES["amsgrad"])["chain"]
    assert chain["kind"] == "amsgrad" and chain["adam"] == "amsgrad"
    assert ADAPTER.to_native(FEATURES["paper_chain"])["chain"]["decay"] == "schedule_multiplier"


def test_unknown_implementation_is_refused() -> None:
    with pytest.raises(UnsupportedConfig, match="implementation"):
        ADAPTER.create(BASE, {"w": np.zeros(2)}, implementation="pmap")


def test_schedule_tables_grow_past_their_horizon(feat_data: Any) -> None:
    """jnp indexing clamps: a run whose tables start at 4 counts must still see eta(c) for c>4."""
    params, grads = feat_data
    cfg = FEATURES["lr_and_wd_schedule"]
    want = drive(cfg, params, grads[:12], "float32", "jit")[-1]
    run = ADAPTER.create(cfg, params, dtype="float32", implementation="jit")
    run._build(4)  # type: ignore[attr-defined]
    for g in grads[:12]:
        run.step(g)
    assert run.horizon >= 12  # type: ignore[attr-defined]
    for n in SHAPES:
        assert np.array_equal(run.params()[n], want[n])


def test_bfloat16_runs(feat_data: Any) -> None:
    params, grads = feat_data
    final = drive(BASE, params, grads, "bfloat16", "jit")[-1]
    assert all(np.all(np.isfinite(a)) for a in final.values())


def test_float16_underflow_matches_binary16_reference(feat_data: Any) -> None:
    """In float16, eps=1e-8 rounds to 0 and g^2 (g ~ 1e-6, 1e-3) underflows, so m/(sqrt(0)+0)
    is +-inf, then NaN: the reference in binary16 arithmetic does exactly the same. Every step
    has the same non-finite elements; the finite parameter (g ~ 1) stays within the bound."""
    params, grads = feat_data
    steps = 20
    got = drive(BASE, params, grads[:steps], "float16", "nojit")
    ref = reference(BASE, params, grads[:steps], arithmetic_for("float16"))
    for t in range(steps):
        for n in SHAPES:
            a, r = got[t][n].ravel(), np.array(ref.params[t + 1][n], dtype=np.float64)
            assert np.array_equal(np.isfinite(a), np.isfinite(r)), (t, n)
            assert np.array_equal(np.isnan(a), np.isnan(r)), (t, n)
    assert not np.all(np.isfinite(got[-1]["w"])) and np.all(np.isfinite(got[-1]["w.bias"]))
    ref64 = reference(BASE, params, grads[:steps])
    tol = rounding_bound(ref64, flat_grads(grads[:steps]), BASE, 2.0**-11)
    ok, worst = within({"w.bias": got[-1]["w.bias"]}, ref.params[-1], tol)
    assert ok, worst


def test_groups_multi_transform_state_and_to_native(feat_data: Any) -> None:
    """Per-group lr: one adamw per label; state() merges the labels' moments."""
    params, grads = feat_data
    cfg = FEATURES["groups_multi_transform"]
    native = ADAPTER.to_native(cfg)["multi_transform"]
    assert sorted(v["learning_rate"] for v in native.values()) == [1e-3, 1e-2, 1e-2, 0.05]
    run = ADAPTER.create(cfg, params, dtype="float64", implementation="nojit")
    for g in grads[:5]:
        run.step(g)
    st, ref = run.state(), reference(cfg, params, grads[:5]).states[-1]
    assert st.step == 5
    for n in SHAPES:
        np.testing.assert_allclose(st.m[n].ravel(), ref.m[n], rtol=1e-13, atol=0)
    # Frozen parameters inside multi_transform's per-label states are restored too.
    fz = frozen_grads(grads)
    traj = drive(cfg, params, fz, "float64", "nojit")
    fref = reference(cfg, params, fz)
    ok, worst = within(traj[-1], fref.params[-1], rounding_bound(fref, flat_grads(fz), cfg, U64))
    assert ok, worst
    assert np.array_equal(traj[3]["s"], traj[2]["s"])


MU_FORMATS = {"bfloat16": (2.0**-8, 2.0**-134), "float16": (2.0**-11, 2.0**-25)}


@pytest.mark.parametrize("mu_dtype", sorted(MU_FORMATS))
def test_mu_dtype_stores_first_moment_and_stays_in_bound(feat_data: Any, mu_dtype: str) -> None:
    """``mu_dtype``: m is stored in a 16-bit format (unit roundoff u_m = 2^-8 bfloat16, 2^-11
    float16; half the smallest subnormal 2^-134 resp. 2^-25 where m is subnormal), v and the
    parameters in float32. The stored m's error grows by at most ``u_m|m| + a_m`` per step and
    is damped by b1 (``rounding_bound(mu_store=...)``); the reference keeps m in float32."""
    import jax.numpy as jnp

    from adapters.optax.run import _find_adam

    params, grads = feat_data
    impl = f"jit-mu-{mu_dtype}"
    run = ADAPTER.create(BASE, params, dtype="float32", implementation=impl)
    for g in grads:
        run.step(g)
    node = _find_adam(run.opt_state)  # type: ignore[attr-defined]
    assert node.mu["w"].dtype == getattr(jnp, mu_dtype) and node.nu["w"].dtype == jnp.float32
    m = run.state().m["w.bias"]
    assert np.array_equal(m, np.asarray(m, dtype=getattr(jnp, mu_dtype)).astype(np.float64))
    ref = reference(BASE, params, grads, BINARY32_ARITHMETIC)
    ref64 = reference(BASE, params, grads)
    tol = rounding_bound(ref64, flat_grads(grads), BASE, U32, mu_store=MU_FORMATS[mu_dtype])
    ok, worst = within(run.params(), ref.params[-1], tol)
    assert ok, f"mu_dtype={mu_dtype}: worst |diff|/bound = {worst:.3g}"
    # Able to fail: without the mu_store term the float32 bound is exceeded (bfloat16 m).
    plain = rounding_bound(ref64, flat_grads(grads), BASE, U32)
    assert not within(run.params(), ref.params[-1], plain)[0]
