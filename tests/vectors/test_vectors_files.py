"""The committed vector files: drift, determinism, lint, JSON Schema, and spot checks of the
expected values against hand derivations (exact rational arithmetic), not against the generator."""

from __future__ import annotations

import json
import math
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from adamw_ref import PROFILES
from adamw_ref.formats import BINARY32, round_to_format
from adamw_ref.vectors import (
    FILE_PATTERN,
    NOTES,
    canonical_json,
    default_vectors_dir,
    generate,
    lint,
    lint_file,
    schema_path,
)

VEC_DIR = default_vectors_dir()
FILES = sorted(VEC_DIR.glob("*.json"))


def _load(name: str) -> dict:
    return json.loads((VEC_DIR / name).read_text())


def _test(doc: dict, flag: str, dtype: str = "float64") -> tuple[dict, dict]:
    for g in doc["testGroups"]:
        if g["dtype"] != dtype:
            continue
        for t in g["tests"]:
            if t["flags"][0] == flag:
                return g, t
    raise AssertionError(f"no {flag} test")


def test_every_profile_has_a_file() -> None:
    names = {p.name for p in FILES}
    assert names == {FILE_PATTERN.format(profile=p) for p in PROFILES}


def test_generated_files_equal_a_fresh_generation(tmp_path: Path) -> None:
    fresh = generate(tmp_path)
    for path in fresh:
        committed = VEC_DIR / path.name
        assert committed.read_bytes() == path.read_bytes(), (
            f"{path.name} drifted: run `adamw-ref vectors generate` and review the diff"
        )


def test_generation_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    generate(a)
    generate(b)
    for p in a.iterdir():
        assert p.read_bytes() == (b / p.name).read_bytes()


def test_lint_passes() -> None:
    assert lint(VEC_DIR) == []


