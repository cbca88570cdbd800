"""Keras 3 AdamW adapter (TensorFlow, JAX, PyTorch backends) against the reference.

Keras fixes its backend per process, so each backend runs all its jobs in one subprocess
(``adapters.keras.fresh_process.run_jobs``) that returns bit-exact JSON; the comparisons with the
pure-Python reference happen here.

Rounding bound: ``2 E_T`` from :mod:`tests.adapters.trajectory_bounds`, where it is derived
(first order, derived, not fitted).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest

from adamw_ref import (
    BINARY32_ARITHMETIC,
    AdamWConfig,
    EpsPlacement,
    ParamGroup,
    WarmupCosine,
    get_profile,
)
from adamw_ref.knobs import ScheduleCount
from adapters.errors import UnsupportedConfig
from adapters.keras.adapter import KerasJax, KerasTensorFlow, KerasTorch
from tests.adapters.trajectory_bounds import (
    SHAPES,
    flat,
    frozen_grads,
    make_data,
    reference,
    rounding_bound,
    within,
)

if importlib.util.find_spec("keras") is None:  # not imported here: the backend is per process
    pytest.skip("keras is not installed", allow_module_level=True)

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


# ---------------------------------------------------------------------------------------------
BASE = get_profile("keras3").config.replace(lr=1e-2, weight_decay=0.1)
SCHED = WarmupCosine(warmup_steps=10, total_steps=T_FEAT, final=0.1)
FEATURES: dict[str, AdamWConfig] = {
    "schedule": BASE.replace(lr_schedule=SCHED),
    "schedule_post": BASE.replace(lr_schedule=SCHED, schedule_count=ScheduleCount.POST_INCREMENT),
    "mask": BASE.exclude_from_decay(["w"]),  # "w.bias" must still decay
    "amsgrad": BASE.replace(amsgrad=True),
    "maximize": BASE.replace(maximize=True),
    "frozen": BASE,
}


def _job(
    cfg: AdamWConfig,
    dtype: str,
    params: dict[str, Any],
    grads: list[dict[str, Any]],
    save_at: int | None = None,
) -> dict[str, Any]:
    from adapters.keras.fresh_process import encode

    return {
        "kind": "run",
        "config": cfg.to_json(),
        "dtype": dtype,
        "save_at": save_at,
        "params": {n: {"shape": list(a.shape), "values": encode(a)} for n, a in params.items()},
        "grads": [{n: None if a is None else encode(a) for n, a in g.items()} for g in grads],
    }


TEACHER_AT = 30


def _teacher_job(params: dict[str, Any], grads: list[dict[str, Any]]) -> dict[str, Any]:
    """set_state from the binary32 reference after step k, then one step (teacher forcing)."""
    from adapters.keras.fresh_process import encode

    ref = reference(BASE, params, grads, BINARY32_ARITHMETIC)
    st = ref.states[TEACHER_AT]
    job = _job(
        BASE,
        "float32",
        {n: np.reshape(ref.params[TEACHER_AT][n], SHAPES[n]) for n in SHAPES},
        [grads[TEACHER_AT]],
    )
    job["kind"] = "teacher"
    job["state"] = {
        "step": st.step,
        "m": {n: encode(st.m[n]) for n in SHAPES},
        "v": {n: encode(st.v[n]) for n in SHAPES},
    }
    return job


@pytest.fixture(scope="module", params=["tensorflow", "jax", "torch"])
def backend_results(request: pytest.FixtureRequest) -> dict[str, Any]:
    """One subprocess per backend runs every job; returns the decoded results by job name."""
    from adapters.keras.fresh_process import decode, run_jobs

    backend = request.param
    if importlib.util.find_spec(backend) is None:  # not imported here (slow, and per process)
        pytest.skip(f"{backend} is not installed")
    params, grads = make_data(0, T_MAIN)
    fparams, fgrads = make_data(1, T_FEAT)
    jobs: dict[str, dict[str, Any]] = {
        "defaults": {"kind": "defaults"},
        "main64": _job(BASE, "float64", params, grads, SAVE_AT),
        "main32": _job(BASE, "float32", params, grads, SAVE_AT),
        "bf16": _job(BASE, "bfloat16", fparams, fgrads),
        "f16": _job(BASE, "float16", fparams, fgrads),
        "teacher": _teacher_job(fparams, fgrads),
    }
    others = [b for b in ("tensorflow", "jax", "torch") if b != backend]
    for other in others:
        jobs[f"other:{other}"] = {"kind": "other_backend", "backend": other}
    for name, cfg in FEATURES.items():
        jobs[name] = _job(cfg, "float32", fparams, frozen_grads(fgrads) if name == "frozen" else fgrads)
    raw = run_jobs(backend, list(jobs.values()))
    res: dict[str, Any] = {}
    for (name, job), r in zip(jobs.items(), raw, strict=True):
        assert "error" not in r or name.startswith("other:"), f"{backend} {name}: {r}"
        if job["kind"] == "teacher":
            r["arrays"] = [{n: decode(v, SHAPES[n]) for n, v in r["params"].items()}]
        if job["kind"] == "run":
            shapes = {n: p["shape"] for n, p in job["params"].items()}
            r["arrays"] = [{n: decode(v, shapes[n]) for n, v in p.items()} for p in r["params"]]
            r["resumed_arrays"] = [{n: decode(v, shapes[n]) for n, v in p.items()} for p in r["resumed"]]
        res[name] = r
    res["_backend"] = backend
    res["_data"] = (params, grads, fparams, fgrads)
    return res


def test_native_defaults_equal_keras3_profile(backend_results: dict[str, Any]) -> None:
    got = AdamWConfig.from_json(backend_results["defaults"]["config"])
    assert got == get_profile("keras3").config


KNOWN_FLOAT64_DEVIATIONS = {
    "tensorflow": "TF backend: ops.cast/tf.cast of a Python float to float64 goes through "
    "float32, so beta_1/beta_2 (powers in update_step) and weight_decay (_apply_weight_decay) "
    "are float32-rounded in float64 runs (0.999 -> 0.9990000128746033)",
    "torch": "torch backend: weight_decay * lr and sqrt(v) + epsilon turn the Python floats "
    "into float32 scalars first (0.1 -> 0.10000000149011612, 1e-7 -> 1.0000000116860974e-07) "
    "in float64 runs",
}


def test_float64_trajectory_matches_profile(backend_results: dict[str, Any]) -> None:
    backend = backend_results["_backend"]
    params, grads, _, _ = backend_results["_data"]
    ref = reference(BASE, params, grads)
    tol = rounding_bound(ref, flat_grads(grads), BASE, U64)
    got = backend_results["main64"]["arrays"][-1]
    ok, worst = within(got, ref.params[-1], tol)
    ulps = max_ulps(got, ref.params[-1], np.float64)
    if backend in KNOWN_FLOAT64_DEVIATIONS:
        # A finding: the deviation must still be there (remove this branch once fixed).
        assert not ok, f"{backend} float64 now matches ({ulps} ulps): drop the known deviation"
        pytest.xfail(
            f"{KNOWN_FLOAT64_DEVIATIONS[backend]}: worst |diff|/bound = {worst:.3g}, {ulps:.3g} ulps"
        )
    assert ok, f"worst |diff|/bound = {worst:.3g} ({ulps} ulps)"


def flat_grads(grads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [flat(g) for g in grads]


def test_float32_trajectory_matches_profile_binary32_and_binary64(
    backend_results: dict[str, Any],
) -> None:
    params, grads, _, _ = backend_results["_data"]
    got = backend_results["main32"]["arrays"][-1]
    ref64 = reference(BASE, params, grads)
    ref32 = reference(BASE, params, grads, BINARY32_ARITHMETIC)
    tol = rounding_bound(ref64, flat_grads(grads), BASE, U32)
    for ref in (ref32, ref64):
        ok, worst = within(got, ref.params[-1], tol)
        assert ok, f"worst |diff|/bound = {worst:.3g}"
    state = backend_results["main32"]["state"]
    assert state["step"] == T_MAIN


def test_other_profile_does_not_match(backend_results: dict[str, Any]) -> None:
    """The torch profile's eps placement (same hyperparameters) is told apart from keras3."""
    params, grads, _, _ = backend_results["_data"]
    other = BASE.replace(eps_placement=EpsPlacement.AFTER_BIAS_CORRECTION)
    ref = reference(other, params, grads)
    tol = rounding_bound(ref, flat_grads(grads), other, U32)
    ok, worst = within(backend_results["main32"]["arrays"][-1], ref.params[-1], tol)
    assert not ok and worst > 10, worst


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_feature_trajectories_match(backend_results: dict[str, Any], feature: str) -> None:
    _, _, fparams, fgrads = backend_results["_data"]
    cfg = FEATURES[feature]
    grads = frozen_grads(fgrads) if feature == "frozen" else fgrads
    ref = reference(cfg, fparams, grads, BINARY32_ARITHMETIC)
    ref64 = reference(cfg, fparams, grads)
    tol = rounding_bound(ref64, flat_grads(grads), cfg, U32)
    res = backend_results[feature]
    ok, worst = within(res["arrays"][-1], ref.params[-1], tol)
    assert ok, f"{feature}: worst |diff|/bound = {worst:.3g}"
    assert res["state"]["step"] == T_FEAT
    if feature == "amsgrad":
        assert res["state"]["v_max"] is not None
    if feature == "mask":
        # "w" (excluded) differs from a run where it decays: the mask really acted.
        ref_decay = reference(BASE, fparams, grads)
        d = np.abs(res["arrays"][-1]["w"].ravel() - np.array(ref_decay.params[-1]["w"]))
        assert np.max(d) > 1e-3


