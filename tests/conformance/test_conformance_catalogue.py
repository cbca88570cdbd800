"""Scenario catalogue, gradient streams and profile-level diagnosis."""

from __future__ import annotations

import numpy as np
import pytest

from adamw_ref import PROFILES, AdamWConfig, get_profile
from adapters.protocol import Support
from adapters.reference.adapter import ReferenceAdapter
from conformance import gradients
from conformance.execute import CaseSpec, Executor
from conformance.scenarios import SCENARIOS, get, select

FEATURES = {
    "amsgrad",
    "maximize",
    "nesterov",
    "eps_root",
    "lr_schedule",
    "wd_schedule",
    "groups",
    "frozen",
    "save_load",
}


def test_catalogue_is_well_formed() -> None:
    ids = [s.id for s in SCENARIOS]
    assert len(ids) == len(set(ids))
    for s in SCENARIOS:
        assert s.description and s.why and s.steps >= 0
        assert set(s.features) <= FEATURES, s.id
        assert s.gradient in gradients.GENERATORS
        s.config(get_profile("torch").config)  # overrides are valid hyperparameters
        for k in s.overrides:  # scenarios never override knobs: those are under test
            assert k not in AdamWConfig().knobs(), (s.id, k)
    assert all(s.steps >= 10_000 for s in SCENARIOS if "long" in s.tags)
    assert not any("long" in s.tags for s in select())  # default set stays fast
    assert {s.id for s in select(quick=True)} <= {s.id for s in select()}
    with pytest.raises(ValueError, match="no_such"):
        get("no_such")


def test_streams_are_deterministic_and_seed_dependent() -> None:
    sc = get("basic")
    a0, ga = sc.inputs(4)
    b0, gb = sc.inputs(4)
    c0, _ = sc.inputs(5)
    assert all(np.array_equal(a0[k], b0[k]) for k in a0)
    assert all(np.array_equal(x[k], y[k]) for x, y in zip(ga, gb) for k in x)
    assert not np.array_equal(a0["w"], c0["w"])


def test_generators_have_their_stated_structure() -> None:
    rng = np.random.default_rng(0)
    shapes = {"w": (5, 3), "frozen": (2,), "late": (2,)}
    z = gradients.stream("zero", rng, shapes, 3)
    assert all(not np.any(g[k]) for g in z for k in g)
    flip = gradients.stream("sign_flip", rng, {"w": (4,)}, 10, period=5)
    assert np.all(flip[0]["w"] > 0) and np.all(flip[5]["w"] < 0)
    fr = gradients.stream("frozen", rng, shapes, 6, late_start=3)
    assert fr[1]["frozen"] is None and fr[2]["frozen"] is not None
    assert [g["late"] is None for g in fr] == [True, True, True, False, False, False]
    null = gradients.stream("nullspace", rng, {"w": (50,)}, 4, null_fraction=0.5)
    zero_cols = np.all(np.stack([g["w"] for g in null]) == 0, axis=0)
    assert 0 < zero_cols.sum() < 50  # the same coordinates are zero at every step
    with pytest.raises(ValueError, match="kind"):
        gradients.stream("bogus", rng, shapes, 1)
    with pytest.raises(ValueError, match="seed"):
        gradients.rng_for("basic", -1)


def test_missing_feature_is_skipped_with_the_reason() -> None:
    ad = ReferenceAdapter()
    feats = dict(ad.info.features)
    feats["amsgrad"] = Support.UNSUPPORTED
    object.__setattr__(ad.info, "features", feats)
    case = Executor(ad).run(CaseSpec("ref", "emulated", "cpu", "float64", "amsgrad", "free", 0))
    assert case["verdict"] == "skipped" and "amsgrad" in case["error"]


@pytest.mark.parametrize("profile", ["mlx", "keras3", "paper", "hf_legacy"])
def test_an_implementation_of_another_profile_is_named(profile: str) -> None:
    """Knobs of ``profile`` computed while claiming torch: the diagnosis names the profile (or
    the single knob that makes up the whole difference)."""
    diff = {
        k: v for k, v in PROFILES[profile].config.knobs().items() if PROFILES["torch"].config.knobs()[k] != v
    }
    ad = ReferenceAdapter(diff, name=f"as-{profile}")
    ex = Executor(ad)
    scen = {
        "mlx": "frozen",
        "keras3": "eps_dominated",
        "paper": "warmup_cosine",
        "hf_legacy": "finetune_decay",
    }[profile]
    case = ex.run(CaseSpec("p", "emulated", "cpu", "float64", scen, "free", 0))
    assert case["verdict"] == "divergent"
    diag = case["diagnosis"]
    singles = {f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in diff.items()}
    # The simplest explanation is named: the profile, or one of its knobs when that knob alone
    # accounts for the whole trajectory here (then the profile is mentioned as consistent).
    assert diag["explained_by"] in singles | {f"profile {profile}"}, diag
    assert f"profile {profile}" in diag["detail"], diag["detail"]


def test_probes_are_short_float64_scenarios_and_the_default_tier_stays_small() -> None:
    from conformance.identify import REVEALS, probes

    ids = {s.id for s in probes()}
    assert set(REVEALS) <= ids | {"decay_schedule"}  # every revealing probe is a probe
    assert all(s.steps <= 40 and "float64" in s.dtypes and "full" in s.tags for s in probes())
    # the observability scenarios added for the diagnosis are in --full and the probes only
    default = {s.id for s in select()}
    assert not {"long_warmup", "decay_schedule", "shrinking_grads"} & default
    assert len(default) <= 15


def test_observability_scenarios_make_their_knob_visible() -> None:
    """A long warmup shifts eta by 1/W per step between the pre- and post-increment counts; a
    cosine wd schedule does the same on the decay; shrinking gradients make AMSGrad's maximum
    differ from v. Each must separate its pair beyond the float32 bound (so in float64 too)."""
    from conformance.diagnose import separation

    torch = get_profile("torch").config
    for sid, change in (
        ("long_warmup", {"schedule_count": "post_increment"}),
        ("decay_schedule", {"schedule_count": "post_increment"}),
        ("shrinking_grads", {"amsgrad": True}),
    ):
        sc = get(sid)
        cfg = sc.config(torch)
        p0, gs = sc.inputs(0)
        assert separation(cfg, cfg.replace(**change), p0, gs, "float32") > 1, sid
