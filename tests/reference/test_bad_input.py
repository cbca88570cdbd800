"""Bad input to the reference (issue 15, the reference's part of the catalogue): one table of
inputs, each with the error it must produce. Every entry gets an AdamWRefError (a ValueError)
naming the offending field, with a one-line message; the CLI turns each into one line on stderr
and exit status 2, never a traceback."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adamw_ref import AdamWConfig, AdamWRefError, ParamGroup, get_profile, init, step
from adamw_ref.arithmetic import HighPrecision
from adamw_ref.cli import main

CFG = get_profile("torch").config
P = {"w": [1.0, -2.0]}


def _step(params: Any, grads: Any, cfg: AdamWConfig = CFG) -> Any:
    return step(params, grads, init({"w": [1.0, -2.0]}, cfg), cfg)


# (id, call, field named in the error)
API: list[tuple[str, Callable[[], Any], str]] = [
    ("params not a mapping", lambda: init([1.0], CFG), "params"),
    ("params empty", lambda: init({}, CFG), "params"),
    ("param name not a string", lambda: init({1: [1.0]}, CFG), "params name"),
    ("param values a string", lambda: init({"w": "1.0"}, CFG), "params['w']"),
    ("param value a string", lambda: init({"w": ["a", 1.0]}, CFG), "params['w'][0]"),
    ("param value a bool", lambda: init({"w": [True]}, CFG), "params['w'][0]"),
    ("param value complex", lambda: init({"w": [1 + 2j]}, CFG), "params['w'][0]"),
    ("param value None", lambda: init({"w": [None]}, CFG), "params['w'][0]"),
    ("initial param NaN", lambda: init({"w": [math.nan]}, CFG), "params['w'][0]"),
    ("initial param inf", lambda: init({"w": [math.inf]}, CFG), "params['w'][0]"),
    ("config not a config", lambda: init(P, {"lr": 1}), "config"),  # type: ignore[arg-type]
    (
        "group names a missing param",
        lambda: init(P, CFG.replace(groups=(ParamGroup(names=("biass",), weight_decay=0.0),))),
        "groups[0].names",
    ),
    ("step: param value a string", lambda: _step({"w": ["a", 1.0]}, {"w": [0.1, 0.1]}), "params['w'][0]"),
    ("step: param value complex", lambda: _step({"w": [1j, 1.0]}, {"w": [0.1, 0.1]}), "params['w'][0]"),
    ("step: grads not a mapping", lambda: _step(P, [0.1, 0.2]), "grads"),
    ("step: grads missing a param", lambda: _step(P, {}), "grads"),
    ("step: grads for an unknown param", lambda: _step(P, {"w": [0.1, 0.1], "b": [1.0]}), "grads"),
    ("step: grad of the wrong length", lambda: _step(P, {"w": [0.1]}), "grads['w']"),
    ("step: grad value a string", lambda: _step(P, {"w": ["x", 0.1]}), "grads['w'][0]"),
    ("step: grad value complex", lambda: _step(P, {"w": [0.1j, 0.1]}), "grads['w'][0]"),
    (
        "step: group names a missing param",
        lambda: _step(P, {"w": [0.1, 0.1]}, CFG.replace(groups=(ParamGroup(names=("biass",), lr=0.1),))),
        "groups[0].names",
    ),
    ("step: state not a State", lambda: step(P, {"w": [0.1, 0.1]}, {"m": {}}, CFG), "state"),  # type: ignore[arg-type]
    ("lr negative", lambda: CFG.replace(lr=-1.0), "lr"),
    ("lr NaN", lambda: CFG.replace(lr=math.nan), "lr"),
    ("lr inf", lambda: CFG.replace(lr=math.inf), "lr"),
    ("lr a string", lambda: CFG.replace(lr="0.1"), "lr"),
    ("beta1 = 1", lambda: CFG.replace(beta1=1.0), "beta1"),
    ("beta2 negative", lambda: CFG.replace(beta2=-0.1), "beta2"),
    ("eps negative", lambda: CFG.replace(eps=-1e-8), "eps"),
    ("weight_decay NaN", lambda: CFG.replace(weight_decay=math.nan), "weight_decay"),
    ("unknown field", lambda: CFG.replace(learning_rate=0.1), "learning_rate"),
    ("unknown knob value", lambda: AdamWConfig.from_json({"eps_placement": "inside"}), "eps_placement"),
    ("knob of the wrong type", lambda: AdamWConfig.from_json({"bias_correction": "yes"}), "bias_correction"),
    ("offset negative", lambda: CFG.replace(bias_correction_offset=-1), "bias_correction_offset"),
    ("nesterov with amsgrad", lambda: CFG.replace(nesterov=True, amsgrad=True), "nesterov"),
    ("group lr negative", lambda: ParamGroup(names=("w",), lr=-1.0), "groups.lr"),
    ("group names a string", lambda: ParamGroup(names="w"), "groups.names"),  # type: ignore[arg-type]
    ("unknown profile", lambda: get_profile("pytorchh"), "profile"),
    ("decimal digits too many", lambda: HighPrecision(100_000_000), "digits"),
    ("decimal digits too few", lambda: HighPrecision(5), "digits"),
]


@pytest.mark.parametrize("call,field", [(c, f) for _, c, f in API], ids=[i for i, _, _ in API])
def test_api_bad_input_names_the_field(call: Callable[[], Any], field: str) -> None:
    with pytest.raises(AdamWRefError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and len(message) < 400
    assert getattr(info.value, "field", None) == field, message


def test_step_accepts_nonfinite_parameters_that_propagation_produced() -> None:
    # documented: a NaN gradient propagates (IEEE); the next step must accept the NaN parameter
    state = init(P, CFG)
    params, state = step(P, {"w": [math.nan, 0.1]}, state, CFG)
    assert math.isnan(params["w"][0])
    params, state = step(params, {"w": [0.1, 0.1]}, state, CFG)
    assert math.isnan(params["w"][0]) and math.isfinite(params["w"][1])


CASE = {"format": "adamw-ref/case", "version": 1, "params": {"w": [1.0]}, "grads": [{"w": [0.5]}]}

# (id, file bytes, text the one-line error must contain)
FILES: list[tuple[str, bytes, str]] = [
    ("not UTF-8", b"\xff{}", "not UTF-8"),
    ("binary garbage", bytes(range(256)), "not UTF-8"),
    ("truncated", json.dumps(CASE).encode()[:-5], "not valid JSON"),
    ("empty", b"", "not valid JSON"),
    ("nested 100000 deep", b"[" * 100_000 + b"]" * 100_000, "nests deeper"),
    (
        "a number too large",
        b'{"format": "adamw-ref/case", "version": 1, "params": {"w": [1e400]}, "grads": []}',
        "overflows",
    ),
    ("an integer too large", json.dumps({**CASE, "params": {"w": [10**400]}}).encode(), "overflows"),
    (
        "NaN literal",
        b'{"format": "adamw-ref/case", "version": 1, "params": {"w": [NaN]}, "grads": []}',
        "not JSON",
    ),
    ("not an object", b"[1, 2]", "case"),
    ("wrong format tag", json.dumps({**CASE, "format": "x"}).encode(), "format"),
    ("missing params", json.dumps({k: v for k, v in CASE.items() if k != "params"}).encode(), "params"),
    ("grads of the wrong length", json.dumps({**CASE, "grads": [{"w": [1, 2]}]}).encode(), "grads[0].w"),
    ("string param", json.dumps({**CASE, "params": {"w": ["abc"]}}).encode(), "params.w[0]"),
    (
        "decimal digits bomb",
        json.dumps({**CASE, "arithmetic": "decimal:100000000"}).encode(),
        "between 20 and 1000",
    ),
    ("unknown arithmetic", json.dumps({**CASE, "arithmetic": "float128"}).encode(), "arithmetic"),
    ("unknown profile", json.dumps({**CASE, "profile": "nope"}).encode(), "profile"),
    ("bad knob", json.dumps({**CASE, "config": {"decay_form": "sideways"}}).encode(), "config.decay_form"),
    ("bad schedule", json.dumps({**CASE, "schedules": {"lr": {"kind": "zigzag"}}}).encode(), "schedules.lr"),
    ("hex garbage", json.dumps({**CASE, "params": {"w": ["0x1.zzp3"]}}).encode(), "params.w[0]"),
]


@pytest.mark.parametrize("data,needle", [(d, n) for _, d, n in FILES], ids=[i for i, _, _ in FILES])
def test_case_file_bad_input_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, needle: str
) -> None:
    path = tmp_path / "case.json"
    path.write_bytes(data)
    code = main(["run", str(path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and needle in err, err


def test_missing_case_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "/nonexistent/case.json"]) == 2
    assert "cannot be read" in capsys.readouterr().err


def test_digit_bomb_is_refused_fast(tmp_path: Path) -> None:
    # through the installed command: no traceback, and refused at once (it used to run > 5 min)
    path = tmp_path / "case.json"
    path.write_text(json.dumps({**CASE, "arithmetic": "decimal:100000000"}))
    res = subprocess.run(
        [sys.executable, "-m", "adamw_ref.cli", "run", str(path)], capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
