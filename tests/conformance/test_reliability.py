"""The reliability reports (conformance/reliability, issue 15 parts 1-3), on a small subset.

Independent sources: the specification's rules as docs/spec.md states them (hyperparameters
finite and >= 0, 0 <= beta < 1, initial parameters finite, eps = 0 valid; section 6: an infinite
gradient makes m = +-inf, v = +inf and the update inf/inf = NaN), torch's own constructor checks
read from its installed source, torch's ``lerp`` formula for the first moment, and a run that
was never saved (the fresh-process resume must continue it bit for bit)."""

from __future__ import annotations

import importlib.util
import inspect
import math
from typing import Any

import pytest

from conformance.reliability import fidelity, nan_inf, parity
from conformance.reliability.cases import BY_ID, inputs

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")

# row -> does the specification refuse it? (docs/spec.md, section 6 and AdamWConfig's rules)
SPEC = {
    "lr_nan": True,
    "lr_inf": True,
    "lr_negative": True,
    "lr_zero": False,
    "beta1_one": True,
    "beta2_above_one": True,
    "eps_zero": False,
    "eps_negative": True,
    "wd_negative": True,
    "param_nan": True,
    "grad_broadcastable": True,
    "group_unknown_name": True,
}


def _torch_refuses(row: str) -> bool:
    """torch.optim.AdamW's constructor checks (``if not 0.0 <= lr``, ``if not 0.0 <= eps``,
    ``if not 0.0 <= betas[i] < 1.0``, ``if not 0.0 <= weight_decay``): NaN fails every
    comparison, infinity passes ``0.0 <= x``."""
    h = inputs(row).hyper
    ok = (
        h["lr"] >= 0.0
        and h["eps"] >= 0.0
        and 1.0 > h["beta1"] >= 0.0
        and 1.0 > h["beta2"] >= 0.0
        and h["weight_decay"] >= 0.0
    )
    return not ok


@pytest.fixture(scope="module")
def table() -> dict[str, Any]:
    return parity.collect(["torch-forloop", "reference"], list(SPEC))


def test_the_rows_state_the_spec() -> None:
    for row, refuses in SPEC.items():
        assert BY_ID[row].spec_refuses is refuses, row


def test_the_reference_refuses_exactly_what_the_spec_refuses(table: dict[str, Any]) -> None:
    for row, refuses in SPEC.items():
        cell = table["cells"][row]["reference"]
        if refuses:
            assert cell["outcome"] == "clear", (row, cell)
        else:
            assert cell["outcome"] == "ok", (row, cell)
    assert table["cells"]["eps_zero"]["reference"]["nan_from_step"] == 1  # 0/0 where g = 0 from rest


def test_torch_refuses_what_its_constructor_checks(table: dict[str, Any]) -> None:
    import torch

    src = inspect.getsource(torch.optim.Adam.__init__) + inspect.getsource(torch.optim.AdamW)
    for check in ("0.0 <= lr", "0.0 <= eps", "0.0 <= betas[0] < 1.0", "0.0 <= weight_decay"):
        assert check in src, f"torch no longer checks {check!r}: revisit _torch_refuses"
    for row in (r for r in SPEC if BY_ID[r].category == "hyperparameters"):
        cell = table["cells"][row]["torch-forloop"]
        if _torch_refuses(row):
            assert cell["outcome"] == "clear", (row, cell)
        elif SPEC[row]:
            assert cell["outcome"] in ("SILENT", "NaN"), (row, cell)
    # lr = inf passes 0.0 <= lr: the first step multiplies by inf (theta * (1 - inf * wd))
    assert table["cells"]["lr_inf"]["torch-forloop"]["outcome"] == "NaN"
    assert table["cells"]["lr_inf"]["torch-forloop"]["nan_from_step"] == 1


def test_torch_silently_accepts_nan_parameters_and_a_misnamed_group(table: dict[str, Any]) -> None:
    cells = table["cells"]
    assert cells["param_nan"]["torch-forloop"]["outcome"] == "SILENT"  # no check of the values
    assert cells["group_unknown_name"]["torch-forloop"]["outcome"] == "SILENT"  # an empty group
    # torch checks the shape when .grad is assigned ("assigned grad has ... size")
    assert cells["grad_broadcastable"]["torch-forloop"]["outcome"] == "clear"
    lines = parity.silent_findings(table)
    assert any(line.startswith("NaN in an initial parameter") for line in lines)


@pytest.fixture(scope="module")
def propagation() -> dict[str, Any]:
    doc: dict[str, Any] = nan_inf.collect(["torch forloop", "reference"], amp=[])
    return doc


def _row(doc: dict[str, Any], impl: str, poison: str) -> dict[str, Any]:
    rows = [r for r in doc["propagation"] if r["implementation"] == impl and r["poison"] == poison]
    assert len(rows) == 1
    row: dict[str, Any] = rows[0]
    return row


def test_the_rule_is_the_spec_text(propagation: dict[str, Any]) -> None:
    k = propagation["k"]
    for poison, sign in (("+inf", "+inf"), ("-inf", "-inf")):
        rule = _row(propagation, "reference", poison)["rule"]
        for t in range(k, propagation["steps"] + 1):
            assert rule[t] == {"theta": "nan", "m": sign, "v": "+inf"}, (poison, t)
    rule = _row(propagation, "reference", "nan")["rule"]
    assert all(c == {"theta": "nan", "m": "nan", "v": "nan"} for c in rule.values())


