"""``identify``: a fingerprint of the optimizer from the probe trajectories.

Independent knowledge used: the profiles' knob values are data (adamw_ref/profiles.py) from the
frameworks' sources; a reference adapter computing another profile's knobs while claiming torch
must be named by those knobs, not by its claim. Profiles with equal knobs differ only in their
defaults (keras3 and tf_keras; apex and optimisers_jl), which the probes override: either name is
right. The built-in adapters run the real frameworks (skipped when not installed).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from adamw_ref import KNOB_FIELDS, PROFILES, AdamWConfig
from adapters.reference.adapter import ReferenceAdapter, planted_adapter
from conformance import diagnose as dg
from conformance.identify import Identification, identify, identify_main

TORCH = PROFILES["torch"].config.knobs()


def _same_knobs(a: str) -> set[str]:
    kn = PROFILES[a].config.knobs()
    return {n for n, p in PROFILES.items() if p.config.knobs() == kn}


def _algorithm(knobs: dict[str, Any], rounding: bool = False) -> tuple[Any, ...]:
    """The algorithm the knobs compute; with ``rounding``, decay added to the update counts as
    multiplicative (equal in exact arithmetic)."""
    kn = dict(knobs)
    if rounding and kn.get("decay_form") == "added_to_update":
        kn["decay_form"] = "multiplicative"
    return dg.effective_key(AdamWConfig().replace(**kn), frozen=True)


def _knobs_of(r: Identification) -> dict[str, Any]:
    assert r.profile is not None
    kn = dict(PROFILES[r.profile].config.knobs())
    kn.update({k: v for k, v in r.changes.items() if k in KNOB_FIELDS})
    return kn


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_claiming_torch_is_identified_by_its_knobs(profile: str) -> None:
    """The reference computing ``profile``'s knobs while it claims torch."""
    override = PROFILES[profile].config.knobs()
    r = identify(ReferenceAdapter(override, name=f"as-{profile}", profile="torch"))
    assert r.identified, r.text()
    assert not r.roles, r.text()
    # the profile's algorithm, up to the rounding-only decay order: apex (added_to_update, one
    # global count) is also "torch + step_count_scope=global", the nearer to the claim
    assert _algorithm(_knobs_of(r), rounding=True) == _algorithm(override, rounding=True), r.text()
    if not r.changes:
        assert r.profile in _same_knobs(profile), r.text()
        assert set(r.equivalent_profiles) == _same_knobs(profile) - {r.profile}


@pytest.mark.parametrize("profile", ["torch", "keras3", "optax", "mlx", "paper"])
def test_a_profile_claiming_itself_is_identified_as_itself(profile: str) -> None:
    r = identify(ReferenceAdapter(profile=profile))
    assert r.identified and r.answer == profile, r.text()
    assert all(p.ratio_fit is not None and p.ratio_fit <= 1 for p in r.probes if p.status == "ran")


PLANTS: list[tuple[str, Any]] = [
    (k, v)
    for k in KNOB_FIELDS
    for v in dg.KNOB_VALUES[k]
    if v != TORCH[k] and (k, v) != ("decay_form", "added_to_update")
] + [("maximize", True), ("amsgrad", True), ("nesterov", True)]


@pytest.mark.parametrize(("knob", "value"), PLANTS, ids=[f"{k}={v}" for k, v in PLANTS])
def test_a_planted_knob_is_identified_as_torch_plus_that_knob(knob: str, value: Any) -> None:
    r = identify(planted_adapter(knob, value))
    assert r.identified, r.text()
    shown = str(value).lower() if isinstance(value, bool) else str(value)
    if knob in KNOB_FIELDS:
        expected = {**TORCH, knob: value}
        # the same algorithm (knobs that cannot matter blanked: without bias correction the
        # step-count scope is moot, so torch + bias_correction=false is mlx's algorithm)
        assert _algorithm(_knobs_of(r)) == _algorithm(expected), r.text()
        # named "torch + knob=value", or a profile that computes exactly that (adam_l2 = torch +
        # coupled_l2; mlx = torch + bias_correction=false)
        assert r.answer == f"torch + {knob}={shown}" or (
            r.answer in PROFILES and _algorithm(PROFILES[r.answer].config.knobs()) == _algorithm(expected)
        ), r.text()
    else:
        assert r.answer == f"torch + {knob}={shown}", r.text()


