"""``explain``'s trace recomputes the step: its results must equal adamw_ref.step bit for bit,
for every profile, knob combination and arithmetic; its intermediates match hand values."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adamw_ref import (
    BINARY32_ARITHMETIC,
    BINARY64_ARITHMETIC,
    PROFILES,
    AmsgradMode,
    DecayForm,
    DecayScaling,
    DecayTiming,
    EpsPlacement,
    HighPrecision,
    LinearWarmup,
    ScheduleCount,
    StepCountScope,
    get_profile,
    init,
    run_trajectory,
)
from adamw_ref.arithmetic import arithmetic_for
from adamw_ref.explain import explain_steps, render, trace_to_json

ARITHS = [BINARY64_ARITHMETIC, BINARY32_ARITHMETIC, arithmetic_for("bfloat16"), HighPrecision(40)]
PARAMS = {"w": [1.0, -2.0, 0.5], "b": [0.25]}
GRADS: list[dict[str, Any]] = [
    {"w": [0.1, -0.3, 0.0], "b": [1.0]},
    {"w": [0.2, 0.5, -1e-3], "b": None},
    {"w": [-0.05, 0.5, 2.0], "b": [-0.5]},
]


def same(a: Any, b: Any) -> bool:
    return repr(a) == repr(b)  # distinguishes -0.0/0.0 and compares NaNs and Decimals exactly


@pytest.mark.parametrize("arith", ARITHS, ids=lambda a: a.name)
@pytest.mark.parametrize("name", sorted(PROFILES))
def test_trace_equals_step_for_every_profile(name: str, arith: Any) -> None:
    cfg = get_profile(name).config.replace(lr=0.01, weight_decay=0.1, lr_schedule=LinearWarmup(2, start=0.5))
    traces = explain_steps(PARAMS, GRADS, init(PARAMS, cfg, arith), cfg, arith)
    traj = run_trajectory(PARAMS, GRADS, cfg, arith)
    for t, tr in enumerate(traces, start=1):
        assert same(tr.new_params, traj.params[t])
        assert same(tr.new_state, traj.states[t])
        for pname, ptr in tr.params.items():
            assert same(tuple(ptr.get("theta")), traj.params[t][pname])


knob_values = st.fixed_dictionaries(
    {
        "eps_placement": st.sampled_from(list(EpsPlacement)),
        "decay_scaling": st.sampled_from(list(DecayScaling)),
        "decay_form": st.sampled_from(list(DecayForm)),
        "decay_timing": st.sampled_from(list(DecayTiming)),
        "bias_correction": st.booleans(),
        "amsgrad": st.booleans(),
        "amsgrad_mode": st.sampled_from(list(AmsgradMode)),
        "schedule_count": st.sampled_from(list(ScheduleCount)),
        "step_count_scope": st.sampled_from(list(StepCountScope)),
        "bias_correction_offset": st.integers(0, 2),
        "maximize": st.booleans(),
        "nesterov": st.booleans(),
        "eps_root": st.sampled_from([0.0, 1e-12]),
    }
)


@given(knobs=knob_values, arith=st.sampled_from(ARITHS[:3]))
def test_trace_equals_step_for_any_knobs(knobs: dict[str, Any], arith: Any) -> None:
    if knobs["decay_timing"] is DecayTiming.AFTER_STEP and knobs["decay_form"] in (
        DecayForm.ADDED_TO_UPDATE,
        DecayForm.COUPLED_L2,
    ):
        knobs["decay_timing"] = DecayTiming.BEFORE_STEP
    if knobs["nesterov"]:
        knobs["amsgrad"] = False
    cfg = get_profile("torch").config.replace(lr=0.05, weight_decay=0.2, **knobs)
    traces = explain_steps(PARAMS, GRADS, init(PARAMS, cfg, arith), cfg, arith)
    traj = run_trajectory(PARAMS, GRADS, cfg, arith)
    assert same(traces[-1].new_params, traj.params[-1])
    assert same(traces[-1].new_state, traj.states[-1])


def test_intermediates_are_the_hand_values() -> None:
    # the dyadic first step of test_ref_hand: m = 3/8, v = 9/64, m_hat = 3/4, v_hat = 9/16,
    # denom = 3/4 + 1/4 = 1, u = 3/4, 1 - s = 15/16, theta1 = 27/32
    cfg = get_profile("torch").config.replace(lr=0.125, beta1=0.5, beta2=0.75, eps=0.25, weight_decay=0.5)
    (tr,) = explain_steps({"x": [1.0]}, [{"x": [0.75]}], init({"x": [1.0]}, cfg), cfg)
    pt = tr.params["x"]
    assert (pt.k, pt.lr_t, pt.lam_t, pt.s, pt.bc1, pt.bc2) == (1, 0.125, 0.5, 1 / 16, 0.5, 0.25)
    hand = {
        "m": 3 / 8,
        "v": 9 / 64,
        "m_hat": 3 / 4,
        "v_hat": 9 / 16,
        "sqrt": 3 / 4,
        "denom": 1.0,
        "u": 3 / 4,
        "decay_factor": 15 / 16,
        "theta_decayed": 15 / 16,
        "delta": 3 / 32,
        "theta": 27 / 32,
    }
    for key, value in hand.items():
        assert pt.get(key) == [value], key
    text = render(tr, cfg, BINARY64_ARITHMETIC)
    assert "u = m_hat/denom" in text and "0.84375" in text  # 27/32
    doc = trace_to_json(tr)
    assert doc["params"]["x"]["theta"] == ["0.84375"]


def test_frozen_parameter_is_reported() -> None:
    cfg = get_profile("torch").config
    (tr,) = explain_steps(PARAMS, [GRADS[1]], init(PARAMS, cfg), cfg)
    assert tr.frozen == ["b"] and "b" not in tr.params
    assert "frozen" in render(tr, cfg, BINARY64_ARITHMETIC)
