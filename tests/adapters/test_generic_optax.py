"""Generic wrappers, part 3: ``optax:pkg.mod.factory`` against the reference (``optax`` profile).

Like :mod:`tests.adapters.test_optax_adapter`, the module enables ``jax_enable_x64`` (float64
runs need it) and restores the previous setting afterwards. Rounding bound: ``2 E_T`` from
:mod:`tests.adapters.trajectory_bounds` (derived there, not fitted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("optax", reason="optax is not installed")

from adamw_ref import (
    BINARY32_ARITHMETIC,
    AdamWConfig,
    EpsPlacement,
    LinearWarmup,
    ParamGroup,
    WarmupCosine,
    get_profile,
)
from adapters import AdapterError, CanonicalState, Support, UnsupportedConfig, load_adapter
from tests.adapters.trajectory_bounds import SHAPES, flat, make_data, reference, rounding_bound

U64, U32 = 2.0**-53, 2.0**-24
T_MAIN, T_FEAT = 200, 60
SPEC = "optax:optax.adamw"
BASE = get_profile("optax").config.replace(lr=1e-2, weight_decay=0.1)
SCHED = WarmupCosine(warmup_steps=10, total_steps=T_FEAT, final=0.1)


@pytest.fixture(scope="module", autouse=True)
def x64() -> Any:
    import jax

    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)


def not_a_transformation(learning_rate: float, weight_decay: float = 0.0) -> int:
    """A factory that returns the wrong thing."""
    return 42


def drive(spec: str, cfg: AdamWConfig, params: Any, grads: list[Any], dtype: str, impl: str = "jit") -> Any:
    run = load_adapter(spec).create(cfg, params, dtype=dtype, implementation=impl)
    for g in grads:
        run.step(g)
    return run


def within(got: dict[str, Any], ref_params: dict[str, Any], tol: dict[str, Any]) -> float:
    """Worst |diff| / bound over all elements (<= 1: within)."""
    worst = 0.0
    for n, arr in got.items():
        diff = np.abs(arr.ravel() - np.array(ref_params[n], dtype=np.float64))
        if diff.size:
            worst = max(worst, float(np.max(diff / np.maximum(tol[n], 1e-300))))
    return worst


@pytest.fixture(scope="module")
def main_data() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return make_data(0, T_MAIN)


@pytest.fixture(scope="module")
def feat_data() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return make_data(1, T_FEAT)


def test_discovered_capabilities() -> None:
    a = load_adapter(SPEC)
    assert a.native_defaults() == get_profile("optax").config  # lr filled from the profile
    assert a.info.implementations == ("jit", "nojit")
    f = a.info.features
    assert f["nesterov"] is f["eps_root"] is f["lr_schedule"] is f["wd_schedule"] is Support.NATIVE
    assert f["maximize"] is f["groups"] is f["frozen"] is Support.EMULATED
    assert f["amsgrad"] is Support.UNSUPPORTED  # optax.adamw has no amsgrad argument
    assert set(a.versions()) == {"optax", "jax", "jaxlib"}


@pytest.mark.parametrize("impl", ["jit", "nojit"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_trajectory_matches_the_optax_profile(main_data: Any, dtype: str, impl: str) -> None:
    params, grads = main_data
    got = drive(SPEC, BASE, params, grads, dtype, impl).params()
    ref64 = reference(BASE, params, grads)
    tol = rounding_bound(ref64, [flat(g) for g in grads], BASE, U64 if dtype == "float64" else U32)
    refs = (ref64,) if dtype == "float64" else (reference(BASE, params, grads, BINARY32_ARITHMETIC), ref64)
    for ref in refs:
        assert within(got, ref.params[-1], tol) <= 1.0


def test_nojit_float64_is_bit_identical_to_the_builtin_adapter(main_data: Any) -> None:
    params, grads = main_data
    got = drive(SPEC, BASE, params, grads, "float64", "nojit").params()
    same = drive("optax", BASE, params, grads, "float64", "nojit").params()
    assert all(np.array_equal(got[n], same[n]) for n in SHAPES)


def test_other_profile_does_not_match(main_data: Any) -> None:
    params, grads = main_data
    other = BASE.replace(eps_placement=EpsPlacement.BEFORE_BIAS_CORRECTION)
    got = drive(SPEC, BASE, params, grads, "float64").params()
    ref = reference(other, params, grads)
    assert within(got, ref.params[-1], rounding_bound(ref, [flat(g) for g in grads], other, U64)) > 1.0


FEATURES: dict[str, AdamWConfig] = {
    "schedules": BASE.replace(lr_schedule=SCHED, wd_schedule=LinearWarmup(20, 0.5)),
    "nesterov": BASE.replace(nesterov=True),
    "eps_root": BASE.replace(eps_root=1e-14),
    "maximize": BASE.replace(maximize=True),
    "groups": BASE.replace(groups=(ParamGroup(("w",), lr=0.05), ParamGroup(("s",), weight_decay=0.0))),
}


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_feature_trajectories_match(feat_data: Any, feature: str) -> None:
    params, grads = feat_data
    cfg = FEATURES[feature]
    got = drive(SPEC, cfg, params, grads, "float64").params()
    ref = reference(cfg, params, grads)
    assert within(got, ref.params[-1], rounding_bound(ref, [flat(g) for g in grads], cfg, U64)) <= 1.0
    plain = reference(BASE, params, grads)
    assert within(got, plain.params[-1], rounding_bound(plain, [flat(g) for g in grads], BASE, U64)) > 1.0


def test_frozen_parameters_are_untouched(feat_data: Any) -> None:
    params, grads = feat_data
    frozen = [
        {n: (None if n == "s" and t % 3 == 0 else g) for n, g in gs.items()} for t, gs in enumerate(grads)
    ]
    run = load_adapter(SPEC).create(BASE, params, dtype="float64")
    before = run.params()
    run.step(frozen[0])
    assert np.array_equal(run.params()["s"], before["s"])
    for g in frozen[1:]:
        run.step(g)
    assert run.state().step == T_FEAT


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_continues_bit_exactly(tmp_path: Path, feat_data: Any, dtype: str) -> None:
    params, grads = feat_data
    cfg = FEATURES["schedules"]
    whole = drive(SPEC, cfg, params, grads, dtype)
    run = drive(SPEC, cfg, params, grads[:25], dtype)
    run.save(tmp_path / "s.npz")
    fresh = load_adapter(SPEC).create(cfg, params, dtype=dtype)
    fresh.load(tmp_path / "s.npz")
    assert fresh.state().step == 25
    for g in grads[25:]:
        fresh.step(g)
    for n in SHAPES:
        assert np.array_equal(fresh.params()[n], whole.params()[n])


def test_set_state_teacher_forcing_one_step(feat_data: Any) -> None:
    params, grads = feat_data
    ref = reference(BASE, params, grads)
    k = 30
    st = ref.states[k]
    canon = CanonicalState(
        step=k,
        m={n: np.reshape(st.m[n], SHAPES[n]) for n in SHAPES},
        v={n: np.reshape(st.v[n], SHAPES[n]) for n in SHAPES},
        v_max=None,
    )
    run = load_adapter(SPEC).create(BASE, params, dtype="float64")
    run.set_state({n: np.reshape(ref.params[k][n], SHAPES[n]) for n in SHAPES}, canon)
    assert run.state().step == k
    run.step(grads[k])
    b1, b2, j = BASE.beta1, BASE.beta2, k + 1
    cancel = b1 / (1 - b1) + b2 / (2 * (1 - b2)) + 4 * (b1**j / (1 - b1**j) + b2**j / (2 * (1 - b2**j)))
    for n in SHAPES:
        want = np.array(ref.params[j][n])
        prev = np.abs(np.array(ref.params[k][n]))
        step = np.abs(want - prev) + BASE.lr * BASE.weight_decay * prev
        tol = 2 * (4 * U64 * prev + (12 + cancel) * U64 * step)  # one step of the module bound
        assert np.all(np.abs(run.params()[n].ravel() - want) <= tol), n


def test_a_factory_without_adam_state_is_not_teacher_forced() -> None:
    """``optax.lion`` keeps no second moment: state read-back and teacher forcing are refused."""
    spec = "optax:optax.lion?profile=optax"
    run = load_adapter(spec).create(BASE.replace(beta2=0.99), {"w": np.zeros(3)}, dtype="float64")
    canon = CanonicalState(step=1, m={"w": np.zeros(3)}, v={"w": np.zeros(3)}, v_max=None)
    with pytest.raises(UnsupportedConfig) as exc:
        run.set_state({"w": np.zeros(3)}, canon)
    assert exc.value.field == "teacher_forced" and "ScaleByAdamState" in str(exc.value)


def test_refusals_and_bad_targets() -> None:
    a = load_adapter(SPEC)
    with pytest.raises(UnsupportedConfig) as exc:
        a.to_native(BASE.replace(amsgrad=True))
    assert exc.value.field == "amsgrad"
    with pytest.raises(UnsupportedConfig) as exc:
        a.to_native(get_profile("torch").config)
    assert exc.value.field in ("decay_form", "step_count_scope")
    with pytest.raises(AdapterError, match=r"not a function returning an optax\.GradientTransformation"):
        load_adapter("optax:optax.GradientTransformation")
    with pytest.raises(AdapterError) as bad:
        load_adapter(f"optax:{__name__}.not_a_transformation").create(
            BASE, {"w": np.zeros(2)}, dtype="float64"
        )
    assert "returned int, not an optax.GradientTransformation" in str(bad.value) and "\n" not in str(
        bad.value
    )