def test_schema_validates_with_jsonschema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(schema_path().read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for path in FILES:
        jsonschema.Draft202012Validator(schema).validate(json.loads(path.read_text()))


def test_size_and_counts() -> None:
    total = sum(p.stat().st_size for p in FILES)
    assert total < 450_000, f"vector set is {total} bytes; keep it small"
    flags = set()
    for p in FILES:
        doc = json.loads(p.read_text())
        assert doc["numberOfTests"] == sum(len(g["tests"]) for g in doc["testGroups"])
        flags |= {f for g in doc["testGroups"] for t in g["tests"] for f in t["flags"]}
    assert flags == set(NOTES), "every documented flag is used and every used flag documented"


def test_float32_values_are_binary32(tmp_path: Path) -> None:
    for path in FILES:
        for g in json.loads(path.read_text())["testGroups"]:
            if g["dtype"] != "float32":
                continue
            for t in g["tests"]:
                vals = [x for vs in t["params"].values() for x in vs]
                vals += [
                    x for e in t["expected"] for k in ("params", "m", "v") for vs in e[k].values() for x in vs
                ]
                for s in vals:
                    x = float.fromhex(s) if s not in ("nan", "inf", "-inf") else float(s)
                    assert math.isnan(x) or round_to_format(x, BINARY32) == x, (path.name, s)


# -- lint catches what it claims to catch ---------------------------------------------------------
@pytest.fixture()
def copy(tmp_path: Path) -> Path:
    dst = tmp_path / "v"
    shutil.copytree(VEC_DIR, dst)
    return dst / FILE_PATTERN.format(profile="torch")


def _schema() -> Any:
    """The full JSON Schema check, as ``adamw-conformance vectors lint`` runs it."""
    pytest.importorskip("jsonschema")
    from conformance.vectors import schema_validator

    return schema_validator()


def test_lint_detects_non_canonical_formatting(copy: Path) -> None:
    copy.write_text(json.dumps(json.loads(copy.read_text()), indent=4))
    assert any("not canonical" in e for e in lint_file(copy, _schema()))


def test_lint_detects_duplicate_ids_and_wrong_count(copy: Path) -> None:
    doc = json.loads(copy.read_text())
    doc["testGroups"][0]["tests"][1]["tcId"] = doc["testGroups"][0]["tests"][0]["tcId"]
    doc["numberOfTests"] += 1
    copy.write_text(canonical_json(doc))
    errs = lint_file(copy, _schema())
    assert any("duplicate tcIds" in e for e in errs)
    assert any("numberOfTests" in e for e in errs)


def test_lint_detects_schema_violation(copy: Path) -> None:
    doc = json.loads(copy.read_text())
    doc["testGroups"][0]["tests"][0]["params"]["w"][0] = "0.5"  # decimal, not float.hex
    copy.write_text(canonical_json(doc))
    assert any("schema" in e for e in lint_file(copy, _schema()))
    # the stdlib fallback (no jsonschema) catches it too
    assert any("non-hex" in e for e in lint_file(copy, None))


# -- expected values against hand derivations -----------------------------------------------------
def _h(s: str) -> float:
    return float.fromhex(s)


def test_torch_wd_only_is_pure_multiplicative_decay() -> None:
    # Zero gradients: m = v = 0, u = 0/(0+eps) = 0, so theta_t = theta_{t-1} * (1 - lr*wd) with
    # one binary64 rounding for lr*wd, one for 1 - s and one for the product.
    g, t = _test(_load("adamw_torch_test.json"), "WD_ONLY")
    lr, wd = g["config"]["lr"], g["config"]["weight_decay"]
    theta = [_h(x) for x in t["params"]["w"]]
    for e in t["expected"]:
        theta = [x * (1.0 - lr * wd) for x in theta]
        assert [_h(x) for x in e["params"]["w"]] == theta


def test_first_step_matches_exact_rational_derivation() -> None:
    # At t=1 with bias correction: m_hat = g and v_hat = g^2 exactly (in real arithmetic), so
    #   torch:  theta_1 = theta_0 (1 - lr wd) - lr g / (|g| + eps)
    #   keras:  theta_1 = theta_0 (1 - lr wd) - lr g sqrt(1-b2) / (sqrt(1-b2)|g| + eps_hat)
    # The binary64 reference rounds ~10 times: agreement to 1e-15 relative of the scale.
    for name, hat in (("adamw_torch_test.json", False), ("adamw_keras3_test.json", True)):
        g, t = _test(_load(name), "BASIC")
        c = g["config"]
        lr, wd, eps, b2 = (Fraction(c[k]) for k in ("lr", "weight_decay", "eps", "beta2"))
        for pname, vals in t["params"].items():
            for i, x in enumerate(vals):
                th0, gr = Fraction(_h(x)), Fraction(_h(t["grads"][0][pname][i]))
                if hat:
                    k = Fraction(math.sqrt(1 - float(b2)))  # sqrt: within 1 ulp, enough here
                    u = gr * k / (k * abs(gr) + eps)
                else:
                    u = gr / (abs(gr) + eps)
                exact = th0 * (1 - lr * wd) - lr * u
                got = Fraction(_h(t["expected"][0]["params"][pname][i]))
                assert abs(got - exact) <= Fraction(1, 10**15) * (abs(th0) + lr), (name, pname, i)
                # and the first moment is (1 - b1) g
                m1 = Fraction(_h(t["expected"][0]["m"][pname][i]))
                assert abs(m1 - (1 - Fraction(c["beta1"])) * gr) <= abs(gr) * Fraction(1, 10**15)


def test_frozen_parameter_is_untouched() -> None:
    # The reference freezes a parameter with a null gradient: no decay, no moment update.
    _, t = _test(_load("adamw_torch_test.json"), "FROZEN_PARAM")
    e1, e2 = t["expected"][0], t["expected"][1]
    assert t["grads"][1]["b"] is None
    assert e2["params"]["b"] == e1["params"]["b"] and e2["m"]["b"] == e1["m"]["b"]
    assert e2["paramSteps"] == {"w": 2, "b": 1}


def test_nan_inf_stays_elementwise() -> None:
    _, t = _test(_load("adamw_torch_test.json"), "NAN_INF")
    last = t["expected"][-1]["params"]["w"]
    assert last[0] == "nan" and last[1] == "nan"  # inf/inf and nan propagate
    assert math.isfinite(_h(last[2]))
