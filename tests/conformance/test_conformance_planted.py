"""Planted bugs: every alternative value of every knob, computed by the reference adapter while it
claims profile torch, must be flagged (divergent) and named by the diagnosis; the one pair that
differs by rounding only (multiplicative vs added_to_update decay) must raise no alarm.

Independent knowledge used: which scenario separates which knob follows from the formulas in
adamw_ref/knobs.py (e.g. schedule_count only matters under a non-constant schedule, AMSGrad's
mode only with amsgrad=True and shrinking gradients, step-count scope only with frozen params).
"""

from __future__ import annotations

import pytest

from adamw_ref import KNOB_FIELDS, get_profile
from adapters.reference.adapter import planted_adapter
from conformance.diagnose import KNOB_VALUES
from conformance.execute import CaseSpec, Executor

# knob -> the scenario that must expose every alternative value (hand-chosen from the formulas)
SEPARATING = {
    "eps_placement": "eps_dominated",
    "decay_scaling": "warmup_cosine",  # lr vs eta vs unscaled all differ when eta != 1
    "decay_form": "zero_grad_decay",  # s = 0.05: proximal differs by s^2 per step
    "decay_timing": "finetune_decay",
    "bias_correction": "basic",
    "amsgrad_mode": "amsgrad",
    "schedule_count": "warmup_cosine",
    "step_count_scope": "frozen",
    "bias_correction_offset": "basic",
}
ROUNDING_ONLY = {("decay_form", "added_to_update")}

TORCH = get_profile("torch").config.knobs()
PLANTS = [(k, v) for k in KNOB_FIELDS for v in KNOB_VALUES[k] if v != TORCH[k]]


def _name(knob: str, value: object) -> str:
    return f"{knob}={str(value).lower() if isinstance(value, bool) else value}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("knob", "value"), PLANTS, ids=[_name(k, v) for k, v in PLANTS])
def test_planted_bug_is_flagged_and_named(knob: str, value: object, dtype: str) -> None:
    ad = planted_adapter(knob, value)
    ex = Executor(ad)
    case = ex.run(CaseSpec("planted", "emulated", "cpu", dtype, SEPARATING[knob], "free", 0))
    if (knob, value) in ROUNDING_ONLY:
        assert case["verdict"] in ("exact", "within_bound", "acceptable"), case
        return
    assert case["verdict"] == "divergent", (case["verdict"], case["bound"])
    assert case["first_divergence"] is not None
    diag = case["diagnosis"]
    assert diag is not None and diag["explained_by"] is not None, diag
    named = diag["explained_by"]
    # A profile whose only difference is the planted knob names it as well (detail text).
    assert (
        named == _name(knob, value)
        or _name(knob, value) in diag["detail"]
        or (diag["kind"] == "profile" and knob in str(diag["detail"]).replace(" ", "_"))
    ), diag


def test_unmodified_reference_never_flags_planted_knob_scenarios() -> None:
    """The honest reference adapter over the same separating scenarios: no false alarm."""
    ex = Executor(planted_adapter("eps_root", 0.0))  # eps_root=0 is torch's value: honest
    for sc in sorted(set(SEPARATING.values())):
        for dt in ("float64", "float32"):
            case = ex.run(CaseSpec("ref", "emulated", "cpu", dt, sc, "free", 1))
            assert case["verdict"] == "exact", case["id"]
