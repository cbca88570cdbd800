r"""Generic wrappers, part 2: ``torch:pkg.mod.Class`` against the reference.

``torch:torch.optim.AdamW`` must conform to the ``torch`` profile exactly as the built-in
``torch`` adapter does, within the bound derived in :mod:`tests.adapters.test_torch_adapter`
(linear accumulation of per-step rounding, :math:`K_\theta=4`, :math:`K_u=64`; reused, not
widened). ``torch:torch.optim.Adam?weight_decay=0.01`` (coupled L2) must not match the ``torch``
profile but match ``adam_l2``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from adamw_ref import Cosine, ParamGroup, StepCountScope, WarmupCosine, get_profile, run_trajectory  # noqa: E402
from adapters import CanonicalState, Support, UnsupportedConfig, load_adapter  # noqa: E402
from tests.adapters.test_torch_adapter import (  # noqa: E402
    BASE,
    IMPLS,
    SHAPES,
    SHORT,
    STEPS,
    U32,
    U64,
    _f32,
    bound,
    reference,
    ulps,
    worst,
)

ADAMW = "torch:torch.optim.AdamW"
ADAM_L2 = "torch:torch.optim.Adam?weight_decay=0.01"


@pytest.fixture(scope="module")
def data() -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    rng = np.random.default_rng(20261123)  # the built-in adapter's test data
    params = {n: _f32(rng.standard_normal(s)) for n, s in SHAPES.items()}
    grads = [{n: _f32(rng.standard_normal(s)) for n, s in SHAPES.items()} for _ in range(STEPS)]
    return params, grads


def drive(spec: str, cfg: Any, params: Any, grads: Any, impl: str | None, dtype: str = "float64") -> Any:
    run = load_adapter(spec).create(cfg, params, implementation=impl, dtype=dtype)
    for g in grads:
        run.step(g)
    return run


def test_discovered_like_the_builtin_adapter() -> None:
    a, builtin = load_adapter(ADAMW), load_adapter("torch")
    assert a.info.implementations == IMPLS
    assert a.native_defaults() == builtin.native_defaults() == get_profile("torch").config
    assert a.versions() == {"torch": torch.__version__}
    for feat in ("amsgrad", "maximize", "lr_schedule", "groups", "frozen", "save_load"):
        assert a.info.features[feat] is Support.NATIVE, feat
    for feat in ("nesterov", "eps_root", "wd_schedule"):
        assert a.info.features[feat] is Support.UNSUPPORTED, feat
    assert a.to_native(BASE.replace(amsgrad=True), "fused") == builtin.to_native(
        BASE.replace(amsgrad=True), "fused"
    )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_trajectory_conforms_to_the_torch_profile(impl: str, dtype: str, data: Any) -> None:
    params, grads = data
    ref = reference(BASE, params, grads)
    u = U64 if dtype == "float64" else U32
    run = drive(ADAMW, BASE, params, grads, impl, dtype)
    got = run.params()
    assert worst(got, ref[-1], bound(BASE, ref, u)) <= 1.0, ulps(got, ref, u)
    assert run.state().step == STEPS and run.param_steps() == dict.fromkeys(SHAPES, STEPS)
    # bit-identical to the built-in adapter: the same torch code runs
    same = drive("torch", BASE, params, grads, impl, dtype).params()
    assert all(np.array_equal(got[n], same[n]) for n in SHAPES)


def test_adam_with_weight_decay_is_adam_l2_not_adamw(data: Any) -> None:
    params, grads = data
    a = load_adapter(ADAM_L2)
    assert a.native_defaults() == get_profile("torch").config.replace(weight_decay=0.01)
    cfg = BASE.replace(weight_decay=0.01)
    got = drive(ADAM_L2, cfg, params, grads, "foreach").params()
    ref = reference(cfg, params, grads)
    assert worst(got, ref[-1], bound(cfg, ref, U64)) > 1.0  # not the torch profile
    l2 = get_profile("adam_l2").config.replace(lr=cfg.lr, weight_decay=0.01)
    ref_l2 = reference(l2, params, grads)
    assert worst(got, ref_l2[-1], bound(l2, ref_l2, U64)) <= 1.0  # but Adam + L2
    with pytest.raises(UnsupportedConfig) as exc:  # the override pins weight_decay
        a.to_native(BASE)
    assert exc.value.field == "weight_decay" and "pins weight_decay=0.01" in str(exc.value)


def test_unmapped_override_takes_effect(data: Any) -> None:
    """``?decoupled_weight_decay=true`` turns torch's Adam into AdamW."""
    params, grads = data
    ref = reference(BASE, params, grads[:SHORT])
    spec = "torch:torch.optim.Adam?decoupled_weight_decay=true"
    assert load_adapter(spec).to_native(BASE)["decoupled_weight_decay"] is True
    got = drive(spec, BASE, params, grads[:SHORT], "forloop").params()
    assert worst(got, ref[-1], bound(BASE, ref, U64)) <= 1.0
    plain = drive("torch:torch.optim.Adam", BASE, params, grads[:SHORT], "forloop").params()
    assert worst(plain, ref[-1], bound(BASE, ref, U64)) > 1.0
    assert load_adapter("torch:torch.optim.AdamW?foreach=true").info.implementations == ("default",)


