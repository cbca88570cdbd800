"""Planted bugs: every alternative value of every knob and every flag, computed by the reference
adapter while it claims profile torch, must be flagged (divergent) and named by the diagnosis; the
one pair that differs by rounding only (multiplicative vs added_to_update decay) must raise no
alarm. The same plants as independent numpy optimizers (``planted_numpy.py``) through the generic
``numpy:`` wrapper: flagged and named on seed 0, float64 (the full table over seeds and dtypes is
``benchmarks/identifiability.py``, docs/conformance/identifiability.md).

Independent knowledge used: which scenario separates which knob follows from the formulas in
adamw_ref/knobs.py (e.g. schedule_count only matters under a non-constant schedule, AMSGrad's
mode only with amsgrad=True and shrinking gradients, step-count scope only with frozen params).
"""

from __future__ import annotations

from typing import Any

import pytest

from adamw_ref import KNOB_FIELDS, get_profile
from adapters.reference.adapter import planted_adapter
from conformance import diagnose as dg
from conformance.diagnose import KNOB_VALUES
from conformance.execute import CaseSpec, Executor
from conformance.scenarios import get
from tests.conformance import planted_numpy as pn

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
    "maximize": "basic",
    "amsgrad": "shrinking_grads",  # v shrinks: the running maximum changes the steps
    "nesterov": "basic",
    "eps_root": "eps_dominated",  # v ~ 1e-18: eps inside the root dominates
}
FLAG_PLANTS: list[tuple[str, Any]] = [
    ("maximize", True),
    ("amsgrad", True),
    ("nesterov", True),
    ("eps_root", 1e-8),
]
ROUNDING_ONLY = {("decay_form", "added_to_update")}

TORCH = get_profile("torch").config.knobs()
PLANTS = [(k, v) for k in KNOB_FIELDS for v in KNOB_VALUES[k] if v != TORCH[k]] + FLAG_PLANTS


def _name(knob: str, value: object) -> str:
    return f"{knob}={str(value).lower() if isinstance(value, bool) else value}"


def _names_the_plant(diag: dict[str, Any], scenario: str, knob: str, value: object) -> bool:
    """The named candidate (or one listed as equally consistent) computes the planted algorithm
    on this scenario's data."""
    sc = get(scenario)
    cfg = sc.config(get_profile("torch").config)
    p0, grads = sc.inputs(0)
    planted = cfg.replace(**{knob: value})
    named = dg.apply(cfg, diag.get("changes") or {})
    frozen = dg.has_frozen(grads)
    if (
        named is not None
        and not diag.get("roles")
        and dg.effective_key(named, frozen, list(p0)) == dg.effective_key(planted, frozen, list(p0))
    ):
        return True
    return _name(knob, value) in str(diag["detail"])


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
        or _names_the_plant(diag, SEPARATING[knob], knob, value)
        or (diag["kind"] == "profile" and knob in str(diag["detail"]).replace(" ", "_"))
    ), diag


NUMPY_PLANTS = [(f, v) for f, v in PLANTS if pn.plantable(f, v)]


@pytest.mark.parametrize(("knob", "value"), NUMPY_PLANTS, ids=[_name(k, v) for k, v in NUMPY_PLANTS])
def test_numpy_plant_through_the_generic_wrapper_is_flagged_and_named(knob: str, value: object) -> None:
    """An independent numpy AdamW with one knob changed, loaded as ``numpy:pkg.mod.Class``."""
    pytest.importorskip("adapters.generic.numpy_wrapper")
    from conformance.execute import load

    ad = load(f"numpy:tests.conformance.planted_numpy.{pn.class_name(knob, value)}")
    assert ad.info.profile == "torch"  # the plant claims torch, honestly wrapped
    scenario = SEPARATING[knob] if knob != "decay_scaling" else "long_warmup"
    case = Executor(ad).run(CaseSpec("np", ad.info.implementations[0], "cpu", "float64", scenario, "free", 0))
    if (knob, value) in ROUNDING_ONLY:
        assert case["verdict"] in ("exact", "within_bound", "acceptable"), case
        return
    assert case["verdict"] == "divergent", (case["verdict"], case["bound"], case["error"])
    diag = case["diagnosis"]
    assert diag is not None and diag["explained_by"] is not None, diag
    assert _names_the_plant(diag, scenario, knob, value), diag


def test_unmodified_reference_never_flags_planted_knob_scenarios() -> None:
    """The honest reference adapter over the same separating scenarios: no false alarm."""
    ex = Executor(planted_adapter("eps_root", 0.0))  # eps_root=0 is torch's value: honest
    for sc in sorted(set(SEPARATING.values())):
        for dt in ("float64", "float32"):
            case = ex.run(CaseSpec("ref", "emulated", "cpu", dt, sc, "free", 1))
            assert case["verdict"] == "exact", case["id"]