def test_frozen_parameter_is_untouched(backend_results: dict[str, Any]) -> None:
    arrays = backend_results["frozen"]["arrays"]
    # step index 3 (t=3, 0-based grads[3]) freezes "s"; step 10 freezes everything.
    assert np.array_equal(arrays[3]["s"], arrays[2]["s"])
    for n in SHAPES:
        assert np.array_equal(arrays[10][n], arrays[9][n])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_save_load_continues_bit_exactly(backend_results: dict[str, Any], dtype: str) -> None:
    res = backend_results["main64" if dtype == "float64" else "main32"]
    resumed, straight = res["resumed_arrays"], res["arrays"][SAVE_AT:]
    assert len(resumed) == T_MAIN - SAVE_AT
    for a, b in zip(resumed, straight, strict=True):
        for n in SHAPES:
            assert np.array_equal(a[n], b[n])


@pytest.mark.parametrize("job", ["bf16", "f16"])
def test_16_bit_runs(backend_results: dict[str, Any], job: str) -> None:
    """16-bit runs and stay finite (bf16 makes no Adam step: a finding, docs/adapters/keras.md)."""
    final = backend_results[job]["arrays"][-1]
    assert all(np.all(np.isfinite(a)) for a in final.values())
    assert backend_results[job]["state"]["step"] == T_FEAT


