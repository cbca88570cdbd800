"""Case files -> trajectories: the documented format, bit-exact output, and errors that name the
offending field."""

from __future__ import annotations

import copy
import json
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adamw_ref import (
    BINARY32_ARITHMETIC,
    AdamWRefError,
    HighPrecision,
    LinearWarmup,
    ParamGroup,
    get_profile,
    run_trajectory,
)
from adamw_ref.casefile import parse_case, run_case, trajectory_from_json

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "case_basic.json"


def base_case() -> dict[str, Any]:
    return {
        "format": "adamw-ref/case",
        "version": 1,
        "name": "t",
        "profile": "torch",
        "config": {"lr": 0.01, "weight_decay": 0.1},
        "arithmetic": "float64",
        "params": {"w": [1.0, "-0x1.0p+1"], "b": [0.5]},
        "grads": [{"w": [0.1, 0.2], "b": [1.0]}, {"w": ["0x1.8p-3", -0.1], "b": None}],
    }


def test_example_case_matches_the_python_api() -> None:
    # docs/examples/case_basic.json written out with the Python API (independent of casefile.py)
    doc = json.loads(EXAMPLE.read_text())
    out = run_case(doc)
    cfg = get_profile("torch").config.replace(
        lr=0.01,
        weight_decay=0.1,
        lr_schedule=LinearWarmup(2, start=0.5),
        groups=(ParamGroup(names=("bias",), weight_decay=0.0),),
    )
    params = {"weight": [1.0, -2.0, 0.75], "bias": [0.5]}
    grads = [
        {"weight": [0.1, -0.2, 0.3], "bias": [1.0]},
        {"weight": [0.05, 0.0, -0.1], "bias": None},
        {"weight": [-0.1, 0.2, 0.0], "bias": [-1.0]},
    ]
    traj = run_trajectory(params, grads, cfg)
    steps = trajectory_from_json(json.loads(json.dumps(out)))
    assert len(steps) == 4
    for t, entry in enumerate(steps):
        assert entry["params"] == traj.params[t]
        assert entry["m"] == traj.states[t].m and entry["v"] == traj.states[t].v
    last = out["steps"][-1]
    assert last["decimal"]["params"]["weight"][0] == repr(traj.params[3]["weight"][0])
    assert out["final_state"]["step"] == 3 and out["profile"] == "torch"


def test_float32_and_decimal_arithmetic() -> None:
    case = base_case()
    case["arithmetic"] = "float32"
    out = trajectory_from_json(run_case(case))
    traj = run_trajectory(
        {"w": [1.0, -2.0], "b": [0.5]},
        [{"w": [0.1, 0.2], "b": [1.0]}, {"w": [0.1875, -0.1], "b": None}],
        get_profile("torch").config.replace(lr=0.01, weight_decay=0.1),
        BINARY32_ARITHMETIC,
    )
    assert out[-1]["params"] == traj.params[-1]
    case["arithmetic"] = "decimal:50"
    case["params"]["b"] = ["dec:0.5000000000000000000000000001"]
    doc = run_case(case)
    assert doc["arithmetic"] == "decimal50"
    dec = trajectory_from_json(doc)
    assert isinstance(dec[-1]["params"]["w"][0], Decimal)
    assert dec[0]["params"]["b"][0] == Decimal("0.5000000000000000000000000001")
    assert HighPrecision(50).name == doc["arithmetic"]


def test_special_gradient_strings_and_schedules_block() -> None:
    case = base_case()
    case["grads"][1]["w"] = ["nan", "-inf"]
    case["schedules"] = {
        "lr": {"kind": "step_decay", "step_size": 1, "gamma": 0.5},
        "weight_decay": {"kind": "delayed", "until": 1},
    }
    out = run_case(case)
    assert out["config"]["lr_schedule"]["kind"] == "step_decay"
    assert out["config"]["wd_schedule"] == {
        "kind": "delayed",
        "until": 1,
        "then": {"kind": "constant", "value": 1.0},
    }
    w = trajectory_from_json(out)[-1]["params"]["w"]
    assert math.isnan(w[0]) and math.isnan(w[1])


def test_resume_from_final_state_equals_one_run() -> None:
    case = base_case()
    full = run_case(case)
    first, second = copy.deepcopy(case), copy.deepcopy(case)
    first["grads"] = case["grads"][:1]
    part = run_case(first)
    second["grads"] = case["grads"][1:]
    second["params"] = part["steps"][-1]["params"]
    second["state"] = part["final_state"]
    resumed = run_case(second)
    assert resumed["steps"][-1]["params"] == full["steps"][-1]["params"]
    assert resumed["final_state"] == full["final_state"]


BAD: list[tuple[str, Any, str]] = [
    ("format", "case", "format"),
    ("version", 2, "version"),
    ("profile", "no-such-framework", "profile"),  # ("pytorch" is an alias of torch)
    ("profile", 3, "profile"),
    ("arithmetic", "float8", "arithmetic"),
    ("arithmetic", "decimal:x", "arithmetic"),
    ("arithmetic", "decimal:5", "arithmetic"),
    ("config", {"lr": -1}, "config.lr"),
    ("config", {"decay_form": "l2"}, "config.decay_form"),
    ("config", {"learning_rate": 1}, "config.learning_rate"),
    ("config", [1], "config"),
    ("schedules", {"momentum": {"kind": "constant"}}, "schedules.momentum"),
    ("schedules", {"lr": {"kind": "exp"}}, "schedules.lr.kind"),
    ("params", {}, "params"),
    ("params", {"w": []}, "params.w"),
    ("params", {"w": "1.0"}, "params.w"),
    ("params", {"w": [1.0, "nan"]}, "params.w[1]"),
    ("params", {"w": [1.0, "zero"]}, "params.w[1]"),
    ("params", {"w": [True]}, "params.w[0]"),
    ("grads", {"w": [1.0]}, "grads"),
    ("grads", [[1.0]], "grads[0]"),
    ("grads", [{"w": [0.1, 0.2]}], "grads[0]"),
    ("grads", [{"w": [0.1, 0.2], "b": [1.0], "c": [0]}], "grads[0].c"),
    ("grads", [{"w": [0.1], "b": [1.0]}], "grads[0].w"),
    ("grads", [{"w": [0.1, "0xzz"], "b": [1.0]}], "grads[0].w[1]"),
    ("state", {"format": "adamw-ref/state", "version": 1, "step": -1}, "state.step"),
    ("extra", 1, "extra"),
]


@pytest.mark.parametrize(("key", "value", "field"), BAD)
def test_errors_name_the_field(key: str, value: Any, field: str) -> None:
    case = base_case()
    case[key] = value
    with pytest.raises(AdamWRefError) as info:
        run_case(case)
    assert info.value.field == field  # type: ignore[attr-defined]


def test_state_that_does_not_fit_is_reported_with_the_step() -> None:
    case = base_case()
    other = copy.deepcopy(case)
    other["params"] = {"z": [1.0]}
    other["grads"] = [{"z": [0.1]}]
    case["state"] = run_case(other)["final_state"]
    with pytest.raises(AdamWRefError) as info:
        run_case(case)
    assert str(info.value.field).startswith("grads[0]")  # type: ignore[attr-defined]


def test_parse_case_defaults() -> None:
    case = base_case()
    del case["arithmetic"], case["profile"], case["config"]
    parsed = parse_case(case)
    assert parsed.profile == "torch" and parsed.arithmetic.name == "binary64"
    assert parsed.config == get_profile("torch").config
