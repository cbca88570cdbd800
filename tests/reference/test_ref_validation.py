"""Every invalid input raises ConfigError/InputError naming the field; NaN/Inf gradients follow
IEEE propagation (documented rule: never skipped, never an exception)."""

from __future__ import annotations

import math

import pytest

from adamw_ref import (
    AdamWConfig,
    ConfigError,
    Cosine,
    Delayed,
    InputError,
    LinearWarmup,
    ParamGroup,
    State,
    StepDecay,
    UserSchedule,
    WarmupCosine,
    get_profile,
    init,
    schedule_from_json,
    state_from_json,
    state_to_json,
    step,
)
from adamw_ref.arithmetic import HighPrecision, arithmetic_for

BAD_CONFIG = [
    ("lr", -1e-3),
    ("lr", math.nan),
    ("lr", math.inf),
    ("lr", "0.1"),
    ("lr", True),
    ("lr", None),
    ("eps", -1e-8),
    ("eps", math.nan),
    ("eps", math.inf),
    ("beta1", -0.1),
    ("beta1", 1.0),
    ("beta1", 1.5),
    ("beta1", math.nan),
    ("beta2", -1e-9),
    ("beta2", 1.0),
    ("beta2", math.inf),
    ("weight_decay", -1e-2),
    ("weight_decay", math.nan),
    ("weight_decay", math.inf),
    ("eps_root", -1.0),
    ("eps_root", math.nan),
    ("amsgrad", 1),
    ("maximize", "yes"),
    ("nesterov", None),
    ("bias_correction", 0),
    ("eps_placement", "epsilon_hat"),
    ("decay_scaling", "by_lr"),
    ("decay_form", "l2"),
    ("decay_timing", "later"),
    ("amsgrad_mode", "max"),
    ("schedule_count", 0),
    ("step_count_scope", "local"),
    ("bias_correction_offset", -1),
    ("bias_correction_offset", True),
    ("bias_correction_offset", 0.5),
    ("lr_schedule", lambda c: 1.0),
    ("wd_schedule", 1.0),
    ("groups", [ParamGroup(("a",))]),
]


@pytest.mark.parametrize(("field", "value"), BAD_CONFIG)
def test_bad_config_field_is_named(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        AdamWConfig(**{field: value})
    assert info.value.field == field
    assert field in str(info.value)


@pytest.mark.parametrize(("field", "value"), BAD_CONFIG[:20])
def test_bad_config_via_replace_and_json(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        get_profile("torch").config.replace(**{field: value})
    assert info.value.field == field
    with pytest.raises(ConfigError):
        AdamWConfig.from_json({field: value})


def test_unknown_field_and_incompatible_knobs() -> None:
    with pytest.raises(ConfigError) as info:
        AdamWConfig().replace(learning_rate=0.1)
    assert info.value.field == "learning_rate"
    with pytest.raises(ConfigError) as info:
        AdamWConfig(decay_timing="after_step", decay_form="added_to_update")
    assert info.value.field == "decay_timing"
    with pytest.raises(ConfigError) as info:
        AdamWConfig(nesterov=True, amsgrad=True)
    assert info.value.field == "nesterov"
    with pytest.raises(ConfigError) as info:
        get_profile("pytorchh")  # a typo ("pytorch" is an alias of torch)
    assert info.value.field == "profile" and "torch" in str(info.value)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: ParamGroup(names="bias"), "groups.names"),
        (lambda: ParamGroup(names=("b",), lr=-1.0), "groups.lr"),
        (lambda: ParamGroup(names=("b",), weight_decay=math.nan), "groups.weight_decay"),
        (lambda: AdamWConfig.from_json({"groups": {"names": []}}), "groups"),
        (lambda: AdamWConfig.from_json({"groups": [{"lr": 1.0}]}), "groups[]"),
        (lambda: AdamWConfig.from_json([1]), "config"),  # type: ignore[arg-type]
        (lambda: LinearWarmup(-1), "schedule.warmup_steps"),
        (lambda: LinearWarmup(3, start=-0.5), "schedule.start"),
        (lambda: Cosine(0), "schedule.total_steps"),
        (lambda: Cosine(10, final=math.inf), "schedule.final"),
        (lambda: WarmupCosine(10, 10), "schedule.total_steps"),
        (lambda: StepDecay(0), "schedule.step_size"),
        (lambda: StepDecay(3, gamma=-0.1), "schedule.gamma"),
        (lambda: Delayed(until=-2), "schedule.until"),
        (lambda: schedule_from_json({"kind": "exp"}, "lr_schedule"), "lr_schedule.kind"),
        (lambda: schedule_from_json({"value": 1}, "lr_schedule"), "lr_schedule"),
        (lambda: schedule_from_json({"kind": "cosine", "steps": 3}, "wd_schedule"), "wd_schedule"),
        (lambda: UserSchedule(lambda c: -1.0, name="neg")(0), "schedule[neg](0)"),
        (lambda: UserSchedule(lambda c: 1.0).to_json(), "schedule"),
        (lambda: HighPrecision(10), "digits"),
        (lambda: arithmetic_for("float8"), "dtype"),
    ],
)
def test_other_config_errors(build, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        build()
    assert info.value.field == field


CFG = get_profile("torch").config
P = {"w": [1.0, 2.0], "b": [0.5]}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "params"),
        ([1.0], "params"),
        ({"w": "12"}, "params['w']"),
        ({"w": 3.0}, "params['w']"),
        ({"w": [1.0, math.nan]}, "params['w'][1]"),
        ({"w": [math.inf]}, "params['w'][0]"),
        ({"w": [-math.inf]}, "params['w'][0]"),
        ({"w": [True]}, "params['w'][0]"),
        ({"w": ["1.0"]}, "params['w'][0]"),
        ({1: [1.0]}, "params name"),
    ],
)
def test_bad_initial_params(params: object, field: str) -> None:
    with pytest.raises(InputError) as info:
        init(params, CFG)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize(
    ("grads", "field"),
    [
        ({"w": [0.1, 0.2]}, "grads"),  # missing b
        ({"w": [0.1, 0.2], "b": [0.1], "c": [1.0]}, "grads"),  # unknown c
        ({"w": [0.1], "b": [0.1]}, "grads['w']"),  # length mismatch
        ({"w": [0.1, 0.2, 0.3], "b": [0.1]}, "grads['w']"),
        ({"w": "ab", "b": [0.1]}, "grads['w']"),
        ({"w": [0.1, "x"], "b": [0.1]}, "grads['w'][1]"),
        ({"w": [0.1, False], "b": [0.1]}, "grads['w'][1]"),
        ([0.1], "grads"),
    ],
)
def test_bad_grads(grads: object, field: str) -> None:
    with pytest.raises(InputError) as info:
        step(P, grads, init(P, CFG), CFG)  # type: ignore[arg-type]
    assert info.value.field == field