def test_bfloat16_makes_no_adam_step_known_deviation(backend_results: dict[str, Any]) -> None:
    """Finding: keras casts beta_2 and local_step to bfloat16, where 0.999 is 1.0, so
    alpha = lr*sqrt(1 - beta_2**t)/... = 0; the decay theta*wd*lr (1e-3 relative) is below half
    a bfloat16 ulp (2**-9). The parameters stay at their bfloat16 initial values, while the
    binary64 reference moves them by O(0.1)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    _, _, fparams, fgrads = backend_results["_data"]
    final = backend_results["bf16"]["arrays"][-1]
    start = {n: fparams[n].astype(ml_dtypes.bfloat16).astype(np.float64) for n in SHAPES}
    ref = reference(BASE, fparams, fgrads)
    moved = max(
        float(np.max(np.abs(np.array(ref.params[-1][n]) - np.array(ref.params[0][n])), initial=0.0))
        for n in SHAPES
    )
    assert moved > 0.05
    unchanged = all(np.array_equal(final[n], start[n]) for n in SHAPES)
    assert unchanged, "keras bfloat16 now updates the parameters: drop the known deviation"
    pytest.xfail(
        f"keras bfloat16: no parameter changed in {T_FEAT} steps (reference moves by up to {moved:.3g})"
    )


def test_set_state_teacher_forcing(backend_results: dict[str, Any]) -> None:
    """After set_state(reference state at step k), one keras step lands on the reference's
    step k+1 within one step of the module bound: 2 * (4u|theta| + (K + C_k)u|D|)."""
    _, _, fparams, fgrads = backend_results["_data"]
    res = backend_results["teacher"]
    assert res["step_before"] == TEACHER_AT
    ref = reference(BASE, fparams, fgrads, BINARY32_ARITHMETIC)
    b1, b2, k = BASE.beta1, BASE.beta2, TEACHER_AT + 1
    cancel = b1 / (1 - b1) + b2 / (2 * (1 - b2)) + 4 * (b1**k / (1 - b1**k) + b2**k / (2 * (1 - b2**k)))
    for n in SHAPES:
        want = np.array(ref.params[k][n])
        prev = np.abs(np.array(ref.params[k - 1][n]))
        step = np.abs(want - prev) + BASE.lr * BASE.weight_decay * prev  # |D| upper bound
        tol = 2 * (4 * U32 * prev + (12 + cancel) * U32 * step)
        assert np.all(np.abs(res["arrays"][0][n].ravel() - want) <= tol), n


# -- refusals (no keras import needed: checked before the framework is touched) -----------------
FACTORIES = [KerasTensorFlow, KerasJax, KerasTorch]
REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"eps_placement": "after_bias_correction"}, "eps_placement"),
    ({"decay_scaling": "unscaled"}, "decay_scaling"),
    ({"decay_form": "added_to_update"}, "decay_form"),
    ({"decay_timing": "after_step"}, "decay_timing"),
    ({"bias_correction": False}, "bias_correction"),
    ({"amsgrad": True, "amsgrad_mode": "bias_corrected_v"}, "amsgrad_mode"),
    ({"step_count_scope": "per_parameter"}, "step_count_scope"),
    ({"bias_correction_offset": 1}, "bias_correction_offset"),
    ({"nesterov": True}, "nesterov"),
    ({"eps_root": 1e-8}, "eps_root"),
    ({"wd_schedule": WarmupCosine(warmup_steps=2, total_steps=5)}, "wd_schedule"),
    ({"groups": (ParamGroup(names=("w",), lr=0.5),)}, "groups.lr"),
]


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
@pytest.mark.parametrize(("change", "knob"), REFUSED, ids=[k for _, k in REFUSED])
def test_unsupported_knobs_are_refused(factory: Any, change: dict[str, Any], knob: str) -> None:
    cfg = get_profile("keras3").config.replace(**change)
    with pytest.raises(UnsupportedConfig) as info:
        factory().to_native(cfg)
    assert info.value.field == knob
    assert knob in str(info.value)
    with pytest.raises(UnsupportedConfig):
        factory().create(cfg, {"w": np.zeros(2)})


def test_keras_with_eps_after_bias_correction_is_refused() -> None:
    with pytest.raises(UnsupportedConfig, match="eps_placement"):
        KerasJax().to_native(get_profile("torch").config)


def test_to_native_arguments() -> None:
    native = KerasTensorFlow().to_native(BASE.exclude_from_decay(["b"]))
    assert native == {
        "learning_rate": 1e-2,
        "weight_decay": 0.1,
        "beta_1": 0.9,
        "beta_2": 0.999,
        "epsilon": 1e-7,
        "amsgrad": False,
    }


def test_other_backend_in_same_process_is_refused(backend_results: dict[str, Any]) -> None:
    """After keras was imported on one backend, the other factories refuse with a reason."""
    others = [k for k in backend_results if k.startswith("other:")]
    assert len(others) == 2
    for key in others:
        r = backend_results[key]
        assert r.get("error") == "FrameworkUnavailable", r
        assert "fixed per process" in r["message"]