def test_rounding_only_knobs_are_reported_as_indistinguishable() -> None:
    r = identify(ReferenceAdapter(profile="torch"))
    assert r.answer == "torch"
    assert any(x.startswith("decay_form=added_to_update") for x in r.indistinguishable), r.indistinguishable


def test_a_probe_the_optimizer_cannot_run_leaves_its_knobs_undetermined() -> None:
    from adapters.protocol import Support

    ad = ReferenceAdapter(profile="torch")
    feats = dict(ad.info.features)
    feats["frozen"] = Support.UNSUPPORTED
    object.__setattr__(ad.info, "features", feats)
    r = identify(ad)
    assert r.identified and r.answer == "torch"
    assert "step_count_scope" in r.undetermined and "frozen" in r.undetermined["step_count_scope"]
    assert "undetermined: step_count_scope" in r.text()


def lr_bug() -> ReferenceAdapter:
    """A factory for the CLI test: lr 10 % too large; no profile, knob or flag explains it."""
    return ReferenceAdapter({"lr": 0.011}, name="lr-bug", profile="torch")


def test_nothing_fits_gives_the_best_candidate_its_residual_and_the_failing_probe(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc = identify_main(["tests.conformance.test_identify:lr_bug", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert out["identified"] is False and out["residual"] > 1
    assert out["failing_probe"] in {p["scenario"] for p in out["probes"]}
    assert out["answer"]


def test_cli_text_json_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert identify_main(["reference"]) == 0
    text = capsys.readouterr().out
    assert "identified as: torch" in text and "probes: 12 ran" in text
    assert identify_main(["reference", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == "torch"
    for bad in (["no_such_adapter"], [], ["reference", "--seed", "-1"], ["reference", "--bogus"]):
        assert identify_main(bad) == 2, bad
        err = capsys.readouterr().err.strip()
        assert err and len(err.splitlines()) == 1, (bad, err)


def _identify_in_process(spec: str) -> dict[str, Any]:
    """A fresh process: Keras fixes its backend per process."""
    out = subprocess.run(
        [sys.executable, "-m", "conformance.identify", spec, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode in (0, 1), out.stderr[-2000:]
    data: dict[str, Any] = json.loads(out.stdout)
    return data


@pytest.mark.parametrize(
    ("spec", "module", "expected"),
    [
        ("torch", "torch", {"torch"}),
        ("torch-adam", "torch", {"torch"}),
        ("optax", "optax", {"optax"}),
        ("keras-jax", "keras", {"keras3", "tf_keras"}),
        ("mlx", "mlx.core", {"mlx"}),
    ],
)
def test_builtin_adapters_are_identified(spec: str, module: str, expected: set[str]) -> None:
    pytest.importorskip(module)
    if spec == "keras-jax":
        pytest.importorskip("jax")
    r = _identify_in_process(spec)
    assert r["identified"], r
    assert r["answer"] in expected, r


@pytest.mark.parametrize(
    "spec,answer",
    [
        ("torch:torch.optim.AdamW", "torch"),
        ("torch:torch.optim.Adam", "adam_l2"),
        ("optax:optax.adamw", "optax"),
        ("keras-jax:keras.optimizers.AdamW", "keras3"),
        ("mlx:mlx.optimizers.AdamW", "mlx"),
    ],
)
def test_identify_through_the_generic_wrappers(spec: str, answer: str) -> None:
    # no adapter code: the one-line spec is fingerprinted (torch.optim.Adam's weight_decay is L2)
    pytest.importorskip(spec.split(":")[1].split(".")[0])
    if spec.startswith("keras-jax:"):
        pytest.importorskip("jax")
    res = subprocess.run(
        [sys.executable, "-m", "conformance.cli", "identify", spec, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["identified"] and doc["answer"] == answer
