"""`vectors verify`: an implementation checked against the vectors without the reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from adamw_ref.vectors.cli import cli_main as vectors_cli

verify_vectors = pytest.importorskip("conformance.vectors")
np = pytest.importorskip("numpy")


def _reference(**override: object):  # type: ignore[no-untyped-def]
    try:
        from adapters.reference.adapter import ReferenceAdapter
    except ImportError:  # pragma: no cover - H3a's module not there yet
        pytest.skip("adapters/reference/adapter.py not available")
    return ReferenceAdapter(override or None)


def test_reference_adapter_passes_every_vector() -> None:
    # The reference adapter re-runs the specification in the group's dtype: every test passes
    # (this checks the verifier's plumbing and bounds; the vectors came from the same spec).
    report = verify_vectors.verify(_reference())
    assert report.count("fail") == 0, [r.reason for r in report.results if r.status == "fail"]
    assert report.count("skip") == 0
    assert report.count("pass") > 100


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        ("eps_placement", "before_bias_correction"),  # the Keras epsilon-hat
        ("decay_timing", "after_step"),  # HF legacy order
        ("step_count_scope", "global"),  # seen only through a frozen parameter
        ("amsgrad_mode", "bias_corrected_v"),  # optax.amsgrad
    ],
)
def test_a_wrong_implementation_fails(knob: str, value: str) -> None:
    # The reference with one knob planted: it claims every config but computes another variant.
    report = verify_vectors.verify(_reference(**{knob: value}))
    failed = [r for r in report.results if r.status == "fail"]
    assert failed, f"planted {knob}={value} went unnoticed"
    assert any(r.file == "adamw_torch_test.json" for r in failed)


def test_cli_lint_and_verify_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert vectors_cli(["lint"]) == 0
    assert vectors_cli(["verify", "--adapter", "reference"]) == 0
    out = capsys.readouterr().out
    assert "0 failed" in out


@pytest.fixture(scope="module")
def torch_report():  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    from adapters import load_adapter

    return verify_vectors.verify(load_adapter("torch"))


def test_torch_passes_the_torch_profile_groups(torch_report) -> None:  # type: ignore[no-untyped-def]
    ran = [r for r in torch_report.results if r.status != "skip"]
    assert ran and {r.file for r in ran} == {"adamw_torch_test.json"}
    failed = [r for r in ran if r.status == "fail"]
    # Finding: torch updates m with lerp, m + (g - m)(1 - b1), so an infinite m becomes
    # inf + (-inf) = NaN on the next step, where the specification's b1*m + (1-b1)*g stays inf.
    # The parameter is NaN either way; only m differs. Any other failure is a regression.
    assert [(r.tc_id, r.flags[0]) for r in failed] == [(7, "NAN_INF")], [r.reason for r in failed]
    assert "m['w'][0]: got np.float64(nan), want np.float64(inf)" in failed[0].reason
    # Every other torch-profile test passes, float32 included.
    assert sum(r.status == "pass" for r in ran) >= 14


def test_torch_skips_other_profiles_with_a_reason(torch_report) -> None:  # type: ignore[no-untyped-def]
    skipped = [r for r in torch_report.results if r.status == "skip"]
    keras = [r for r in skipped if r.file == "adamw_keras3_test.json"]
    assert keras and all("eps_placement" in r.reason for r in keras)


def test_optax_flushes_subnormals(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Finding: XLA on CPU flushes subnormals to zero, so m = (1-b1) g with a subnormal g is 0
    # in Optax (float64 and float32), where IEEE arithmetic (and the specification) keeps it.
    # Everything else in the optax-expressible files passes.
    pytest.importorskip("optax")
    from adapters import AdapterError, load_adapter

    try:
        adapter = load_adapter("optax")
    except AdapterError as exc:
        pytest.skip(f"optax adapter: {exc}")
    if isinstance(adapter, type):
        adapter = adapter()
    import shutil

    from adamw_ref.vectors import default_vectors_dir

    # Only the optax file, to keep the test fast (JAX dispatch is slow per step).
    shutil.copy(default_vectors_dir() / "adamw_optax_test.json", tmp_path)
    report = verify_vectors.verify(adapter, tmp_path)
    failed = [r for r in report.results if r.status == "fail"]
    assert [r.flags for r in failed] == [["SUBNORMAL"], ["SUBNORMAL", "FLOAT32"]], [r.reason for r in failed]
    assert all("m['w'][0]: got np.float64(0.0)" in r.reason for r in failed)
    assert report.count("fail") == 2 and report.count("pass") >= 8


def _one_vector(tmp_path: Path) -> Path:
    from adamw_ref.vectors import default_vectors_dir

    d = tmp_path / "v"
    d.mkdir()
    (d / "adamw_torch_test.json").write_bytes((default_vectors_dir() / "adamw_torch_test.json").read_bytes())
    return d / "adamw_torch_test.json"


def _corrupt(path: Path, how: str) -> None:
    import json as _json

    text = path.read_text()
    if how == "truncated":
        path.write_text(text[: len(text) // 2])
    elif how == "garbage":
        path.write_bytes(bytes(range(256)) * 4)
    elif how == "no_config":
        doc = _json.loads(text)
        del doc["testGroups"][0]["config"]
        path.write_text(_json.dumps(doc))
    elif how == "float128":
        doc = _json.loads(text)
        doc["testGroups"][0]["dtype"] = "float128"
        path.write_text(_json.dumps(doc))
    elif how == "bad_config":
        doc = _json.loads(text)
        doc["testGroups"][0]["config"]["decay_form"] = "sideways"
        path.write_text(_json.dumps(doc))


@pytest.mark.parametrize("how", ["truncated", "garbage", "no_config", "float128", "bad_config"])
def test_verify_refuses_a_broken_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    path = _one_vector(tmp_path)
    _corrupt(path, how)
    code = verify_vectors.cli_main(["--adapter", "reference", "--dir", str(path.parent)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "adamw_torch_test.json" in err, err


@pytest.mark.parametrize("where", ["empty", "file", "missing"])
def test_verify_with_nothing_to_check_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    target = {"empty": tmp_path, "file": tmp_path / "f.json", "missing": tmp_path / "nope"}[where]
    (tmp_path / "f.json").write_text("{}") if where == "file" else None
    code = verify_vectors.cli_main(["--adapter", "reference", "--dir", str(target)])
    assert code == 2 and "vector files" in capsys.readouterr().err


def test_generate_onto_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("x")
    assert vectors_cli(["generate", "--out", str(tmp_path / "f")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_verify_honours_declared_features(tmp_path: Path) -> None:
    # an adapter that declares amsgrad unsupported but would accept it in to_native: the AMSGrad
    # groups are skipped with the declared reason, as the suite skips them
    from adapters.protocol import Support
    from adapters.reference.adapter import ReferenceAdapter

    ad = ReferenceAdapter()
    ad.info = type(ad.info)(
        **{**ad.info.__dict__, "features": {**ad.info.features, "amsgrad": Support.UNSUPPORTED}}
    )
    report = verify_vectors.verify(ad)
    skipped = [r for r in report.results if r.status == "skip"]
    assert skipped and all("amsgrad" in r.reason for r in skipped)
    assert report.ok
