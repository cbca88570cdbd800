"""Generic wrappers: ``mlx:pkg.mod.Class`` against the reference (``mlx`` profile), with no
adapter code. Float32 trajectories must stay within the derived rounding bound ``2 E_T``
(:mod:`tests.adapters.trajectory_bounds`); the wrapper must agree bit for bit with the built-in
``mlx`` adapter (both build ``mlx.optimizers.AdamW`` with the same arguments); state read-back
and teacher forcing follow the probe."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("mlx.core", reason="mlx is not installed")

from adamw_ref import LinearWarmup, ParamGroup, get_profile
from adapters import AdapterError, CanonicalState, load_adapter
from tests.adapters.trajectory_bounds import SHAPES, flat, make_data, reference, rounding_bound

SPEC = "mlx:mlx.optimizers.AdamW"
BASE = get_profile("mlx").config.replace(lr=1e-2, weight_decay=0.1)
T = 60
U32 = 2.0**-24


def drive(spec: str, cfg: Any, params: Any, grads: list[Any]) -> Any:
    run = load_adapter(spec).create(cfg, params, dtype="float32")
    for g in grads:
        run.step(g)
    return run


@pytest.mark.parametrize(
    "cfg",
    [
        BASE,
        BASE.replace(lr_schedule=LinearWarmup(warmup_steps=10)),
        BASE.replace(groups=(ParamGroup(names=("w.bias",), lr=3e-3, weight_decay=0.0),)),
        BASE.replace(maximize=True),
    ],
    ids=["base", "warmup", "groups", "maximize"],
)
def test_float32_within_the_rounding_bound_and_bitwise_the_builtin(cfg: Any) -> None:
    params, grads = make_data(3, T)
    got = drive(SPEC, cfg, params, grads)
    ref = reference(cfg, params, grads)
    tol = rounding_bound(ref, [flat(g) for g in grads], cfg, U32)
    for n, arr in got.params().items():
        diff = np.abs(np.asarray(arr).ravel() - np.array(ref.params[-1][n], dtype=np.float64))
        assert np.all(diff <= tol[n]), (n, float(np.max(diff / np.maximum(tol[n], 1e-300), initial=0)))
    builtin = drive("mlx", cfg, params, grads)
    for n in SHAPES:
        assert np.array_equal(got.params()[n], builtin.params()[n])


def test_state_read_back_and_teacher_forcing() -> None:
    params, grads = make_data(4, 5)
    run = drive(SPEC, BASE, params, grads)
    st = run.state()
    assert st.step == 5 and set(st.m) == set(SHAPES) and st.v_max is None
    fresh = load_adapter(SPEC).create(BASE, params, dtype="float32")
    fresh.set_state(run.params(), CanonicalState(step=st.step, m=st.m, v=st.v, v_max=None))
    run.step(grads[0])
    fresh.step(grads[0])
    for n in SHAPES:
        assert np.array_equal(run.params()[n], fresh.params()[n])


def test_not_an_optimizer_is_refused() -> None:
    with pytest.raises(AdapterError, match=r"not an mlx\.optimizers\.Optimizer"):
        load_adapter("mlx:mlx.core.array")