VARIANTS = {
    "amsgrad": BASE.replace(amsgrad=True),
    "maximize": BASE.replace(maximize=True),
    "warmup_cosine": BASE.replace(lr_schedule=WarmupCosine(10, SHORT, final=0.1)),
    "groups": BASE.replace(groups=(ParamGroup(("b", "s"), weight_decay=0.0), ParamGroup(("w",), lr=3e-2))),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_features_match_the_reference(variant: str, data: Any) -> None:
    params, grads = data
    cfg = VARIANTS[variant]
    ref = reference(cfg, params, grads[:SHORT])
    got = drive(ADAMW, cfg, params, grads[:SHORT], "foreach").params()
    assert worst(got, ref[-1], bound(cfg, ref, U64)) <= 1.0
    plain = reference(BASE, params, grads[:SHORT])
    assert worst(got, plain[-1], bound(BASE, plain, U64)) > 1.0  # the feature acted


def test_frozen_parameters_keep_their_own_count(data: Any) -> None:
    params, grads = data
    frozen = [
        {n: (None if (n == "b" and t % 3 == 0) else g) for n, g in gs.items()}
        for t, gs in enumerate(grads[:SHORT])
    ]
    ref = reference(BASE, params, frozen)
    run = drive(ADAMW, BASE, params, frozen, "forloop")
    assert worst(run.params(), ref[-1], bound(BASE, ref, U64)) <= 1.0
    assert run.param_steps() == {"w": SHORT, "b": SHORT - 20, "s": SHORT, "z": SHORT}


@pytest.mark.parametrize(
    ("impl", "dtype"), [("foreach", "float64"), ("fused", "float32"), ("forloop", "bfloat16")]
)
def test_save_load_continues_bit_exactly(impl: str, dtype: str, data: Any, tmp_path: Path) -> None:
    params, grads = data
    cfg = VARIANTS["warmup_cosine"].replace(amsgrad=True)
    whole = drive(ADAMW, cfg, params, grads[:40], impl, dtype)
    first = drive(ADAMW, cfg, params, grads[:20], impl, dtype)
    first.save(tmp_path / "ckpt.npz")
    second = load_adapter(ADAMW).create(cfg, params, implementation=impl, dtype=dtype)
    second.load(tmp_path / "ckpt.npz")
    for g in grads[20:40]:
        second.step(g)
    for n in SHAPES:
        assert torch.equal(second.tensors[n], whole.tensors[n])
        st_a, st_b = second.optimizer.state[second.tensors[n]], whole.optimizer.state[whole.tensors[n]]
        assert all(torch.equal(st_a[k], st_b[k]) for k in st_b)


def _canon(traj: Any, t: int) -> tuple[dict[str, np.ndarray], CanonicalState]:
    st = traj.states[t]
    shaped = {n: np.asarray(traj.params[t][n]).reshape(SHAPES[n]) for n in SHAPES}
    canon = CanonicalState(
        step=st.step,
        m={n: np.asarray(st.m[n]).reshape(SHAPES[n]) for n in SHAPES},
        v={n: np.asarray(st.v[n]).reshape(SHAPES[n]) for n in SHAPES},
        v_max=None,
    )
    return shaped, canon


@pytest.mark.parametrize("impl", IMPLS)
def test_set_state_teacher_forcing_one_step(impl: str, data: Any) -> None:
    params, grads = data
    flat = {n: [float(x) for x in p.reshape(-1)] for n, p in params.items()}
    gs = [{n: [float(x) for x in g.reshape(-1)] for n, g in step.items()} for step in grads[:31]]
    traj = run_trajectory(flat, gs, BASE)
    t = 30
    shaped, canon = _canon(traj, t)
    run = load_adapter(ADAMW).create(BASE, params, implementation=impl, dtype="float64")
    run.set_state(shaped, canon)
    assert run.param_steps() == dict.fromkeys(SHAPES, t)
    run.step(grads[t])
    ref_next = {n: np.asarray(traj.params[t + 1][n]).reshape(SHAPES[n]) for n in SHAPES}
    assert worst(run.params(), ref_next, bound(BASE, [shaped, ref_next], U64)) <= 1.0


def test_a_state_layout_the_probe_rejects_is_not_teacher_forced() -> None:
    pytest.importorskip("pytorch_optimizer")
    # StableAdamW keeps the bias-corrected moments under torch's names
    run = load_adapter("torch:pytorch_optimizer.StableAdamW").create(
        BASE.replace(step_count_scope=StepCountScope.PER_PARAMETER), {"w": np.zeros(3)}, dtype="float64"
    )
    canon = CanonicalState(step=1, m={"w": np.zeros(3)}, v={"w": np.zeros(3)}, v_max=None)
    with pytest.raises(UnsupportedConfig) as exc:
        run.set_state({"w": np.zeros(3)}, canon)
    assert exc.value.field == "teacher_forced" and "not the spec's raw moment" in str(exc.value)


def test_the_suite_runs_and_skips_with_reasons() -> None:
    from conformance.execute import CaseSpec, Executor

    ex = Executor(load_adapter(ADAMW), diagnose=False)
    ok = ex.run(CaseSpec(ADAMW, "foreach", "cpu", "float32", "warmup_cosine", "teacher_forced", 0))
    assert ok["verdict"] in ("exact", "within_bound"), ok
    skip = ex.run(CaseSpec(ADAMW, "foreach", "cpu", "float64", "delayed_decay", "free", 0))
    assert skip["verdict"] == "skipped" and "wd_schedule" in skip["error"]
    refused = load_adapter(ADAMW)
    with pytest.raises(UnsupportedConfig) as exc:
        refused.to_native(BASE.replace(wd_schedule=Cosine(10)))
    assert exc.value.field == "wd_schedule"
    adam = "torch:torch.optim.Adam"  # weight decay from the scenario: coupled L2
    case = Executor(load_adapter(adam)).run(CaseSpec(adam, "forloop", "cpu", "float64", "basic", "free", 0))
    assert case["verdict"] == "divergent"
    assert case["diagnosis"]["explained_by"] == "decay_form=coupled_l2"