def test_bad_state() -> None:
    good = init(P, CFG)
    other = init({"w": [1.0, 2.0]}, CFG)
    with pytest.raises(InputError) as info:
        step(P, {"w": [0, 0], "b": [0]}, other, CFG)
    assert info.value.field == "state"
    short = State(step=0, param_steps=good.param_steps, m={"w": (0.0,), "b": (0.0,)}, v=good.v, v_max=None)
    with pytest.raises(InputError) as info:
        step(P, {"w": [0, 0], "b": [0]}, short, CFG)
    assert info.value.field == "state.m['w']"
    with pytest.raises(InputError) as info:
        step(P, {"w": [0, 0], "b": [0]}, good, CFG.replace(amsgrad=True))
    assert info.value.field == "state.v_max"
    with pytest.raises(InputError) as info:
        step(P, {"w": [0, 0], "b": [0]}, {"m": {}}, CFG)  # type: ignore[arg-type]
    assert info.value.field == "state"
    with pytest.raises(InputError) as info:
        step(P, {"w": [0, 0], "b": [0]}, good, {"lr": 1})  # type: ignore[arg-type]
    assert info.value.field == "config"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(format="x"), "format"),
        (lambda d: d.update(version=2), "version"),
        (lambda d: d.update(step=-1), "step"),
        (lambda d: d.update(step=True), "step"),
        (lambda d: d.update(param_steps={"w": -1}), "param_steps"),
        (lambda d: d.update(m=[1]), "m"),
        (lambda d: d.update(v={"w": "0x0p+0"}), "v['w']"),
        (lambda d: d.update(m={"w": ["zero"]}), "state value"),
        (lambda d: d.update(m={"w": [0.5]}), "state value"),
        (lambda d: d.update(m={"w": ["nan:0x0000000000000001"]}), "state value"),
    ],
)
def test_bad_state_json(mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    doc = state_to_json(init({"w": [1.0]}, CFG))
    mutate(doc)
    with pytest.raises(InputError) as info:
        state_from_json(doc)
    assert info.value.field == field


def test_nan_and_inf_gradients_propagate_elementwise() -> None:
    # Rule (docs/spec.md): no skipping, IEEE propagation per element, as PyTorch.
    #   NaN g: m, v, theta become NaN for that element only.
    #   +Inf g from rest: m = +Inf, v = +Inf, m_hat/denom = Inf/Inf = NaN -> theta NaN.
    # Other elements are untouched by the bad one.
    p = {"w": [1.0, 2.0, 3.0]}
    new, s = step(p, {"w": [math.nan, math.inf, 0.5]}, init(p, CFG), CFG)
    a, b, c = new["w"]
    assert math.isnan(a) and math.isnan(b) and math.isfinite(c)
    assert math.isnan(s.m["w"][0]) and s.m["w"][1] == math.inf and s.v["w"][1] == math.inf
    clean, _ = step({"w": [3.0]}, {"w": [0.5]}, init({"w": [3.0]}, CFG), CFG)
    assert c == clean["w"][0]
    # once NaN, always NaN (no recovery, no exception)
    new2, _ = step(new, {"w": [0.1, 0.1, 0.1]}, s, CFG)
    assert math.isnan(new2["w"][0]) and math.isnan(new2["w"][1])


def test_zero_eps_with_zero_gradient_is_nan() -> None:
    # eps = 0, g = 0 from rest: u = 0/(sqrt(0) + 0) = 0/0 = NaN (IEEE), as torch computes it.
    cfg = CFG.replace(eps=0.0)
    new, _ = step({"w": [1.0]}, {"w": [0.0]}, init({"w": [1.0]}, cfg), cfg)
    assert math.isnan(new["w"][0])


def test_inf_gradient_in_binary32_and_decimal() -> None:
    from adamw_ref import BINARY32_ARITHMETIC

    for arith in (BINARY32_ARITHMETIC, HighPrecision(30)):
        p = {"w": [1.0, 1.0]}
        new, _ = step(p, {"w": [-math.inf, 1e39]}, init(p, CFG, arith), CFG, arith)
        x = new["w"][0]
        assert x != x  # NaN in both arithmetics
        if arith is BINARY32_ARITHMETIC:
            # 1e39 overflows binary32 to +inf on conversion: same NaN outcome
            assert new["w"][1] != new["w"][1]