def test_torch_forloop_against_the_rule(propagation: dict[str, Any]) -> None:
    k, steps = propagation["k"], propagation["steps"]
    nan_row = _row(propagation, "torch forloop", "nan")
    assert nan_row["matches_rule"] and nan_row["neighbours_untouched"]
    for poison in ("+inf", "-inf"):
        r = _row(propagation, "torch forloop", poison)
        assert r["neighbours_untouched"]
        assert r["classes"][k] == r["rule"][k]  # m = lerp(m, inf, 1 - b1) = inf at the poisoned step
        # afterwards torch's lerp computes m + w * (g - m) = inf + w * (g - inf) = inf - inf = NaN
        want = [{"step": t, "quantity": "m", "got": "nan", "rule": poison} for t in range(k + 1, steps + 1)]
        assert r["differs"] == want
    assert math.isnan(float("inf") + 0.1 * (0.5 - float("inf")))  # the lerp step, in IEEE arithmetic


def test_fresh_process_resume_is_bit_exact_for_torch_and_the_reference() -> None:
    doc = fidelity.collect(["torch forloop", "reference"], ["float32"], ["features"])
    rows = doc["rows"]
    assert {r["target"] for r in rows} == {"torch forloop", "reference"}
    for r in rows:
        assert "failure" not in r, r
        assert set(r["features"]) >= {"lr_schedule", "amsgrad", "groups", "frozen"}
        assert r["bit_exact"], r


def test_the_bit_comparison_sees_one_flipped_bit() -> None:
    job = {"adapter": "x", "implementation": None, "dtype": "float32", "variant": "plain"}
    state = {
        "params": {"w": ["3ff0000000000000"]},
        "step": 1,
        "m": {},
        "v": {},
        "v_max": None,
        "param_steps": None,
    }
    primed = {
        "config": {},
        "features": [],
        "saved": state,
        "after": [{"w": ["3ff0000000000000"]}],
        "final": state,
    }
    flipped = {"loaded": state, "after": [{"w": ["3ff0000000000001"]}], "final": state}
    row = fidelity.compare("x", job, primed, flipped)
    assert row["state_restored"] and not row["continuation_bit_exact"] and not row["bit_exact"]
    assert "after[0].w[0]" in str(row["continuation_difference"])


def _f32_bits(x: float) -> str:
    """Bit pattern (binary64 hex, as the reports store it) of ``x`` rounded to float32."""
    import numpy as np

    from conformance.reliability.common import bits

    return bits(np.float32(x))[0]


def test_continuation_distance_in_ulps_is_hand_derived() -> None:
    from conformance.reliability.fidelity_jobs import max_ulps

    one, three_up = _f32_bits(1.0), _f32_bits(1.0 + 3 * 2.0**-23)  # float32 ulp at 1 is 2^-23
    a = [{"w": [one, _f32_bits(0.5)], "z": []}]
    b = [{"w": [three_up, _f32_bits(0.5)], "z": []}]
    assert max_ulps(a, a, "float32") == 0.0
    assert max_ulps(a, b, "float32") == 3.0
    assert max_ulps({"step": 4, "p": a}, {"step": 4, "p": b}, "float32") == 3.0
    assert max_ulps({"step": 4}, {"step": 5}, "float32") == math.inf
    nan = [{"w": [_f32_bits(float("nan")), _f32_bits(0.5)], "z": []}]
    assert max_ulps(a, nan, "float32") == math.inf


def test_cpu_to_gpu_rows_report_restoration_and_distance() -> None:
    job = {"adapter": "x", "implementation": None, "dtype": "float32", "variant": "plain"}
    state = {
        "params": {"w": [_f32_bits(1.0)]},
        "step": 1,
        "m": {},
        "v": {},
        "v_max": None,
        "param_steps": None,
    }
    primed = {
        "config": {},
        "features": [],
        "saved": state,
        "after": [{"w": [_f32_bits(1.0)]}],
        "final": state,
    }
    moved = {**state, "params": {"w": [_f32_bits(1.0 + 2.0**-23)]}}
    resumed = {"loaded": state, "after": [{"w": [_f32_bits(1.0 + 2.0**-22)]}], "final": moved}
    row = fidelity.compare("x", job, primed, resumed, load_device="cuda")
    assert row["state_restored"] and row["continuation_max_ulps"] == 2.0
    doc = {"load_device": "cuda", "m": 1, "versions": {}, "rows": [row]}
    md = fidelity.to_markdown(doc)
    assert "load on cuda" in md and "| 2 ulp | restored |" in md
    assert "1 of 1 cases restore the CPU state on cuda exactly." in md


def test_load_device_is_refused_up_front_where_it_cannot_be_used() -> None:
    with pytest.raises(SystemExit, match="--load-device 'tpu'"):
        fidelity.main(["--out", "/nonexistent", "--load-device", "tpu"])
    from conformance.distributed.cases import cuda_devices

    if cuda_devices() == 0:
        with pytest.raises(SystemExit, match="no CUDA device"):
            fidelity.main(["--out", "/nonexistent", "--load-device", "cuda"])


def test_the_device_note_says_where_the_device_row_ran() -> None:
    from conformance.reliability.native import ONLY_TORCH_DEVICES
    from conformance.reliability.parity import _device_note

    skipped = {"outcome": "skipped", "detail": "no GPU on this machine"}
    not_written = {"outcome": "skipped", "detail": ONLY_TORCH_DEVICES}
    cpu = {"cells": {"device_mismatch": {"torch-fused": skipped, "optax": not_written}}}
    assert "skipped, this machine has no GPU" in _device_note(cpu)
    clear = {"outcome": "clear", "detail": "RuntimeError: ... device type 'cuda'"}
    gpu = {"cells": {"device_mismatch": {"torch-fused": clear, "optax": not_written}}}
    assert "run on this machine's GPU in `torch-fused`" in _device_note(gpu)
    assert "not in this run's rows" in _device_note({"cells": {}})
