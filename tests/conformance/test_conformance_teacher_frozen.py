"""Teacher forcing with frozen parameters: the reference's per-parameter step counts reach the
implementation through ``CanonicalState.param_steps``.

In the ``frozen`` scenario parameter ``frozen`` misses every odd step and ``late`` the first five,
so after step t their own counts are below t; torch's bias correction uses the own count. If the
executor forced every slot to the global count t, torch's 1-beta^k would be computed with the
wrong k for those parameters (at t=2, k=1 vs 2: 1-0.9 vs 1-0.81, a ~2x change of the update),
far outside the bound, so the verdict would be ``divergent``, not exact/within_bound. An adapter
whose run cannot take per-parameter counts must be *skipped* (with the reason), never graded.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from adamw_ref import get_profile
from conformance import diagnose as dg
from conformance import tolerance
from conformance.execute import CaseSpec, Executor, load
from conformance.scenarios import get as get_scenario


def test_reference_points_carry_per_parameter_counts() -> None:
    sc = get_scenario("frozen")
    p0, grads = sc.inputs(0)
    ref = dg.reference_points(sc.config(get_profile("torch").config), p0, grads, "float64")
    # Counted by hand from the stream: a parameter's count is its number of non-None grads so far.
    for t in range(1, len(ref)):
        for name in p0:
            own = sum(grads[i][name] is not None for i in range(t))
            assert ref[t].param_steps is not None and ref[t].param_steps[name] == own
    assert ref[6].param_steps is not None and ref[6].param_steps["frozen"] < 6


def test_teacher_forced_bound_covers_the_rounded_forced_state_of_a_frozen_param() -> None:
    # Teacher-forced, a frozen parameter's output is the forced state rounded to the dtype:
    # error <= u|theta| (round to nearest), so its bound must be >= u|theta|, not 0.
    sc = get_scenario("frozen")
    p0, grads = sc.inputs(0)
    cfg = sc.config(get_profile("torch").config)
    ref = dg.reference_points(cfg, p0, grads, "float32")
    spec = tolerance.spec_for("float32", "cpu", "ref_vs_impl")
    b = tolerance.step_bounds(cfg, ref, grads, spec, "teacher_forced")
    t = next(i for i in range(len(grads)) if grads[i]["frozen"] is None)
    theta = np.abs(ref[t + 1].params["frozen"])
    assert np.all(b[t]["frozen"] >= 2.0**-24 * theta) and np.all(b[t]["frozen"] > 0)


@pytest.fixture(scope="module")
def torch_adapter() -> Any:
    pytest.importorskip("torch", reason="torch is not installed")
    return load("torch")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_frozen_teacher_forced_conforms(torch_adapter: Any, dtype: str) -> None:
    case = Executor(torch_adapter, diagnose=False).run(
        CaseSpec("torch", "foreach", "cpu", dtype, "frozen", "teacher_forced", 0)
    )
    assert case["verdict"] in ("exact", "within_bound"), case


class _GlobalCountOnly:
    """Wraps the torch adapter so that its runs drop ``param_steps`` (a global count only)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.info = inner.info

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def create(self, *a: Any, **kw: Any) -> Any:
        run = self.inner.create(*a, **kw)
        set_state = run.set_state

        def forced(params: Any, state: Any) -> None:
            set_state(params, replace(state, param_steps=None))

        run.set_state = forced
        return run


def test_global_count_adapter_is_skipped_with_reason(torch_adapter: Any) -> None:
    case = Executor(_GlobalCountOnly(torch_adapter), diagnose=False).run(  # type: ignore[arg-type]
        CaseSpec("torch", "foreach", "cpu", "float64", "frozen", "teacher_forced", 0)
    )
    assert case["verdict"] == "skipped", case
    assert "per-parameter step counts" in case["error"]
